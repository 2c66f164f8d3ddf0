import Foundation
import Logging
import OneWindowCore
import OneWindowStore
import PostgresNIO
import Synchronization

/// Synced records in PostgreSQL.
///
/// Sequence numbers: every write transaction first locks the one counter row
/// (`SELECT … FROM sync_meta WHERE id = 1 FOR UPDATE`), assigns contiguous sequences after the
/// value it read, and updates the row before committing. The row lock is held to commit, so sync
/// writers are serialized and commit order equals sequence order: a reader whose snapshot shows
/// sequence N sees every change numbered ≤ N, and a pull cursor never passes a change that
/// commits later with a lower number (a `nextval()` sequence would allow exactly that). The
/// same lock makes the per-device mutation bookkeeping (`sync_clients`, `sync_results`) and the
/// read-then-write of each record race-free, so pushes apply exactly once.
///
/// Clock: the in-memory HLC is merged with the stamp in the locked meta row before each write
/// (another node may have moved it) and persisted with the counter; reads of the meta row raise
/// it too, so `clockReading` is never behind a stored stamp.
///
/// Committed changes are published to the in-process feed after commit, in sequence order
/// (`OrderedPublication`); cross-node delivery is not done here.
final class PostgresSyncStore: SyncStore {
  let pool: PostgresPool
  let feed = SyncChangeFeed()
  private let clock: Mutex<HybridLogicalClock>
  private let publication: OrderedPublication
  private static let resultEncoder = JSONEncoder()
  private static let resultDecoder = JSONDecoder()

  init(pool: PostgresPool) async throws {
    self.pool = pool
    let meta = try await pool.read { conn in try await Self.meta(conn, logger: pool.logger) }
    clock = Mutex(HybridLogicalClock(node: SyncClientID.serverNode, last: meta.stamp))
    publication = OrderedPublication(feed: feed)
  }

  var logger: Logger { pool.logger }

  func clockReading(now: Date) -> HLCStamp {
    clock.withLock { c in
      let physical = Int64((now.timeIntervalSince1970 * 1000).rounded(.down))
      return physical > c.last.millis ? HLCStamp(millis: physical, counter: 0, node: c.node) : c.last
    }
  }

  /// Moves the in-memory clock up to a stamp read from the database (never back).
  private func raiseClock(to stamp: HLCStamp) {
    clock.withLock { c in
      if c.last < stamp { c = HybridLogicalClock(node: c.node, last: stamp) }
    }
  }

  func logState() async throws -> SyncLogState {
    let meta = try await pool.read { conn in try await Self.meta(conn, logger: self.logger) }
    raiseClock(to: meta.stamp)
    return meta.log
  }

  // MARK: - Writes

  /// Runs `body` in a write transaction holding the counter row lock, with the log and the
  /// clock; then persists both, commits, and publishes what was written. `body` may run more
  /// than once (the pool retries deadlocks), so it keeps its effects in the database and `state`.
  func write<T: Sendable>(
    now: Date, _ body: @escaping @Sendable (PostgresConnection, inout WriteState) async throws -> T
  ) async throws -> T {
    let token = publication.begin()
    let outcome: (value: T, state: WriteState, start: Int64)
    do {
      outcome = try await pool.write { conn in
        // The counter row lock: serializes sync writers so sequences commit in order (see the type's doc).
        let meta = try await Self.meta(conn, lock: true, logger: self.logger)
        self.publication.claim(token, start: meta.log.sequence)
        var clock = self.clock.withLock { $0 }
        if clock.last < meta.stamp { clock = HybridLogicalClock(node: SyncClientID.serverNode, last: meta.stamp) }
        var state = WriteState(log: meta.log, clock: clock, now: now, logger: self.logger)
        let value = try await body(conn, &state)
        if state.log != meta.log || state.clock.last != meta.stamp {
          try await conn.run(
            """
            UPDATE sync_meta SET sequence = \(state.log.sequence), horizon = \(state.log.horizon),
              hlc_millis = \(state.clock.last.millis), hlc_counter = \(Int64(state.clock.last.counter)) WHERE id = 1
            """, logger: self.logger)
        }
        return (value, state, meta.log.sequence)
      }
    } catch {
      publication.finish(token, committed: nil)
      throw error
    }
    raiseClock(to: outcome.state.clock.last)
    publication.finish(
      token,
      committed: outcome.state.written.isEmpty
        ? nil : CommittedChanges(after: outcome.start, upTo: outcome.state.log.sequence, records: outcome.state.written))
    return outcome.value
  }

