import Foundation
import OneWindowAPI
import OneWindowCore
import Testing
@testable import OneWindowClient

/// The wire form of queued mutations and results, and the view's rebase rules alone.
@Suite struct WireAndViewTests {
  @Test func queuedMutationsGoOnTheWireWithOnlyTheirChangedFields() async throws {
    try await withReplica { replica, _ in
      let id = newID()
      try await replica.applyPull(pullPage([upsert(favorites, id, version: 4, ["item_code": .string("A"), "note": .string("x")])], cursor: "c1"))
      let edit = try #require(try await replica.put(collection: favorites, id: id, fields: ["item_code": .string("A"), "note": .string("y")]))
      let upsert = Onewindow_V1_Mutation(edit)
      #expect(upsert.mutationID == 1)
      #expect(upsert.collection == favorites)
      #expect(upsert.recordID == id)
      #expect(upsert.baseVersion == 4)
      #expect(Array(upsert.upsert.fields.keys) == ["note"])
      #expect(upsert.upsert.fields["note"]?.value.stringValue == "y")
      #expect(upsert.upsert.fields["note"]?.stamp.node == replica.clientID)

      let deletion = Onewindow_V1_Mutation(try await replica.delete(collection: favorites, id: id))
      #expect(deletion.mutationID == 2)
      #expect(deletion.baseVersion == 4)
      guard case .delete(let body)? = deletion.op else { Issue.record("not a delete"); return }
      #expect(body.stamp.node == replica.clientID)
      #expect(body.stamp.millis >= upsert.upsert.fields["note"]?.stamp.millis ?? .max)
    }
  }

  @Test func pushResultsReadFromTheWire() {
    let merged = MutationResult(wire: .with {
      $0.mutationID = 7
      $0.outcome = .merged
      $0.version = 3
      $0.lostFields = ["a"]
      $0.replayed = true
    })
    #expect(merged == MutationResult(mutationID: 7, outcome: .merged, version: 3, lostFields: ["a"], replayed: true))
    let rejected = MutationResult(wire: .with {
      $0.mutationID = 8
      $0.outcome = .rejected
      $0.reason = .tooLarge
      $0.message = "too big"
    })
    #expect(rejected?.reason == .tooLarge)
    #expect(rejected?.message == "too big")
    #expect(MutationResult(wire: .with { $0.outcome = .unspecified }) == nil)

    var report = PushReport()
    let key = PendingMutation(
      mutationID: 8, collection: favorites, recordID: "r", baseVersion: 0, operation: .delete(serverStamp), createdAt: 0)
    if let merged { report.add(merged, for: key) }
    if let rejected { report.add(rejected, for: key) }
    #expect(report.merged.map(\.lostFields) == [["a"]])
    #expect(report.rejected.map(\.reason) == ["too_large"])
    #expect(report.replayed == 1)
  }

  @Test func conflictsReadFromTheWire() throws {
    let conflict = try SyncConflict(wire: .with {
      $0.id = "C1"
      $0.collection = "site.inspections"
      $0.recordID = "R1"
      $0.baseVersion = 2
      $0.serverVersion = 3
      $0.fields = [
        .with { $0.field = "findings"; $0.serverValue = .init(.string("s")); $0.serverHasValue = true; $0.clientValue = .init(.string("c")) },
        .with { $0.field = "passed"; $0.clientValue = .init(.bool(true)) },
      ]
    })
    #expect(conflict.fields == [
      FieldConflict(field: "findings", server: .string("s"), client: .string("c")),
      FieldConflict(field: "passed", server: nil, client: .bool(true)),
    ])
    #expect(conflict.serverVersion == 3)
  }

  func mutation(_ id: Int64, base: Int64, _ operation: PendingMutation.Operation) -> PendingMutation {
    PendingMutation(mutationID: id, collection: preferences, recordID: "r", baseVersion: base, operation: operation, createdAt: 0)
  }

  func set(_ name: String, _ value: Int64) -> PendingMutation.Operation {
    .upsert([name: FieldChange(value: .int(value), stamp: serverStamp)])
  }

  @Test func viewRulesPredictTheServer() {
    let server: [String: SyncValue] = ["a": .int(1), "b": .int(1)]
    // Overlay in mutation-id order, whatever order they come in.
    #expect(RecordView.compute(server: server, pending: [mutation(2, base: 1, set("a", 3)), mutation(1, base: 1, set("a", 2))]) == ["a": .int(3), "b": .int(1)])
    // A local creation.
    #expect(RecordView.compute(server: nil, pending: [mutation(1, base: 0, set("a", 1))]) == ["a": .int(1)])
    // Delete, then an edit: the server rejects the edit (deletes win).
    #expect(RecordView.compute(server: server, pending: [mutation(1, base: 1, .delete(serverStamp)), mutation(2, base: 1, set("a", 9))]) == nil)
    #expect(RecordView.compute(server: nil, pending: [mutation(1, base: 0, set("a", 1)), mutation(2, base: 0, .delete(serverStamp)), mutation(3, base: 0, set("a", 2))]) == nil)
    // An edit of a record the server no longer has.
    #expect(RecordView.compute(server: nil, pending: [mutation(1, base: 5, set("a", 1))]) == nil)
    // No pending edits: the server state as is.
    #expect(RecordView.compute(server: server, pending: []) == server)
  }

  @Test func resetReasonsFromTheWire() {
    #expect(SyncResetReason(wire: .unspecified) == nil)
    #expect(SyncResetReason(wire: .cursorExpired) == .cursorExpired)
    #expect(SyncResetReason(wire: .accessChanged) == .accessChanged)
    #expect(SyncResetReason(wire: .UNRECOGNIZED(9)) == .unknown)
  }
}
