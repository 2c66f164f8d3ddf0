import GRDB
import OneWindowCore

/// The replica's tables. Never edit a registered migration; add a new one.
///
/// - `meta`: the device's client id, the pull cursor, the next mutation id, the HLC, and the
///   reset in progress (the reason, empty when none) — everything needed to resume after a crash.
/// - `server_records`: the server's state as of the cursor. `stale` marks rows a reset snapshot
///   has not confirmed yet; those left at its end are purged.
/// - `pending`: the durable queue of local edits, in mutation-id order.
/// - `records`: the materialized view the app reads: each server record with its pending
///   mutations re-applied, kept current after every edit and every applied page.
enum ReplicaSchema {
  static var migrator: DatabaseMigrator {
    var m = DatabaseMigrator()
    m.registerMigration("v1-replica") { db in
      try db.execute(sql: """
        CREATE TABLE meta (
          key TEXT PRIMARY KEY NOT NULL,
          value NOT NULL
        ) WITHOUT ROWID;

        CREATE TABLE server_records (
          collection TEXT NOT NULL,
          id TEXT NOT NULL,
          version INTEGER NOT NULL,
          owner_id TEXT NOT NULL,
          fields BLOB NOT NULL,
          stamps BLOB NOT NULL,
          stale INTEGER NOT NULL DEFAULT 0,
          PRIMARY KEY (collection, id)
        ) WITHOUT ROWID;
        CREATE INDEX server_records_stale ON server_records(stale) WHERE stale = 1;

        CREATE TABLE pending (
          mutation_id INTEGER PRIMARY KEY,
          collection TEXT NOT NULL,
          record_id TEXT NOT NULL,
          base_version INTEGER NOT NULL,
          op TEXT NOT NULL CHECK (op IN ('upsert', 'delete')),
          fields BLOB NOT NULL,
          created_at INTEGER NOT NULL,
          acked_version INTEGER
        );
        CREATE INDEX pending_record ON pending(collection, record_id, mutation_id);

        CREATE TABLE records (
          collection TEXT NOT NULL,
          id TEXT NOT NULL,
          fields BLOB NOT NULL,
          version INTEGER NOT NULL,
          pending INTEGER NOT NULL DEFAULT 0,
          PRIMARY KEY (collection, id)
        ) WITHOUT ROWID;
        """)
      // The client id is made once, with the tables, so a replica keeps its identity for life.
      try db.execute(
        sql: """
          INSERT INTO meta (key, value) VALUES
            ('client_id', ?), ('cursor', ''), ('next_mutation_id', 1),
            ('hlc_millis', 0), ('hlc_counter', 0), ('resetting', '')
          """,
        arguments: [ULID.make()])
    }
    return m
  }
}

/// Typed access to the `meta` table.
enum Meta {
  static func string(_ db: Database, _ key: String) throws -> String {
    guard let value = try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = ?", arguments: [key]) else {
      throw SyncClientError.corruptReplica("meta value '\(key)' is missing")
    }
    return value
  }

  static func int(_ db: Database, _ key: String) throws -> Int64 {
    guard let value = try Int64.fetchOne(db, sql: "SELECT value FROM meta WHERE key = ?", arguments: [key]) else {
      throw SyncClientError.corruptReplica("meta value '\(key)' is missing")
    }
    return value
  }

  static func set(_ db: Database, _ key: String, _ value: some DatabaseValueConvertible) throws {
    try db.execute(sql: "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", arguments: [key, value])
  }

  /// The device's HLC as last persisted.
  static func clock(_ db: Database, node: String) throws -> HybridLogicalClock {
    let millis = try int(db, "hlc_millis")
    guard let counter = UInt16(exactly: try int(db, "hlc_counter")) else {
      throw SyncClientError.corruptReplica("the stored clock counter is out of range")
    }
    return HybridLogicalClock(node: node, last: HLCStamp(millis: millis, counter: counter, node: node))
  }

  static func store(_ clock: HybridLogicalClock, _ db: Database) throws {
    try set(db, "hlc_millis", clock.last.millis)
    try set(db, "hlc_counter", Int64(clock.last.counter))
  }

  static func resetting(_ db: Database) throws -> SyncResetReason? {
    let text = try string(db, "resetting")
    return text.isEmpty ? nil : SyncResetReason(rawValue: text) ?? .unknown
  }
}
