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
/// (`OrderedPublication`). Changes other nodes commit reach the feed through the pump
/// (`startPump`): a sync doorbell, or a poll, makes it read the records past the published
/// position from the table, so a lost doorbell delays a Watch but never skips a change.
final class PostgresSyncStore: SyncStore {
  let pool: PostgresPool
  let feed = SyncChangeFeed()
  let doorbells: any Doorbells
  private let pumpTasks = Mutex<PumpTasks?>(nil)
  private let clock: Mutex<HybridLogicalClock>
  private let publication: OrderedPublication
  private static let resultEncoder = JSONEncoder()
  private static let resultDecoder = JSONDecoder()

  init(pool: PostgresPool, doorbells: any Doorbells) async throws {
    self.pool = pool
    self.doorbells = doorbells
    let meta = try await Self.meta(pool)
    clock = Mutex(HybridLogicalClock(node: SyncClientID.serverNode, last: meta.stamp))
    publication = OrderedPublication(feed: feed, published: meta.log.sequence)
  }

  // MARK: - Changes other nodes commit

  /// How often the pump looks at the log head when no doorbell rings (the fallback that makes
  /// a lost doorbell cost latency, never a change).
  static let pollInterval: Duration = .milliseconds(500)
  /// Records per batch the pump reads.
  static let pumpPage = 1000

