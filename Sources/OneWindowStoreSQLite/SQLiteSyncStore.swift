import OneWindowStore
import Foundation
import GRDB
import OneWindowCore
import Synchronization

/// Synced records in SQLite. Every write runs on GRDB's single writer: sequence numbers come
/// from `sync_meta.sequence` inside the transaction, and committed changes are published to the
/// feed while still on the writer, so the feed sees commits in sequence order.
final class SQLiteSyncStore: SyncStore {
  let pool: DatabasePool
  let feed = SyncChangeFeed()
  /// The server's HLC; persisted in `sync_meta` by every write so a restart never goes back.
  private let clock: Mutex<HybridLogicalClock>
  private static let resultEncoder = JSONEncoder()
  private static let resultDecoder = JSONDecoder()

  init(pool: DatabasePool) throws {
    self.pool = pool
    let last = try pool.read { db in
      try Row.fetchOne(db, sql: "SELECT hlc_millis, hlc_counter FROM sync_meta WHERE id = 1")
    }
    let stamp = last.map { row in
      HLCStamp(millis: row["hlc_millis"], counter: UInt16(clamping: row["hlc_counter"] as Int64), node: SyncClientID.serverNode)
    }
    clock = Mutex(HybridLogicalClock(node: SyncClientID.serverNode, last: stamp))
  }

  func clockReading(now: Date) -> HLCStamp {
    clock.withLock { c in
      let physical = Int64((now.timeIntervalSince1970 * 1000).rounded(.down))
      return physical > c.last.millis ? HLCStamp(millis: physical, counter: 0, node: c.node) : c.last
    }
  }

  func logState() async throws -> SyncLogState {
    try await pool.read { db in try Self.log(db) }
  }

  // MARK: - Writes

  /// Runs `body` in a write transaction with the log and the clock; afterwards persists both,
  /// commits, and publishes what was written.
  func write<T: Sendable>(now: Date, _ body: @escaping @Sendable (Database, inout WriteState) throws -> T) async throws -> T {
    try await pool.writeWithoutTransaction { db in
      var state = WriteState(log: try Self.log(db), clock: self.clock.withLock { $0 }, now: now)
      let start = state.log.sequence
      var value: T?
      try db.inTransaction(.immediate) {
        // Re-read inside the transaction: the writer is exclusive from here on.
        state.log = try Self.log(db)
        value = try body(db, &state)
        if state.log.sequence != start || state.clockChanged {
          try db.execute(
            sql: "UPDATE sync_meta SET sequence = ?, horizon = ?, hlc_millis = ?, hlc_counter = ? WHERE id = 1",
            arguments: [state.log.sequence, state.log.horizon, state.clock.last.millis, Int64(state.clock.last.counter)])
        }
        return .commit
      }
      self.clock.withLock { c in if c.last < state.clock.last { c = state.clock } }
      if !state.written.isEmpty {
        self.feed.publish(CommittedChanges(after: start, upTo: state.log.sequence, records: state.written))
      }
      guard let value else { throw StoreError.failedPrecondition("sync write produced no result") }
      return value
    }
  }

  struct WriteState {
    var log: SyncLogState
    var clock: HybridLogicalClock
    var now: Date
    var written: [StoredRecord] = []
    var clockChanged = false

    mutating func tick() -> HLCStamp {
      clockChanged = true
      return clock.tick(now: now)
    }

    /// Stores a record at the next sequence number.
    mutating func put(_ record: StoredRecord, _ db: Database) throws {
      log.sequence += 1
      let body = Data(RecordCodec.encode(record.state))
      var stored = record
      stored.sequence = log.sequence
      stored.encodedSize = body.count
      let checksum = record.state.deleted ? 0 : Int64(bitPattern: ReplicaChecksum.hash(id: record.id, values: record.state.values))
      // Cached statements: per-mutation SQL is parsed once per connection, not per write.
      try db.cachedStatement(
        sql: """
          INSERT INTO sync_records (collection, id, owner_id, audience, version, deleted, seq, body, checksum, updated_at)
          VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
          ON CONFLICT (collection, id) DO UPDATE SET owner_id = excluded.owner_id, audience = excluded.audience,
            version = excluded.version, deleted = excluded.deleted, seq = excluded.seq, body = excluded.body,
            checksum = excluded.checksum, updated_at = excluded.updated_at
          """
      ).execute(
        arguments: [
          record.collection, record.id, record.ownerID, record.audience, record.state.version, record.state.deleted,
          log.sequence, body, checksum, SQLTime.ms(now),
        ])
      written.append(stored)
    }

