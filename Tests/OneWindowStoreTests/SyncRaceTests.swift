import Foundation
import Synchronization
import Testing
@testable import OneWindowCore
@testable import OneWindowStore
import OneWindowTestSupport

/// An account row for sync and case tests (sync_clients and cases reference accounts), written
/// through inspection so these tests need no identity store.
private func makeAccount(_ store: any Store, _ id: String) async throws -> SyncPrincipal {
  try await store.inspection.execute(
    "INSERT INTO accounts (id, role, display_name, trust_level, created_at, updated_at) VALUES ($1, 'citizen', $2, 2, 0, 0)",
    .text(id), .text("用户 \(id)"))
  return SyncPrincipal(accountID: id, role: .citizen, departmentCode: nil)
}

/// An upsert of `values` into `collection` by device `clientID`, stamped at `now`.
private func upsert(
  _ mutationID: Int64, clientID: String, collection: String = "preferences", record: String, _ values: [String: SyncValue],
  now: Date
) -> IncomingMutation {
  let stamp = HLCStamp(millis: Int64((now.timeIntervalSince1970 * 1000).rounded(.down)), counter: 0, node: clientID)
  let changes = values.mapValues { FieldChange(value: $0, stamp: stamp) }
  return IncomingMutation(
    mutationID: mutationID, collection: collection, recordID: record,
    body: .valid(RecordMutation(operation: .upsert(changes), baseVersion: 0)))
}

private func push(
  _ store: any Store, _ principal: SyncPrincipal, clientID: String, _ mutations: [IncomingMutation], now: Date = Date()
) async throws -> PushOutcome {
  try await store.sync.push(PushBatch(clientID: clientID, principal: principal, mutations: mutations, rules: SyncWriteRules(), now: now))
}

private func pullAll(_ store: any Store, audiences: [String], after: Int64 = 0, limit: Int = 1000) async throws -> (records: [StoredRecord], position: Int64) {
  var records: [StoredRecord] = []
  var position = after
  while true {
    let page = try await store.sync.pull(PullQuery(
      audiences: audiences, collections: nil, after: position, liveOnly: false, limit: limit, maxBytes: 1 << 20))
    records += page.records
    position = page.position
    if !page.hasMore { return (records, position) }
  }
}

