import Foundation
import OneWindowAPI
import OneWindowCore
import Testing
@testable import OneWindowClient

/// Pulled pages, push answers and the rebase of pending edits on top of server state.
@Suite struct ReplicaRebaseTests {
  @Test func pulledPageReplacesServerStateAndRebasesPendingEdits() async throws {
    try await withReplica { replica, _ in
      let id = newID()
      let first = try await replica.applyPull(pullPage([upsert(preferences, id, version: 1, ["a": .int(1), "b": .int(1)])], cursor: "c1"))
      #expect(first.upserts == 1)
      #expect(first.changed == [RecordKey(collection: preferences, id: id)])
      #expect(try await replica.cursor() == "c1")

      let edit = try #require(try await replica.put(collection: preferences, id: id, fields: ["b": .int(2)]))
      #expect(edit.baseVersion == 1)

      // Another device changed `a`; the local edit to `b` stays on top.
      try await replica.applyPull(pullPage([upsert(preferences, id, version: 2, ["a": .int(5), "b": .int(1)])], cursor: "c2"))
      let record = try #require(try await replica.get(collection: preferences, id: id))
      #expect(record.fields == ["a": .int(5), "b": .int(2)])
      #expect(record.version == 2)
      #expect(record.pendingMutations == 1)
      #expect(try await replica.serverState(collection: preferences, id: id)?.fields == ["a": .int(5), "b": .int(1)])
      #expect(try await replica.cursor() == "c2")

      // A later local edit is based on the newest version seen.
      let next = try #require(try await replica.put(collection: preferences, id: id, fields: ["a": .int(6)]))
      #expect(next.baseVersion == 2)
    }
  }

  /// Decision: a pulled delete removes the record from the view even with edits queued.
  /// The server refuses those edits (deletes win), so showing them would resurrect a partial
  /// record; they stay queued so the push reports the rejection.
  @Test func pulledDeleteHidesTheRecordDespitePendingEdits() async throws {
    try await withReplica { replica, _ in
      let id = newID()
      let created = newID()
      try await replica.applyPull(pullPage([upsert(preferences, id, version: 1, ["a": .int(1)])], cursor: "c1"))
      try await replica.put(collection: preferences, id: id, fields: ["b": .int(2)])
      try await replica.put(collection: preferences, id: created, fields: ["x": .bool(true)])

      let page = try await replica.applyPull(pullPage([tombstone(preferences, id, version: 2)], cursor: "c2"))
      #expect(page.deletes == 1)
      #expect(try await replica.get(collection: preferences, id: id) == nil)
      #expect(try await replica.serverState(collection: preferences, id: id) == nil)
      #expect(try await replica.pending().map(\.recordID) == [id, created])
      // A record created locally (never on the server) is unaffected.
      #expect(try await replica.fields(preferences, created) == ["x": .bool(true)])
    }
  }

  @Test func lastMutationIDRetiresProcessedMutations() async throws {
    try await withReplica { replica, _ in
      let id = newID()
      try await replica.put(collection: preferences, id: id, fields: ["a": .int(1)])
      try await replica.put(collection: preferences, id: id, fields: ["b": .int(2)])
      // The server processed mutation 1; the page carries its effect (version 1).
      let page = try await replica.applyPull(
        pullPage([upsert(preferences, id, version: 1, ["a": .int(1)])], cursor: "c1", lastMutationID: 1))
      #expect(page.acknowledged == 1)
      #expect(try await replica.pending().map(\.mutationID) == [2])
      let record = try #require(try await replica.get(collection: preferences, id: id))
      #expect(record.fields == ["a": .int(1), "b": .int(2)])
      #expect(record.version == 1)
      #expect(record.pendingMutations == 1)
      // Retiring never lowers the next id.
      #expect(try await replica.status().nextMutationID == 3)
    }
  }

  @Test func pushAnswerKeepsTheEditVisibleUntilItsStateArrives() async throws {
    try await withReplica { replica, _ in
      let id = newID()
      try await replica.applyPull(pullPage([upsert(favorites, id, version: 1, ["item_code": .string("A"), "note": .string("old")])], cursor: "c1"))
      let edit = try #require(try await replica.put(collection: favorites, id: id, fields: ["note": .string("new")]))
      #expect(try await replica.unsent(limit: 10) == [edit])

      let applied = MutationResult(mutationID: edit.mutationID, outcome: .applied, version: 2)
      try await replica.recordPush(sent: [edit], results: [applied], lastMutationID: 1, serverClock: serverStamp)
      #expect(try await replica.unsent(limit: 10).isEmpty)
      let acknowledged = try await replica.pending()
      #expect(acknowledged.map(\.acknowledgedVersion) == [2])
      // No flicker back to "old" between the push and the pull.
      #expect(try await replica.fields(favorites, id)?["note"] == .string("new"))

      // A page still at version 1 does not retire it; version 2 does.
      try await replica.applyPull(pullPage([upsert(favorites, id, version: 1, ["item_code": .string("A"), "note": .string("old")])], cursor: "c2"))
      #expect(try await replica.pending().count == 1)
      #expect(try await replica.fields(favorites, id)?["note"] == .string("new"))
      let page = try await replica.applyPull(pullPage([upsert(favorites, id, version: 2, ["item_code": .string("A"), "note": .string("new")])], cursor: "c3"))
      #expect(page.acknowledged == 1)
      #expect(try await replica.pending().isEmpty)
      #expect(try await replica.get(collection: favorites, id: id)?.pendingMutations == 0)
    }
  }

