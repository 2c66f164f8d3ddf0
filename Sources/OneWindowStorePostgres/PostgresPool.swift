import Foundation
import Logging
import Metrics
import OneWindowStore
import PostgresNIO
import Synchronization

/// The pooled client every PostgreSQL store shares, with the two ways they use it: a write
/// transaction (READ COMMITTED; a method locks the rows it reads before writing them, and the
/// whole method is retried on a serialization failure or deadlock) and a read-only snapshot.
final class PostgresPool: Sendable {
  let client: PostgresClient
  let logger: Logger
  private let runner: Task<Void, Never>
  /// Connections leased right now, for `onewindow_database_connections_in_use`.
  private let leased = Atomic<Int>(0)
  private let inUse = Gauge(label: "onewindow_database_connections_in_use")
  private let waits = Timer(label: "onewindow_database_connection_wait_seconds")

  /// Starts the pool. `close()` ends it; the server's service group owns the lifetime.
  /// The schema the connections' `search_path` names first, if any.
  let schema: String?

  init(settings: PostgresSettings, logger: Logger) throws {
    schema = settings.schema
    client = PostgresClient(configuration: try settings.clientConfiguration(), backgroundLogger: logger)
    self.logger = logger
    runner = Task { [client] in await client.run() }
    Gauge(label: "onewindow_database_connections_max").record(settings.maximumConnections)
    inUse.record(0)
  }

  /// Every lease of a pooled connection goes through here: it is counted while held, and the
  /// wait for it is timed (a pool too small for the load shows as waits, not as errors).
  private func leasing<T: Sendable>(_ body: (PostgresClient, () -> Void) async throws -> T) async throws -> T {
    let asked = ContinuousClock.now
    var started = false
    defer {
      if started { inUse.record(leased.subtract(1, ordering: .relaxed).newValue) }
    }
    do {
      return try await body(client) {
      guard !started else { return }
      started = true
      let elapsed = ContinuousClock.now - asked
      waits.recordNanoseconds(elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
      inUse.record(leased.add(1, ordering: .relaxed).newValue)
      }
    } catch let error as PostgresTransactionError {
      throw error  // `write` unwraps and classifies it
    } catch {
      throw Self.classified(error)
    }
  }

  /// A lost or refused connection as `StoreError.unavailable`, so the server answers
  /// UNAVAILABLE (retry) rather than INTERNAL; every other error as it is.
  static func classified(_ error: any Error) -> any Error {
    guard let psql = error.postgres else { return error }
    let message = "the database cannot be reached; retry shortly"
    switch psql.code {
    case .connectionError, .serverClosedConnection, .clientClosedConnection, .uncleanShutdown, .poolClosed:
      return StoreError.unavailable(message)
    default:
      // Class 08 (connection exception) and 57P01–57P03 (the server shutting down or starting).
      if let state = psql.sqlState, state.hasPrefix("08") || ["57P01", "57P02", "57P03"].contains(state) {
        return StoreError.unavailable(message)
      }
      return error
    }
  }

  /// Closes every connection; queries after this fail.
  func close() async {
    runner.cancel()
    _ = await runner.value
  }

  /// Attempts a transaction gets before a serialization failure or deadlock is reported.
  static let attempts = 5

  /// One write transaction. The closure may run more than once (after 40001/40P01), so it must
  /// not have side effects outside the database.
  @discardableResult
  func write<T: Sendable>(_ body: @Sendable (PostgresConnection) async throws -> T) async throws -> T {
    var attempt = 1
    while true {
      do {
        return try await leasing { client, begin in
          try await client.withTransaction(logger: logger) { connection in
            begin()
            return try await body(connection)
          }
        }
      } catch {
        // withTransaction wraps what the closure (or BEGIN/COMMIT) threw; callers see that.
        let underlying = (error as? PostgresTransactionError).flatMap { $0.closureError ?? $0.commitError ?? $0.beginError } ?? error
        guard attempt < Self.attempts, underlying.postgres?.isRetryable ?? false else { throw Self.classified(underlying) }
        attempt += 1
        try await Task.sleep(for: .milliseconds(Int.random(in: 1...(5 << attempt))))
      }
    }
  }

  /// One read statement, outside a transaction. A single statement always sees one snapshot,
  /// so it needs no BEGIN … COMMIT: two round trips fewer for the most frequent reads (token
  /// checks, lookups by key). It takes the query rather than a closure, so it stays one statement.
  func rows(_ query: PostgresQuery) async throws -> [PostgresRandomAccessRow] {
    try await leasing { client, begin in
      try await client.withConnection { connection in
        begin()
        return try await connection.rows(query, logger: logger)
      }
    }
  }

  /// `rows(_:)` decoded as `T` (one column) or a tuple of columns.
  func all<each Column: PostgresDecodable & Sendable>(_ query: PostgresQuery, as columns: (repeat each Column).Type) async throws
    -> [(repeat each Column)]
  {
    try await leasing { client, begin in
      try await client.withConnection { connection in
        begin()
        return try await connection.all(query, as: columns, logger: logger)
      }
    }
  }

  /// One consistent read of several statements: every statement sees the same snapshot.
  func read<T: Sendable>(_ body: @Sendable (PostgresConnection) async throws -> T) async throws -> T {
    try await leasing { client, begin in
      try await client.withConnection { connection in
        begin()
        try await connection.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", logger: logger)
        do {
          let result = try await body(connection)
          try await connection.query("COMMIT", logger: logger)
          return result
        } catch {
          _ = try? await connection.query("ROLLBACK", logger: logger)
          throw error
        }
      }
    }
  }
}

extension Error {
  /// The server's error behind this one: `withTransaction` wraps what its closure threw.
  var postgres: PSQLError? {
    if let error = self as? PSQLError { return error }
    return nil
  }
}

extension PSQLError {
  /// The server's SQLSTATE, e.g. "23505" for a unique violation.
  var sqlState: String? { serverInfo?[.sqlState] }
  /// The violated constraint's name, for mapping a violation to the field it protects.
  var constraintName: String? { serverInfo?[.constraintName] }
  /// Serialization failure or deadlock: the transaction can be run again.
  var isRetryable: Bool { sqlState == "40001" || sqlState == "40P01" }
  var isUniqueViolation: Bool { sqlState == "23505" }
  var isForeignKeyViolation: Bool { sqlState == "23503" }
}

extension PostgresConnection {
  /// Runs `query` and decodes every row as `T`.
  func all<T: PostgresDecodable & Sendable>(_ query: PostgresQuery, as _: T.Type, logger: Logger) async throws -> [T] {
    var out: [T] = []
    for try await value in try await self.query(query, logger: logger).decode(T.self) { out.append(value) }
    return out
  }

