import Foundation
import OneWindowCore
import Testing
@testable import OneWindowClient

/// A reset: the snapshot re-confirms what the caller may still see; the rest is purged at its
/// end; pending edits survive; an interrupted reset resumes.
@Suite struct ReplicaResetTests {
  @Test func snapshotEndPurgesUnconfirmedRecordsAndKeepsPendingEdits() async throws {
    let file = try TemporaryReplica()
    defer { file.remove() }
    let (kept, revoked, later, local) = (newID(), newID(), newID(), newID())
    var replica = try file.open()
    try await replica.applyPull(pullPage([
      upsert(favorites, kept, version: 1, ["item_code": .string("K")]),
      upsert(favorites, revoked, version: 1, ["item_code": .string("R")]),
      upsert(favorites, later, version: 1, ["item_code": .string("L")]),
    ], cursor: "c1"))
    try await replica.put(collection: favorites, id: kept, fields: ["note": .string("mine")])
    try await replica.put(collection: favorites, id: local, fields: ["item_code": .string("N")])
    try await replica.put(collection: favorites, id: revoked, fields: ["note": .string("lost")])

    try await replica.beginReset(.accessChanged)
    #expect(try await replica.cursor() == "")
    #expect(try await replica.resetInProgress() == .accessChanged)
    // Until the snapshot completes, the app keeps seeing everything.
    #expect(try await replica.list(collection: favorites).count == 4)

    let first = try await replica.applyPull(pullPage([upsert(favorites, kept, version: 2, ["item_code": .string("K2")])], cursor: "s1", hasMore: true))
    #expect(first.purged == 0)
    #expect(first.completedReset == nil)
    #expect(try await replica.fields(favorites, revoked) != nil)

    // Interrupted here: the reset state is in the file.
    try await replica.close()
    replica = try file.open()
    #expect(try await replica.resetInProgress() == .accessChanged)
    #expect(try await replica.cursor() == "s1")

    let last = try await replica.applyPull(pullPage([upsert(favorites, later, version: 1, ["item_code": .string("L")])], cursor: "s2"))
    #expect(last.purged == 1)
    #expect(last.completedReset == .accessChanged)
    #expect(try await replica.resetInProgress() == nil)
    #expect(try await replica.serverState(collection: favorites, id: revoked) == nil)
    // The purged record's queued edit is hidden (it edits a record the caller no longer sees)
    // but kept, to be pushed and answered.
    #expect(try await replica.get(collection: favorites, id: revoked) == nil)
    #expect(try await replica.fields(favorites, kept) == ["item_code": .string("K2"), "note": .string("mine")])
    #expect(try await replica.fields(favorites, local) == ["item_code": .string("N")])
    #expect(try await replica.list(collection: favorites).map(\.id).sorted() == [kept, later, local].sorted())
    let pending = try await replica.pending()
    #expect(pending.map(\.mutationID) == [1, 2, 3])
    #expect(pending.map(\.baseVersion) == [1, 0, 1])
    #expect(try await replica.cursor() == "s2")
    try await replica.close()
  }

  @Test func resetSendsAcknowledgedEditsAgainUntilTheSnapshotConfirmsThem() async throws {
    try await withReplica { replica, _ in
      let id = newID()
      let m1 = try #require(try await replica.put(collection: preferences, id: id, fields: ["a": .int(1)]))
      let m2 = try #require(try await replica.put(collection: preferences, id: id, fields: ["a": .int(2)]))
      try await replica.recordPush(
        sent: [m1, m2],
        results: [MutationResult(mutationID: 1, outcome: .applied, version: 1), MutationResult(mutationID: 2, outcome: .applied, version: 2)],
        lastMutationID: 2, serverClock: nil)
      try await replica.applyPull(pullPage([], cursor: "c1"))
      #expect(try await replica.unsent(limit: 10).isEmpty)

      try await replica.beginReset(.epochChanged)
      #expect(try await replica.unsent(limit: 10).map(\.mutationID) == [1, 2])
      // The restored server had processed mutation 1 only; its snapshot says so.
      let end = try await replica.applyPull(
        pullPage([upsert(preferences, id, version: 1, ["a": .int(1)])], cursor: "s1", lastMutationID: 1))
      #expect(end.completedReset == .epochChanged)
      #expect(try await replica.unsent(limit: 10).map(\.mutationID) == [2])
      #expect(try await replica.fields(preferences, id) == ["a": .int(2)])
    }
  }

  @Test func resetOfSomeCollectionsLeavesOthersAlone() async throws {
    try await withReplica { replica, _ in
      let (fav, pref) = (newID(), newID())
      try await replica.applyPull(pullPage([
        upsert(favorites, fav, version: 1, ["item_code": .string("F")]),
        upsert(preferences, pref, version: 1, ["lang": .string("zh")]),
      ], cursor: "c1"))
      try await replica.beginReset(.cursorExpired, collections: [favorites])
      let end = try await replica.applyPull(pullPage([], cursor: "s1"))
      #expect(end.purged == 1)
      #expect(try await replica.get(collection: favorites, id: fav) == nil)
      #expect(try await replica.fields(preferences, pref) == ["lang": .string("zh")])
    }
  }
}
