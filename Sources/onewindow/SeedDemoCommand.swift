import ArgumentParser
import Foundation
import Logging
import OneWindowCore
import OneWindowServer
import OneWindowStore

struct SeedDemo: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "seed-demo", abstract: "Load the demo catalog and demo accounts (existing items and accounts are kept).")

  @OptionGroup var data: DataOptions

  func run() async throws {
    let database = try await data.openDatabase(logger: try data.makeLogger())
    let store = database.store
    let result = try await DemoData.seed(into: store)
    try await database.close()
    print("\(result.departments) departments, \(result.itemsCreated) new items published.")
    for c in result.credentials {
      print("\(c.role.rawValue)\t\(c.login)\t\(c.password)\t\(c.displayName)")
    }
    if result.credentials.isEmpty { print("Demo accounts already existed; none created.") }
  }
}