/// Concurrency invariants of the sync and case stores, on every engine.
@Suite struct SyncRaceTests {
  /// 16 concurrent pushes: eight devices of eight accounts with their own records, and eight
  /// copies of one device's push (same mutation ids). Sequences are contiguous without
  /// duplicates, every mutation is applied once, a pull from 0 returns each record once, and the
  /// feed publishes the batches in sequence order.
  @Test(arguments: TestEngine.enabled) func concurrentPushesGetContiguousSequencesAndApplyOnce(engine: TestEngine) async throws {
    try await withTemporaryStore(engine) { store in
      var accounts: [SyncPrincipal] = []
      for i in 0..<8 { accounts.append(try await makeAccount(store, "acct-\(i)")) }
      let principals = accounts
      let shared = try await makeAccount(store, "acct-shared")
      let now = Date()
      let sharedRecords = (1...5).map { _ in ULID.make(at: now) }
      let sharedMutations = sharedRecords.enumerated().map { i, record in
        upsert(Int64(i + 1), clientID: "shared-device", record: record, ["n": .int(Int64(i))], now: now)
      }
      let batches = Mutex<[CommittedChanges]>([])
      let token = store.sync.feed.subscribe { changes in batches.withLock { $0.append(changes) } }
      defer { store.sync.feed.cancel(token) }

      let outcomes = try await withThrowingTaskGroup(of: (Int, PushOutcome).self) { group in
        for task in 0..<16 {
          group.addTask {
            if task < 8 {
              let device = "device-\(task)"
              let mutations = (1...5).map { m in
                upsert(Int64(m), clientID: device, record: ULID.make(at: now), ["task": .int(Int64(task)), "m": .int(Int64(m))], now: now)
              }
              return (task, try await push(store, principals[task], clientID: device, mutations, now: now))
            }
            return (task, try await push(store, shared, clientID: "shared-device", sharedMutations, now: now))
          }
        }
        return try await group.reduce(into: [(Int, PushOutcome)]()) { $0.append($1) }
      }

      let total = 8 * 5 + 5
      #expect(try await store.sync.logState().sequence == Int64(total))
      let sequences = try await store.inspection.rows("SELECT seq FROM sync_records ORDER BY seq", []).compactMap { $0["seq"]?.int }
      #expect(sequences == (1...Int64(total)).map { $0 })
      #expect(try await store.inspection.count("sync_results") == total)
      #expect(try await store.inspection.int("SELECT last_mutation_id FROM sync_clients WHERE client_id = $1", "shared-device") == 5)

      // The shared device's mutations: each applied by exactly one push, replayed to the others.
      for outcome in outcomes where outcome.0 >= 8 {
        #expect(outcome.1.results.map(\.mutationID) == [1, 2, 3, 4, 5])
        #expect(outcome.1.lastMutationID == 5)
      }
      for id in Int64(1)...5 {
        let fresh = outcomes.filter { $0.0 >= 8 }.flatMap(\.1.results).filter { $0.mutationID == id && !$0.replayed }
        #expect(fresh.count == 1, "mutation \(id) applied \(fresh.count) times")
        #expect(fresh.first?.outcome == .applied)
      }

      let audiences = Array(Set((principals + [shared]).flatMap(\.audiences))).sorted()
      let pulled = try await pullAll(store, audiences: audiences, limit: 7)
      #expect(pulled.records.count == total)
      #expect(Set(pulled.records.map(\.id)).count == total)
      #expect(pulled.records.map(\.sequence) == (1...Int64(total)).map { $0 })
      #expect(pulled.position == Int64(total))
      #expect(pulled.records.allSatisfy { $0.state.version == 1 })
      for record in sharedRecords {
        #expect(pulled.records.filter { $0.id == record }.count == 1)
      }

      // The feed: one batch per committed push that wrote, chained in sequence order.
      let published = batches.withLock { $0 }
      var position: Int64 = 0
      for batch in published {
        #expect(batch.after == position, "batch (\(batch.after), \(batch.upTo)] published after position \(position)")
        #expect(batch.records.map(\.sequence) == ((batch.after + 1)...batch.upTo).map { $0 })
        position = batch.upTo
      }
      #expect(position == Int64(total))
    }
  }

