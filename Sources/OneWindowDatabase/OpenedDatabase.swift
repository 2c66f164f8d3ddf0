import Foundation
import Logging
import OneWindowStore
import OneWindowStoreSQLite

/// Where the data lives. The embedded SQLite file is the default; PostgreSQL is for scale-out.
public enum DatabaseChoice: Sendable {
  /// `onewindow.sqlite` (and the sandbox provider's books) inside `directory`.
  case embedded(directory: String)
}

/// An opened database: the store and the sandbox provider's books that live beside it.
public struct OpenedDatabase: Sendable {
  public let store: any Store
  public let sandboxBook: any SandboxBook

  /// Opens (creating and migrating if needed) the chosen database.
  public static func open(_ choice: DatabaseChoice, logger: Logger) async throws -> OpenedDatabase {
    switch choice {
    case .embedded(let directory):
      let store = try SQLiteStore(directory: directory)
      return OpenedDatabase(store: store, sandboxBook: try SandboxProviderBook(directory: directory))
    }
  }

  /// Closes the store and the books; call once after the server has drained.
  public func close() async throws {
    try? sandboxBook.shutDown()
    try await store.close()
  }
}
