import Foundation
import GRDB
import OneWindowCore

/// Taking in what the server says: pulled pages and watch events, resets, and push answers.
/// Each is one transaction, so the replica never holds a page without its cursor or a push
/// answer half recorded.
extension SyncReplica {
  /// Applies a page of server changes together with its cursor, then rebases the pending
  /// mutations of every touched record on top (recomputing their views).
  ///
  /// `after` is the cursor the page was requested with. If the stored cursor moved meanwhile
  /// (another engine or process applied pages), the page is not applied: storing it would move
  /// the cursor backwards.
  public func apply(_ page: ServerPage, after expected: String) async throws -> PageOutcome {
    let node = clientID
    let now = clock.now()
    return try await pool.write { db in
      let current = try Meta.string(db, "cursor")
      guard current == expected else { return .cursorMoved(current: current) }
      let resetting = try Meta.resetting(db)
      if page.source == .watch, resetting != nil { return .resetInProgress }
      if let serverClock = page.serverClock { try Self.receive(serverClock, db, node: node, now: now) }

      var outcome = AppliedPage()
      var touched = Set<RecordKey>()
      for change in page.changes {
        touched.insert(change.key)
        switch change.kind {
        case .upsert(let values, let stamps):
          outcome.upserts += 1
          try db.execute(
            sql: """
              INSERT OR REPLACE INTO server_records (collection, id, version, owner_id, fields, stamps, stale)
              VALUES (?, ?, ?, ?, ?, ?, 0)
              """,
            arguments: [
              change.key.collection, change.key.id, change.version, change.ownerID,
              ReplicaCodec.encode(values: values), ReplicaCodec.encode(stamps: stamps),
            ])
        case .delete:
          outcome.deletes += 1
          try db.execute(
            sql: "DELETE FROM server_records WHERE collection = ? AND id = ?", arguments: [change.key.collection, change.key.id])
        }
      }
      outcome.changed = touched.sorted()
      if page.lastMutationID > 0 {
        outcome.acknowledged += try Self.retireProcessed(through: page.lastMutationID, db, touched: &touched)
      }
      for key in touched { outcome.acknowledged += try RecordView.retireVisible(db, key) }
      try Meta.set(db, "cursor", page.cursor)

      if case .pull(hasMore: false) = page.source, let reason = resetting {
        // The snapshot is complete: whatever it did not confirm is gone for this caller.
        outcome.purged = try Self.purgeStale(db)
        outcome.completedReset = reason
        try Meta.set(db, "resetting", "")
        try RecordView.rebuildAll(db)
      } else {
        for key in touched { try RecordView.refresh(db, key) }
      }
      return .applied(outcome)
    }
  }

  /// Starts over after the server refused the cursor: the cursor is cleared and every server
  /// row of `collections` (all when empty) is marked stale; the snapshot pull un-stales what
  /// it contains, and its last page purges the rest. Pending mutations are kept, with their
  /// base versions, and pushed again. The state lives in `meta`, so an interrupted reset
  /// resumes with the next pull.
  ///
  /// Acknowledged mutations become unsent again: the server may have lost them with the state
  /// it is resetting from (a restored backup). The snapshot's `last_mutation_id` retires the
  /// ones it did process; pushing one again only gets its stored answer back.
  public func beginReset(_ reason: SyncResetReason, collections: [String] = []) async throws {
    try await pool.write { db in
      try Meta.set(db, "resetting", reason.rawValue)
      try Meta.set(db, "cursor", "")
      try db.execute(sql: "UPDATE pending SET acked_version = NULL WHERE acked_version IS NOT NULL")
      if collections.isEmpty {
        try db.execute(sql: "UPDATE server_records SET stale = 1")
      } else {
        try db.execute(
          sql: "UPDATE server_records SET stale = 1 WHERE collection IN (\(databaseQuestionMarks(count: collections.count)))",
          arguments: StatementArguments(collections))
      }
    }
  }

  /// Up to `limit` queued mutations the server has not processed, oldest first.
  public func unsent(limit: Int) async throws -> [PendingMutation] {
    try await pool.read { db in
      try Row.fetchAll(
        db, sql: "SELECT \(ReplicaRows.pendingColumns) FROM pending WHERE acked_version IS NULL ORDER BY mutation_id LIMIT ?",
        arguments: [limit]
      ).map(ReplicaRows.pending)
    }
  }

