import Foundation
import Logging
import OneWindowDatabase
import OneWindowStore
import OneWindowStorePostgres

/// The engines a test can run on. Store and end-to-end tests take one as an argument, so the
/// same assertions run on every engine this machine has.
public enum TestEngine: String, Sendable, CaseIterable, CustomStringConvertible {
  case sqlite
  case postgres

  public var description: String { rawValue }

  /// Engines to run: SQLite always; PostgreSQL when `ONEWINDOW_TEST_POSTGRES_URL` names a
  /// database (each test gets its own schema in it), and always under `CI=true`, where a missing
  /// URL fails the tests instead of skipping them.
  public static var enabled: [TestEngine] {
    postgresURL != nil || isCI ? [.sqlite, .postgres] : [.sqlite]
  }

  public static var postgresURL: String? {
    ProcessInfo.processInfo.environment["ONEWINDOW_TEST_POSTGRES_URL"].flatMap { $0.isEmpty ? nil : $0 }
  }

  static var isCI: Bool { ProcessInfo.processInfo.environment["CI"] == "true" }
}

/// Why a PostgreSQL test cannot run.
public struct TestPostgresUnavailable: Error, CustomStringConvertible {
  public let description = "ONEWINDOW_TEST_POSTGRES_URL is not set; under CI=true every store test must also run on PostgreSQL (.ci/run starts one)"
  public init() {}
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
    case .sqlite:
      return TestDatabase(engine: engine, directory: dir, choice: .embedded(directory: dir), keepsDirectory: directory != nil)
    case .postgres:
      guard let url = TestEngine.postgresURL else { throw TestPostgresUnavailable() }
      var settings = try PostgresSettings(url: url)
      settings.schema = "t_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
      settings.maximumConnections = 4
      try await PostgresSchemas.create(settings.schema ?? "", settings: settings, logger: Self.quiet)
      return TestDatabase(engine: engine, directory: dir, choice: .postgres(settings), keepsDirectory: directory != nil)
    }
  }

  let keepsDirectory: Bool

  /// The `onewindow` options that open this database (`--data-dir`, and `--database-url` on
  /// PostgreSQL), for tests that run the real binary.
  public var commandLineArguments: [String] {
    switch choice {
    case .embedded: return ["--data-dir", directory]
    case .postgres(let settings):
      let url = TestEngine.postgresURL ?? ""
      let schema = settings.schema.map { (url.contains("?") ? "&" : "?") + "search_path=" + $0 } ?? ""
      return ["--data-dir", directory, "--database-url", url + schema]
    }
  }

  public static let quiet: Logger = {
    var logger = Logger(label: "onewindow-test-db")
    logger.logLevel = .error
    return logger
  }()

  /// Removes what `create` made (the temporary directory, the PostgreSQL schema).
  public func drop() async {
    if !keepsDirectory { try? FileManager.default.removeItem(atPath: directory) }
    if case .postgres(let settings) = choice, let schema = settings.schema {
      try? await PostgresSchemas.drop(schema, settings: settings, logger: Self.quiet)
    }
  }

  /// Opens the store on this database.
  public func open(logger: Logger = TestDatabase.quiet) async throws -> OpenedDatabase {
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
