import Foundation
import Logging
import OneWindowCore
import OneWindowStore
import PostgresNIO

/// The sandbox payment provider's books on PostgreSQL, as `SandboxProviderBook` keeps them in
/// its own SQLite file: the `sandbox_…` tables are the provider's, created here (not by the
/// OneWindow migrations), and every call is its own transaction, never part of OneWindow's.
public final class PostgresSandboxBook: SandboxBook {
  public typealias Status = SandboxBookStatus
  public typealias Entry = SandboxBookEntry
  public typealias RefundEntry = SandboxRefundEntry

  let pool: PostgresPool
  var logger: Logger { pool.logger }

  /// Creates the provider's tables if needed, beside the store's (same database and schema).
  public init(store: PostgresStore) async throws {
    pool = store.database
    try await pool.write { [logger] conn in
      // Concurrent starts of several processes would race on CREATE TABLE IF NOT EXISTS (a
      // unique violation in pg_type); the lock makes them create the tables once.
      try await conn.advisoryLock("sandbox_provider_books", logger: logger)
      for statement: PostgresQuery in [
        """
        CREATE TABLE IF NOT EXISTS sandbox_payments (
          reference TEXT PRIMARY KEY,
          payment_id TEXT NOT NULL UNIQUE,
          amount BIGINT NOT NULL,
          status TEXT NOT NULL,
          account TEXT NOT NULL DEFAULT '',
          decide_at BIGINT,
          outcome TEXT,
          settled_at BIGINT,
          created_at BIGINT NOT NULL
        )
        """,
        "CREATE INDEX IF NOT EXISTS sandbox_payments_settled ON sandbox_payments(settled_at)",
        """
        CREATE TABLE IF NOT EXISTS sandbox_refunds (
          refund_id TEXT PRIMARY KEY,
          reference TEXT NOT NULL REFERENCES sandbox_payments(reference),
          amount BIGINT NOT NULL,
          status TEXT NOT NULL,
          settled_at BIGINT
        )
        """,
        "CREATE INDEX IF NOT EXISTS sandbox_refunds_settled ON sandbox_refunds(settled_at)",
      ] {
        try await conn.run(statement, logger: logger)
      }
    }
  }

  /// Opens a cashier session for `paymentID`; opening it again returns the existing session.
  public func open(paymentID: String, amount: Fen, now: Date) async throws -> Entry {
    try await pool.write { [logger] conn in
      if let existing = try await Self.entry(conn, paymentID: paymentID, logger) { return existing }
      let reference = "sbx_" + ULID.make(at: now).lowercased()
      // A concurrent open of the same payment may insert first: then its session is the one.
      let inserted = try await conn.run(
        """
        INSERT INTO sandbox_payments (reference, payment_id, amount, status, created_at)
        VALUES (\(reference), \(paymentID), \(amount.value), 'open', \(PGTime.ms(now)))
        ON CONFLICT (payment_id) DO NOTHING RETURNING 1
        """, logger: logger)
      guard inserted == 1 else {
        guard let existing = try await Self.entry(conn, paymentID: paymentID, logger) else {
          throw StoreError.notFound("sandbox session of payment \(paymentID)")
        }
        return existing
      }
      return Entry(reference: reference, paymentID: paymentID, amount: amount, status: .open, account: "", decideAt: nil, outcome: nil, settledAt: nil)
    }
  }

  /// The entry, with an authorised payment whose decision time has passed decided first (a
  /// read unless a decision is due).
  public func entry(reference: String, now: Date) async throws -> Entry? {
    guard let seen = try await pool.read({ [logger] conn in try await Self.entry(conn, reference: reference, logger) }) else {
      return nil
    }
    guard Self.decisionDue(seen, now: now) else { return seen }
    return try await pool.write { [logger] conn in
      // The session row: a concurrent decision or authorisation sees this one's result.
      guard var entry = try await Self.entry(conn, reference: reference, lock: true, logger) else { return nil }
      if Self.decisionDue(entry, now: now), let outcome = entry.outcome {
        entry.status = outcome
        entry.settledAt = outcome == .success ? now : nil
        try await conn.run(
          """
          UPDATE sandbox_payments SET status = \(outcome.rawValue), settled_at = \(entry.settledAt.map(PGTime.ms))
          WHERE reference = \(reference)
          """, logger: logger)
      }
      return entry
    }
  }

