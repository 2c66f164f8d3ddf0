import Foundation
import GRPCCore
import OneWindowAPI
import OneWindowClientPosix
import OneWindowCore
import OneWindowServer
import Testing
import OneWindowTestSupport

/// A device speaking the raw wire protocol: its client id, HLC and next mutation id.
struct RawDevice {
  let clientID: String
  var clock: HybridLogicalClock
  var nextMutationID: Int64 = 1

  init(_ clientID: String) {
    self.clientID = clientID
    clock = HybridLogicalClock(node: clientID)
  }

  mutating func upsert(_ collection: String, _ id: String, _ fields: [String: SyncValue], base: Int64 = 0, now: Date) -> Onewindow_V1_Mutation {
    let stamp = clock.tick(now: now)
    return mutation(collection, id, base: base) {
      $0.upsert = .with { u in
        for (name, value) in fields {
          u.fields[name] = .with {
            $0.value = Onewindow_V1_Value(value)
            $0.stamp = Onewindow_V1_HlcStamp(stamp)
          }
        }
      }
    }
  }

  mutating func delete(_ collection: String, _ id: String, base: Int64, now: Date) -> Onewindow_V1_Mutation {
    let stamp = clock.tick(now: now)
    return mutation(collection, id, base: base) { $0.delete = .with { $0.stamp = Onewindow_V1_HlcStamp(stamp) } }
  }

  private mutating func mutation(_ collection: String, _ id: String, base: Int64, _ op: (inout Onewindow_V1_Mutation) -> Void) -> Onewindow_V1_Mutation {
    defer { nextMutationID += 1 }
    return .with {
      $0.mutationID = nextMutationID
      $0.collection = collection
      $0.recordID = id
      $0.baseVersion = base
      op(&$0)
    }
  }

  func push(_ env: TestEnvironment, _ token: String, _ mutations: [Onewindow_V1_Mutation]) async throws -> Onewindow_V1_PushResponse {
    try await env.sync.push(.with { $0.clientID = clientID; $0.mutations = mutations }, metadata: bearer(token))
  }
}

extension TestEnvironment {
  /// Pulls every page after `cursor`; returns the changes and the final cursor.
  func pullAll(_ token: String, cursor: String = "", collections: [String] = [], limit: Int32 = 0) async throws -> (changes: [Onewindow_V1_Change], cursor: String) {
    var cursor = cursor
    var changes: [Onewindow_V1_Change] = []
    while true {
      let page = try await sync.pull(
        .with { $0.cursor = cursor; $0.collections = collections; $0.limit = limit }, metadata: bearer(token))
      #expect(page.reset == .unspecified)
      changes += page.changes
      cursor = page.cursor
      if !page.hasMore_p { return (changes, cursor) }
    }
  }
}

func newRecordID() -> String { UUID().uuidString.lowercased() }