  /// 16 concurrent transitions of one case from the same version: exactly one wins, the rest
  /// get `versionConflict`, and only the winner's status row, outbox event and audit entry exist.
  @Test(arguments: TestEngine.enabled) func concurrentTransitionsOfOneCaseFromOneVersionHaveOneWinner(engine: TestEngine) async throws {
    try await withTemporaryStore(engine) { store in
      let applicant = try await makeAccount(store, "applicant-1")
      let now = Date()
      let draftID = ULID.make(at: now)
      let draft = try await push(
        store, applicant, clientID: "applicant-phone",
        [upsert(1, clientID: "applicant-phone", collection: SyncCollections.caseDrafts.name, record: draftID, ["item_code": .string("ITEM-1")], now: now)],
        now: now)
      #expect(draft.results.first?.outcome == .applied)
      let calendar = WorkingCalendar()
      let submitted = try await store.cases.submit(
        CaseSubmission(
          record: caseRecord(applicant: applicant.accountID, draftID: draftID, now: now), idempotencyKey: "key-1", draftVersion: 1,
          audit: AuditEvent(
            actorID: applicant.accountID, actorRole: "citizen", actorDepartment: nil, action: "case.submit", targetType: "case",
            targetID: "case-1")),
        now: now, calendar: calendar)
      #expect(try await store.cases.draft(id: draftID, applicantID: applicant.accountID) == nil)

      let later = now.addingTimeInterval(60)
      var accepted = submitted
      accepted.state = .accepted
      accepted.version = submitted.version + 1
      accepted.history.append(CaseStatusEntry(state: .accepted, event: .accept, at: later, actor: .system, step: 0))
      accepted.updatedAt = later
      let transition = accepted
      let effects = CaseEffects(
        audit: AuditEvent(
          actorID: nil, actorRole: "system", actorDepartment: nil, action: "case.accept", targetType: "case", targetID: submitted.id),
        today: CivilDate(later), calendar: calendar)
      let results = await withTaskGroup(of: Result<CaseRecord, any Error>.self) { group in
        for _ in 0..<16 {
          group.addTask {
            do {
              return .success(try await store.cases.update(transition, expectedVersion: submitted.version, effects: effects, now: later))
            } catch {
              return .failure(error)
            }
          }
        }
        return await group.reduce(into: [Result<CaseRecord, any Error>]()) { $0.append($1) }
      }
      let winners = results.filter { if case .success = $0 { true } else { false } }
      #expect(winners.count == 1)
      for case .failure(let error) in results {
        #expect(error as? StoreError == .versionConflict(current: accepted.version), "\(error)")
      }
      let stored = try await store.cases.caseRecord(id: submitted.id)
      #expect(stored?.version == accepted.version)
      #expect(stored?.history.map(\.state) == [.pendingAcceptance, .accepted])
      #expect(try await store.inspection.count("case_status_history", where: "case_id = $1", .text(submitted.id)) == 2)
      #expect(try await store.inspection.count("event_outbox", where: "aggregate_id = $1", .text(submitted.id)) == 2)
      #expect(try await store.inspection.count("audit_log") == 2)
      // The applicant's `cases` record: written at submit and once more by the winner.
      let record = try await store.sync.liveRecords(collection: SyncCollections.cases.name, audience: AudienceLabel.account(applicant.accountID))
      #expect(record.map(\.state.version) == [2])
      #expect(record.first?.state.values["state"] == .string(CaseState.accepted.rawValue))
    }
  }

  func caseRecord(applicant: String, draftID: String, now: Date) -> CaseRecord {
    let item = ServiceItemSpec(
      code: "ITEM-1", name: "居民身份证换领", departmentCode: "gongan", category: .administrativeConfirmation, target: .citizen,
      summary: "办理说明", acceptanceConditions: ["本市户籍居民"],
      processSteps: [ProcessStep(name: "受理", departmentCode: "gongan", description: "")],
      statutoryLimitDays: 60, promisedLimitDays: 20, onlineDepth: 3, onsiteVisits: 1)
    let actor = CaseActor(kind: .applicant, accountID: applicant, role: .citizen, departmentCode: nil)
    return CaseRecord(
      id: "case-1", trackingCode: "TRACK-0001", applicantID: applicant, applicantRole: .citizen, applicantName: "张三",
      phoneCheck: CaseRecord.phoneCheck(caseID: "case-1", last4: "0001"), draftID: draftID, item: item, itemVersion: 1,
      form: ["name": "张三"], materials: [], state: .pendingAcceptance, version: 1, currentStep: 0,
      clock: CaseClock(receivedOn: CivilDate(now), promisedDays: 20),
      history: [CaseStatusEntry(state: .pendingAcceptance, event: .submit, at: now, actor: actor, step: 0)],
      submittedAt: now, updatedAt: now)
  }
}

