import Foundation
import PropertyBased
import Testing
@testable import OneWindowCore

func at(_ ms: Int64) -> Date { Date(timeIntervalSince1970: Double(ms) / 1000) }
func stamp(_ ms: Int64, _ counter: UInt16 = 0, _ node: String = "a") -> HLCStamp { HLCStamp(millis: ms, counter: counter, node: node) }
func change(_ value: SyncValue, _ s: HLCStamp) -> FieldChange { FieldChange(value: value, stamp: s) }
func upsert(_ fields: [String: FieldChange], base: Int64) -> RecordMutation { RecordMutation(operation: .upsert(fields), baseVersion: base) }

@Suite struct HybridLogicalClockTests {
  let t = Int64(1_800_000_000_000)

  @Test func tickFollowsWallTimeAndCountsWithinAMillisecond() {
    var clock = HybridLogicalClock(node: "a")
    #expect(clock.tick(now: at(t)) == stamp(t, 0))
    #expect(clock.tick(now: at(t)) == stamp(t, 1))
    #expect(clock.tick(now: at(t + 5)) == stamp(t + 5, 0))
    // The wall clock going backwards never moves the HLC backwards.
    #expect(clock.tick(now: at(t - 1000)) == stamp(t + 5, 1))
  }

  @Test func receiveOrdersAfterTheRemoteStamp() {
    var clock = HybridLogicalClock(node: "a")
    _ = clock.tick(now: at(t))
    // A remote stamp ahead of local wall time: adopt its physical part, bump the counter.
    #expect(clock.receive(stamp(t + 100, 7, "b"), now: at(t + 10)) == stamp(t + 100, 8))
    // Same millisecond on both sides: max counter + 1.
    #expect(clock.receive(stamp(t + 100, 3, "b"), now: at(t + 10)) == stamp(t + 100, 9))
    // Wall time ahead of both: counter resets.
    #expect(clock.receive(stamp(t + 50, 0, "b"), now: at(t + 200)) == stamp(t + 200, 0))
    // Every local stamp after a receive orders after what was received.
    #expect(clock.tick(now: at(t)) > stamp(t + 200, 0, "b"))
  }

  @Test func counterOverflowMovesToTheNextMillisecond() {
    var clock = HybridLogicalClock(node: "a", last: stamp(t, UInt16.max))
    #expect(clock.tick(now: at(t)) == stamp(t + 1, 0))
  }

  @Test func stampsOrderByTimeThenCounterThenNode() {
    #expect(stamp(1, 0, "z") < stamp(2, 0, "a"))
    #expect(stamp(1, 0, "z") < stamp(1, 1, "a"))
    #expect(stamp(1, 1, "a") < stamp(1, 1, "b"))
  }

  @Test func serverClampsStampsTooFarAhead() {
    var server = HybridLogicalClock(node: "server")
    let policy = SkewPolicy(maxSkew: 60)
    // 3 hours ahead: replaced by the server's stamp, origin node kept, flagged.
    let ahead = policy.admit(stamp(t + 3 * 3_600_000, 0, "phone"), clock: &server, now: at(t))
    #expect(ahead.clamped)
    #expect(ahead.stamp.millis == t && ahead.stamp.node == "phone")
    // Within the allowed skew: kept as is, and the server clock moves past it.
    let near = policy.admit(stamp(t + 30_000, 2, "phone"), clock: &server, now: at(t))
    #expect(!near.clamped && near.stamp == stamp(t + 30_000, 2, "phone"))
    #expect(server.tick(now: at(t)) > near.stamp)
    // 3 hours behind: kept (it orders correctly once the device learns the server's clock).
    let behind = policy.admit(stamp(t - 3 * 3_600_000, 0, "old"), clock: &server, now: at(t))
    #expect(!behind.clamped)
  }
}

@Suite struct RecordMergeTests {
  let s1 = stamp(1000, 0, "a"), s2 = stamp(2000, 0, "b"), s3 = stamp(3000, 0, "a")

  func record(_ fields: [String: (SyncValue, HLCStamp, Int64)], version: Int64) -> RecordState {
    RecordState(fields: fields.mapValues { FieldState(value: $0.0, stamp: $0.1, changedAt: $0.2) }, version: version)
  }

  @Test func newRecordsTakeEveryField() {
    let outcome = RecordMerge.apply(upsert(["a": change(.int(1), s1)], base: 0), to: nil, policy: .fieldLWW)
    #expect(outcome == .applied(record(["a": (.int(1), s1, 1)], version: 1)))
  }

