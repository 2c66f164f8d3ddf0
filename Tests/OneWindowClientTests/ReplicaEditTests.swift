import Foundation
import OneWindowCore
import Testing
@testable import OneWindowClient

/// Local edits against the replica alone: no server, no network.
@Suite struct ReplicaEditTests {
  @Test func putGetListDeleteWorkOffline() async throws {
    try await withReplica { replica, _ in
      let id = newID()
      let first = try #require(try await replica.put(collection: favorites, id: id, fields: ["item_code": .string("SF-GA-0001"), "note": .string("渡口")]))
      #expect(first.mutationID == 1)
      #expect(first.baseVersion == 0)
      guard case .upsert(let changes) = first.operation else { Issue.record("not an upsert"); return }
      #expect(Set(changes.keys) == ["item_code", "note"])

      let record = try #require(try await replica.get(collection: favorites, id: id))
      #expect(record.fields == ["item_code": .string("SF-GA-0001"), "note": .string("渡口")])
      #expect(record.version == 0)
      #expect(record.pendingMutations == 1)
      #expect(try await replica.list(collection: favorites).map(\.id) == [id])
      #expect(try await replica.list(collection: preferences).isEmpty)

      // Unchanged values queue nothing; a changed field queues only itself.
      #expect(try await replica.put(collection: favorites, id: id, fields: ["item_code": .string("SF-GA-0001")]) == nil)
      let second = try #require(try await replica.put(collection: favorites, id: id, fields: ["item_code": .string("SF-GA-0001"), "note": .string("改")]))
      guard case .upsert(let secondChanges) = second.operation else { Issue.record("not an upsert"); return }
      #expect(Array(secondChanges.keys) == ["note"])
      #expect(try await replica.fields(favorites, id)?["note"] == .string("改"))

      let deletion = try await replica.delete(collection: favorites, id: id)
      #expect(deletion.mutationID == 3)
      #expect(try await replica.get(collection: favorites, id: id) == nil)
      #expect(try await replica.list(collection: favorites).isEmpty)
      // Each edit stays its own mutation: nothing is collapsed.
      #expect(try await replica.pending().map(\.mutationID) == [1, 2, 3])
    }
  }

  @Test func invalidEditsThrowAndQueueNothing() async throws {
    try await withReplica { replica, _ async throws in
      let id = newID()
      await #expect(throws: SyncClientError.unknownCollection("nope")) {
        try await replica.put(collection: "nope", id: id, fields: ["a": .int(1)])
      }
      await #expect(throws: SyncClientError.readOnly("catalog.items")) {
        try await replica.put(collection: "catalog.items", id: id, fields: ["a": .int(1)])
      }
      await #expect(throws: SyncClientError.readOnly("sync.conflicts")) {
        try await replica.delete(collection: "sync.conflicts", id: id)
      }
      func field(of error: any Error) -> String? {
        guard case .invalid(let v)? = error as? SyncClientError else { return nil }
        return v.field
      }
      let badID = await #expect(throws: SyncClientError.self) {
        try await replica.put(collection: preferences, id: "not-an-id", fields: ["a": .int(1)])
      }
      #expect(badID.flatMap { field(of: $0) } == "record_id")
      let missingRequired = await #expect(throws: SyncClientError.self) {
        try await replica.put(collection: favorites, id: id, fields: ["note": .string("x")])
      }
      #expect(missingRequired.flatMap { field(of: $0) } == "fields.item_code")
      let wrongType = await #expect(throws: SyncClientError.self) {
        try await replica.put(collection: favorites, id: id, fields: ["item_code": .int(7)])
      }
      #expect(wrongType.flatMap { field(of: $0) } == "fields.item_code")
      let unknownField = await #expect(throws: SyncClientError.self) {
        try await replica.put(collection: favorites, id: id, fields: ["item_code": .string("A"), "colour": .string("red")])
      }
      #expect(unknownField.flatMap { field(of: $0) } == "fields.colour")
      let badName = await #expect(throws: SyncClientError.self) {
        try await replica.put(collection: preferences, id: id, fields: ["1st": .bool(true)])
      }
      #expect(badName.flatMap { field(of: $0) } == "fields")
      let empty = await #expect(throws: SyncClientError.self) {
        try await replica.put(collection: preferences, id: id, fields: [:])
      }
      #expect(empty.flatMap { field(of: $0) } == "fields")
      await #expect(throws: SyncClientError.notFound(collection: preferences, id: id)) {
        try await replica.delete(collection: preferences, id: id)
      }
      #expect(try await replica.pending().isEmpty)
      #expect(try await replica.status().nextMutationID == 1)
    }
  }

  @Test func queueAndIdentitySurviveReopening() async throws {
    let file = try TemporaryReplica()
    defer { file.remove() }
    let ids = [newID(), newID()]
    var replica = try file.open()
    let clientID = replica.clientID
    #expect(clientID.count == 26)
    try SyncClientID.validate(clientID)
    try await replica.put(collection: preferences, id: ids[0], fields: ["lang": .string("zh"), "n": .int(1)])
    try await replica.put(collection: preferences, id: ids[1], fields: ["lang": .string("en")])
    try await replica.put(collection: preferences, id: ids[0], fields: ["n": .int(2)])
    let before = try await replica.pending()
    try await replica.close()

    replica = try file.open()
    #expect(replica.clientID == clientID)
    let after = try await replica.pending()
    #expect(after == before)
    #expect(after.map(\.mutationID) == [1, 2, 3])
    #expect(try await replica.fields(preferences, ids[0]) == ["lang": .string("zh"), "n": .int(2)])
    let next = try #require(try await replica.put(collection: preferences, id: ids[1], fields: ["lang": .string("fr")]))
    #expect(next.mutationID == 4)

    // Every stamp is this device's, and they strictly increase across edits and reopening.
    let stamps = (after + [next]).flatMap { mutation -> [HLCStamp] in
      guard case .upsert(let changes) = mutation.operation else { return [] }
      return changes.keys.sorted().compactMap { changes[$0]?.stamp }
    }
    #expect(stamps.count == 5)
    #expect(stamps.allSatisfy { $0.node == clientID })
    #expect(zip(stamps, stamps.dropFirst()).allSatisfy { $0 < $1 })
    try await replica.close()
  }

  @Test func editsOrderAfterTheServerClock() async throws {
    try await withReplica { replica, file in
      // The device's wall clock is an hour behind the server's.
      let ahead = HLCStamp(millis: Int64(file.clock.now().timeIntervalSince1970 * 1000) + 3_600_000, counter: 7, node: "server")
      try await replica.receive(serverClock: ahead)
      let edit = try #require(try await replica.put(collection: preferences, id: newID(), fields: ["a": .int(1)]))
      guard case .upsert(let changes) = edit.operation, let stamp = changes["a"]?.stamp else { Issue.record("no stamp"); return }
      #expect(stamp > ahead)
      #expect(stamp.millis == ahead.millis)
    }
  }

  @Test func deletedRecordsCannotBeRecreatedUnderTheSameID() async throws {
    try await withReplica { replica, _ in
      let id = newID()
      try await replica.put(collection: preferences, id: id, fields: ["a": .int(1)])
      try await replica.delete(collection: preferences, id: id)
      let error = await #expect(throws: SyncClientError.self) {
        try await replica.put(collection: preferences, id: id, fields: ["a": .int(2)])
      }
      guard case .invalid(let v)? = error else { Issue.record("expected invalid, got \(String(describing: error))"); return }
      #expect(v.field == "record_id")
      #expect(try await replica.pending().count == 2)
    }
  }
}