/// The sync store's contract, called directly (the E2E tests reach it through SyncService).
@Suite struct SyncStoreTests {
  /// Within one batch: a record written by two mutations ends in the second's state at the
  /// second's sequence, and a repeated mutation id is answered as a replay of its first result
  /// (the PostgreSQL store buffers a push's writes and results and writes them at the end).
  @Test(arguments: TestEngine.enabled) func oneBatchSeesItsOwnWritesAndRepeats(engine: TestEngine) async throws {
    try await withTemporaryStore(engine) { store in
      let alice = try await makeAccount(store, "alice")
      let now = Date()
      let id = ULID.make(at: now)
      let first = upsert(1, clientID: "alice-phone", record: id, ["n": .int(1)], now: now)
      let second = upsert(2, clientID: "alice-phone", record: id, ["n": .int(2)], now: now.addingTimeInterval(1))
      let outcome = try await push(store, alice, clientID: "alice-phone", [first, second, second], now: now)
      #expect(outcome.results.map(\.outcome) == [.applied, .applied, .applied])
      #expect(outcome.results.map(\.replayed) == [false, false, true])
      #expect(outcome.results[2].version == outcome.results[1].version && outcome.results[1].version == 2)
      #expect(outcome.lastMutationID == 2)
      let page = try await store.sync.pull(PullQuery(
        audiences: alice.audiences, collections: ["preferences"], after: 0, liveOnly: false, limit: 10, maxBytes: 1 << 20,
        clientID: "alice-phone", accountID: "alice"))
      #expect(page.records.map(\.id) == [id] && page.records.first?.state.values == ["n": .int(2)])
      #expect(page.records.first?.sequence == 2 && page.position == 2)
    }
  }

  @Test(arguments: TestEngine.enabled) func pushPullAndReplay(engine: TestEngine) async throws {
    try await withTemporaryStore(engine) { store in
      let alice = try await makeAccount(store, "alice")
      let now = Date()
      let start = try await store.sync.logState()
      #expect(start.sequence == 0 && start.horizon == 0 && start.epoch != 0)
      let ids = (0..<3).map { _ in ULID.make(at: now) }
      let mutations = ids.enumerated().map { i, id in upsert(Int64(i + 1), clientID: "alice-phone", record: id, ["i": .int(Int64(i))], now: now) }
      let first = try await push(store, alice, clientID: "alice-phone", mutations, now: now)
      #expect(first.results.map(\.outcome) == [.applied, .applied, .applied])
      #expect(first.lastMutationID == 3 && first.gapExpected == nil)
      #expect(try await store.sync.logState().sequence == 3)

      // A replay answers from the stored results and writes nothing.
      let replay = try await push(store, alice, clientID: "alice-phone", mutations, now: now)
      #expect(replay.results.allSatisfy { $0.replayed })
      #expect(replay.results.map(\.outcome) == first.results.map(\.outcome))
      #expect(try await store.sync.logState().sequence == 3)

      // A gap stops before the skipped id.
      let gap = try await push(store, alice, clientID: "alice-phone", [upsert(5, clientID: "alice-phone", record: ULID.make(), ["x": .int(1)], now: now)], now: now)
      #expect(gap.results.isEmpty && gap.gapExpected == 4 && gap.lastMutationID == 3)

      // Another account may not use this device id.
      let bob = try await makeAccount(store, "bob")
      await #expect(throws: StoreError.self) { try await push(store, bob, clientID: "alice-phone", [], now: now) }

      let page = try await store.sync.pull(PullQuery(
        audiences: alice.audiences, collections: ["preferences"], after: 0, liveOnly: true, limit: 2, maxBytes: 1 << 20,
        clientID: "alice-phone", accountID: "alice"))
      #expect(page.records.map(\.id) == Array(ids.prefix(2)) && page.hasMore && page.position == 2)
      #expect(page.lastMutationID == nil)
      let rest = try await store.sync.pull(PullQuery(
        audiences: alice.audiences, collections: ["preferences"], after: page.position, liveOnly: false, limit: 2, maxBytes: 1 << 20,
        clientID: "alice-phone", accountID: "alice"))
      #expect(rest.records.map(\.id) == [ids[2]] && !rest.hasMore && rest.position == 3 && rest.lastMutationID == 3)
      #expect(rest.records.first?.state.values == ["i": .int(2)])
      // Bob sees none of Alice's records; asking for Alice's device reports nothing of hers.
      let bobs = try await store.sync.pull(PullQuery(
        audiences: bob.audiences, collections: nil, after: 0, liveOnly: false, limit: 10, maxBytes: 1 << 20,
        clientID: "alice-phone", accountID: "bob"))
      #expect(bobs.records.isEmpty && bobs.position == 3 && bobs.lastMutationID == 0)

      // Checksums match the live records.
      var expected = ReplicaChecksum()
      for (i, id) in ids.enumerated() { expected.add(id: id, values: ["i": .int(Int64(i))]) }
      let sums = try await store.sync.checksums(audiences: alice.audiences, collections: ["preferences"])
      #expect(sums.sums["preferences"] == expected && sums.log.sequence == 3)

      // The server clock reads at least every stamp it stored.
      let future = now.addingTimeInterval(30)
      _ = try await push(store, alice, clientID: "alice-phone", [upsert(4, clientID: "alice-phone", record: ids[0], ["i": .int(9)], now: future)], now: now)
      let reading = store.sync.clockReading(now: now)
      #expect(reading.millis >= Int64((future.timeIntervalSince1970 * 1000).rounded(.down)))
    }
  }