  struct WriteState: Sendable {
    var log: SyncLogState
    var clock: HybridLogicalClock
    var now: Date
    let logger: Logger
    var written: [StoredRecord] = []

    mutating func tick() -> HLCStamp { clock.tick(now: now) }

    /// Stores a record at the next sequence number.
    mutating func put(_ record: StoredRecord, _ conn: PostgresConnection) async throws {
      log.sequence += 1
      let body = RecordCodec.encode(record.state)
      var stored = record
      stored.sequence = log.sequence
      stored.encodedSize = body.count
      let checksum = record.state.deleted ? 0 : Int64(bitPattern: ReplicaChecksum.hash(id: record.id, values: record.state.values))
      let deleted: Int64 = record.state.deleted ? 1 : 0
      try await conn.run(
        """
        INSERT INTO sync_records (collection, id, owner_id, audience, version, deleted, seq, body, checksum, updated_at)
        VALUES (\(record.collection), \(record.id), \(record.ownerID), \(record.audience), \(record.state.version), \(deleted),
          \(log.sequence), \(ByteBuffer(bytes: body)), \(checksum), \(PGTime.ms(now)))
        ON CONFLICT (collection, id) DO UPDATE SET owner_id = excluded.owner_id, audience = excluded.audience,
          version = excluded.version, deleted = excluded.deleted, seq = excluded.seq, body = excluded.body,
          checksum = excluded.checksum, updated_at = excluded.updated_at
        """, logger: logger)
      written.append(stored)
    }

    /// Server-side write of a whole record (cases, conflicts, published data): unchanged fields
    /// keep their stamps, so only real changes look new to LWW merges. Returns false when
    /// nothing changed.
    @discardableResult
    mutating func upsert(
      collection: String, id: String, ownerID: String, audience: String, values: [String: SyncValue], _ conn: PostgresConnection
    ) async throws -> Bool {
      let current = try await PostgresSyncStore.record(conn, collection: collection, id: id, logger: logger)
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
      try await put(StoredRecord(collection: collection, id: id, ownerID: ownerID, audience: audience, state: next), conn)
      return true
    }

    /// Replaces a live record with a tombstone; false when it is absent or already deleted.
    @discardableResult
    mutating func delete(collection: String, id: String, _ conn: PostgresConnection) async throws -> Bool {
      guard var record = try await PostgresSyncStore.record(conn, collection: collection, id: id, logger: logger),
            !record.state.deleted
      else { return false }
      record.state = RecordState(fields: [:], version: record.state.version + 1, deleted: true, deletedStamp: tick())
      try await put(record, conn)
      return true
    }
  }

  func push(_ batch: PushBatch) async throws -> PushOutcome {
    let outcome = try await write(now: batch.now) { conn, state -> PushOutcome in
      let logger = state.logger
      // No lock of its own: the counter row lock taken by `write` already serializes every
      // writer of sync_clients and sync_results, so a device's mutation ids apply exactly once.
      let client = try await conn.rows(
        "SELECT account_id, last_mutation_id FROM sync_clients WHERE client_id = \(batch.clientID)", logger: logger
      ).first
      if let client, try client["account_id"].decode(String.self) != batch.principal.accountID {
        throw StoreError.permissionDenied("client_id \(batch.clientID) belongs to another account; generate a new client id")
      }
      let first = try client?["last_mutation_id"].decode(Int64.self) ?? 0
      var last = first
      var results: [MutationResult] = []
      var gap: Int64?
      loop: for mutation in batch.mutations {
        switch MutationOrder.classify(mutation.mutationID, lastProcessed: last) {
        case .alreadyProcessed:
          results.append(try await Self.storedResult(conn, clientID: batch.clientID, mutationID: mutation.mutationID, logger: logger))
        case .gap(let expected):
          gap = expected
          break loop
        case .next:
          let current = try await Self.record(conn, collection: mutation.collection, id: mutation.recordID, logger: logger)
          let decision = batch.rules.decide(
            mutation, current: current, principal: batch.principal, clientID: batch.clientID, clock: &state.clock,
            now: batch.now, newID: { ULID.make(at: batch.now) })
          for record in decision.writes { try await state.put(record, conn) }
          let text = String(decoding: try Self.resultEncoder.encode(decision.result), as: UTF8.self)
          try await conn.run(
            """
            INSERT INTO sync_results (client_id, mutation_id, result, created_at)
            VALUES (\(batch.clientID), \(mutation.mutationID), \(text), \(PGTime.ms(batch.now)))
            """, logger: logger)
          results.append(decision.result)
          last = mutation.mutationID
        }
      }
      if last != first || client == nil {
        try await conn.run(
          """
          INSERT INTO sync_clients (client_id, account_id, last_mutation_id, created_at, updated_at)
          VALUES (\(batch.clientID), \(batch.principal.accountID), \(last), \(PGTime.ms(batch.now)), \(PGTime.ms(batch.now)))
          ON CONFLICT (client_id) DO UPDATE SET last_mutation_id = excluded.last_mutation_id, updated_at = excluded.updated_at
          """, logger: logger)
      }
      return PushOutcome(results: results, lastMutationID: last, gapExpected: gap, serverClock: state.clock.last)
    }
    var answered = outcome
    answered.serverClock = clockReading(now: batch.now)
    return answered
  }