  @Test func rejectedMutationLeavesTheQueueAndTheView() async throws {
    try await withReplica { replica, _ in
      let id = newID()
      try await replica.applyPull(pullPage([upsert(favorites, id, version: 3, ["item_code": .string("A")])], cursor: "c1"))
      let edit = try #require(try await replica.put(collection: favorites, id: id, fields: ["note": .string("mine")]))
      let rejected = MutationResult(mutationID: edit.mutationID, outcome: .rejected, version: 0, reason: .deleted, message: "record was deleted")
      try await replica.recordPush(sent: [edit], results: [rejected], lastMutationID: edit.mutationID, serverClock: nil)
      #expect(try await replica.pending().isEmpty)
      #expect(try await replica.fields(favorites, id) == ["item_code": .string("A")])
    }
  }

  @Test func mutationsTheServerNoLongerHasAreSentAgain() async throws {
    try await withReplica { replica, _ in
      let id = newID()
      let m1 = try #require(try await replica.put(collection: preferences, id: id, fields: ["a": .int(1)]))
      let m2 = try #require(try await replica.put(collection: preferences, id: id, fields: ["a": .int(2)]))
      try await replica.recordPush(
        sent: [m1, m2],
        results: [MutationResult(mutationID: 1, outcome: .applied, version: 1), MutationResult(mutationID: 2, outcome: .applied, version: 2)],
        lastMutationID: 2, serverClock: nil)
      #expect(try await replica.unsent(limit: 10).isEmpty)
      // A later answer says only mutation 1 was processed (the server restored a backup).
      try await replica.recordPush(sent: [], results: [], lastMutationID: 1, serverClock: nil)
      #expect(try await replica.unsent(limit: 10).map(\.mutationID) == [2])
      #expect(try await replica.fields(preferences, id) == ["a": .int(2)])
    }
  }

  @Test func pageRequestedAfterAnOldCursorIsNotApplied() async throws {
    try await withReplica { replica, _ in
      let id = newID()
      try await replica.applyPull(pullPage([upsert(preferences, id, version: 2, ["a": .int(2)])], cursor: "c2"))
      let stale = try ServerPage(pullPage([upsert(preferences, id, version: 1, ["a": .int(1)])], cursor: "c1"))
      #expect(try await replica.apply(stale, after: "") == .cursorMoved(current: "c2"))
      #expect(try await replica.fields(preferences, id) == ["a": .int(2)])
      #expect(try await replica.cursor() == "c2")
    }
  }

  @Test func watchEventsApplyLikePagesButNeverDuringAReset() async throws {
    try await withReplica { replica, _ in
      let id = newID()
      try await replica.applyPull(pullPage([], cursor: "c1"))
      let event = try ServerPage(Onewindow_V1_WatchEvent.with {
        $0.changes = [upsert(preferences, id, version: 1, ["a": .int(1)])]
        $0.cursor = "c2"
      })
      #expect(event.source == .watch)
      guard case .applied(let applied) = try await replica.apply(event, after: "c1") else { Issue.record("not applied"); return }
      #expect(applied.upserts == 1)
      #expect(try await replica.cursor() == "c2")

      try await replica.beginReset(.cursorExpired)
      var next = event
      next.cursor = "c3"
      #expect(try await replica.apply(next, after: "") == .resetInProgress)
      #expect(try await replica.cursor() == "")
    }
  }

  @Test func checksumsCoverServerStateNotLocalEdits() async throws {
    try await withReplica { replica, _ in
      let a = newID()
      let b = newID()
      try await replica.applyPull(pullPage([
        upsert(favorites, a, version: 1, ["item_code": .string("A")]),
        upsert(favorites, b, version: 4, ["item_code": .string("B"), "note": .string("n")]),
        upsert(preferences, a, version: 1, ["lang": .string("zh")]),
      ], cursor: "c1"))
      try await replica.put(collection: favorites, id: a, fields: ["note": .string("local only")])
      try await replica.put(collection: favorites, id: newID(), fields: ["item_code": .string("C")])

      var expected = ReplicaChecksum()
      expected.add(id: a, values: ["item_code": .string("A")])
      expected.add(id: b, values: ["item_code": .string("B"), "note": .string("n")])
      let sums = try await replica.checksums(collections: [favorites, "site.inspections"])
      #expect(sums[favorites] == expected)
      #expect(sums[favorites]?.count == 2)
      #expect(sums["site.inspections"] == ReplicaChecksum())
      #expect(sums[preferences] == nil)
      #expect(try await replica.checksums().keys.sorted() == [favorites, preferences])
    }
  }
}
