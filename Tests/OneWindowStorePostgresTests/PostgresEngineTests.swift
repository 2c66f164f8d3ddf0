import Foundation
import Logging
import OneWindowDatabase
import OneWindowStore
import OneWindowTestSupport
import Synchronization
import Testing
@testable import OneWindowStorePostgres

/// What only the PostgreSQL engine has: its URL, its migration lock and its checks of the
/// cluster. Behaviour both engines share is in OneWindowStoreTests.
@Suite struct PostgresSettingsTests {
  @Test func aURLGivesEveryPart() throws {
    let s = try PostgresSettings(url: "postgresql://ow%40x:p%3Ass@db.example.org:6432/one_window?sslmode=verify-full&sslrootcert=/etc/ca.pem&search_path=tenant_a&pool_max_conns=40")
    #expect(s.host == "db.example.org" && s.port == 6432 && s.database == "one_window")
    #expect(s.username == "ow@x" && s.password == "p:ss")
    #expect(s.tlsMode == .verifyFull && s.rootCertificatePath == "/etc/ca.pem")
    #expect(s.schema == "tenant_a" && s.maximumConnections == 40)
    #expect(!s.redacted.contains("p:ss") && !s.redacted.contains("p%3Ass"))
  }

  @Test func defaultsFollowLibpq() throws {
    let s = try PostgresSettings(url: "postgres://ow@localhost/ow")
    #expect(s.port == 5432 && s.tlsMode == .prefer && s.password == nil && s.schema == nil)
    #expect(s.maximumConnections == 20 && s.minimumConnections == 0 && s.connectTimeout == .seconds(10))
    #expect(s.idleTimeout == .seconds(60) && s.statementTimeoutMillis == nil)
  }

  @Test func thePoolAndItsTimeoutsAreSetInTheURL() throws {
    let s = try PostgresSettings(
      url: "postgres://ow@localhost/ow?pool_max_conns=50&pool_min_conns=5&connect_timeout=3&pool_max_conn_idle_time=300&statement_timeout=15000")
    #expect(s.maximumConnections == 50 && s.minimumConnections == 5 && s.connectTimeout == .seconds(3))
    #expect(s.idleTimeout == .seconds(300) && s.statementTimeoutMillis == 15000)
    let config = try s.clientConfiguration()
    #expect(config.options.maximumConnections == 50 && config.options.minimumConnections == 5)
    #expect(config.options.connectTimeout == .seconds(3) && config.options.connectionIdleTimeout == .seconds(300))
    #expect(config.options.additionalStartupParameters.contains { $0 == ("statement_timeout", "15000") })
    // The doorbell listener's one connection keeps none of the pool's sizing or statement limit.
    #expect(s.listenerSettings.minimumConnections == 0 && s.listenerSettings.statementTimeoutMillis == nil)
    // At the bounds.
    _ = try PostgresSettings(url: "postgres://ow@localhost/ow?pool_max_conns=1&pool_min_conns=1&connect_timeout=300&statement_timeout=0")
  }