  static func storedResult(_ conn: PostgresConnection, clientID: String, mutationID: Int64, logger: Logger) async throws
    -> MutationResult
  {
    guard let text = try await conn.all(
      "SELECT result FROM sync_results WHERE client_id = \(clientID) AND mutation_id = \(mutationID)", as: String.self,
      logger: logger
    ).first
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
    try await write(now: now) { conn, state -> StoredRecord? in
      let logger = state.logger
      guard let conflictRecord = try await Self.record(conn, collection: SyncCollections.conflicts.name, id: id, logger: logger),
            !conflictRecord.state.deleted, conflictRecord.audience == AudienceLabel.account(principal.accountID)
      else { throw StoreError.notFound("conflict \(id)") }
      guard let conflict = SyncConflict(id: id, values: conflictRecord.state.values) else {
        throw StoreError.failedPrecondition("conflict \(id) is unreadable")
      }
      let writes = try resolution.writes(for: conflict)
      var target = try await Self.record(conn, collection: conflict.collection, id: conflict.recordID, logger: logger)
      if let record = target, !principal.canSee(audience: record.audience) { target = nil }
      if var record = target, let next = resolution.apply(to: record.state, writes: writes, stamp: state.tick()) {
        try SyncCollections.named(record.collection)?.validateSize(next.values)
        record.state = next
        try await state.put(record, conn)
        target = state.written.last
      }
      var closed = conflictRecord
      closed.state = RecordState(fields: [:], version: conflictRecord.state.version + 1, deleted: true, deletedStamp: state.tick())
      try await state.put(closed, conn)
      return target
    }
  }

  func publish(collection: String, records: [String: [String: SyncValue]], now: Date) async throws -> Int {
    guard let spec = SyncCollections.named(collection), spec.scope == .public else {
      throw StoreError.failedPrecondition("\(collection) is not a public collection")
    }
    return try await write(now: now) { conn, state -> Int in
      // Only the ids of live records: upsert reads each record it writes itself.
      let live = try await conn.all(
        "SELECT id FROM sync_records WHERE collection = \(collection) AND deleted = 0 ORDER BY id", as: String.self,
        logger: state.logger)
      var changed = 0
      for (id, values) in records.sorted(by: { $0.key < $1.key }) {
        if try await state.upsert(
          collection: collection, id: id, ownerID: SyncClientID.serverNode, audience: AudienceLabel.everyone, values: values, conn)
        {
          changed += 1
        }
      }
      for id in live where records[id] == nil {
        if try await state.delete(collection: collection, id: id, conn) { changed += 1 }
      }
      return changed
    }
  }