  @Test(arguments: TestEngine.enabled) func publishCompactAndHorizon(engine: TestEngine) async throws {
    try await withTemporaryStore(engine) { store in
      let t = Date(timeIntervalSince1970: 1_800_000_000)
      let name = SyncCollections.catalogItems.name
      #expect(try await store.sync.publish(collection: name, records: ["A": ["n": .string("a")], "B": ["n": .string("b")]], now: t) == 2)
      #expect(try await store.sync.publish(collection: name, records: ["A": ["n": .string("a")], "B": ["n": .string("b")]], now: t) == 0)
      #expect(try await store.sync.publish(collection: name, records: ["A": ["n": .string("a2")]], now: t.addingTimeInterval(1)) == 2)
      let live = try await store.sync.liveRecords(collection: name, audience: AudienceLabel.everyone)
      #expect(live.map(\.id) == ["A"] && live.first?.state.version == 2)
      await #expect(throws: StoreError.self) { try await store.sync.publish(collection: "preferences", records: [:], now: t) }
      #expect(try await store.sync.logState().sequence == 4)

      // Tombstones older than the cutoff go, raising the horizon to the highest removed sequence.
      let compacted = try await store.sync.compact(before: t.addingTimeInterval(10))
      #expect(compacted.tombstones == 1)
      let log = try await store.sync.logState()
      #expect(log.horizon == 4 && log.sequence == 4)
      let all = try await pullAll(store, audiences: [AudienceLabel.everyone])
      #expect(all.records.map(\.id) == ["A"] && all.position == 4)
    }
  }
}