  /// Starts feeding the changes other processes commit into `feed`: woken by a sync doorbell,
  /// or every `pollInterval`, it reads the log head and, when listeners are waiting, the
  /// records committed since the last published position, in sequence order. Runs until
  /// `stopPump()`.
  func startPump() {
    let (wakes, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    let token = doorbells.observe(.sync) { _ in wake.yield() }
    let ticker = Task {
      while !Task.isCancelled {
        try? await Task.sleep(for: Self.pollInterval)
        wake.yield()
      }
    }
    let pump = Task { [weak self] in
      for await _ in wakes {
        guard let self else { return }
        do {
          try await self.pumpOnce()
        } catch {
          if Task.isCancelled { return }
          self.logger.warning("reading other nodes' sync changes failed; retrying", metadata: ["error": "\(String(reflecting: type(of: error)))"])
        }
      }
    }
    pumpTasks.withLock { $0 = PumpTasks(ticker: ticker, pump: pump, wake: wake, token: token) }
  }

  func stopPump() async {
    guard let tasks = pumpTasks.withLock({ t -> PumpTasks? in defer { t = nil }; return t }) else { return }
    doorbells.cancel(tasks.token)
    tasks.ticker.cancel()
    tasks.wake.finish()
    tasks.pump.cancel()
    await tasks.pump.value
  }

  struct PumpTasks: Sendable {
    var ticker: Task<Void, Never>
    var pump: Task<Void, Never>
    var wake: AsyncStream<Void>.Continuation
    var token: UInt64
  }

  /// One look at the head: publishes what other processes committed since the last published
  /// position (or only moves the position when nobody listens).
  func pumpOnce() async throws {
    let meta = try await Self.meta(pool)
    raiseClock(to: meta.stamp)
    var cursor = publication.published
    let head = meta.log.sequence
    guard head > cursor else { return }
    guard feed.listenerCount > 0 else {
      publication.skip(to: head)
      return
    }
    while cursor < head {
      let rows = try await pool.rows(
        """
        SELECT \(unescaped: Self.columns) FROM sync_records WHERE seq > \(cursor) AND seq <= \(head) ORDER BY seq LIMIT \(Self.pumpPage)
        """)
      let records = try rows.map(Self.record(from:))
      // A full page ends at its last record; the rest of the range follows in the next one.
      let upTo = records.count == Self.pumpPage ? (records.last?.sequence ?? head) : head
      publication.deliver(CommittedChanges(after: cursor, upTo: upTo, records: records))
      cursor = upTo
    }
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
    let meta = try await Self.meta(pool)
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
        // The buffered records and the counter row in one statement.
        if !(try await state.flush(conn)), state.log != meta.log || state.clock.last != meta.stamp {
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
    if !outcome.state.written.isEmpty, doorbells.isShared {
      // After the commit and outside the counter lock; the other nodes' pumps read the records.
      let head = outcome.state.log.sequence
      Task { [doorbells] in await doorbells.ring(.sync, "\(head)") }
    }
    return outcome.value
  }

  /// What one sync write transaction has done so far. Record writes are buffered and written by
  /// `flush` in one statement just before the counter row is updated, so a push of N mutations
  /// costs a few statements rather than several per mutation (each a round trip under the
  /// counter lock). Reads of `sync_records` inside a write therefore go through `record(…)`,
  /// which sees the buffered writes; SQL that reads the table directly sees only what was there
  /// when the transaction began writing.
  struct WriteState: Sendable {
    var log: SyncLogState
    var clock: HybridLogicalClock
    var now: Date
    let logger: Logger
    var written: [StoredRecord] = []
    /// Records read or written in this transaction; a nil value is a record known to be absent.
    private var known: [RecordKey: StoredRecord?] = [:]
    /// The last write of each record, with its encoded body, waiting for `flush`.
    private var pending: [RecordKey: (record: StoredRecord, body: [UInt8])] = [:]

    init(log: SyncLogState, clock: HybridLogicalClock, now: Date, logger: Logger) {
      self.log = log
      self.clock = clock
      self.now = now
      self.logger = logger
    }

    struct RecordKey: Hashable, Sendable {
      var collection: String
      var id: String
    }

    mutating func tick() -> HLCStamp { clock.tick(now: now) }

    /// The record as this transaction sees it: its own writes first, then the table.
    mutating func record(collection: String, id: String, _ conn: PostgresConnection) async throws -> StoredRecord? {
      let key = RecordKey(collection: collection, id: id)
      if let seen = known[key] { return seen }
      let found = try await PostgresSyncStore.record(conn, collection: collection, id: id, logger: logger)
      known[key] = .some(found)
      return found
    }

    /// Reads many records in one statement, so later `record(…)` calls for them need no round trip.
    mutating func prefetch(_ keys: [RecordKey], _ conn: PostgresConnection) async throws {
      let missing = Array(Set(keys.filter { known[$0] == nil }))
      guard !missing.isEmpty else { return }
      let rows = try await conn.rows(
        """
        SELECT \(unescaped: PostgresSyncStore.columns) FROM sync_records
        WHERE (collection, id) IN (SELECT * FROM unnest(\(missing.map(\.collection))::text[], \(missing.map(\.id))::text[]))
        """, logger: logger)
      for key in missing { known[key] = .some(nil) }
      for row in rows {
        let record = try PostgresSyncStore.record(from: row)
        known[RecordKey(collection: record.collection, id: record.id)] = .some(record)
      }
    }

    /// Stores a record at the next sequence number (written by `flush`).
    mutating func put(_ record: StoredRecord) {
      log.sequence += 1
      let body = RecordCodec.encode(record.state)
      var stored = record
      stored.sequence = log.sequence
      stored.encodedSize = body.count
      let key = RecordKey(collection: record.collection, id: record.id)
      known[key] = .some(stored)
      pending[key] = (stored, body)
      written.append(stored)
    }

    /// Writes every buffered record and the counter row (sequence, horizon, clock) in one
    /// statement; only the last write of each record is written (an earlier one in the same
    /// transaction would be overwritten row by row anyway). False when nothing was buffered.
    mutating func flush(_ conn: PostgresConnection) async throws -> Bool {
      guard !pending.isEmpty else { return false }
      let rows = pending.values.sorted { $0.record.sequence < $1.record.sequence }
      pending = [:]
      let records = rows.map(\.record)
      let checksums = records.map { r in
        r.state.deleted ? Int64(0) : Int64(bitPattern: ReplicaChecksum.hash(id: r.id, values: r.state.values))
      }
      try await conn.run(
        """
        WITH meta AS (
          UPDATE sync_meta SET sequence = \(log.sequence), horizon = \(log.horizon), hlc_millis = \(clock.last.millis),
            hlc_counter = \(Int64(clock.last.counter)) WHERE id = 1
        )
        INSERT INTO sync_records (collection, id, owner_id, audience, version, deleted, seq, body, checksum, updated_at)
        SELECT c, i, o, a, v, d, s, b, k, \(PGTime.ms(now))
        FROM unnest(\(records.map(\.collection))::text[], \(records.map(\.id))::text[], \(records.map(\.ownerID))::text[],
          \(records.map(\.audience))::text[], \(records.map(\.state.version))::int8[],
          \(records.map { Int64($0.state.deleted ? 1 : 0) })::int8[], \(records.map(\.sequence))::int8[],
          \(rows.map { ByteBuffer(bytes: $0.body) })::bytea[], \(checksums)::int8[]) AS t(c, i, o, a, v, d, s, b, k)
        ON CONFLICT (collection, id) DO UPDATE SET owner_id = excluded.owner_id, audience = excluded.audience,
          version = excluded.version, deleted = excluded.deleted, seq = excluded.seq, body = excluded.body,
          checksum = excluded.checksum, updated_at = excluded.updated_at
        """, logger: logger)
      return true
    }

    /// Server-side write of a whole record (cases, conflicts, published data): unchanged fields
    /// keep their stamps, so only real changes look new to LWW merges. Returns false when
    /// nothing changed.
    @discardableResult
    mutating func upsert(
      collection: String, id: String, ownerID: String, audience: String, values: [String: SyncValue], _ conn: PostgresConnection
    ) async throws -> Bool {
      let current = try await record(collection: collection, id: id, conn)
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
      put(StoredRecord(collection: collection, id: id, ownerID: ownerID, audience: audience, state: next))
      return true
    }

    /// Replaces a live record with a tombstone; false when it is absent or already deleted.
    @discardableResult
    mutating func delete(collection: String, id: String, _ conn: PostgresConnection) async throws -> Bool {
      guard var record = try await record(collection: collection, id: id, conn), !record.state.deleted else { return false }
      record.state = RecordState(fields: [:], version: record.state.version + 1, deleted: true, deletedStamp: tick())
      put(record)
      return true
    }
  }

  func push(_ batch: PushBatch) async throws -> PushOutcome {
    let outcome = try await write(now: batch.now) { conn, state -> PushOutcome in
      let logger = state.logger
      // No lock of its own: the counter row lock taken by `write` already serializes every
      // writer of sync_clients and sync_results, so a device's mutation ids apply exactly once.
      let client = try await conn.rows(
        "SELECT account_id, last_mutation_id, epoch FROM sync_clients WHERE client_id = \(batch.clientID)", logger: logger
      ).first
      if let client, try client["account_id"].decode(String.self) != batch.principal.accountID {
        throw StoreError.permissionDenied("client_id \(batch.clientID) belongs to another account; generate a new client id")
      }
      let counted = try client?["last_mutation_id"].decode(Int64.self) ?? 0
      var rebase: (last: Int64, lostFrom: Int64?) = (counted, nil)
      if MutationOrder.startsPastGap(batch.mutations.first?.mutationID, lastProcessed: counted) {
        let restoredAt = try await conn.all("SELECT restored_at FROM sync_meta WHERE id = 1", as: Int64?.self, logger: logger).first
        rebase = MutationOrder.rebased(
          firstMutationID: batch.mutations.first?.mutationID, lastProcessed: counted,
          mayRebase: MutationOrder.mayRebase(
            clientEpoch: try client.map { UInt32(truncatingIfNeeded: try $0["epoch"].decode(Int64.self)) },
            currentEpoch: state.log.epoch, restored: restoredAt.flatMap { $0 } != nil))
      }
      let first = rebase.last
      // Set-based: the replayed mutations' stored results and the records the new ones touch are
      // read in one statement each, and the results written in one, whatever the batch's size.
      let replayed = batch.mutations.map(\.mutationID).filter { $0 <= first }
      var stored = try await Self.storedResults(conn, clientID: batch.clientID, mutationIDs: replayed, logger: logger)
      try await state.prefetch(
        batch.mutations.filter { $0.mutationID > first }.map { .init(collection: $0.collection, id: $0.recordID) }, conn)
      var last = first
      var results: [MutationResult] = []
      var applied: [(id: Int64, result: String)] = []
      var gap: Int64?
      loop: for mutation in batch.mutations {
        switch MutationOrder.classify(mutation.mutationID, lastProcessed: last) {
        case .alreadyProcessed:
          results.append(stored[mutation.mutationID] ?? Self.compactedResult(mutation.mutationID))
        case .gap(let expected):
          gap = expected
          break loop
        case .next:
          let current = try await state.record(collection: mutation.collection, id: mutation.recordID, conn)
          let decision = batch.rules.decide(
            mutation, current: current, principal: batch.principal, clientID: batch.clientID, clock: &state.clock,
            now: batch.now, newID: { ULID.make(at: batch.now) })
          for record in decision.writes { state.put(record) }
          applied.append((mutation.mutationID, String(decoding: try Self.resultEncoder.encode(decision.result), as: UTF8.self)))
          results.append(decision.result)
          // A repeat of this id later in the same batch is answered as a replay of this result.
          var replay = decision.result
          replay.replayed = true
          stored[mutation.mutationID] = replay
          last = mutation.mutationID
        }
      }
      if !applied.isEmpty {
        try await conn.run(
          """
          INSERT INTO sync_results (client_id, mutation_id, result, created_at)
          SELECT \(batch.clientID), m, r, \(PGTime.ms(batch.now)) FROM unnest(\(applied.map(\.id))::int8[], \(applied.map(\.result))::text[]) AS t(m, r)
          """, logger: logger)
      }
      if last != counted || client == nil {
        try await conn.run(
          """
          INSERT INTO sync_clients (client_id, account_id, last_mutation_id, created_at, updated_at, epoch)
          VALUES (\(batch.clientID), \(batch.principal.accountID), \(last), \(PGTime.ms(batch.now)), \(PGTime.ms(batch.now)), \(Int64(state.log.epoch)))
          ON CONFLICT (client_id) DO UPDATE SET
            last_mutation_id = excluded.last_mutation_id, updated_at = excluded.updated_at, epoch = excluded.epoch
          """, logger: logger)
      }
      return PushOutcome(
        results: results, lastMutationID: last, gapExpected: gap, lostFrom: rebase.lostFrom, serverClock: state.clock.last)
    }
    var answered = outcome
    answered.serverClock = clockReading(now: batch.now)
    return answered
  }

  /// The stored results of already-processed mutations, marked replayed; one missing from the
  /// map was compacted after the retention period.
  static func storedResults(_ conn: PostgresConnection, clientID: String, mutationIDs: [Int64], logger: Logger) async throws
    -> [Int64: MutationResult]
  {
    guard !mutationIDs.isEmpty else { return [:] }
    var results: [Int64: MutationResult] = [:]
    for (id, text) in try await conn.all(
      "SELECT mutation_id, result FROM sync_results WHERE client_id = \(clientID) AND mutation_id = ANY(\(mutationIDs)::int8[])",
      as: (Int64, String).self, logger: logger)
    {
      var result = try resultDecoder.decode(MutationResult.self, from: Data(text.utf8))
      result.replayed = true
      results[id] = result
    }
    return results
  }

  /// Compacted after the retention period: the effect is long applied, the detail is gone.
  static func compactedResult(_ mutationID: Int64) -> MutationResult {
    MutationResult(
      mutationID: mutationID, outcome: .applied, version: 0, message: "processed earlier; its result is no longer kept",
      replayed: true)
  }

  func resolveConflict(id: String, principal: SyncPrincipal, resolution: ConflictResolution, now: Date) async throws -> StoredRecord? {
    try await write(now: now) { conn, state -> StoredRecord? in
      guard let conflictRecord = try await state.record(collection: SyncCollections.conflicts.name, id: id, conn),
            !conflictRecord.state.deleted, conflictRecord.audience == AudienceLabel.account(principal.accountID)
      else { throw StoreError.notFound("conflict \(id)") }
      guard let conflict = SyncConflict(id: id, values: conflictRecord.state.values) else {
        throw StoreError.failedPrecondition("conflict \(id) is unreadable")
      }
      let writes = try resolution.writes(for: conflict)
      var target = try await state.record(collection: conflict.collection, id: conflict.recordID, conn)
      if let record = target, !principal.canSee(audience: record.audience) { target = nil }
      if var record = target, let next = resolution.apply(to: record.state, writes: writes, stamp: state.tick()) {
        try SyncCollections.named(record.collection)?.validateSize(next.values)
        record.state = next
        state.put(record)
        target = state.written.last
      }
      var closed = conflictRecord
      closed.state = RecordState(fields: [:], version: conflictRecord.state.version + 1, deleted: true, deletedStamp: state.tick())
      state.put(closed)
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
      try await state.prefetch((Array(records.keys) + live).map { .init(collection: collection, id: $0) }, conn)
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

  func startNewEpoch(now: Date) async throws -> (old: UInt32, new: UInt32) {
    try await write(now: now) { conn, _ -> (old: UInt32, new: UInt32) in
      let old = UInt32(truncatingIfNeeded: try await conn.all("SELECT epoch FROM sync_meta WHERE id = 1", as: Int64.self, logger: self.logger).first ?? 0)
      let new = SyncEpoch.next(after: old)
      try await conn.run("UPDATE sync_meta SET epoch = \(Int64(new)), restored_at = \(PGTime.ms(now)) WHERE id = 1", logger: self.logger)
      return (old, new)
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
    try meta(from: try await conn.rows(PostgresQuery(unsafeSQL: metaSQL + (lock ? " FOR UPDATE" : "")), logger: logger).first)
  }

  /// The meta row as one statement outside a transaction.
  static func meta(_ pool: PostgresPool) async throws -> Meta {
    try meta(from: try await pool.rows(PostgresQuery(unsafeSQL: metaSQL)).first)
  }

  static let metaSQL = "SELECT epoch, sequence, horizon, hlc_millis, hlc_counter FROM sync_meta WHERE id = 1"

  static func meta(from row: PostgresRandomAccessRow?) throws -> Meta {
    guard let row else { throw StoreError.failedPrecondition("sync_meta is missing; the database was not migrated") }
    let log = SyncLogState(
      epoch: UInt32(truncatingIfNeeded: try row["epoch"].decode(Int64.self)), sequence: try row["sequence"].decode(Int64.self),
      horizon: try row["horizon"].decode(Int64.self))
    let stamp = HLCStamp(
      millis: try row["hlc_millis"].decode(Int64.self), counter: UInt16(clamping: try row["hlc_counter"].decode(Int64.self)),
      node: SyncClientID.serverNode)
    return Meta(log: log, stamp: stamp)
  }

  /// One record by key (inside a transaction, or as one statement on the pool).
  static func recordQuery(collection: String, id: String) -> PostgresQuery {
    PostgresQuery(unsafeSQL: "SELECT \(columns) FROM sync_records WHERE collection = $1 AND id = $2", binds: binds(collection, id))
  }

  static func record(_ conn: PostgresConnection, collection: String, id: String, logger: Logger) async throws -> StoredRecord? {
    try await conn.rows(recordQuery(collection: collection, id: id), logger: logger).first.map(record(from:))
  }

  /// `record` as one statement outside a transaction.
  static func record(_ pool: PostgresPool, collection: String, id: String) async throws -> StoredRecord? {
    try await pool.rows(recordQuery(collection: collection, id: id)).first.map(record(from:))
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
/// fills the gap, or it failed). Batches the pump read from the table (other processes' commits,
/// possibly including local ones) go through the same queue; a batch wholly at or below the
/// published position is dropped, so listeners see each range once. A gap nobody fills does
/// not hold anything back: listeners see `after` above their position and re-read the store.
final class OrderedPublication: Sendable {
  private struct State {
    var next: UInt64 = 0
    var published: Int64
    var claims: [UInt64: Int64] = [:]
    var pending: [CommittedChanges] = []
  }

  private let feed: SyncChangeFeed
  private let state: Mutex<State>

  /// `published`: the log head when the process started (nothing below it is published live).
  init(feed: SyncChangeFeed, published: Int64) {
    self.feed = feed
    state = Mutex(State(published: published))
  }

  /// The highest sequence published (or skipped) so far.
  var published: Int64 { state.withLock { $0.published } }

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
      drain(&s)
    }
  }

  /// A batch the pump read from the table.
  func deliver(_ changes: CommittedChanges) {
    state.withLock { s in
      s.pending.append(changes)
      drain(&s)
    }
  }

  /// Moves the published position without publishing (nobody is listening).
  func skip(to sequence: Int64) {
    state.withLock { s in
      s.published = max(s.published, sequence)
      drain(&s)
    }
  }

  /// Publishes under the lock, so two finishing writers cannot interleave their batches.
  private func drain(_ s: inout State) {
    s.pending.sort { $0.after < $1.after }
    while let first = s.pending.first {
      if first.upTo <= s.published {
        s.pending.removeFirst()
        continue
      }
      let waiting = first.after > s.published && s.claims.values.contains { $0 < first.after }
      if waiting { break }
      s.pending.removeFirst()
      s.published = max(s.published, first.upTo)
      feed.publish(first)
    }
  }
}
