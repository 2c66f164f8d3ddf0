import Foundation
import GRDB
import OneWindowStore

/// Leases in the embedded database. One process uses it, so a lease is never contested by
/// another node; the table still makes a holder that restarts wait out its old lease exactly as
/// on PostgreSQL, and keeps one conformance suite for both engines.
struct SQLiteLeases: Leases {
  let pool: DatabasePool

  /// The database's clock in milliseconds since 1970 (SQLite's `julianday('now')`).
  static let nowMillis = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"

  func acquire(_ name: String, holder: String, for duration: Duration) async throws -> Bool {
    let millis = LeaseRules.millis(duration)
    return try await pool.write { db in
      let row = try Row.fetchOne(
        db,
        sql: """
          INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, \(Self.nowMillis) + ?)
          ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
            WHERE leases.holder = excluded.holder OR leases.expires_at <= \(Self.nowMillis)
          RETURNING holder
          """, arguments: [name, holder, millis])
      return row != nil
    }
  }

  func release(_ name: String, holder: String) async throws {
    try await pool.write { db in
      try db.execute(sql: "DELETE FROM leases WHERE name = ? AND holder = ?", arguments: [name, holder])
    }
  }

  func holder(of name: String) async throws -> (holder: String, remaining: Duration)? {
    try await pool.read { db in
      guard
        let row = try Row.fetchOne(
          db, sql: "SELECT holder, expires_at - \(Self.nowMillis) AS remaining FROM leases WHERE name = ?", arguments: [name]),
        let remaining = row["remaining"] as Int64?, remaining > 0
      else { return nil }
      return (row["holder"], .milliseconds(remaining))
    }
  }
}