/// The case store's reads and queue, and the rules its writes keep (idempotent submit, one
/// case per draft, append-only history), on every engine.
@Suite struct CaseStoreTests {
  @Test(arguments: TestEngine.enabled) func submitReadAndQueue(engine: TestEngine) async throws {
    try await withTemporaryStore(engine) { store in
      let applicant = try await makeAccount(store, "applicant-2")
      let calendar = WorkingCalendar()
      let t = Date(timeIntervalSince1970: 1_800_000_000)
      var submitted: [CaseRecord] = []
      for k in 0..<3 {
        let at = t.addingTimeInterval(Double(k) * 7 * 86_400)
        let draftID = "draft-\(k)"
        _ = try await push(
          store, applicant, clientID: "applicant-tablet",
          [upsert(Int64(k + 1), clientID: "applicant-tablet", collection: SyncCollections.caseDrafts.name, record: draftID,
                  ["item_code": .string("ITEM-1")], now: at)],
          now: at)
        #expect(try await store.cases.draft(id: draftID, applicantID: applicant.accountID)?.version == 1)
        #expect(try await store.cases.draft(id: draftID, applicantID: "someone-else") == nil)
        var record = SyncRaceTests().caseRecord(applicant: applicant.accountID, draftID: draftID, now: at)
        record.id = "case-\(k)"
        record.trackingCode = "TRACK-\(k)"
        submitted.append(try await store.cases.submit(
          CaseSubmission(
            record: record, idempotencyKey: "key-\(k)", draftVersion: 1,
            audit: AuditEvent(actorID: applicant.accountID, actorRole: "citizen", actorDepartment: nil, action: "case.submit",
                              targetType: "case", targetID: record.id)),
          now: at, calendar: calendar))
      }
      let first = submitted[0]
      // A replay of the idempotency key returns the stored case; another key for the same draft is refused.
      let replay = try await store.cases.submit(
        CaseSubmission(record: first, idempotencyKey: "key-0", draftVersion: 1,
                       audit: AuditEvent(actorID: nil, actorRole: "system", actorDepartment: nil, action: "x", targetType: "case", targetID: "")),
        now: t, calendar: calendar)
      #expect(replay == first)
      await #expect(throws: StoreError.self) {
        var other = first
        other.id = "case-x"
        other.trackingCode = "TRACK-x"
        _ = try await store.cases.submit(
          CaseSubmission(record: other, idempotencyKey: "key-other", draftVersion: 1,
                         audit: AuditEvent(actorID: nil, actorRole: "system", actorDepartment: nil, action: "x", targetType: "case", targetID: "")),
          now: t, calendar: calendar)
      }
      #expect(try await store.cases.caseRecord(id: first.id) == first)
      #expect(try await store.cases.caseRecord(trackingCode: "TRACK-0") == first)
      #expect(try await store.cases.caseRecord(applicantID: applicant.accountID, idempotencyKey: "key-0") == first)
      #expect(try await store.cases.caseRecord(applicantID: applicant.accountID, draftID: "draft-0") == first)
      #expect(try await store.cases.caseRecord(id: "nope") == nil)
      let check = try await store.cases.trackingCheck(trackingCode: "TRACK-0")
      #expect(check?.caseID == first.id && check?.phoneCheck == first.phoneCheck)
      #expect(try await store.cases.trackingCheck(trackingCode: "TRACK-9") == nil)

      let newest = try await store.cases.cases(applicantID: applicant.accountID, limit: 2, after: nil)
      #expect(newest.map(\.id) == ["case-2", "case-1"])
      let older = try await store.cases.cases(applicantID: applicant.accountID, limit: 2, after: (newest[1].submittedAt, newest[1].id))
      #expect(older.map(\.id) == ["case-0"])

      let dues = submitted.compactMap { $0.clock.nextDeadline(in: $0.state, asOf: CivilDate(t), calendar) }
      #expect(dues.count == 3 && dues[0] < dues[1] && dues[1] < dues[2])
      let all = try await store.cases.queue(department: "gongan", today: dues[1], dueSoonBy: dues[1], filter: .all, limit: 10, offset: 0)
      #expect(all.cases.map(\.id) == ["case-0", "case-1", "case-2"])
      #expect(all.cases.allSatisfy { $0.history.isEmpty })
      let overdueIDs = zip(submitted, dues).filter { $0.1 < dues[1] }.map(\.0.id)
      #expect(all.overdue == overdueIDs.count)
      #expect(all.dueSoon == dues.filter { $0 <= dues[1] }.count)
      let paged = try await store.cases.queue(department: "gongan", today: dues[1], dueSoonBy: dues[1], filter: .all, limit: 1, offset: 1)
      #expect(paged.cases.map(\.id) == ["case-1"])
      let overdue = try await store.cases.queue(department: "gongan", today: dues[1], dueSoonBy: dues[1], filter: .overdue, limit: 10, offset: 0)
      #expect(overdue.cases.map(\.id) == overdueIDs)
      let soon = try await store.cases.queue(department: "gongan", today: dues[1], dueSoonBy: dues[1], filter: .dueSoon, limit: 10, offset: 0)
      #expect(soon.cases.count == all.dueSoon)
      #expect(try await store.cases.queue(department: "other", today: dues[1], dueSoonBy: dues[1], filter: .all, limit: 10, offset: 0).cases.isEmpty)

      let pending = try await store.cases.pendingAcceptance(receivedOnOrBefore: CivilDate(t.addingTimeInterval(7 * 86_400)))
      #expect(pending.map(\.id) == ["case-0", "case-1"])
      #expect(pending.first?.history.count == 1)
      let due = try await store.cases.casesDue(from: dues[0], until: dues[2], limit: 2)
      #expect(due.map(\.id) == ["case-0", "case-1"] && due.allSatisfy { $0.history.isEmpty })

      // The status history is append-only on every engine.
      await #expect(throws: (any Error).self) {
        try await store.inspection.execute("UPDATE case_status_history SET body = 'x' WHERE case_id = $1", .text(first.id))
      }
      await #expect(throws: (any Error).self) {
        try await store.inspection.execute("DELETE FROM case_status_history WHERE case_id = $1", .text(first.id))
      }
      #expect(try await store.inspection.count("event_outbox") == 3)
      #expect(try await store.inspection.count("audit_log") == 3)
    }
  }
}