  static func decisionDue(_ entry: Entry, now: Date) -> Bool {
    guard entry.status == .authorised, let at = entry.decideAt, entry.outcome != nil else { return false }
    return at <= now
  }

  /// The payer submits an account number at the cashier. Only an open session can be paid;
  /// returns the entry and whether this call authorised it (false: it was not open).
  public func authorise(reference: String, account: String, outcome: Status?, decideAt: Date?, now: Date) async throws
    -> (entry: Entry, authorised: Bool)?
  {
    try await pool.write { [logger] conn in
      // The session row: of two concurrent submissions only one finds it open.
      guard var entry = try await Self.entry(conn, reference: reference, lock: true, logger) else { return nil }
      guard entry.status == .open else { return (entry, false) }
      entry.account = account
      entry.outcome = outcome
      entry.decideAt = decideAt
      // An outcome due now is decided at once; a later one (or none: the timeout account)
      // leaves the payment authorised until then.
      entry.status = .authorised
      if Self.decisionDue(entry, now: now), let outcome {
        entry.status = outcome
        entry.settledAt = outcome == .success ? now : nil
      }
      try await conn.run(
        """
        UPDATE sandbox_payments SET status = \(entry.status.rawValue), account = \(account), outcome = \(outcome?.rawValue),
          decide_at = \(decideAt.map(PGTime.ms)), settled_at = \(entry.settledAt.map(PGTime.ms))
        WHERE reference = \(reference)
        """, logger: logger)
      return (entry, true)
    }
  }

  /// Closes an open session (cancel or expiry); an authorised or finished one is left as is.
  public func close(reference: String) async throws -> Entry? {
    try await pool.write { [logger] conn in
      // The session row: a close racing an authorisation either closes it open or leaves it paid.
      guard var entry = try await Self.entry(conn, reference: reference, lock: true, logger) else { return nil }
      guard entry.status == .open else { return entry }
      entry.status = .closed
      try await conn.run("UPDATE sandbox_payments SET status = 'closed' WHERE reference = \(reference)", logger: logger)
      return entry
    }
  }

  /// Refunds part of a settled payment. Refusing more than was paid (minus earlier refunds) is
  /// the provider's own check, independent of OneWindow's. A repeated refund id returns the
  /// original.
  public func refund(refundID: String, reference: String, amount: Fen, now: Date) async throws -> RefundEntry {
    try await pool.write { [logger] conn in
      if let existing = try await Self.refundEntry(conn, id: refundID, logger) { return existing }
      // The session row: concurrent refunds of one payment are checked one after another (never
      // over-refunded), and a concurrent repeat of this refund id is seen below.
      guard let entry = try await Self.entry(conn, reference: reference, lock: true, logger) else {
        return RefundEntry(refundID: refundID, reference: reference, amount: amount, status: .error, settledAt: nil)
      }
      if let existing = try await Self.refundEntry(conn, id: refundID, logger) { return existing }
      let refunded = try await conn.all(
        "SELECT COALESCE(SUM(amount), 0)::BIGINT FROM sandbox_refunds WHERE reference = \(reference) AND status = 'success'",
        as: Int64.self, logger: logger
      ).first ?? 0
      let ok = entry.status == .success && refunded + amount.value <= entry.amount.value
      let status: Status = ok ? .success : .error
      try await conn.run(
        """
        INSERT INTO sandbox_refunds (refund_id, reference, amount, status, settled_at)
        VALUES (\(refundID), \(reference), \(amount.value), \(status.rawValue), \(ok ? PGTime.ms(now) : nil))
        """, logger: logger)
      return RefundEntry(refundID: refundID, reference: reference, amount: amount, status: status, settledAt: ok ? now : nil)
    }
  }