  func compact(before: Date) async throws -> (tombstones: Int, results: Int) {
    let counts = try await write(now: before) { conn, state -> [Int] in
      let cutoff = PGTime.ms(before)
      let highest = try await conn.all(
        "SELECT MAX(seq) FROM sync_records WHERE deleted = 1 AND updated_at < \(cutoff)", as: Int64?.self, logger: state.logger
      ).first ?? nil
      let tombstones = try await conn.run(
        "DELETE FROM sync_records WHERE deleted = 1 AND updated_at < \(cutoff) RETURNING 1", logger: state.logger)
      // A raised horizon differs from the locked row, so `write` updates the meta row.
      if let highest, highest > state.log.horizon { state.log.horizon = highest }
      let results = try await conn.run("DELETE FROM sync_results WHERE created_at < \(cutoff) RETURNING 1", logger: state.logger)
      return [tombstones, results]
    }
    return (counts[0], counts[1])
  }

  // MARK: - Reads

  func pull(_ query: PullQuery) async throws -> PullPage {
    let (page, stamp) = try await pool.read { conn -> (PullPage, HLCStamp) in
      let meta = try await Self.meta(conn, logger: self.logger)
      let log = meta.log
      var filters = "seq > $2"
      if query.liveOnly { filters += " AND deleted = 0" }
      let collections = query.collections.flatMap { $0.isEmpty ? nil : $0 }
      if collections != nil { filters += " AND collection = ANY($4)" }
      // One ordered index range per audience (sync_records_audience_seq), merged here: cheaper
      // than sorting the union when one audience holds 100k records.
      var candidates: [StoredRecord] = []
      for audience in query.audiences {
        var binds = PostgresBindings()
        binds.append(audience)
        binds.append(query.after)
        binds.append(Int64(query.limit + 1))
        if let collections { binds.append(collections) }
        candidates += try await conn.rows(
          PostgresQuery(
            unsafeSQL: "SELECT \(Self.columns) FROM sync_records WHERE audience = $1 AND \(filters) ORDER BY seq LIMIT $3",
            binds: binds),
          logger: self.logger
        ).map(Self.record(from:))
      }
      if query.audiences.count > 1 { candidates.sort { $0.sequence < $1.sequence } }
      var records: [StoredRecord] = []
      var bytes = 0
      for record in candidates {
        guard records.count < query.limit else { break }
        let size = record.encodedSize
        if !records.isEmpty && bytes + size > query.maxBytes { break }
        bytes += size
        records.append(record)
      }
      let hasMore = candidates.count > records.count
      var lastMutationID: Int64?
      if !hasMore, let clientID = query.clientID {
        // Only the caller's own device: another account's progress is not its business.
        lastMutationID = try await conn.all(
          "SELECT last_mutation_id FROM sync_clients WHERE client_id = \(clientID) AND account_id = \(query.accountID)",
          as: Int64.self, logger: self.logger
        ).first ?? 0
      }
      let page = PullPage(
        records: records, position: hasMore ? (records.last?.sequence ?? query.after) : max(log.sequence, query.after),
        hasMore: hasMore, log: log, lastMutationID: lastMutationID)
      return (page, meta.stamp)
    }
    raiseClock(to: stamp)
    return page
  }

  func checksums(audiences: [String], collections: [String]?) async throws -> (sums: [String: ReplicaChecksum], log: SyncLogState) {
    let (sums, meta) = try await pool.read { conn -> ([String: ReplicaChecksum], Meta) in
      var sums: [String: ReplicaChecksum] = [:]
      for name in collections ?? SyncCollections.all.map(\.name) { sums[name] = ReplicaChecksum() }
      for audience in audiences {
        let rows = try await conn.query(
          "SELECT collection, checksum FROM sync_records WHERE audience = \(audience) AND deleted = 0", logger: self.logger)
        for try await (collection, checksum) in rows.decode((String, Int64).self) {
          guard sums[collection] != nil else { continue }
          sums[collection]?.add(hash: UInt64(bitPattern: checksum))
        }
      }
      return (sums, try await Self.meta(conn, logger: self.logger))
    }
    raiseClock(to: meta.stamp)
    return (sums, meta.log)
  }

  func liveRecords(collection: String, audience: String) async throws -> [StoredRecord] {
    try await pool.read { conn in
      try await conn.rows(
        PostgresQuery(
          unsafeSQL: "SELECT \(Self.columns) FROM sync_records WHERE collection = $1 AND audience = $2 AND deleted = 0 ORDER BY seq",
          binds: Self.binds(collection, audience)),
        logger: self.logger
      ).map(Self.record(from:))
    }
  }