@Suite struct SyncProtocolE2ETests {
  @Test(arguments: TestEngine.enabled) func pushIsExactlyOnceWhenAResponseIsLost(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      let token = try await env.citizenSession().accessToken
      var device = RawDevice("phone-aaaa-1")
      let id = newRecordID()
      let batch = [
        device.upsert("preferences", id, ["language": .string("zh-CN")], now: env.clock.now()),
        device.upsert("preferences", id, ["theme": .string("dark")], base: 1, now: env.clock.now()),
      ]
      let first = try await device.push(env, token, batch)
      #expect(first.results.map(\.outcome) == [.applied, .applied])
      #expect(first.lastMutationID == 2)
      // The response was "lost": the device sends the very same push again.
      let again = try await device.push(env, token, batch)
      #expect(again.results.map(\.replayed) == [true, true])
      #expect(again.results.map(\.version) == first.results.map(\.version))
      #expect(again.lastMutationID == 2)
      let (changes, _) = try await env.pullAll(token, collections: ["preferences"])
      #expect(changes.count == 1)
      #expect(changes.first?.version == 2)
      #expect(try await env.count("sync_results") == 2)
    }
  }

  @Test(arguments: TestEngine.enabled) func aGapStopsAndAPoisonMutationDoesNotJamTheQueue(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      let token = try await env.citizenSession().accessToken
      var device = RawDevice("phone-bbbb-1")
      let now = env.clock.now()
      let m1 = device.upsert("favorites", newRecordID(), ["item_code": .string("XK-001")], now: now)
      let m2 = device.upsert("favorites", newRecordID(), ["colour": .string("red")], now: now)  // not a field
      let m3 = device.upsert("favorites", newRecordID(), ["item_code": .string("XK-003")], now: now)
      let m4 = device.upsert("catalog.items", newRecordID(), ["name": .string("forged")], now: now)  // read-only
      _ = try await device.push(env, token, [m1])
      // m2 is skipped: the server reports the gap and applies nothing after it.
      let gap = try await device.push(env, token, [m3])
      #expect(gap.gapExpectedID == 2 && gap.results.isEmpty && gap.lastMutationID == 1)
      let rest = try await device.push(env, token, [m2, m3, m4])
      #expect(rest.results.map(\.outcome) == [.rejected, .applied, .rejected])
      #expect(rest.results[0].reason == .invalid && rest.results[0].message.contains("colour"))
      #expect(rest.results[2].reason == .readOnly)
      #expect(rest.lastMutationID == 4)
      let (changes, _) = try await env.pullAll(token, collections: ["favorites"])
      #expect(Set(changes.compactMap { $0.fields["item_code"]?.stringValue }) == ["XK-001", "XK-003"])
    }
  }

  @Test(arguments: TestEngine.enabled) func aClockHoursAheadIsClampedAndOneBehindCatchesUp(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      let token = try await env.citizenSession().accessToken
      var fast = RawDevice("fast-device")
      var slow = RawDevice("slow-device")
      let now = env.clock.now()
      let id = newRecordID()
      // A device 3 hours ahead writes first; without the clamp it would win every later edit.
      let early = try await fast.push(env, token, [fast.upsert("preferences", id, ["city": .string("杭州")], now: now.addingTimeInterval(3 * 3600))])
      #expect(early.results.first?.clockClamped == true)
      // A device 3 hours behind that has heard the server's clock orders its next edit after it.
      env.clock.advance(by: 1)
      slow.clock.receive(try early.serverClock.domain(), now: now.addingTimeInterval(-3 * 3600))
      let late = try await slow.push(env, token, [slow.upsert("preferences", id, ["city": .string("宁波")], base: 1, now: now.addingTimeInterval(-3 * 3600))])
      #expect(late.results.first?.outcome == .applied)
      #expect(late.results.first?.clockClamped == false)
      let (changes, _) = try await env.pullAll(token, collections: ["preferences"])
      #expect(changes.first?.fields["city"]?.stringValue == "宁波")
      // The stored stamp of the clamped write is near server time, not 3 hours ahead.
      let stamp = try #require(changes.first?.stamps["city"])
      #expect(stamp.node == "slow-device")
    }
  }

  @Test(arguments: TestEngine.enabled) func deletesWinAndOnlyAClientThatSawTheTombstoneRecreates(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      let token = try await env.citizenSession().accessToken
      var a = RawDevice("device-a-01")
      var b = RawDevice("device-b-01")
      let id = newRecordID()
      let now = env.clock.now()
      _ = try await a.push(env, token, [a.upsert("preferences", id, ["note": .string("v1")], now: now)])
      _ = try await a.push(env, token, [a.delete("preferences", id, base: 1, now: now)])
      // B edited offline from version 1: its edit is reported, not applied, and nothing comes back.
      let stale = try await b.push(env, token, [b.upsert("preferences", id, ["note": .string("edited")], base: 1, now: now)])
      #expect(stale.results.first?.outcome == .rejected)
      #expect(stale.results.first?.reason == .deleted)
      var (changes, cursor) = try await env.pullAll(token, collections: ["preferences"])
      #expect(changes.isEmpty)  // a snapshot carries no tombstones
      // Having seen the tombstone (version 2), a client may create the id again.
      let again = try await b.push(env, token, [b.upsert("preferences", id, ["note": .string("fresh")], base: 2, now: now)])
      #expect(again.results.first?.outcome == .applied && again.results.first?.version == 3)
      (changes, cursor) = try await env.pullAll(token, cursor: cursor, collections: ["preferences"])
      #expect(changes.map(\.kind) == [.upsert] && changes.first?.fields["note"]?.stringValue == "fresh")
      _ = cursor
    }
  }

  @Test(arguments: TestEngine.enabled) func pagesFollowTheSequenceAndACursorMissesNothing(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      let token = try await env.citizenSession().accessToken
      var device = RawDevice("pager-device")
      let now = env.clock.now()
      let ids = (0..<25).map { _ in newRecordID() }
      _ = try await device.push(env, token, ids.map { device.upsert("preferences", $0, ["n": .int(1)], now: now) })
      var seen: [String] = []
      var cursor = ""
      var pages = 0
      while true {
        let page = try await env.sync.pull(.with { $0.cursor = cursor; $0.limit = 10; $0.collections = ["preferences"] }, metadata: bearer(token))
        pages += 1
        seen += page.changes.map(\.recordID)
        cursor = page.cursor
        // A write between pages lands after the cursor and is picked up by a later page.
        if pages == 1 { _ = try await device.push(env, token, [device.upsert("preferences", ids[0], ["n": .int(2)], base: 1, now: now)]) }
        if !page.hasMore_p { break }
      }
      #expect(pages == 3)
      #expect(Set(seen) == Set(ids))
      #expect(seen.count == 26)  // ids[0] twice: its first state, then its update
      let (later, _) = try await env.pullAll(token, cursor: cursor, collections: ["preferences"])
      #expect(later.isEmpty)
    }
  }

  /// T8: writers push while a reader pulls page by page with small pages; when the writers stop
  /// and the reader catches up, it holds exactly the server's final state — nothing skipped.
  @Test(arguments: TestEngine.enabled) func writesRacingAPullAreNeverMissed(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      let token = try await env.citizenSession().accessToken
      let writers = 4
      let ids = (0..<40).map { _ in newRecordID() }
      let final = try await withThrowingTaskGroup(of: Void.self) { group in
        for w in 0..<writers {
          group.addTask {
            var device = RawDevice("racer-\(w)-device")
            for round in 0..<15 {
              let batch = (0..<5).map { _ in
                device.upsert("preferences", ids.randomElement() ?? ids[0], ["w\(w)": .int(Int64(round))], base: 0, now: Date())
              }
              _ = try await device.push(env, token, batch)
            }
          }
        }
        // The reader pulls concurrently with tiny pages, keeping the newest version of each record.
        var replica: [String: Int64] = [:]
        var cursor = ""
        var writersDone = false
        while true {
          let page = try await env.sync.pull(.with { $0.cursor = cursor; $0.limit = 3; $0.collections = ["preferences"] }, metadata: bearer(token))
          for change in page.changes { replica[change.recordID] = change.version }
          cursor = page.cursor
          if !page.hasMore_p {
            if writersDone { break }
            if group.isEmpty { writersDone = true }
            else if (try? await group.next()) != nil, group.isEmpty { writersDone = true }
          }
        }
        return replica
      }
      let (snapshot, _) = try await env.pullAll(token, collections: ["preferences"])
      #expect(snapshot.count == final.count)
      for change in snapshot { #expect(final[change.recordID] == change.version, "record \(change.recordID)") }
    }
  }

  @Test(arguments: TestEngine.enabled) func callersOnlySeeTheirAudiences(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      let alice = try await env.citizenSession().accessToken
      let bob = try await env.citizenSession(phone: "13900000002", idNumber: "110105194912310038").accessToken
      var a = RawDevice("alice-phone")
      var b = RawDevice("bob-phone-1")
      let id = newRecordID()
      _ = try await a.push(env, alice, [a.upsert("preferences", id, ["secret": .string("alice's")], now: env.clock.now())])
      let (bobSees, _) = try await env.pullAll(bob, collections: ["preferences"])
      #expect(bobSees.isEmpty)
      // Writing to someone else's record id is refused (and does not jam Bob's queue).
      let attempt = try await b.push(env, bob, [b.upsert("preferences", id, ["secret": .string("bob's")], base: 1, now: env.clock.now())])
      #expect(attempt.results.first?.reason == .permissionDenied)
      #expect(attempt.lastMutationID == 1)
      // A client id is bound to the account that first used it.
      await expectRPCError(.permissionDenied) {
        try await env.sync.push(.with { $0.clientID = "alice-phone"; $0.mutations = [] }, metadata: bearer(bob))
      }
      // A citizen cannot create department records.
      let dept = try await b.push(env, bob, [b.upsert("site.inspections", newRecordID(), ["subject": .string("x")], now: env.clock.now())])
      #expect(dept.results.first?.reason == .permissionDenied)
    }
  }

  @Test(arguments: TestEngine.enabled) func publishedCatalogItemsSyncAsAPublicCollection(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      let admin = try await env.adminSession().accessToken
      _ = try await env.catalog.upsertDepartment(.with { $0.department = .with { $0.code = "gongan"; $0.name = "市公安局" } }, metadata: bearer(admin))
      let spec = itemSpec(code: "110000-XK-0001")
      _ = try await env.catalog.createItem(.with { $0.spec = spec }, metadata: bearer(admin))
      let citizen = try await env.citizenSession().accessToken
      var (changes, cursor) = try await env.pullAll(citizen, collections: ["catalog.items"])
      #expect(changes.isEmpty)  // drafts are not published
      _ = try await env.catalog.publishItem(.with { $0.code = "110000-XK-0001" }, metadata: bearer(admin))
      (changes, cursor) = try await env.pullAll(citizen, cursor: cursor, collections: ["catalog.items"])
      let record = try #require(changes.first)
      #expect(record.recordID == "110000-XK-0001" && record.kind == .upsert)
      let item = try Onewindow_V1_ServiceItem(serializedBytes: Array(try #require(record.fields["item"]?.bytesValue)))
      #expect(item.spec.name == spec.name)
      _ = try await env.catalog.withdrawItem(.with { $0.code = "110000-XK-0001" }, metadata: bearer(admin))
      (changes, _) = try await env.pullAll(citizen, cursor: cursor, collections: ["catalog.items"])
      #expect(changes.map(\.kind) == [.delete])
    }
  }

  @Test(arguments: TestEngine.enabled) func manualCollectionsTurnConcurrentEditsIntoConflictsThatSyncAndResolve(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      let li = try await env.caseworkerSession(username: "li.wei").accessToken
      let zhao = try await env.caseworkerSession(username: "zhao.min").accessToken
      var a = RawDevice("li-tablet-1")
      var b = RawDevice("zhao-tablet")
      let id = newRecordID()
      let now = env.clock.now()
      _ = try await a.push(env, li, [a.upsert("site.inspections", id, ["subject": .string("某餐馆"), "findings": .string("待查")], now: now)])
      // Both edit `findings` from version 1; Zhao also sets `passed`, which does not collide.
      _ = try await a.push(env, li, [a.upsert("site.inspections", id, ["findings": .string("后厨整洁")], base: 1, now: now)])
      let collided = try await b.push(env, zhao, [b.upsert("site.inspections", id, ["findings": .string("油烟超标"), "passed": .bool(false)], base: 1, now: now)])
      let result = try #require(collided.results.first)
      #expect(result.outcome == .conflict && !result.conflictID.isEmpty)
      // The conflict reaches Zhao's devices through the private sync.conflicts collection.
      let (conflictChanges, cursor) = try await env.pullAll(zhao, collections: ["sync.conflicts"])
      #expect(conflictChanges.map(\.recordID) == [result.conflictID])
      let listed = try await env.sync.listConflicts(.init(), metadata: bearer(zhao))
      let conflict = try #require(listed.conflicts.first)
      #expect(conflict.fields.map(\.field) == ["findings"])
      #expect(conflict.fields.first?.serverValue.stringValue == "后厨整洁")
      #expect(conflict.fields.first?.clientValue.stringValue == "油烟超标")
      // Li cannot see or settle Zhao's conflict.
      #expect(try await env.sync.listConflicts(.init(), metadata: bearer(li)).conflicts.isEmpty)
      await expectRPCError(.notFound) {
        try await env.sync.resolveConflict(.with { $0.conflictID = conflict.id; $0.choices = ["findings": .client] }, metadata: bearer(li))
      }
      let resolved = try await env.sync.resolveConflict(
        .with { $0.conflictID = conflict.id; $0.values = ["findings": Onewindow_V1_Value(.string("后厨整洁，油烟超标"))] },
        metadata: bearer(zhao))
      #expect(resolved.record.fields["findings"]?.stringValue == "后厨整洁，油烟超标")
      #expect(resolved.record.fields["passed"]?.boolValue == false)
      let (after, _) = try await env.pullAll(zhao, cursor: cursor, collections: ["sync.conflicts"])
      #expect(after.map(\.kind) == [.delete])
      await expectRPCError(.notFound) {
        try await env.sync.resolveConflict(.with { $0.conflictID = conflict.id; $0.choices = ["findings": .server] }, metadata: bearer(zhao))
      }
    }
  }

  @Test(arguments: TestEngine.enabled) func verifyMatchesAChecksumOfThePulledRecords(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      let token = try await env.citizenSession().accessToken
      var device = RawDevice("verify-device")
      let now = env.clock.now()
      let ids = (0..<5).map { _ in newRecordID() }
      _ = try await device.push(env, token, ids.map { device.upsert("preferences", $0, ["n": .int(7), "s": .string($0)], now: now) })
      _ = try await device.push(env, token, [device.delete("preferences", ids[0], base: 1, now: now)])
      let (changes, _) = try await env.pullAll(token, collections: ["preferences"])
      var local = ReplicaChecksum()
      for change in changes where change.kind == .upsert {
        local.add(id: change.recordID, values: try change.fields.mapValues { try $0.domain() })
      }
      let verify = try await env.sync.verify(.with { $0.collections = ["preferences"] }, metadata: bearer(token))
      #expect(verify.collections.map(\.collection) == ["preferences"])
      #expect(verify.collections.first?.count == 4)
      #expect(verify.collections.first?.checksum == local.hex)
    }
  }

  @Test(arguments: TestEngine.enabled) func aCursorOlderThanTheRetentionHorizonIsReset(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      var token = try await env.citizenSession().accessToken
      var device = RawDevice("old-device")
      let id = newRecordID()
      _ = try await device.push(env, token, [device.upsert("preferences", id, ["x": .int(1)], now: env.clock.now())])
      let (_, cursor) = try await env.pullAll(token)
      _ = try await device.push(env, token, [device.delete("preferences", id, base: 1, now: env.clock.now())])
      env.clock.advance(by: 31 * 24 * 3600)
      let compacted = try await env.store.sync.compact(before: env.clock.now().addingTimeInterval(-30 * 24 * 3600))
      #expect(compacted.tombstones == 1)
      token = try await env.identity.loginWithPassword(.with { $0.login = "13900000001"; $0.password = "Citizen-pass-1" }).accessToken
      let page = try await env.sync.pull(.with { $0.cursor = cursor }, metadata: bearer(token))
      #expect(page.reset == .cursorExpired)
      #expect(page.changes.isEmpty)
      let fresh = token
      let watch = await expectRPCError(.failedPrecondition) {
        try await env.sync.watch(.with { $0.cursor = cursor }, metadata: bearer(fresh)) { response in
          for try await _ in response.messages {}
        }
      }
      #expect(watch?.message.contains("cursor_expired") == true)
    }
  }

  @Test(arguments: TestEngine.enabled) func movingACaseworkerResetsTheirCursorAndRevokesWrites(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      let admin = try await env.adminSession().accessToken
      let worker = try await env.caseworkerSession(username: "qian.li", department: "D-A")
      _ = try await env.store.catalog.upsertDepartment(Department(code: "D-B", name: "乙"), now: Date())
      var device = RawDevice("qian-tablet")
      let id = newRecordID()
      _ = try await device.push(env, worker.accessToken, [device.upsert("site.inspections", id, ["subject": .string("仓库")], now: env.clock.now())])
      let (changes, cursor) = try await env.pullAll(worker.accessToken, collections: ["site.inspections"])
      #expect(changes.count == 1)
      _ = try await env.identity.moveCaseworker(.with { $0.accountID = worker.account.id; $0.departmentCode = "D-B" }, metadata: bearer(admin))
      let page = try await env.sync.pull(.with { $0.cursor = cursor; $0.collections = ["site.inspections"] }, metadata: bearer(worker.accessToken))
      #expect(page.reset == .accessChanged)
      let (snapshot, _) = try await env.pullAll(worker.accessToken, collections: ["site.inspections"])
      #expect(snapshot.isEmpty)
      let late = try await device.push(env, worker.accessToken, [device.upsert("site.inspections", id, ["findings": .string("offline edit")], base: 1, now: env.clock.now())])
      #expect(late.results.first?.reason == .permissionDenied)
      #expect(late.lastMutationID == 2)
    }
  }

  @Test(arguments: TestEngine.enabled) func watchStreamsCommittedChangesLiveWithHeartbeats(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine, configure: { $0.sync.heartbeat = .milliseconds(200) }) { (env) async throws in
      let token = try await env.citizenSession().accessToken
      var writer = RawDevice("writer-device")
      let first = newRecordID()
      _ = try await writer.push(env, token, [writer.upsert("preferences", first, ["k": .int(1)], now: env.clock.now())])
      let (_, cursor) = try await env.pullAll(token, collections: ["preferences"])
      let second = newRecordID()
      let liveWriter = writer
      let received = try await env.sync.watch(.with { $0.cursor = cursor; $0.collections = ["preferences"] }, metadata: bearer(token)) { response in
        var events: [Onewindow_V1_WatchEvent] = []
        var pushed = false
        for try await event in response.messages {
          events.append(event)
          if !pushed {
            pushed = true
            var w = liveWriter
            _ = try await w.push(env, token, [w.upsert("preferences", second, ["k": .int(2)], now: env.clock.now())])
          }
          if events.contains(where: { $0.heartbeat }), events.contains(where: { $0.changes.contains { $0.recordID == second } }) { break }
        }
        return events
      }
      let live = try #require(received.first { !$0.changes.isEmpty })
      #expect(live.changes.map(\.recordID) == [second])
      #expect(received.contains { $0.heartbeat })
      // The cursor of the live event continues the log: nothing more to pull.
      let (rest, _) = try await env.pullAll(token, cursor: live.cursor, collections: ["preferences"])
      #expect(rest.isEmpty)
    }
  }

  @Test(arguments: TestEngine.enabled) func aLargeTransactionIsWatchedInEventsWithinThePageBudget(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      let token = try await env.citizenSession().accessToken
      let (_, cursor) = try await env.pullAll(token, collections: ["preferences"])
      var writer = RawDevice("bulk-writer")
      let big = String(repeating: "字", count: 80_000)  // 240 KB of UTF-8 per record
      let ids = (0..<14).map { _ in newRecordID() }
      let batch = ids.map { writer.upsert("preferences", $0, ["text": .string(big)], now: env.clock.now()) }
      let bulk = writer
      let events = try await env.sync.watch(.with { $0.cursor = cursor; $0.collections = ["preferences"] }, metadata: bearer(token)) { response in
        var events: [Onewindow_V1_WatchEvent] = []
        var received = 0
        var pushed = false
        for try await event in response.messages {
          if !pushed {
            pushed = true
            _ = try await bulk.push(env, token, batch)
            continue
          }
          events.append(event)
          received += event.changes.count
          if received >= ids.count { break }
        }
        return events
      }
      #expect(events.count >= 2)
      let sizes = try events.map { (try $0.serializedBytes() as [UInt8]).count }
      #expect(sizes.allSatisfy { $0 < 4 * 1024 * 1024 })
      #expect(Set(events.flatMap { $0.changes.map(\.recordID) }) == Set(ids))
      // Resuming from the first event's cursor misses nothing of the rest.
      let (rest, _) = try await env.pullAll(token, cursor: events[0].cursor, collections: ["preferences"])
      #expect(Set(rest.map(\.recordID)) == Set(ids).subtracting(events[0].changes.map(\.recordID)))
    }
  }

  @Test(arguments: TestEngine.enabled) func loggingOutEndsTheWatchAtTheNextHeartbeat(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine, configure: { $0.sync.heartbeat = .milliseconds(100) }) { (env) async throws in
      let token = try await env.citizenSession().accessToken
      let (opened, signal) = AsyncStream.makeStream(of: Void.self)
      let watching = Task {
        try await env.sync.watch(.init(), metadata: bearer(token)) { response in
          for try await _ in response.messages { signal.yield() }
        }
      }
      for await _ in opened { break }
      _ = try await env.identity.logout(.init(), metadata: bearer(token))
      await expectRPCError(.unauthenticated) { try await watching.value }
    }
  }

  @Test(arguments: TestEngine.enabled) func aGracefulShutdownEndsOpenWatchStreams(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      let token = try await env.citizenSession().accessToken
      let (opened, signal) = AsyncStream.makeStream(of: Void.self)
      let watching = Task {
        try await env.sync.watch(.init(), metadata: bearer(token)) { response in
          for try await _ in response.messages { signal.yield() }
        }
      }
      for await _ in opened { break }  // the catch-up event arrived: the stream is live
      env.app.beginGracefulShutdown()
      let error = await expectRPCError(.unavailable) { try await watching.value }
      #expect(error?.message.contains("shutting down") == true)
    }
  }

  @Test(arguments: TestEngine.enabled) func malformedRequestsAreRefusedAtTheEdge(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      let token = try await env.citizenSession().accessToken
      await expectRPCError(.unauthenticated) { try await env.sync.pull(.init()) }
      await expectRPCError(.invalidArgument) { try await env.sync.push(.with { $0.clientID = "x" }, metadata: bearer(token)) }
      await expectRPCError(.invalidArgument) { try await env.sync.pull(.with { $0.cursor = "not-a-cursor" }, metadata: bearer(token)) }
      await expectRPCError(.invalidArgument) { try await env.sync.pull(.with { $0.collections = ["nope"] }, metadata: bearer(token)) }
      await expectRPCError(.invalidArgument) { try await env.sync.pull(.with { $0.limit = 5000 }, metadata: bearer(token)) }
      var device = RawDevice("edge-device")
      let m = device.upsert("preferences", newRecordID(), ["a": .int(1)], now: env.clock.now())
      await expectRPCError(.invalidArgument) { try await device.push(env, token, [m, m]) }
      // A stamp from another node, a bad record id and a missing op are per-mutation rejections.
      var forged = device.upsert("preferences", newRecordID(), ["a": .int(1)], now: env.clock.now())
      forged.upsert.fields["a"]?.stamp.node = "someone-else"
      var badID = device.upsert("preferences", "../../etc", ["a": .int(1)], now: env.clock.now())
      badID.mutationID = 2
      forged.mutationID = 1
      let noOp = Onewindow_V1_Mutation.with { $0.mutationID = 3; $0.collection = "preferences"; $0.recordID = newRecordID() }
      var deep = Onewindow_V1_Value(.int(0))
      for _ in 0..<40 { deep = Onewindow_V1_Value.with { [deep] in $0.listValue = .with { $0.values = [deep] } } }
      var tooDeep = device.upsert("preferences", newRecordID(), ["a": .int(1)], now: env.clock.now())
      tooDeep.mutationID = 4
      tooDeep.upsert.fields["a"]?.value = deep
      let response = try await device.push(env, token, [forged, badID, noOp, tooDeep])
      #expect(response.results.map(\.reason) == [.invalid, .invalid, .invalid, .invalid])
      #expect(response.lastMutationID == 4)
      #expect(try await env.count("sync_records") == 0)
    }
  }
}
