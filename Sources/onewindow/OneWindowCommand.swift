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
    subcommands: [
      Serve.self, Migrate.self, SeedDemo.self, Admin.self, Audit.self, Payments.self, Keys.self, Backup.self, Restore.self,
      RestoreFinish.self,
    ],
    defaultSubcommand: Serve.self)
}

/// Options shared by every command that opens the database.
struct DataOptions: ParsableArguments {
  @Option(name: .customLong("data-dir"), help: "Directory holding onewindow.sqlite (unless --database-url is given) and the keys. [env: ONEWINDOW_DATA_DIR] (default: ./onewindow-data)")
  var dataDirectory: String?

  @Option(help: "PostgreSQL instead of the embedded SQLite file: postgres://user@host:5432/database?sslmode=verify-full&sslrootcert=ca.pem (sslmode: disable, allow, prefer, require, verify-ca, verify-full; search_path= picks a schema). Keys stay in --data-dir. [env: ONEWINDOW_DATABASE_URL]")
  var databaseURL: String?

  @Option(help: "PostgreSQL URL for this process's one LISTEN connection (cross-node doorbells) when --database-url goes through a transaction-pooling proxy, which breaks LISTEN; same form as --database-url. [env: ONEWINDOW_DATABASE_LISTEN_URL] (default: --database-url)")
  var databaseListenURL: String?

  @Option(help: "File whose first line is the PostgreSQL password, so it stays out of the URL and the process list. [env: ONEWINDOW_DATABASE_PASSWORD_FILE]")
  var databasePasswordFile: String?

  @Option(name: .customLong("keys-dir"), help: "Directory holding the private keys (issuer-ed25519.key, webhook-secrets.key, sandbox-callback.secret); on PostgreSQL every node needs the same files, made once by `onewindow keys create`. [env: ONEWINDOW_KEYS_DIR] (default: --data-dir)")
  var keysDirectory: String?

  @Option(help: "Log level: trace, debug, info, notice, warning, error, critical. [env: ONEWINDOW_LOG_LEVEL] (default: info)")
  var logLevel: String?

  var resolvedDataDirectory: String {
    dataDirectory ?? Environment.value("ONEWINDOW_DATA_DIR") ?? ServerConfig().dataDirectory
  }

  var resolvedKeysDirectory: String {
    keysDirectory ?? Environment.value("ONEWINDOW_KEYS_DIR") ?? resolvedDataDirectory
  }

  func makeLogger(label: String = "onewindow") throws -> Logger {
    let raw = logLevel ?? Environment.value("ONEWINDOW_LOG_LEVEL") ?? "info"
    guard let level = Logger.Level(rawValue: raw) else { throw ValidationError("unknown log level '\(raw)'") }
    LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
    ServerMetrics.bootstrapMetricsSystem()
    var logger = Logger(label: label)
    logger.logLevel = level
    return logger
  }

  /// Which database the options select: PostgreSQL when a URL is given, else the embedded file.
  func database() throws -> DatabaseChoice {
    do {
      return try DatabaseChoice.from(
        url: databaseURL ?? Environment.value("ONEWINDOW_DATABASE_URL"),
        passwordFile: databasePasswordFile ?? Environment.value("ONEWINDOW_DATABASE_PASSWORD_FILE"),
        dataDirectory: resolvedDataDirectory,
        listenURL: databaseListenURL ?? Environment.value("ONEWINDOW_DATABASE_LISTEN_URL"))
    } catch {
      throw ValidationError("\(error)")
    }
  }

  /// Opens (creating and migrating if needed) the selected database.
  func openDatabase(logger: Logger) async throws -> OpenedDatabase {
    try await OpenedDatabase.open(try database(), logger: logger)
  }
}

enum Environment {
  static func value(_ name: String) -> String? {
    guard let v = ProcessInfo.processInfo.environment[name], !v.isEmpty else { return nil }
    return v
  }
}