  @Test func lwwKeepsBothDevicesEditsToDifferentFields() {
    let base = record(["title": (.string("x"), s1, 1), "note": (.string("y"), s1, 1)], version: 1)
    let first = RecordMerge.apply(upsert(["title": change(.string("A"), s2)], base: 1), to: base, policy: .fieldLWW)
    guard case .applied(let afterFirst) = first else { Issue.record("\(first)"); return }
    let second = RecordMerge.apply(upsert(["note": change(.string("B"), s2)], base: 1), to: afterFirst, policy: .fieldLWW)
    guard case .applied(let afterSecond) = second else { Issue.record("\(second)"); return }
    #expect(afterSecond.values == ["title": .string("A"), "note": .string("B")])
    #expect(afterSecond.version == 3)
  }

  @Test func lwwOlderStampLosesAndIsNamed() {
    let current = record(["title": (.string("new"), s3, 2), "note": (.string("n"), s1, 1)], version: 2)
    let outcome = RecordMerge.apply(
      upsert(["title": change(.string("old"), s2), "note": change(.string("n2"), s2)], base: 1), to: current, policy: .fieldLWW)
    guard case .merged(let state, let lost) = outcome else { Issue.record("\(outcome)"); return }
    #expect(lost == ["title"])
    #expect(state.values == ["title": .string("new"), "note": .string("n2")])
    // Everything lost: nothing to write.
    let none = RecordMerge.apply(upsert(["title": change(.string("old"), s2)], base: 1), to: current, policy: .fieldLWW)
    #expect(none == .merged(current, lost: ["title"]))
    #expect(none.newState(comparedTo: current) == nil)
  }

  @Test func lwwTiesBreakByNode() {
    let current = record(["f": (.int(1), stamp(5, 0, "a"), 1)], version: 1)
    let wins = RecordMerge.apply(upsert(["f": change(.int(2), stamp(5, 0, "b"))], base: 1), to: current, policy: .fieldLWW)
    #expect(wins.newState(comparedTo: current)?.values == ["f": .int(2)])
    // Replaying the identical stamp is not newer: no change (idempotent).
    let same = RecordMerge.apply(upsert(["f": change(.int(9), stamp(5, 0, "a"))], base: 1), to: current, policy: .fieldLWW)
    #expect(same.newState(comparedTo: current) == nil)
  }

  @Test func deletesWinAndOnlyClientsThatSawTheTombstoneRecreate() {
    let live = record(["f": (.int(1), s1, 1)], version: 1)
    let deleted = RecordMerge.apply(RecordMutation(operation: .delete(s1), baseVersion: 1), to: live, policy: .fieldLWW)
    guard case .applied(let tombstone) = deleted else { Issue.record("\(deleted)"); return }
    #expect(tombstone.deleted && tombstone.version == 2 && tombstone.fields.isEmpty)
    // A concurrent edit based on version 1, even with a newer stamp, does not resurrect it.
    #expect(RecordMerge.apply(upsert(["f": change(.int(5), s3)], base: 1), to: tombstone, policy: .fieldLWW) == .rejected(.deleted(version: 2)))
    // A client that has seen version 2 (the tombstone) may re-create the id.
    let recreated = RecordMerge.apply(upsert(["g": change(.int(7), s3)], base: 2), to: tombstone, policy: .fieldLWW)
    #expect(recreated == .applied(record(["g": (.int(7), s3, 3)], version: 3)))
    // Deleting twice is harmless; deleting nothing is reported.
    #expect(RecordMerge.apply(RecordMutation(operation: .delete(s3), baseVersion: 2), to: tombstone, policy: .fieldLWW).newState(comparedTo: tombstone) == nil)
    #expect(RecordMerge.apply(RecordMutation(operation: .delete(s3), baseVersion: 0), to: nil, policy: .fieldLWW) == .rejected(.notFound))
    #expect(RecordMerge.apply(upsert([:], base: 0), to: nil, policy: .fieldLWW) == .rejected(.empty))
    // Once the tombstone is compacted away, an edit of a version the server no longer has is
    // still refused: it must not bring the record back.
    #expect(RecordMerge.apply(upsert(["f": change(.int(5), s3)], base: 1), to: nil, policy: .fieldLWW) == .rejected(.deleted(version: 1)))
  }

  @Test func aDevicesOwnQueuedEditsDoNotConflictWithEachOther() {
    // Two offline edits of one field by one device, both based on version 1: the first applied
    // (version 2, stamped by that device); the second is that device's later edit, not a conflict.
    let afterFirst = record(["f": (.string("first"), stamp(2, 0, "dev"), 2)], version: 2)
    let second = upsert(["f": change(.string("second"), stamp(3, 0, "dev"))], base: 1)
    #expect(RecordMerge.apply(second, to: afterFirst, policy: .manual).newState(comparedTo: afterFirst)?.values == ["f": .string("second")])
    #expect(RecordMerge.apply(second, to: afterFirst, policy: .serverWins).newState(comparedTo: afterFirst)?.values == ["f": .string("second")])
    // From another device it is a conflict under both policies.
    let other = upsert(["f": change(.string("other"), stamp(3, 0, "dev2"))], base: 1)
    if case .conflict = RecordMerge.apply(other, to: afterFirst, policy: .manual) {} else { Issue.record("manual should conflict") }
    if case .conflict = RecordMerge.apply(other, to: afterFirst, policy: .serverWins) {} else { Issue.record("server_wins should conflict") }
  }