  @Test func aPasswordFileWinsAndOnlyItsFirstLineCounts() throws {
    let file = FileManager.default.temporaryDirectory.appendingPathComponent("pw-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: file) }
    try "s3cret\nignored\n".write(toFile: file, atomically: true, encoding: .utf8)
    let s = try PostgresSettings(url: "postgres://ow:inurl@localhost/ow", passwordFile: file)
    #expect(s.password == "s3cret")
    #expect(throws: PostgresSettings.InvalidURL.self) { try PostgresSettings(url: "postgres://ow@localhost/ow", passwordFile: file + "-missing") }
  }

  @Test(arguments: [
    "mysql://ow@localhost/ow", "postgres://localhost/ow", "postgres://ow@/ow", "postgres://ow@localhost",
    "postgres://ow@localhost/ow?sslmode=sometimes", "postgres://ow@localhost/ow?search_path=Bad-Name",
    "postgres://ow@localhost/ow?pool_max_conns=0", "postgres://ow@localhost/ow?colour=blue",
    "postgres://ow@localhost/ow?pool_min_conns=21", "postgres://ow@localhost/ow?pool_min_conns=-1",
    "postgres://ow@localhost/ow?connect_timeout=0", "postgres://ow@localhost/ow?connect_timeout=301",
    "postgres://ow@localhost/ow?pool_max_conn_idle_time=0", "postgres://ow@localhost/ow?statement_timeout=-5",
    "postgres://ow@localhost/ow?statement_timeout=86400001", "postgres://ow@localhost/ow?connect_timeout=soon",
  ])
  func badURLsAreRefusedWithAReason(url: String) {
    #expect(throws: PostgresSettings.InvalidURL.self) { try PostgresSettings(url: url) }
  }

  @Test func everySSLModeBuildsATLSConfiguration() throws {
    for mode in PostgresSettings.TLSMode.allCases {
      let s = try PostgresSettings(url: "postgres://ow@localhost/ow?sslmode=\(mode.rawValue)")
      _ = try s.tls()
    }
  }

  @Test func scriptsSplitOutsideQuotesAndDollarBodies() {
    let script = """
      CREATE TABLE a (x TEXT DEFAULT 'a;b'); -- a comment; with a semicolon
      CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION 'no; never'; END;
      $$;
      SELECT $1
      """
    let statements = SQLScript.statements(script)
    #expect(statements.count == 3, "\(statements)")
    #expect(statements[1].contains("RAISE EXCEPTION 'no; never'; END;"))
    #expect(statements[2] == "SELECT $1")
  }
}

@Suite(.enabled(if: TestEngine.enabled.contains(.postgres))) struct PostgresMigrationTests {
  static let logger: Logger = {
    var logger = Logger(label: "pg-migration-test")
    logger.logLevel = .critical
    return logger
  }()

  static func settings(database: String? = nil) throws -> PostgresSettings {
    guard let url = ProcessInfo.processInfo.environment["ONEWINDOW_TEST_POSTGRES_URL"] else { throw TestPostgresUnavailable() }
    var settings = try PostgresSettings(url: url)
    if let database { settings.database = database }
    settings.schema = "m_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
    settings.maximumConnections = 2
    return settings
  }

  /// Eight processes' worth of stores starting at once on an empty schema: each migration is
  /// applied once (without the advisory lock the losers fail on "relation already exists").
  @Test func concurrentStartsMigrateOnce() async throws {
    let settings = try Self.settings()
    try await PostgresSchemas.create(settings.schema ?? "", settings: settings, logger: Self.logger)
    let stores = try await withThrowingTaskGroup(of: PostgresStore.self) { group in
      for _ in 0..<8 { group.addTask { try await PostgresStore(settings: settings, logger: Self.logger) } }
      return try await group.reduce(into: []) { $0.append($1) }
    }
    #expect(stores.count == 8)
    let ids = try await stores[0].inspection.strings("SELECT id FROM schema_migrations ORDER BY id")
    #expect(ids == PostgresMigrations.all.map(\.id).sorted())
    for store in stores { try await store.close() }
    try await PostgresSchemas.drop(settings.schema ?? "", settings: settings, logger: Self.logger)
  }

  @Test func aDatabaseWithoutPgTrgmIsRefusedNamingTheFix() async throws {
    let settings = try Self.settings(database: "ow_test_no_trgm")
    try await PostgresSchemas.create(settings.schema ?? "", settings: settings, logger: Self.logger)
    let error = await #expect(throws: PostgresMigrator.Refused.self) { try await PostgresStore(settings: settings, logger: Self.logger) }
    #expect(error?.description.contains("CREATE EXTENSION pg_trgm") == true)
    try await PostgresSchemas.drop(settings.schema ?? "", settings: settings, logger: Self.logger)
  }

  @Test func aCharacterTypeThatDropsChineseIsRefusedNamingTheFix() async throws {
    let settings = try Self.settings(database: "ow_test_c_ctype")
    try await PostgresSchemas.create(settings.schema ?? "", settings: settings, logger: Self.logger)
    let error = await #expect(throws: PostgresMigrator.Refused.self) { try await PostgresStore(settings: settings, logger: Self.logger) }
    #expect(error?.description.contains("LC_CTYPE 'C.UTF-8'") == true, "\(String(describing: error))")
    // Nothing was created: the refusal comes before the first migration.
    try await PostgresSchemas.drop(settings.schema ?? "", settings: settings, logger: Self.logger)
  }
}

/// `--database-listen-url`: the doorbell listener's own endpoint (past a pooling proxy).
@Suite struct PostgresListenURLTests {
  @Test func aListenURLSetsOnlyTheListenersEndpoint() throws {
    var settings = try PostgresSettings(url: "postgres://ow@pgbouncer.example.org:6432/ow?search_path=tenant_a&pool_max_conns=40")
    try settings.setListenURL("postgres://listener:secret@db.example.org:5432/ow?sslmode=require")
    #expect(settings.host == "pgbouncer.example.org" && settings.port == 6432 && settings.maximumConnections == 40)
    let listener = settings.listenerSettings
    #expect(listener.host == "db.example.org" && listener.port == 5432 && listener.username == "listener")
    #expect(listener.password == "secret" && listener.tlsMode == .require)
    // The channel follows the deployment's schema, whatever the listen URL says; one connection.
    #expect(listener.schema == "tenant_a" && listener.maximumConnections == 1)
    // Without a listen URL the listener uses the database URL's endpoint.
    let plain = try PostgresSettings(url: "postgres://ow@db.example.org/ow").listenerSettings
    #expect(plain.host == "db.example.org" && plain.maximumConnections == 1)
  }

