import Foundation
import GRDB
import OneWindowCore

/// A device's local copy of the records it syncs, in one SQLite file per (server, account).
///
/// Everything here works offline: edits go to a durable queue and show at once in the local
/// view; `SyncEngine` later pushes the queue and pulls server changes into the same file. Every
/// state change is one SQLite transaction, so a crash at any point leaves a consistent replica
/// that resumes where it stopped. Open one instance per file per process and share it.
public final class SyncReplica: Sendable {
  let pool: DatabasePool
  /// The wall clock for HLC stamps and edit times (injected so tests control time).
  let clock: any WallClock
  /// This device's id on the server: made once with the file, also its HLC node name.
  public let clientID: String
  public let path: String

  /// Opens (creating and migrating if needed) the replica at `path`.
  public init(path: String, clock: any WallClock = SystemClock()) throws {
    var config = Configuration()
    // Another process (a second terminal running owctl) may hold the write lock briefly.
    config.busyMode = .timeout(5)
    config.maximumReaderCount = 2
    pool = try DatabasePool(path: path, configuration: config)
    try ReplicaSchema.migrator.migrate(pool)
    let id = try pool.read { db in try Meta.string(db, "client_id") }
    do { try SyncClientID.validate(id) } catch { throw SyncClientError.corruptReplica("the stored client id is invalid") }
    clientID = id
    self.clock = clock
    self.path = path
  }

  /// Folds the WAL into the main file and closes it.
  public func close() async throws {
    _ = try? await pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)") }
    try pool.close()
  }

  var nowMillis: Int64 { Int64((clock.now().timeIntervalSince1970 * 1000).rounded(.down)) }

  // MARK: Reading the local view

  /// The record as the app sees it (server state plus pending edits), or nil.
  public func get(collection: String, id: String) async throws -> LocalRecord? {
    try await pool.read { db in try ReplicaRows.localRecord(db, RecordKey(collection: collection, id: id)) }
  }

  /// Every record of `collection` in the local view, by id (ULIDs sort by creation time).
  public func list(collection: String) async throws -> [LocalRecord] {
    try await pool.read { db in
      try Row.fetchAll(
        db, sql: "SELECT collection, id, fields, version, pending FROM records WHERE collection = ? ORDER BY id",
        arguments: [collection]
      ).map(ReplicaRows.localRecord)
    }
  }

  /// The queue of local edits, oldest first, including those the server has processed but whose
  /// effect has not arrived yet (`acknowledged`).
  public func pending() async throws -> [PendingMutation] {
    try await pool.read { db in
      try Row.fetchAll(db, sql: "SELECT \(ReplicaRows.pendingColumns) FROM pending ORDER BY mutation_id")
        .map(ReplicaRows.pending)
    }
  }

  /// The stored pull cursor ("" before the first page).
  public func cursor() async throws -> String {
    try await pool.read { db in try Meta.string(db, "cursor") }
  }

  public func status() async throws -> ReplicaStatus {
    let clientID = clientID
    return try await pool.read { db in
      ReplicaStatus(
        clientID: clientID,
        cursor: try Meta.string(db, "cursor"),
        nextMutationID: try Meta.int(db, "next_mutation_id"),
        unsentMutations: try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM pending WHERE acked_version IS NULL") ?? 0,
        acknowledgedMutations: try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM pending WHERE acked_version IS NOT NULL") ?? 0,
        resetting: try Meta.resetting(db),
        serverRecords: try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM server_records") ?? 0,
        localRecords: try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM records") ?? 0)
    }
  }

  /// Open manual-policy conflicts as last pulled (the private `sync.conflicts` collection), so
  /// they can be shown offline.
  public func conflicts() async throws -> [SyncConflict] {
    try await list(collection: SyncCollections.conflicts.name).compactMap { SyncConflict(id: $0.id, values: $0.fields) }
  }

  /// The server's state of a record as of the cursor (without local edits).
  public func serverState(collection: String, id: String) async throws -> LocalRecord? {
    try await pool.read { db in
      try ReplicaRows.serverRecord(db, RecordKey(collection: collection, id: id)).map {
        LocalRecord(collection: collection, id: id, fields: $0.values, version: $0.version, pendingMutations: 0)
      }
    }
  }

  /// Per collection, the count and checksum of the server state the replica holds (not the
  /// local view: pending edits are not on the server yet), comparable with Verify's. Empty
  /// `collections`: every collection present.
  public func checksums(collections: [String] = []) async throws -> [String: ReplicaChecksum] {
    try await pool.read { db in
      var sums: [String: ReplicaChecksum] = [:]
      for name in collections { sums[name] = ReplicaChecksum() }
      let filter = collections.isEmpty ? "" : "WHERE collection IN (\(databaseQuestionMarks(count: collections.count)))"
      let rows = try Row.fetchCursor(
        db, sql: "SELECT collection, id, fields FROM server_records \(filter)", arguments: StatementArguments(collections))
      while let row = try rows.next() {
        let collection = try row.decode(String.self, forColumn: "collection")
        let id = try row.decode(String.self, forColumn: "id")
        let values = try ReplicaCodec.decodeValues(try row.decode(Data.self, forColumn: "fields"), "server record \(collection)/\(id)")
        sums[collection, default: ReplicaChecksum()].add(id: id, values: values)
      }
      return sums
    }
  }
}

extension SyncReplica {
  /// The reset in progress, if a snapshot pull was interrupted.
  public func resetInProgress() async throws -> SyncResetReason? {
    try await pool.read { db in try Meta.resetting(db) }
  }
}