  @Test func serverWinsRefusesStaleBases() {
    let current = record(["f": (.int(1), s2, 2)], version: 2)
    #expect(RecordMerge.apply(upsert(["f": change(.int(2), s3)], base: 1), to: current, policy: .serverWins)
      == .conflict(nil, fields: [FieldConflict(field: "f", server: .int(1), client: .int(2))]))
    #expect(RecordMerge.apply(upsert(["f": change(.int(2), s3)], base: 2), to: current, policy: .serverWins).newState(comparedTo: current)?.values == ["f": .int(2)])
  }

  @Test func manualReportsOnlyConcurrentlyChangedFields() {
    // "a" changed at version 3 (after the client's base 2); "b" last changed at version 1.
    let current = record(["a": (.string("server"), s2, 3), "b": (.string("old"), s1, 1)], version: 3)
    let outcome = RecordMerge.apply(
      upsert(["a": change(.string("client"), s3), "b": change(.string("mine"), s3)], base: 2), to: current, policy: .manual)
    guard case .conflict(let state, let fields) = outcome else { Issue.record("\(outcome)"); return }
    #expect(fields == [FieldConflict(field: "a", server: .string("server"), client: .string("client"))])
    #expect(state?.values == ["a": .string("server"), "b": .string("mine")])
    // Same value on both sides is no conflict.
    let agree = RecordMerge.apply(upsert(["a": change(.string("server"), s3)], base: 2), to: current, policy: .manual)
    if case .conflict = agree { Issue.record("equal values should not conflict") }
  }

  @Test func lwwConvergesWhateverTheOrder() async {
    // Changes to a few fields with random stamps, applied in two different orders, give the
    // same values and stamps: the rule is commutative, so replicas converge. Stamps are unique
    // per change (the counter is the change's index), as a real HLC guarantees: one node never
    // issues the same stamp twice.
    await propertyCheck(input: Gen.int(in: 0...3).array(of: 1...12), Gen.int(in: 0...50).array(of: 12), Gen.int(in: 0...2).array(of: 12), Gen.int(in: 0...1000)) { fields, times, nodes, seed in
      let changes = fields.enumerated().map { i, f in
        (["f\(f)": change(.int(Int64(i)), stamp(Int64(times[i % times.count]), UInt16(i), "n\(nodes[i % nodes.count])"))])
      }
      func run(_ order: [[String: FieldChange]]) -> [String: FieldState] {
        var state: RecordState?
        for c in order {
          let outcome = RecordMerge.apply(upsert(c, base: state?.version ?? 0), to: state, policy: .fieldLWW)
          if let next = outcome.newState(comparedTo: state) { state = next }
        }
        return state?.fields ?? [:]
      }
      var rng = SplitMix(seed: UInt64(seed))
      let a = run(changes).mapValues { ($0.value, $0.stamp) }
      let b = run(changes.shuffled(using: &rng)).mapValues { ($0.value, $0.stamp) }
      #expect(a.keys.sorted() == b.keys.sorted())
      for key in a.keys { #expect(a[key]?.0 == b[key]?.0 && a[key]?.1 == b[key]?.1) }
    }
  }
}

/// A tiny seeded generator for shuffles inside property checks.
struct SplitMix: RandomNumberGenerator {
  var state: UInt64
  init(seed: UInt64) { state = seed }
  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}

@Suite struct SyncProtocolRuleTests {
  @Test func mutationIDsFollowReplicacheRules() {
    #expect(MutationOrder.classify(3, lastProcessed: 5) == .alreadyProcessed)
    #expect(MutationOrder.classify(5, lastProcessed: 5) == .alreadyProcessed)
    #expect(MutationOrder.classify(6, lastProcessed: 5) == .next)
    #expect(MutationOrder.classify(8, lastProcessed: 5) == .gap(expected: 6))
    #expect(MutationOrder.classify(1, lastProcessed: 0) == .next)
  }

