import Foundation
import Logging
import OneWindowDatabase
import OneWindowStore

/// The engines a test can run on. Store and end-to-end tests take one as an argument, so the
/// same assertions run on every engine this machine has.
public enum TestEngine: String, Sendable, CaseIterable, CustomStringConvertible {
  case sqlite

  public var description: String { rawValue }

  /// Engines to run: SQLite always.
  public static var enabled: [TestEngine] { [.sqlite] }
}

/// A fresh, empty database of one engine, dropped afterwards.
public struct TestDatabase: Sendable {
  public let engine: TestEngine
  /// The data directory (SQLite file, keys, sandbox books).
  public let directory: String
  public let choice: DatabaseChoice

  /// Creates the database and its data directory; `directory` keeps the data there (created
  /// if needed, not removed) instead of in a temporary directory.
  public static func create(_ engine: TestEngine, directory: String? = nil) async throws -> TestDatabase {
    let dir = directory ?? FileManager.default.temporaryDirectory.appendingPathComponent("ow-test-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    switch engine {
    case .sqlite: return TestDatabase(engine: engine, directory: dir, choice: .embedded(directory: dir), keepsDirectory: directory != nil)
    }
  }

  let keepsDirectory: Bool

  /// Removes what `create` made (the temporary directory).
  public func drop() async {
    if !keepsDirectory { try? FileManager.default.removeItem(atPath: directory) }
  }

  /// Opens the store on this database.
  public func open(logger: Logger = Logger(label: "onewindow-test")) async throws -> OpenedDatabase {
    try await OpenedDatabase.open(choice, logger: logger)
  }

  /// A fresh database of `engine`, opened, passed to `body`, then closed and dropped.
  public static func withStore<T>(
    _ engine: TestEngine = .sqlite, _ body: (any Store) async throws -> T
  ) async throws -> T {
    let database = try await create(engine)
    let opened: OpenedDatabase
    do { opened = try await database.open() } catch {
      await database.drop()
      throw error
    }
    do {
      let result = try await body(opened.store)
      try await opened.close()
      await database.drop()
      return result
    } catch {
      try? await opened.close()
      await database.drop()
      throw error
    }
  }
}
