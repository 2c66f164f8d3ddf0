import OneWindowStore
import Foundation
import GRDB
import OneWindowCore

/// The sandbox payment provider's own books, in their own SQLite file
/// (`<data-dir>/sandbox-provider.sqlite`): the provider is another party, so its records must
/// survive a crash of OneWindow independently (a payment it took while OneWindow was down is
/// still there to be queried and settled) and never share OneWindow's transactions.
public final class SandboxProviderBook: SandboxBook {
  public typealias Status = SandboxBookStatus
  public typealias Entry = SandboxBookEntry
  public typealias RefundEntry = SandboxRefundEntry

  let queue: DatabasePool

  public init(path: String) throws {
    var config = Configuration()
    config.busyMode = .timeout(5)
    // A pool: WAL mode, so reads (status queries, the cashier page) never wait for a write.
    queue = try DatabasePool(path: path, configuration: config)
    try queue.write { db in
      try db.execute(
        sql: """
          CREATE TABLE IF NOT EXISTS sandbox_payments (
            reference TEXT PRIMARY KEY,
            payment_id TEXT NOT NULL UNIQUE,
            amount INTEGER NOT NULL,
            status TEXT NOT NULL,
            account TEXT NOT NULL DEFAULT '',
            decide_at INTEGER,
            outcome TEXT,
            settled_at INTEGER,
            created_at INTEGER NOT NULL
          );
          CREATE INDEX IF NOT EXISTS sandbox_payments_settled ON sandbox_payments(settled_at);
          CREATE TABLE IF NOT EXISTS sandbox_refunds (
            refund_id TEXT PRIMARY KEY,
            reference TEXT NOT NULL REFERENCES sandbox_payments(reference),
            amount INTEGER NOT NULL,
            status TEXT NOT NULL,
            settled_at INTEGER
          );
          CREATE INDEX IF NOT EXISTS sandbox_refunds_settled ON sandbox_refunds(settled_at);
          """)
    }
  }

  public convenience init(directory: String) throws {
    try self.init(path: (directory as NSString).appendingPathComponent("sandbox-provider.sqlite"))
  }

  /// Opens a cashier session for `paymentID`; opening it again returns the existing session.
  public func open(paymentID: String, amount: Fen, now: Date) async throws -> Entry {
    try await queue.write { db in
      if let existing = try Self.entry(db, "payment_id = ?", [paymentID]) { return existing }
      let reference = "sbx_" + ULID.make(at: now).lowercased()
      try db.cachedStatement(sql: "INSERT INTO sandbox_payments (reference, payment_id, amount, status, created_at) VALUES (?, ?, ?, 'open', ?)").execute(arguments: [reference, paymentID, amount.value, SQLTime.ms(now)])
      return Entry(reference: reference, paymentID: paymentID, amount: amount, status: .open, account: "", decideAt: nil, outcome: nil, settledAt: nil)
    }
  }

