import Foundation
import Testing
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import Logging
import OneWindowAPI
import OneWindowClientPosix
import OneWindowCore
import OneWindowServer
import OneWindowStore
import OneWindowTestSupport
import Synchronization

/// A clock tests move by hand (token and code expiry) instead of sleeping.
final class ManualClock: WallClock {
  private let current: Mutex<Date>
  init(_ start: Date = Date()) { current = Mutex(start) }
  func now() -> Date { current.withLock { $0 } }
  func advance(by seconds: TimeInterval) { current.withLock { $0 = $0.addingTimeInterval(seconds) } }
}

/// One real server on an ephemeral loopback port with its own temporary database, and a
/// client connected to it through the generated stubs. Its plain-HTTP listener runs too, on
/// another ephemeral port.
struct TestEnvironment: Sendable {
  let clients: OneWindowClients
  let store: any Store
  let engine: TestEngine
  let port: Int
  let httpPort: Int
  let clock: ManualClock
  let app: ServerApp

  var identity: Onewindow_V1_IdentityService.Client<HTTP2ClientTransport.Posix> { clients.identity }
  var catalog: Onewindow_V1_CatalogService.Client<HTTP2ClientTransport.Posix> { clients.catalog }
  var health: Grpc_Health_V1_Health.Client<HTTP2ClientTransport.Posix> { clients.health }
  var sync: Onewindow_V1_SyncService.Client<HTTP2ClientTransport.Posix> { clients.sync }

  static func run<T: Sendable>(
    /// The database engine (SQLite unless a test runs on each engine).
    engine: TestEngine = .sqlite,
    configure: (inout ServerConfig) -> Void = { _ in },
    /// Keeps the data in `directory` (created if needed) instead of a temporary one removed afterwards.
    directory: String? = nil,
    /// An existing database to use and keep (tests that restart the server on the same data);
    /// `engine` and `directory` are then ignored.
    database existing: TestDatabase? = nil,
    codeSender: (any LoginCodeSender)? = nil,
    httpRoutes: [HTTPRoute] = [],
    _ body: (TestEnvironment) async throws -> T
  ) async throws -> T {
    ServerMetrics.bootstrapMetricsSystem()
    let database: TestDatabase
    if let existing { database = existing } else { database = try await TestDatabase.create(engine, directory: directory) }
    let keep = existing != nil
    var config = ServerConfig()
    config.port = 0
    config.httpPort = 0
    config.dataDirectory = database.directory
    configure(&config)
    var logger = Logger(label: "onewindow-test")
    logger.logLevel = .warning
    let clock = ManualClock()
    let dependencies: ServerDependencies
    do {
      // On PostgreSQL a node never makes its own keys: created first, as an operator would.
      if database.engine == .postgres { try ServerKeys.createMissing(in: config.resolvedKeysDirectory) }
      dependencies = try await ServerDependencies.build(
        config: config, database: database.choice, clock: clock, logger: logger, codeSender: codeSender)
    } catch {
      if !keep { await database.drop() }
      throw error
    }
    let store = dependencies.store
    let app: ServerApp
    do {
      app = try await ServerApp.make(config: config, dependencies: dependencies, logger: logger, httpRoutes: httpRoutes)
    } catch {
      try? await dependencies.database.close()
      if !keep { await database.drop() }
      throw error
    }
    // Shutdown waits for both listeners: the HTTP one stops once the gRPC calls have drained.
    return try await withThrowingTaskGroup(of: Void.self) { group in
      group.addTask { try await app.serve() }
      group.addTask { try await app.serveHTTP() }
      do {
        let port = try await app.listeningPort()
        let httpPort = try await app.httpListeningPort()
        let result = try await OneWindowClients.with(ConnectionOptions(host: "127.0.0.1", port: port)) { clients in
          try await body(TestEnvironment(
            clients: clients, store: store, engine: engine, port: port, httpPort: httpPort, clock: clock, app: app))
        }
        app.beginGracefulShutdown()
        try await group.waitForAll()
        try await dependencies.database.close()
        if !keep { await database.drop() }
        return result
      } catch {
        app.beginGracefulShutdown()
        try? await group.waitForAll()
        try? await dependencies.database.close()
        if !keep { await database.drop() }
        throw error
      }
    }
  }

  // MARK: - Helpers

  /// Registers a citizen with a password and logs in.
  func citizenSession(phone: String = "13900000001", idNumber: String = "11010519491231002X", password: String = "Citizen-pass-1") async throws -> Onewindow_V1_Session {
    _ = try await identity.registerCitizen(.with {
      $0.name = "王五"
      $0.phone = phone
      $0.idNumber = idNumber
      $0.password = password
    })
    return try await identity.loginWithPassword(.with { $0.login = phone; $0.password = password })
  }

  /// Creates an administrator directly in the store (as `onewindow admin create-user` does) and logs in.
  func adminSession(username: String = "root") async throws -> Onewindow_V1_Session {
    _ = try await StaffAccounts.create(
      role: .admin, username: username, displayName: "管理员", departmentCode: "", password: "Admin-pass-1",
      store: store.identity, catalog: store.catalog, now: Date())
    return try await identity.loginWithPassword(.with { $0.login = username; $0.password = "Admin-pass-1" })
  }

  /// Creates a caseworker of `department` (created if missing) directly in the store and logs in.
  func caseworkerSession(username: String, department: String = "D-MARKET") async throws -> Onewindow_V1_Session {
    _ = try await store.catalog.upsertDepartment(Department(code: department, name: "部门 \(department)"), now: Date())
    _ = try await StaffAccounts.create(
      role: .caseworker, username: username, displayName: "办事员", departmentCode: department, password: "Worker-pass-1",
      store: store.identity, catalog: store.catalog, now: Date())
    return try await identity.loginWithPassword(.with { $0.login = username; $0.password = "Worker-pass-1" })
  }

  /// The newest SMS login code queued for `phone` in the development outbox.
  func latestCode(for phone: String) async throws -> String? {
    guard let body = try await store.outbox.messages(recipient: phone, limit: 1).first?.body else { return nil }
    return body.firstMatch(of: /\d{6}/).map { String($0.output) }
  }

  func count(_ table: String) async throws -> Int {
    try await store.inspection.count(table)
  }
}

/// Asserts that `body` fails with `code`, returning the error for further checks.
@discardableResult
func expectRPCError<T>(
  _ code: RPCError.Code, _ body: () async throws -> T, sourceLocation: SourceLocation = #_sourceLocation
) async -> RPCError? {
  do {
    _ = try await body()
    Issue.record("expected \(code.canonicalName) but the call succeeded", sourceLocation: sourceLocation)
    return nil
  } catch let error as RPCError {
    #expect(error.code == code, "got \(error.code.canonicalName): \(error.message)", sourceLocation: sourceLocation)
    return error
  } catch {
    Issue.record("expected RPCError \(code.canonicalName), got \(error)", sourceLocation: sourceLocation)
    return nil
  }
}
