import ArgumentParser
import Foundation
import Logging
import OneWindowCore
import OneWindowServer
import OneWindowStore

struct Payments: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Check the payments ledger and reconcile it with the provider.", subcommands: [Check.self, Reconcile.self])

  struct Check: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Verify the ledger invariants (balanced transactions, one capture per payment, refunds ≤ captured); exit 1 on a violation.")

    @OptionGroup var data: DataOptions

    func run() async throws {
      let database = try await data.openDatabase(logger: try data.makeLogger())
      let result = try await PaymentMaintenance.check(store: database.store)
      try await database.close()
      for line in result.lines { print(line) }
      if !result.ok { throw ExitCode(1) }
    }
  }

  struct Reconcile: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Compare one business day (UTC+8) of the ledger with the sandbox provider's settlement file; exit 1 on mismatches.")

    @OptionGroup var data: DataOptions

    @Option(help: "The settlement day, YYYY-MM-DD.")
    var date: String

    func run() async throws {
      guard let day = CivilDate(date) else { throw ValidationError("--date must be YYYY-MM-DD") }
      let logger = try data.makeLogger()
      let database = try await data.openDatabase(logger: logger)
      let result = try await PaymentMaintenance.reconcile(database: database, day: day, logger: logger)
      try await database.close()
      for line in result.lines { print(line) }
      if !result.ok { throw ExitCode(1) }
    }
  }
}