  /// The entry, with an authorised payment whose decision time has passed decided first (a
  /// read unless a decision is due).
  public func entry(reference: String, now: Date) async throws -> Entry? {
    guard let seen = try await queue.read({ db in try Self.entry(db, "reference = ?", [reference]) }) else { return nil }
    guard Self.decisionDue(seen, now: now) else { return seen }
    return try await queue.write { db in
      guard var entry = try Self.entry(db, "reference = ?", [reference]) else { return nil }
      if Self.decisionDue(entry, now: now), let outcome = entry.outcome {
        entry.status = outcome
        entry.settledAt = outcome == .success ? now : nil
        try db.cachedStatement(sql: "UPDATE sandbox_payments SET status = ?, settled_at = ? WHERE reference = ?")
          .execute(arguments: [outcome.rawValue, entry.settledAt.map(SQLTime.ms), reference])
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
    try await queue.write { db in
      guard var entry = try Self.entry(db, "reference = ?", [reference]) else { return nil }
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
      try db.cachedStatement(
        sql: "UPDATE sandbox_payments SET status = ?, account = ?, outcome = ?, decide_at = ?, settled_at = ? WHERE reference = ?"
      ).execute(arguments: [
        entry.status.rawValue, account, outcome?.rawValue, decideAt.map(SQLTime.ms), entry.settledAt.map(SQLTime.ms), reference,
      ])
      return (entry, true)
    }
  }

  /// Closes an open session (cancel or expiry); an authorised or finished one is left as is.
  public func close(reference: String) async throws -> Entry? {
    try await queue.write { db in
      guard var entry = try Self.entry(db, "reference = ?", [reference]) else { return nil }
      guard entry.status == .open else { return entry }
      entry.status = .closed
      try db.cachedStatement(sql: "UPDATE sandbox_payments SET status = 'closed' WHERE reference = ?").execute(arguments: [reference])
      return entry
    }
  }

  /// Refunds part of a settled payment. Refusing more than was paid (minus earlier refunds) is
  /// the provider's own check, independent of OneWindow's. A repeated refund id returns the
  /// original.
  public func refund(refundID: String, reference: String, amount: Fen, now: Date) async throws -> RefundEntry {
    try await queue.write { db in
      if let row = try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM sandbox_refunds WHERE refund_id = ?"), arguments: [refundID]) {
        return Self.refundEntry(row)
      }
      guard let entry = try Self.entry(db, "reference = ?", [reference]) else {
        return RefundEntry(refundID: refundID, reference: reference, amount: amount, status: .error, settledAt: nil)
      }
      let refunded = try Int64.fetchOne(db.cachedStatement(sql: "SELECT COALESCE(SUM(amount), 0) FROM sandbox_refunds WHERE reference = ? AND status = 'success'"),
        arguments: [reference]) ?? 0
      let ok = entry.status == .success && refunded + amount.value <= entry.amount.value
      let status: Status = ok ? .success : .error
      try db.cachedStatement(sql: "INSERT INTO sandbox_refunds (refund_id, reference, amount, status, settled_at) VALUES (?, ?, ?, ?, ?)").execute(arguments: [refundID, reference, amount.value, status.rawValue, ok ? SQLTime.ms(now) : nil])
      return RefundEntry(refundID: refundID, reference: reference, amount: amount, status: status, settledAt: ok ? now : nil)
    }
  }

  public func refund(id: String) async throws -> RefundEntry? {
    try await queue.read { db in
      try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM sandbox_refunds WHERE refund_id = ?"), arguments: [id]).map(Self.refundEntry)
    }
  }

  /// What the provider settled in [from, to): captures by payment id, refunds by refund id.
  public func settlement(from: Date, to: Date) async throws -> [SandboxSettlementFile.Line] {
    try await queue.read { db in
      var lines: [SandboxSettlementFile.Line] = []
      // Captures by our payment id, refunds by our refund id.
      for (kind, table, reference) in [
        (SettlementEntry.Kind.capture, "sandbox_payments", "payment_id"), (.refund, "sandbox_refunds", "refund_id"),
      ] {
        for row in try Row.fetchAll(db.cachedStatement(sql: "SELECT * FROM \(table) WHERE settled_at >= ? AND settled_at < ? ORDER BY settled_at"),
          arguments: [SQLTime.ms(from), SQLTime.ms(to)])
        {
          guard let amount = try? Fen(row["amount"] as Int64) else { continue }
          lines.append(.init(
            entry: SettlementEntry(kind: kind, reference: row[reference], amount: amount), providerReference: row["reference"],
            settledAt: row["settled_at"]))
        }
      }
      return lines
    }
  }

  public func shutDown() throws { try queue.close() }

  static func entry(_ db: Database, _ condition: String, _ arguments: StatementArguments) throws -> Entry? {
    try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM sandbox_payments WHERE \(condition)"), arguments: arguments).map { row in
      Entry(
        reference: row["reference"], paymentID: row["payment_id"], amount: (try? Fen(row["amount"] as Int64)) ?? .zero,
        status: Status(rawValue: row["status"]) ?? .error, account: row["account"],
        decideAt: SQLTime.date(row["decide_at"] as Int64?), outcome: (row["outcome"] as String?).flatMap(Status.init),
        settledAt: SQLTime.date(row["settled_at"] as Int64?))
    }
  }

  static func refundEntry(_ row: Row) -> RefundEntry {
    RefundEntry(
      refundID: row["refund_id"], reference: row["reference"], amount: (try? Fen(row["amount"] as Int64)) ?? .zero,
      status: Status(rawValue: row["status"]) ?? .error, settledAt: SQLTime.date(row["settled_at"] as Int64?))
  }
}