  public func refund(id: String) async throws -> RefundEntry? {
    try await pool.read { [logger] conn in try await Self.refundEntry(conn, id: id, logger) }
  }

  /// What the provider settled in [from, to): captures by payment id, refunds by refund id.
  public func settlement(from: Date, to: Date) async throws -> [SandboxSettlementFile.Line] {
    try await pool.read { [logger] conn in
      var lines: [SandboxSettlementFile.Line] = []
      let (lower, upper) = (PGTime.ms(from), PGTime.ms(to))
      // Captures by our payment id, refunds by our refund id.
      let captures = try await conn.all(
        """
        SELECT payment_id, reference, amount, settled_at FROM sandbox_payments
        WHERE settled_at >= \(lower) AND settled_at < \(upper) ORDER BY settled_at
        """, as: (String, String, Int64, Int64).self, logger: logger)
      let refunds = try await conn.all(
        """
        SELECT refund_id, reference, amount, settled_at FROM sandbox_refunds
        WHERE settled_at >= \(lower) AND settled_at < \(upper) ORDER BY settled_at
        """, as: (String, String, Int64, Int64).self, logger: logger)
      for (kind, rows) in [(SettlementEntry.Kind.capture, captures), (.refund, refunds)] {
        for (ours, providerReference, amount, settledAt) in rows {
          guard let amount = try? Fen(amount) else { continue }
          lines.append(.init(
            entry: SettlementEntry(kind: kind, reference: ours, amount: amount), providerReference: providerReference,
            settledAt: settledAt))
        }
      }
      return lines
    }
  }

  /// The books share the store's pool; closing the store releases it.
  public func shutDown() throws {}

  static func entry(_ conn: PostgresConnection, reference: String, lock: Bool = false, _ logger: Logger) async throws -> Entry? {
    let query: PostgresQuery = lock
      ? "SELECT * FROM sandbox_payments WHERE reference = \(reference) FOR UPDATE"
      : "SELECT * FROM sandbox_payments WHERE reference = \(reference)"
    return try await conn.rows(query, logger: logger).first.map(entry)
  }

  static func entry(_ conn: PostgresConnection, paymentID: String, _ logger: Logger) async throws -> Entry? {
    try await conn.rows("SELECT * FROM sandbox_payments WHERE payment_id = \(paymentID)", logger: logger).first.map(entry)
  }

  static func entry(_ row: PostgresRandomAccessRow) throws -> Entry {
    Entry(
      reference: try row["reference"].decode(String.self), paymentID: try row["payment_id"].decode(String.self),
      amount: (try? Fen(try row["amount"].decode(Int64.self))) ?? .zero,
      status: Status(rawValue: try row["status"].decode(String.self)) ?? .error, account: try row["account"].decode(String.self),
      decideAt: PGTime.date(try row["decide_at"].decode(Int64?.self)),
      outcome: try row["outcome"].decode(String?.self).flatMap(Status.init),
      settledAt: PGTime.date(try row["settled_at"].decode(Int64?.self)))
  }

  static func refundEntry(_ conn: PostgresConnection, id: String, _ logger: Logger) async throws -> RefundEntry? {
    try await conn.rows("SELECT * FROM sandbox_refunds WHERE refund_id = \(id)", logger: logger).first.map { row in
      RefundEntry(
        refundID: try row["refund_id"].decode(String.self), reference: try row["reference"].decode(String.self),
        amount: (try? Fen(try row["amount"].decode(Int64.self))) ?? .zero,
        status: Status(rawValue: try row["status"].decode(String.self)) ?? .error,
        settledAt: PGTime.date(try row["settled_at"].decode(Int64?.self)))
    }
  }
}