    /// Server-side write of a whole record (cases, conflicts, published data): unchanged fields
    /// keep their stamps, so only real changes look new to LWW merges. Returns false when
    /// nothing changed.
    @discardableResult
    mutating func upsert(
      collection: String, id: String, ownerID: String, audience: String, values: [String: SyncValue], _ db: Database
    ) throws -> Bool {
      let current = try SQLiteSyncStore.record(db, collection: collection, id: id)
      if let current, !current.state.deleted, current.state.values == values { return false }
      let stamp = tick()
      var next = RecordState(fields: [:], version: (current?.state.version ?? 0) + 1)
      for (name, value) in values {
        if let old = current?.state.fields[name], !(current?.state.deleted ?? true), old.value == value {
          next.fields[name] = old
        } else {
          next.fields[name] = FieldState(value: value, stamp: stamp, changedAt: next.version)
        }
      }
      try put(StoredRecord(collection: collection, id: id, ownerID: ownerID, audience: audience, state: next), db)
      return true
    }

    /// Replaces a live record with a tombstone; false when it is absent or already deleted.
    @discardableResult
    mutating func delete(collection: String, id: String, _ db: Database) throws -> Bool {
      guard var record = try SQLiteSyncStore.record(db, collection: collection, id: id), !record.state.deleted else {
        return false
      }
      record.state = RecordState(fields: [:], version: record.state.version + 1, deleted: true, deletedStamp: tick())
      try put(record, db)
      return true
    }
  }

  func push(_ batch: PushBatch) async throws -> PushOutcome {
    let outcome = try await write(now: batch.now) { db, state -> PushOutcome in
      let client = try Row.fetchOne(
        db, sql: "SELECT account_id, last_mutation_id, epoch FROM sync_clients WHERE client_id = ?", arguments: [batch.clientID])
      if let client, (client["account_id"] as String) != batch.principal.accountID {
        throw StoreError.permissionDenied("client_id \(batch.clientID) belongs to another account; generate a new client id")
      }
      let first: Int64 = client?["last_mutation_id"] ?? 0
      var rebase: (last: Int64, lostFrom: Int64?) = (first, nil)
      if MutationOrder.startsPastGap(batch.mutations.first?.mutationID, lastProcessed: first) {
        let meta = try Row.fetchOne(db, sql: "SELECT epoch, restored_at FROM sync_meta WHERE id = 1")
        rebase = MutationOrder.rebased(
          firstMutationID: batch.mutations.first?.mutationID, lastProcessed: first,
          mayRebase: MutationOrder.mayRebase(
            clientEpoch: client.map { UInt32(truncatingIfNeeded: $0["epoch"] as Int64) },
            currentEpoch: UInt32(truncatingIfNeeded: meta?["epoch"] as Int64? ?? 0), restored: (meta?["restored_at"] as Int64?) != nil))
      }
      var last = rebase.last
      var results: [MutationResult] = []
      var gap: Int64?
      let clockBefore = state.clock
      loop: for mutation in batch.mutations {
        switch MutationOrder.classify(mutation.mutationID, lastProcessed: last) {
        case .alreadyProcessed:
          results.append(try Self.storedResult(db, clientID: batch.clientID, mutationID: mutation.mutationID))
        case .gap(let expected):
          gap = expected
          break loop
        case .next:
          let current = try Self.record(db, collection: mutation.collection, id: mutation.recordID)
          let decision = batch.rules.decide(
            mutation, current: current, principal: batch.principal, clientID: batch.clientID, clock: &state.clock,
            now: batch.now, newID: { ULID.make(at: batch.now) })
          for record in decision.writes { try state.put(record, db) }
          try db.cachedStatement(
            sql: "INSERT INTO sync_results (client_id, mutation_id, result, created_at) VALUES (?, ?, ?, ?)"
          ).execute(
            arguments: [
              batch.clientID, mutation.mutationID,
              String(decoding: try Self.resultEncoder.encode(decision.result), as: UTF8.self), SQLTime.ms(batch.now),
            ])
          results.append(decision.result)
          last = mutation.mutationID
        }
      }
      if state.clock != clockBefore { state.clockChanged = true }
      if last != first || client == nil {
        try db.execute(
          sql: """
            INSERT INTO sync_clients (client_id, account_id, last_mutation_id, created_at, updated_at, epoch)
            VALUES (?, ?, ?, ?, ?, (SELECT epoch FROM sync_meta WHERE id = 1))
            ON CONFLICT (client_id) DO UPDATE SET
              last_mutation_id = excluded.last_mutation_id, updated_at = excluded.updated_at, epoch = excluded.epoch
            """,
          arguments: [batch.clientID, batch.principal.accountID, last, SQLTime.ms(batch.now), SQLTime.ms(batch.now)])
      }
      return PushOutcome(
        results: results, lastMutationID: last, gapExpected: gap, lostFrom: rebase.lostFrom, serverClock: state.clock.last)
    }
    var answered = outcome
    answered.serverClock = clockReading(now: batch.now)
    return answered
  }