  // MARK: - Rows

  static let columns = "collection, id, owner_id, audience, version, deleted, seq, body"

  struct Meta: Sendable {
    var log: SyncLogState
    var stamp: HLCStamp
  }

  /// The counter row; `lock` takes its row lock until commit (every sync write does, first).
  static func meta(_ conn: PostgresConnection, lock: Bool = false, logger: Logger) async throws -> Meta {
    let sql = "SELECT epoch, sequence, horizon, hlc_millis, hlc_counter FROM sync_meta WHERE id = 1" + (lock ? " FOR UPDATE" : "")
    guard let row = try await conn.rows(PostgresQuery(unsafeSQL: sql), logger: logger).first else {
      throw StoreError.failedPrecondition("sync_meta is missing; the database was not migrated")
    }
    let log = SyncLogState(
      epoch: UInt32(truncatingIfNeeded: try row["epoch"].decode(Int64.self)), sequence: try row["sequence"].decode(Int64.self),
      horizon: try row["horizon"].decode(Int64.self))
    let stamp = HLCStamp(
      millis: try row["hlc_millis"].decode(Int64.self), counter: UInt16(clamping: try row["hlc_counter"].decode(Int64.self)),
      node: SyncClientID.serverNode)
    return Meta(log: log, stamp: stamp)
  }

  static func record(_ conn: PostgresConnection, collection: String, id: String, logger: Logger) async throws -> StoredRecord? {
    try await conn.rows(
      PostgresQuery(
        unsafeSQL: "SELECT \(columns) FROM sync_records WHERE collection = $1 AND id = $2", binds: binds(collection, id)),
      logger: logger
    ).first.map(record(from:))
  }

  static func record(from row: PostgresRandomAccessRow) throws -> StoredRecord {
    let body = Array(buffer: try row["body"].decode(ByteBuffer.self))
    let state = try RecordCodec.decode(body, version: try row["version"].decode(Int64.self), deleted: try row["deleted"].decode(Int64.self) != 0)
    return StoredRecord(
      collection: try row["collection"].decode(String.self), id: try row["id"].decode(String.self),
      ownerID: try row["owner_id"].decode(String.self), audience: try row["audience"].decode(String.self), state: state,
      sequence: try row["seq"].decode(Int64.self), encodedSize: body.count)
  }

  static func binds(_ values: String...) -> PostgresBindings {
    var binds = PostgresBindings(capacity: values.count)
    for value in values { binds.append(value) }
    return binds
  }
}

/// Publishes committed batches to the feed in sequence order, as SQLite does from its single
/// writer. A writer claims the sequence it starts from once it holds the counter row lock; a
/// batch waits only while a local writer that started below it has not finished (its batch
/// fills the gap, or it failed). A gap nobody local claims (another process wrote it) does not
/// hold anything back: listeners see `after` above their position and re-read the store.
final class OrderedPublication: Sendable {
  private struct State {
    var next: UInt64 = 0
    var published: Int64 = 0
    var claims: [UInt64: Int64] = [:]
    var pending: [CommittedChanges] = []
  }

  private let feed: SyncChangeFeed
  private let state = Mutex(State())

  init(feed: SyncChangeFeed) { self.feed = feed }

  /// A token for one write call (held across the pool's retries).
  func begin() -> UInt64 {
    state.withLock { s in
      s.next += 1
      return s.next
    }
  }

  /// The write holds the counter lock at `start` (a retry replaces its earlier claim).
  func claim(_ token: UInt64, start: Int64) {
    state.withLock { s in s.claims[token] = start }
  }

  /// The write ended; `committed` is what it committed (nil: nothing, or it failed).
  func finish(_ token: UInt64, committed: CommittedChanges?) {
    state.withLock { s in
      s.claims[token] = nil
      if let committed { s.pending.append(committed) }
      s.pending.sort { $0.after < $1.after }
      // Published under the lock, so two finishing writers cannot interleave their batches.
      while let first = s.pending.first {
        let waiting = first.after > s.published && s.claims.values.contains { $0 < first.after }
        if waiting { break }
        s.pending.removeFirst()
        s.published = max(s.published, first.upTo)
        feed.publish(first)
      }
    }
  }
}
