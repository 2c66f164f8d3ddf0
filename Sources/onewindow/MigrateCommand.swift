import ArgumentParser
import Foundation
import Logging
import OneWindowCore
import OneWindowDatabase
import OneWindowServer
import OneWindowStore

struct Migrate: AsyncParsableCommand {
  static let configuration = CommandConfiguration(abstract: "Create or migrate the database, then exit.")

  @OptionGroup var data: DataOptions

  func run() async throws {
    let database = try await data.openDatabase(logger: try data.makeLogger())
    let applied = try await database.store.appliedMigrations()
    print("database \(database) is at schema \(applied.last ?? "none") (\(applied.count) migrations applied)")
    try await database.close()
  }
}