  static func storedResult(_ db: Database, clientID: String, mutationID: Int64) throws -> MutationResult {
    guard let text = try String.fetchOne(
      db.cachedStatement(sql: "SELECT result FROM sync_results WHERE client_id = ? AND mutation_id = ?"),
      arguments: [clientID, mutationID])
    else {
      // Compacted after the retention period: the effect is long applied, the detail is gone.
      return MutationResult(
        mutationID: mutationID, outcome: .applied, version: 0, message: "processed earlier; its result is no longer kept",
        replayed: true)
    }
    var result = try resultDecoder.decode(MutationResult.self, from: Data(text.utf8))
    result.replayed = true
    return result
  }

  func resolveConflict(id: String, principal: SyncPrincipal, resolution: ConflictResolution, now: Date) async throws -> StoredRecord? {
    try await write(now: now) { db, state -> StoredRecord? in
      guard let conflictRecord = try Self.record(db, collection: SyncCollections.conflicts.name, id: id),
            !conflictRecord.state.deleted, conflictRecord.audience == AudienceLabel.account(principal.accountID)
      else { throw StoreError.notFound("conflict \(id)") }
      guard let conflict = SyncConflict(id: id, values: conflictRecord.state.values) else {
        throw StoreError.failedPrecondition("conflict \(id) is unreadable")
      }
      let writes = try resolution.writes(for: conflict)
      var target = try Self.record(db, collection: conflict.collection, id: conflict.recordID)
      if let record = target, !principal.canSee(audience: record.audience) { target = nil }
      if var record = target, let next = resolution.apply(to: record.state, writes: writes, stamp: state.tick()) {
        try SyncCollections.named(record.collection)?.validateSize(next.values)
        record.state = next
        try state.put(record, db)
        target = state.written.last
      }
      var closed = conflictRecord
      closed.state = RecordState(fields: [:], version: conflictRecord.state.version + 1, deleted: true, deletedStamp: state.tick())
      try state.put(closed, db)
      return target
    }
  }

  func publish(collection: String, records: [String: [String: SyncValue]], now: Date) async throws -> Int {
    guard let spec = SyncCollections.named(collection), spec.scope == .public else {
      throw StoreError.failedPrecondition("\(collection) is not a public collection")
    }
    return try await write(now: now) { db, state -> Int in
      // Only the ids of live records: upsert reads each record it writes itself.
      let live = try String.fetchAll(
        db, sql: "SELECT id FROM sync_records WHERE collection = ? AND deleted = 0 ORDER BY id", arguments: [collection])
      var changed = 0
      for (id, values) in records.sorted(by: { $0.key < $1.key }) {
        if try state.upsert(
          collection: collection, id: id, ownerID: SyncClientID.serverNode, audience: AudienceLabel.everyone, values: values, db)
        {
          changed += 1
        }
      }
      for id in live where records[id] == nil {
        if try state.delete(collection: collection, id: id, db) { changed += 1 }
      }
      return changed
    }
  }

  func startNewEpoch(now: Date) async throws -> (old: UInt32, new: UInt32) {
    try await write(now: now) { db, _ -> (old: UInt32, new: UInt32) in
      let old = UInt32(truncatingIfNeeded: try Int64.fetchOne(db, sql: "SELECT epoch FROM sync_meta WHERE id = 1") ?? 0)
      let new = SyncEpoch.next(after: old)
      try db.execute(
        sql: "UPDATE sync_meta SET epoch = ?, restored_at = ? WHERE id = 1", arguments: [Int64(new), SQLTime.ms(now)])
      return (old, new)
    }
  }

  func compact(before: Date) async throws -> (tombstones: Int, results: Int) {
    try await write(now: before) { db, state -> (tombstones: Int, results: Int) in
      let cutoff = SQLTime.ms(before)
      let highest = try Int64.fetchOne(
        db, sql: "SELECT MAX(seq) FROM sync_records WHERE deleted = 1 AND updated_at < ?", arguments: [cutoff])
      try db.execute(sql: "DELETE FROM sync_records WHERE deleted = 1 AND updated_at < ?", arguments: [cutoff])
      let tombstones = db.changesCount
      if let highest, highest > state.log.horizon {
        state.log.horizon = highest
        state.clockChanged = true  // forces the meta row update
      }
      try db.execute(sql: "DELETE FROM sync_results WHERE created_at < ?", arguments: [cutoff])
      return (tombstones, db.changesCount)
    }
  }