  @Test func aListenURLNeedsADatabaseURLAndIsValidated() {
    #expect(throws: PostgresSettings.InvalidURL.self) {
      try DatabaseChoiceProbe.choose(url: nil, listenURL: "postgres://ow@db/ow")
    }
    let error = #expect(throws: PostgresSettings.InvalidURL.self) {
      try DatabaseChoiceProbe.choose(url: "postgres://ow@db/ow", listenURL: "mysql://ow@db/ow")
    }
    #expect(error?.description.hasPrefix("the database listen URL: ") == true, "\(String(describing: error))")
  }

  /// A store whose listener goes to another endpoint of the same server (localhost rather than
  /// the pool's 127.0.0.1) listens there and hears another node's doorbells.
  @Test(.enabled(if: TestEngine.enabled.contains(.postgres))) func aListenerOnItsOwnURLHearsDoorbells() async throws {
    let logger = PostgresMigrationTests.logger
    let settings = try PostgresMigrationTests.settings()
    try await PostgresSchemas.create(settings.schema ?? "", settings: settings, logger: logger)
    var other = settings
    try other.setListenURL(
      try #require(ProcessInfo.processInfo.environment["ONEWINDOW_TEST_POSTGRES_URL"]).replacingOccurrences(of: "127.0.0.1", with: "localhost"))
    #expect(other.listenerSettings.host == "localhost")
    let a = try await PostgresStore(settings: settings, logger: logger)
    let b = try await PostgresStore(settings: other, logger: logger)
    let heard = HeardPayloads()
    let token = b.doorbells.observe(.jobs) { payload in if let payload { heard.add(payload) } }
    let deadline = ContinuousClock.now + .seconds(10)
    while !heard.contains("wake"), ContinuousClock.now < deadline {
      await a.doorbells.ring(.jobs, "wake")
      try await Task.sleep(for: .milliseconds(50))
    }
    #expect(heard.contains("wake"))
    #expect(b.isListening)
    b.doorbells.cancel(token)
    try await a.close()
    try await b.close()
    try await PostgresSchemas.drop(settings.schema ?? "", settings: settings, logger: logger)
  }
}

/// Opens nothing: only runs `DatabaseChoice`'s option checks.
enum DatabaseChoiceProbe {
  static func choose(url: String?, listenURL: String?) throws {
    _ = try DatabaseChoice.from(url: url, passwordFile: nil, dataDirectory: "/tmp/unused", listenURL: listenURL)
  }
}

final class HeardPayloads: Sendable {
  private let payloads = Mutex<[String]>([])
  func add(_ payload: String) { payloads.withLock { $0.append(payload) } }
  func contains(_ payload: String) -> Bool { payloads.withLock { $0.contains(payload) } }
}