  @Test func cursorsRoundTripAndRejectForgeries() throws {
    let cursor = SyncCursor(epoch: 0xDEAD_BEEF, sequence: 123_456_789_012, audiences: 0x0102_0304)
    #expect(try SyncCursor.decode(cursor.encoded) == cursor)
    #expect(cursor.encoded.count == 23)
    #expect(try SyncCursor.decode("") == nil)
    #expect(throws: ValidationError.self) { try SyncCursor.decode("garbage!") }
    #expect(throws: ValidationError.self) { try SyncCursor.decode(Base64URL.encode([2] + [UInt8](repeating: 0, count: 16))) }
    #expect(throws: ValidationError.self) { try SyncCursor.decode(Base64URL.encode([1] + [UInt8](repeating: 0, count: 12))) }
    // A negative sequence cannot come from this server.
    #expect(throws: ValidationError.self) { try SyncCursor.decode(Base64URL.encode([1] + [UInt8](repeating: 0xFF, count: 16))) }
  }

  @Test func checksumsIgnoreOrderButNotContent() {
    var a = ReplicaChecksum()
    a.add(id: "r1", values: ["x": .int(1), "y": .string("二")])
    a.add(id: "r2", values: ["z": .list([.bool(true), .null])])
    var b = ReplicaChecksum()
    b.add(id: "r2", values: ["z": .list([.bool(true), .null])])
    b.add(id: "r1", values: ["y": .string("二"), "x": .int(1)])
    #expect(a == b && a.count == 2 && a.hex.count == 16)
    var c = ReplicaChecksum()
    c.add(id: "r1", values: ["x": .int(2), "y": .string("二")])
    c.add(id: "r2", values: ["z": .list([.bool(true), .null])])
    #expect(c != a)
    // Types matter: the string "1" is not the integer 1.
    #expect(ReplicaChecksum.hash(id: "r", values: ["x": .int(1)]) != ReplicaChecksum.hash(id: "r", values: ["x": .string("1")]))
  }

  @Test func recordIDsAndFieldNames() throws {
    try SyncLimits.validateRecordID("0f8fad5b-d9cb-469f-a165-70867728950e")
    try SyncLimits.validateRecordID(ULID.make())
    #expect(throws: ValidationError.self) { try SyncLimits.validateRecordID("../../etc") }
    #expect(throws: ValidationError.self) { try SyncLimits.validateRecordID("") }
    try SyncLimits.validateFieldName("applicant_name")
    #expect(throws: ValidationError.self) { try SyncLimits.validateFieldName("1bad") }
    var deep = SyncValue.null
    for _ in 0..<20 { deep = .list([deep]) }
    #expect(throws: ValidationError.self) { try SyncLimits.validateValue(deep, field: "fields.x") }
  }
}

@Suite struct CollectionRuleTests {
  @Test func collectionsAreDeclaredOnceWithUniqueNames() {
    let names = SyncCollections.all.map(\.name)
    #expect(Set(names).count == names.count)
    #expect(SyncCollections.named("favorites")?.scope == .private)
    #expect(SyncCollections.named("catalog.items")?.clientWritable == false)
    #expect(SyncCollections.named("nope") == nil)
  }

  @Test func schemaChecksNamesTypesRequiredFieldsAndLengths() throws {
    let favorites = SyncCollections.favorites
    try favorites.validate(["item_code": .string("SF-GA-0001"), "note": .string("下周办")], creating: true)
    try favorites.validate(["note": .string("只改备注")], creating: false)
    #expect(throws: ValidationError("fields.item_code", "is required when creating a record")) {
      try favorites.validate(["note": .string("x")], creating: true)
    }
    #expect(throws: ValidationError("fields.item_code", "is required and cannot be null")) {
      try favorites.validate(["item_code": .null], creating: false)
    }
    #expect(throws: ValidationError("fields.item_code", "must be of type string")) {
      try favorites.validate(["item_code": .int(1)], creating: true)
    }
    #expect(throws: ValidationError("fields.colour", "is not a field of collection favorites")) {
      try favorites.validate(["item_code": .string("x"), "colour": .string("red")], creating: true)
    }
    #expect(throws: ValidationError.self) {
      try favorites.validate(["item_code": .string(String(repeating: "码", count: 65))], creating: true)
    }
    // Schemaless collections still check names and nesting.
    try SyncCollections.preferences.validate(["language": .string("zh-CN"), "quiet_hours": .map(["from": .int(22)])], creating: true)
    #expect(throws: ValidationError.self) { try SyncCollections.preferences.validate(["bad name": .null], creating: true) }
  }

  @Test func recordSizeLimit() throws {
    let spec = CollectionSpec(name: "t", scope: .private, maxRecordBytes: 1024)
    try spec.validateSize(["blob": .bytes([UInt8](repeating: 1, count: 900))])
    #expect(throws: ValidationError.self) { try spec.validateSize(["blob": .bytes([UInt8](repeating: 1, count: 1100))]) }
  }
}