/// After a restore from a backup (`startNewEpoch`), on every engine.
@Suite struct RestoreEpochTests {
  @Test(arguments: TestEngine.enabled) func aNewEpochLetsClientsTheRestoreSetBackContinue(engine: TestEngine) async throws {
    try await withTemporaryStore(engine) { store in
      let a = try await makeAccount(store, "acct-a")
      let b = try await makeAccount(store, "acct-b")
      let before = try await store.sync.logState().epoch
      // Device A had 1…3 processed; then (in the lost future) 4…6 were acknowledged and dropped.
      for id in Int64(1)...3 {
        #expect(try await push(store, a, clientID: "dev-a", [upsert(id, clientID: "dev-a", record: ULID.make(at: Date()), ["n": .int(id)], now: Date())]).lastMutationID == id)
      }
      // Without a restore a gap stops, for a known and for an unknown client alike.
      let stopped = try await push(store, a, clientID: "dev-a", [upsert(7, clientID: "dev-a", record: ULID.make(at: Date()), [:], now: Date())])
      #expect(stopped.gapExpected == 4 && stopped.results.isEmpty && stopped.lostFrom == nil)
      let unknown = try await push(store, b, clientID: "dev-b", [upsert(5, clientID: "dev-b", record: ULID.make(at: Date()), [:], now: Date())])
      #expect(unknown.gapExpected == 1 && unknown.results.isEmpty)

      let (old, new) = try await store.sync.startNewEpoch(now: Date())
      #expect(old == before && new != before && new != 0)
      #expect(try await store.sync.logState().epoch == new)

      // A's next unsent edit is 7: applied, and 4…6 reported lost.
      let record = ULID.make(at: Date())
      let resumed = try await push(store, a, clientID: "dev-a", [
        upsert(7, clientID: "dev-a", record: record, ["n": .int(7)], now: Date()),
        upsert(8, clientID: "dev-a", record: ULID.make(at: Date()), ["n": .int(8)], now: Date()),
      ])
      #expect(resumed.results.map(\.outcome) == [.applied, .applied] && resumed.lostFrom == 4 && resumed.lastMutationID == 8)
      // Once it pushed in the new epoch, the strict order holds again.
      let gapAgain = try await push(store, a, clientID: "dev-a", [upsert(10, clientID: "dev-a", record: ULID.make(at: Date()), [:], now: Date())])
      #expect(gapAgain.gapExpected == 9 && gapAgain.results.isEmpty && gapAgain.lostFrom == nil)
      // A replay of 7 is answered from its stored result.
      let replay = try await push(store, a, clientID: "dev-a", [upsert(7, clientID: "dev-a", record: record, ["n": .int(7)], now: Date())])
      #expect(replay.results.first?.replayed == true)
      // A client the restored database never saw continues from its first unsent id.
      let b5 = try await push(store, b, clientID: "dev-b", [upsert(5, clientID: "dev-b", record: ULID.make(at: Date()), ["n": .int(5)], now: Date())])
      #expect(b5.results.map(\.outcome) == [.applied] && b5.lostFrom == 1)
      // A client that starts at 1 loses nothing.
      let c = try await makeAccount(store, "acct-c")
      let fresh = try await push(store, c, clientID: "dev-c", [upsert(1, clientID: "dev-c", record: ULID.make(at: Date()), ["n": .int(1)], now: Date())])
      #expect(fresh.results.map(\.outcome) == [.applied] && fresh.lostFrom == nil)
    }
  }
}