  /// Runs `query` and decodes every row as a tuple of columns, e.g. `as: (String, Int64).self`.
  func all<each Column: PostgresDecodable & Sendable>(
    _ query: PostgresQuery, as columns: (repeat each Column).Type, logger: Logger
  ) async throws -> [(repeat each Column)] {
    var out: [(repeat each Column)] = []
    for try await row in try await self.query(query, logger: logger) { out.append(try row.decode(columns)) }
    return out
  }

  /// Takes the transaction-scoped advisory lock `name`, for a read-then-write with no row to lock
  /// yet. Advisory locks are database-wide, so the key includes the schema: deployments (and
  /// tests) in other schemas of the same database never wait on each other.
  func advisoryLock(_ name: String, logger: Logger) async throws {
    try await run("SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || ':' || \(name), 0))", logger: logger)
  }

  /// Rows as `PostgresRandomAccessRow` (decode columns by name).
  func rows(_ query: PostgresQuery, logger: Logger) async throws -> [PostgresRandomAccessRow] {
    var out: [PostgresRandomAccessRow] = []
    for try await row in try await self.query(query, logger: logger) { out.append(PostgresRandomAccessRow(row)) }
    return out
  }

  /// Runs `query`, discarding any rows; returns how many rows it returned (add `RETURNING 1` to
  /// count the rows an UPDATE or DELETE changed).
  @discardableResult
  func run(_ query: PostgresQuery, logger: Logger) async throws -> Int {
    var count = 0
    for try await _ in try await self.query(query, logger: logger) { count += 1 }
    return count
  }
}
