import ArgumentParser
import Foundation
import Logging
import OneWindowCore
import OneWindowServer
import OneWindowStore

struct Audit: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Check the audit log.", subcommands: [Verify.self])

  struct Verify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Walk the audit hash chain; exit 1 and name the first broken entry if any row was altered or removed.")

    @OptionGroup var data: DataOptions

    func run() async throws {
      let database = try await data.openDatabase(logger: try data.makeLogger())
      let store = database.store
      let result = try await AuditVerification.run(store.audit)
      try await database.close()
      if let broken = result.firstBreak {
        print("audit log BROKEN at entry \(broken.sequence): \(broken.description) (\(result.checked) entries verified before it)")
        throw ExitCode(1)
      }
      print("audit log intact: \(result.checked) entries verified")
    }
  }
}