  /// Records a push answer. Every sent mutation up to `lastMutationID` is processed: rejected
  /// ones leave the queue (and the view) at once; the others are marked acknowledged with the
  /// version the server reported and leave once that state arrives. Mutations above
  /// `lastMutationID` that were marked acknowledged are unmarked — the server says it has not
  /// processed them (it lost state), so they are sent again.
  public func recordPush(
    sent: [PendingMutation], results: [MutationResult], lastMutationID: Int64, serverClock: HLCStamp?
  ) async throws {
    let node = clientID
    let now = clock.now()
    let byID = Dictionary(results.map { ($0.mutationID, $0) }, uniquingKeysWith: { a, _ in a })
    try await pool.write { db in
      if let serverClock { try Self.receive(serverClock, db, node: node, now: now) }
      var touched = Set<RecordKey>()
      for mutation in sent where mutation.mutationID <= lastMutationID {
        touched.insert(mutation.key)
        let result = byID[mutation.mutationID]
        if result?.outcome == .rejected {
          try db.execute(sql: "DELETE FROM pending WHERE mutation_id = ?", arguments: [mutation.mutationID])
        } else {
          try db.execute(
            sql: "UPDATE pending SET acked_version = ? WHERE mutation_id = ?",
            arguments: [result?.version ?? Int64.max, mutation.mutationID])
        }
      }
      let unprocessed = try Row.fetchAll(
        db, sql: "SELECT collection, record_id FROM pending WHERE mutation_id > ? AND acked_version IS NOT NULL",
        arguments: [lastMutationID])
      for row in unprocessed {
        touched.insert(RecordKey(collection: try row.decode(String.self, atIndex: 0), id: try row.decode(String.self, atIndex: 1)))
      }
      try db.execute(sql: "UPDATE pending SET acked_version = NULL WHERE mutation_id > ?", arguments: [lastMutationID])
      try Self.keepIDsAbove(lastMutationID, db)
      for key in touched {
        try RecordView.retireVisible(db, key)
        try RecordView.refresh(db, key)
      }
    }
  }

  /// Merges a server clock reading into the device's HLC, so the next edit orders after
  /// everything the server has seen even when this device's wall clock is behind.
  public func receive(serverClock: HLCStamp) async throws {
    let node = clientID
    let now = clock.now()
    try await pool.write { db in try Self.receive(serverClock, db, node: node, now: now) }
  }

  static func receive(_ serverClock: HLCStamp, _ db: Database, node: String, now: Date) throws {
    var hlc = try Meta.clock(db, node: node)
    hlc.receive(serverClock, now: now)
    try Meta.store(hlc, db)
  }

  /// Drops every pending mutation up to `lastMutationID`: the server processed them and their
  /// effects are in the state the replica now holds.
  private static func retireProcessed(through lastMutationID: Int64, _ db: Database, touched: inout Set<RecordKey>) throws -> Int {
    let rows = try Row.fetchAll(
      db, sql: "SELECT collection, record_id FROM pending WHERE mutation_id <= ?", arguments: [lastMutationID])
    for row in rows {
      touched.insert(RecordKey(collection: try row.decode(String.self, atIndex: 0), id: try row.decode(String.self, atIndex: 1)))
    }
    try db.execute(sql: "DELETE FROM pending WHERE mutation_id <= ?", arguments: [lastMutationID])
    try keepIDsAbove(lastMutationID, db)
    return rows.count
  }

  /// New mutation ids must stay above what the server has processed for this client, or the
  /// server would take them for replays and silently skip them. Only a replica file shared by
  /// two devices (copied) could fall behind; this keeps such a copy from losing edits.
  private static func keepIDsAbove(_ lastMutationID: Int64, _ db: Database) throws {
    if try Meta.int(db, "next_mutation_id") <= lastMutationID {
      try Meta.set(db, "next_mutation_id", lastMutationID + 1)
    }
  }

  private static func purgeStale(_ db: Database) throws -> Int {
    try db.execute(sql: "DELETE FROM server_records WHERE stale = 1")
    return db.changesCount
  }
}