  // MARK: - Reads

  func pull(_ query: PullQuery) async throws -> PullPage {
    try await pool.read { db in
      let log = try Self.log(db)
      var filters = "seq > ?"
      if query.liveOnly { filters += " AND deleted = 0" }
      var collectionArguments: [String] = []
      if let collections = query.collections, !collections.isEmpty {
        filters += " AND collection IN (\(Array(repeating: "?", count: collections.count).joined(separator: ", ")))"
        collectionArguments = collections
      }
      // One ordered index range per audience, merged here: cheaper than letting SQLite sort
      // the union when one audience holds 100k records.
      var candidates: [Row] = []
      for audience in query.audiences {
        let arguments = StatementArguments([audience, query.after] as [any DatabaseValueConvertible])
          + StatementArguments(collectionArguments) + StatementArguments([query.limit + 1])
        candidates += try Row.fetchAll(
          db.cachedStatement(sql: "SELECT \(Self.columns) FROM sync_records WHERE audience = ? AND \(filters) ORDER BY seq LIMIT ?"),
          arguments: arguments)
      }
      if query.audiences.count > 1 { candidates.sort { ($0["seq"] as Int64) < ($1["seq"] as Int64) } }
      var records: [StoredRecord] = []
      var bytes = 0
      for row in candidates {
        guard records.count < query.limit else { break }
        let size = (row["body"] as Data).count
        if !records.isEmpty && bytes + size > query.maxBytes { break }
        bytes += size
        records.append(try Self.record(from: row))
      }
      let hasMore = candidates.count > records.count
      var lastMutationID: Int64?
      if !hasMore, let clientID = query.clientID {
        // Only the caller's own device: another account's progress is not its business.
        lastMutationID = try Int64.fetchOne(
          db, sql: "SELECT last_mutation_id FROM sync_clients WHERE client_id = ? AND account_id = ?",
          arguments: [clientID, query.accountID]) ?? 0
      }
      return PullPage(
        records: records, position: hasMore ? (records.last?.sequence ?? query.after) : max(log.sequence, query.after),
        hasMore: hasMore, log: log, lastMutationID: lastMutationID)
    }
  }

  func checksums(audiences: [String], collections: [String]?) async throws -> (sums: [String: ReplicaChecksum], log: SyncLogState) {
    try await pool.read { db in
      var sums: [String: ReplicaChecksum] = [:]
      for name in collections ?? SyncCollections.all.map(\.name) { sums[name] = ReplicaChecksum() }
      for audience in audiences {
        let rows = try Row.fetchCursor(
          db, sql: "SELECT collection, checksum FROM sync_records WHERE audience = ? AND deleted = 0", arguments: [audience])
        while let row = try rows.next() {
          let collection: String = row[0]
          guard sums[collection] != nil else { continue }
          sums[collection]?.add(hash: UInt64(bitPattern: row[1] as Int64))
        }
      }
      return (sums, try Self.log(db))
    }
  }

  func liveRecords(collection: String, audience: String) async throws -> [StoredRecord] {
    try await pool.read { db in
      try Row.fetchAll(
        db, sql: "SELECT \(Self.columns) FROM sync_records WHERE collection = ? AND audience = ? AND deleted = 0 ORDER BY seq",
        arguments: [collection, audience]
      ).map(Self.record(from:))
    }
  }

  // MARK: - Rows

  static let columns = "collection, id, owner_id, audience, version, deleted, seq, body"

  static func log(_ db: Database) throws -> SyncLogState {
    guard let row = try Row.fetchOne(db, sql: "SELECT epoch, sequence, horizon FROM sync_meta WHERE id = 1") else {
      throw StoreError.failedPrecondition("sync_meta is missing; the database was not migrated")
    }
    return SyncLogState(epoch: UInt32(truncatingIfNeeded: row["epoch"] as Int64), sequence: row["sequence"], horizon: row["horizon"])
  }

  static func record(_ db: Database, collection: String, id: String) throws -> StoredRecord? {
    try Row.fetchOne(
      db.cachedStatement(sql: "SELECT \(columns) FROM sync_records WHERE collection = ? AND id = ?"), arguments: [collection, id]
    ).map(record(from:))
  }

  static func record(from row: Row) throws -> StoredRecord {
    let body: Data = row["body"]
    let state = try RecordCodec.decode(Array(body), version: row["version"], deleted: row["deleted"])
    return StoredRecord(
      collection: row["collection"], id: row["id"], ownerID: row["owner_id"], audience: row["audience"], state: state,
      sequence: row["seq"], encodedSize: body.count)
  }
}
