import Foundation
import PropertyBased
import Testing
@testable import OneWindowCore

@Suite struct SyncWriteRuleTests {
  let now = at(1_800_000_000_000)
  let rules = SyncWriteRules()
  let citizen = SyncPrincipal(accountID: "A1", role: .citizen, departmentCode: nil)
  let worker = SyncPrincipal(accountID: "W1", role: .caseworker, departmentCode: "D1")

  func incoming(_ id: Int64, _ collection: String, _ body: IncomingMutation.Body, record: String = "rec-1") -> IncomingMutation {
    IncomingMutation(mutationID: id, collection: collection, recordID: record, body: body)
  }

  func decide(_ m: IncomingMutation, current: StoredRecord? = nil, as principal: SyncPrincipal? = nil, client: String = "dev-0001") -> WriteDecision {
    var clock = HybridLogicalClock(node: "server")
    return rules.decide(m, current: current, principal: principal ?? citizen, clientID: client, clock: &clock, now: now, newID: { "CONFLICT-1" })
  }

  @Test func aNewPrivateRecordBelongsToTheCaller() {
    let d = decide(incoming(1, "preferences", .valid(upsert(["lang": change(.string("zh"), stamp(1, 0, "dev-0001"))], base: 0))))
    #expect(d.result.outcome == .applied && d.result.version == 1)
    #expect(d.writes.map(\.audience) == ["account:A1"])
    #expect(d.writes.map(\.ownerID) == ["A1"])
  }

  @Test func rejectionsNameTheirReasonAndWriteNothing() {
    let ok = upsert(["lang": change(.string("zh"), stamp(1, 0, "dev-0001"))], base: 0)
    let cases: [(IncomingMutation, SyncPrincipal, MutationResult.Reason)] = [
      (incoming(1, "nope", .valid(ok)), citizen, .unknownCollection),
      (incoming(1, "catalog.items", .valid(ok)), citizen, .readOnly),
      (incoming(1, "sync.conflicts", .valid(ok)), citizen, .readOnly),
      (incoming(1, "site.inspections", .valid(upsert(["subject": change(.string("x"), stamp(1, 0, "dev-0001"))], base: 0))), citizen, .permissionDenied),
      (incoming(1, "preferences", .malformed(ValidationError("record_id", "bad"))), citizen, .invalid),
      (incoming(1, "preferences", .valid(upsert(["lang": change(.string("zh"), stamp(1, 0, "other-node"))], base: 0))), citizen, .invalid),
      (incoming(1, "favorites", .valid(upsert(["note": change(.string("no item code"), stamp(1, 0, "dev-0001"))], base: 0))), citizen, .invalid),
      (incoming(1, "preferences", .valid(RecordMutation(operation: .delete(stamp(1, 0, "dev-0001")), baseVersion: 0))), citizen, .notFound),
      (incoming(1, "preferences", .valid(upsert(["blob": change(.bytes(Array(repeating: 1, count: 300_000)), stamp(1, 0, "dev-0001"))], base: 0))), citizen, .tooLarge),
    ]
    for (mutation, principal, reason) in cases {
      let d = decide(mutation, as: principal)
      #expect(d.result.outcome == .rejected && d.result.reason == reason, "\(mutation.collection): \(d.result)")
      #expect(d.writes.isEmpty)
      #expect(d.result.message?.isEmpty == false)
    }
  }

  @Test func othersRecordsAreNotWritable() {
    let theirs = StoredRecord(
      collection: "preferences", id: "rec-1", ownerID: "B2", audience: "account:B2",
      state: RecordState(fields: ["x": FieldState(value: .int(1), stamp: stamp(1, 0, "b"), changedAt: 1)], version: 1))
    let d = decide(incoming(1, "preferences", .valid(upsert(["x": change(.int(2), stamp(2, 0, "dev-0001"))], base: 1))), current: theirs)
    #expect(d.result.reason == .permissionDenied && d.writes.isEmpty)
  }

