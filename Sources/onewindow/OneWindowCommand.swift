import ArgumentParser
import Foundation
import Logging
import OneWindowCore
import OneWindowDatabase
import OneWindowServer
import OneWindowStore

@main
struct OneWindowCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "onewindow",
    abstract: "OneWindow 一网通办 government services backend.",
    subcommands: [Serve.self, Migrate.self, SeedDemo.self, Admin.self, Audit.self, Payments.self],
    defaultSubcommand: Serve.self)
}

/// Options shared by every command that opens the database.
struct DataOptions: ParsableArguments {
  @Option(name: .customLong("data-dir"), help: "Directory holding onewindow.sqlite. [env: ONEWINDOW_DATA_DIR] (default: ./onewindow-data)")
  var dataDirectory: String?

  @Option(help: "Log level: trace, debug, info, notice, warning, error, critical. [env: ONEWINDOW_LOG_LEVEL] (default: info)")
  var logLevel: String?

  var resolvedDataDirectory: String {
    dataDirectory ?? Environment.value("ONEWINDOW_DATA_DIR") ?? ServerConfig().dataDirectory
  }

  func makeLogger(label: String = "onewindow") throws -> Logger {
    let raw = logLevel ?? Environment.value("ONEWINDOW_LOG_LEVEL") ?? "info"
    guard let level = Logger.Level(rawValue: raw) else { throw ValidationError("unknown log level '\(raw)'") }
    LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
    var logger = Logger(label: label)
    logger.logLevel = level
    return logger
  }

  /// Which database the options select.
  var database: DatabaseChoice { .embedded(directory: resolvedDataDirectory) }

  /// Where the data is, for messages (never includes a password).
  var databaseDescription: String { "\(resolvedDataDirectory)/onewindow.sqlite" }

  /// Opens (creating and migrating if needed) the selected database.
  func openDatabase(logger: Logger) async throws -> OpenedDatabase {
    try await OpenedDatabase.open(database, logger: logger)
  }
}

enum Environment {
  static func value(_ name: String) -> String? {
    guard let v = ProcessInfo.processInfo.environment[name], !v.isEmpty else { return nil }
    return v
  }
}
