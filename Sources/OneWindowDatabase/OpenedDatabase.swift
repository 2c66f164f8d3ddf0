import Foundation
import Logging
import OneWindowStore
import OneWindowStorePostgres
import OneWindowStoreSQLite

/// Where the data lives. The embedded SQLite file is the default; PostgreSQL is for scale-out.
public enum DatabaseChoice: Sendable, CustomStringConvertible {
  /// `onewindow.sqlite` (and the sandbox provider's books) inside `directory`.
  case embedded(directory: String)
  /// A PostgreSQL database; the data directory then holds only keys.
  case postgres(PostgresSettings)

  /// The choice the options make: PostgreSQL when a URL is given, else the embedded file.
  /// `listenURL`: where PostgreSQL's LISTEN connects, when not through `url` (a pooling proxy).
  public static func from(url: String?, passwordFile: String?, dataDirectory: String, listenURL: String? = nil) throws -> DatabaseChoice {
    guard let url, !url.isEmpty else {
      if passwordFile != nil { throw PostgresSettings.InvalidURL(description: "a database password file needs a database URL") }
      if listenURL != nil { throw PostgresSettings.InvalidURL(description: "a database listen URL needs a database URL") }
      return .embedded(directory: dataDirectory)
    }
    var settings = try PostgresSettings(url: url, passwordFile: passwordFile)
    if let listenURL, !listenURL.isEmpty {
      do { try settings.setListenURL(listenURL, passwordFile: passwordFile) } catch let error as PostgresSettings.InvalidURL {
        throw PostgresSettings.InvalidURL(description: "the database listen URL: " + error.description)
      }
    }
    return .postgres(settings)
  }

  /// Where the data is, for messages (never with a password).
  public var description: String {
    switch self {
    case .embedded(let directory): "\(directory)/onewindow.sqlite"
    case .postgres(let settings): settings.redacted
    }
  }
}

/// An opened database: the store and the sandbox provider's books that live beside it.
public struct OpenedDatabase: Sendable, CustomStringConvertible {
  let choice: DatabaseChoice
  public let store: any Store
  public let sandboxBook: any SandboxBook
  /// Where the data is (never with a password).
  public var description: String { choice.description }

  /// Opens (creating and migrating if needed) the chosen database.
  public static func open(_ choice: DatabaseChoice, logger: Logger) async throws -> OpenedDatabase {
    switch choice {
    case .embedded(let directory):
      let store = try SQLiteStore(directory: directory)
      return OpenedDatabase(choice: choice, store: store, sandboxBook: try SandboxProviderBook(directory: directory))
    case .postgres(let settings):
      let store = try await PostgresStore(settings: settings, logger: logger)
      // The provider's books: its own sandbox_… tables in the same database.
      do {
        return OpenedDatabase(choice: choice, store: store, sandboxBook: try await PostgresSandboxBook(store: store))
      } catch {
        try? await store.close()
        throw error
      }
    }
  }

  /// Closes the store and the books; call once after the server has drained.
  public func close() async throws {
    try? sandboxBook.shutDown()
    try await store.close()
  }
}

/// Backups of the embedded engine (`onewindow backup` / `restore`). A PostgreSQL deployment is
/// backed up with PostgreSQL's own tools (docs/deployment.md), then finished the same way
/// (`restore-finish`).
public enum EmbeddedBackups {
  public typealias Summary = EmbeddedBackup.Summary
  public typealias Failure = EmbeddedBackup.Failure

  /// An online copy of the embedded deployment `choice` names into `target`.
  public static func backup(_ choice: DatabaseChoice, keysDirectory: String, keyFiles: [String], to target: String) throws -> Summary {
    guard case .embedded(let directory) = choice else { throw notEmbedded }
    return try EmbeddedBackup.backup(dataDirectory: directory, keysDirectory: keysDirectory, keyFiles: keyFiles, to: target)
  }

  /// Copies a backup into the embedded deployment `choice` names and finishes the restore (a new
  /// sync epoch) before the database takes its name.
  public static func restore(_ choice: DatabaseChoice, from backup: String, keysDirectory: String, now: Date) async throws -> Summary {
    guard case .embedded(let directory) = choice else { throw notEmbedded }
    return try await EmbeddedBackup.restore(from: backup, dataDirectory: directory, keysDirectory: keysDirectory, now: now)
  }

  static let notEmbedded = EmbeddedBackup.Failure(
    "backup and restore copy the embedded SQLite deployment; for PostgreSQL use pg_dump/pg_restore or pg_basebackup, then `onewindow restore-finish` (docs/deployment.md)")
}