  @Test func departmentRecordsAreSharedWithinTheDepartment() {
    let created = decide(incoming(1, "site.inspections", .valid(upsert(["subject": change(.string("仓库"), stamp(1, 0, "dev-0001"))], base: 0))), as: worker)
    #expect(created.writes.map(\.audience) == ["department:D1"])
    let colleague = SyncPrincipal(accountID: "W2", role: .caseworker, departmentCode: "D1")
    var record = created.writes[0]
    record.sequence = 1
    let edit = decide(incoming(1, "site.inspections", .valid(upsert(["findings": change(.string("ok"), stamp(2, 0, "dev-0002"))], base: 1))), current: record, as: colleague, client: "dev-0002")
    #expect(edit.result.outcome == .applied && edit.writes.first?.ownerID == "W1")
    let outsider = SyncPrincipal(accountID: "W3", role: .caseworker, departmentCode: "D9")
    let refused = decide(incoming(1, "site.inspections", .valid(upsert(["findings": change(.string("x"), stamp(2, 0, "dev-0003"))], base: 1))), current: record, as: outsider, client: "dev-0003")
    #expect(refused.result.reason == .permissionDenied)
  }

  @Test func manualConflictsBecomeRecordsOfTheCallersConflictCollection() throws {
    let current = StoredRecord(
      collection: "site.inspections", id: "rec-1", ownerID: "W1", audience: "department:D1",
      state: RecordState(fields: [
        "subject": FieldState(value: .string("仓库"), stamp: stamp(1, 0, "a"), changedAt: 1),
        "findings": FieldState(value: .string("server"), stamp: stamp(5, 0, "a"), changedAt: 2),
      ], version: 2))
    let d = decide(
      incoming(9, "site.inspections", .valid(upsert([
        "findings": change(.string("client"), stamp(3, 0, "dev-0001")), "passed": change(.bool(true), stamp(3, 0, "dev-0001")),
      ], base: 1))), current: current, as: worker)
    #expect(d.result.outcome == .conflict && d.result.conflictID == "CONFLICT-1")
    #expect(d.writes.count == 2)
    #expect(d.writes[0].state.values["passed"] == .bool(true))  // the non-conflicting field applied
    #expect(d.writes[0].state.values["findings"] == .string("server"))
    let conflictRecord = d.writes[1]
    #expect(conflictRecord.collection == "sync.conflicts" && conflictRecord.audience == "account:W1")
    let conflict = try #require(SyncConflict(id: conflictRecord.id, values: conflictRecord.state.values))
    #expect(conflict.fields == [FieldConflict(field: "findings", server: .string("server"), client: .string("client"))])
    #expect(conflict.mutationID == 9 && conflict.baseVersion == 1 && conflict.serverVersion == 2)

    // Resolving: choose the client's value; a supplied value must fit the schema.
    let pick = ConflictResolution(choices: ["findings": .client])
    let writes = try pick.writes(for: conflict)
    #expect(writes == ["findings": .string("client")])
    let resolved = try #require(pick.apply(to: d.writes[0].state, writes: writes, stamp: stamp(9, 0, "server")))
    #expect(resolved.values["findings"] == .string("client") && resolved.version == 4)
    #expect(ConflictResolution(choices: ["findings": .server]).apply(to: d.writes[0].state, writes: [:], stamp: stamp(9)) == nil)
    #expect(throws: ValidationError.self) { try ConflictResolution(values: ["findings": .int(3)]).writes(for: conflict) }
    #expect(throws: ValidationError.self) { try ConflictResolution(choices: ["subject": .client]).writes(for: conflict) }
  }

  @Test func stampsTooFarAheadAreClampedAndFlagged() {
    let ahead = Int64(now.timeIntervalSince1970 * 1000) + 3 * 3_600_000
    let d = decide(incoming(1, "preferences", .valid(upsert(["x": change(.int(1), stamp(ahead, 0, "dev-0001"))], base: 0))))
    #expect(d.result.clockClamped)
    #expect(d.writes.first?.state.fields["x"]?.stamp.millis ?? 0 < ahead)
  }

  @Test func resetReasons() {
    let cursor = SyncCursor(epoch: 7, sequence: 100, audiences: 42)
    #expect(ResetReason.check(nil, epoch: 7, sequence: 5, horizon: 50, audiences: 1) == nil)
    #expect(ResetReason.check(cursor, epoch: 7, sequence: 200, horizon: 100, audiences: 42) == nil)
    #expect(ResetReason.check(cursor, epoch: 8, sequence: 200, horizon: 0, audiences: 42) == .epochChanged)
    #expect(ResetReason.check(cursor, epoch: 7, sequence: 99, horizon: 0, audiences: 42) == .epochChanged)  // from the future
    #expect(ResetReason.check(cursor, epoch: 7, sequence: 200, horizon: 0, audiences: 41) == .accessChanged)
    #expect(ResetReason.check(cursor, epoch: 7, sequence: 200, horizon: 101, audiences: 42) == .cursorExpired)
  }

  @Test func audiencesAndFingerprints() {
    #expect(citizen.audiences == ["account:A1", "public"])
    #expect(worker.audiences == ["account:W1", "department:D1", "public"])
    let moved = SyncPrincipal(accountID: "W1", role: .caseworker, departmentCode: "D2")
    #expect(worker.cursorFingerprint(collections: nil) != moved.cursorFingerprint(collections: nil))
    #expect(worker.cursorFingerprint(collections: nil) != worker.cursorFingerprint(collections: ["preferences"]))
    #expect(worker.cursorFingerprint(collections: ["a", "b"]) == worker.cursorFingerprint(collections: ["b", "a"]))
    #expect(throws: ValidationError.self) { try SyncClientID.validate("server") }
    #expect(throws: ValidationError.self) { try SyncClientID.validate("has space 123") }
    #expect(throws: Never.self) { try SyncClientID.validate("phone-01_AB") }
  }
}

@Suite struct RecordCodecTests {
  static let scalars: [SyncValue] = [
    .null, .bool(true), .bool(false), .int(0), .int(.min), .int(.max), .double(-0.0), .double(.infinity), .double(3.25),
    .string(""), .string("办件 ✓"), .bytes([]), .bytes([0, 255, 7]), .timestamp(1_800_000_000_123),
  ]

  @Test func everyValueKindRoundTrips() throws {
    let nested: SyncValue = .map(["list": .list(Self.scalars), "inner": .map(["deep": .list([.map(["k": .int(1)])])])])
    var fields: [String: FieldState] = [:]
    for (i, value) in (Self.scalars + [nested]).enumerated() {
      fields["f\(i)"] = FieldState(value: value, stamp: stamp(Int64(i), UInt16(i), "node-\(i)"), changedAt: Int64(i))
    }
    let state = RecordState(fields: fields, version: 9)
    #expect(try RecordCodec.decode(RecordCodec.encode(state), version: 9, deleted: false) == state)
    let tombstone = RecordState(fields: [:], version: 10, deleted: true, deletedStamp: stamp(5, 1, "x"))
    #expect(try RecordCodec.decode(RecordCodec.encode(tombstone), version: 10, deleted: true) == tombstone)
    #expect(try RecordCodec.decodeValue(nested.canonicalBytes()) == nested)
  }

  @Test func corruptBytesAreAnErrorNeverACrash() async {
    let valid = RecordCodec.encode(RecordState(fields: ["a": FieldState(value: .list([.string("x"), .int(3)]), stamp: stamp(1), changedAt: 1)], version: 1))
    await propertyCheck(input: Gen.int(in: 0...(valid.count - 1)), Gen.int(in: 0...255), Gen.int(in: 0...valid.count)) { index, byte, cut in
      var bytes = valid
      bytes[index] = UInt8(byte)
      // Either decodes (the change was harmless) or throws; truncation always throws.
      _ = try? RecordCodec.decode(bytes, version: 1, deleted: false)
      if cut < valid.count {
        #expect(throws: RecordCodec.DecodingError.self) { try RecordCodec.decode(Array(valid.prefix(cut)), version: 1, deleted: false) }
      }
    }
  }
}
