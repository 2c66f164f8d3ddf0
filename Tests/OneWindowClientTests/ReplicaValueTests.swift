import Foundation
import GRDB
import OneWindowAPI
import OneWindowCore
import Testing
@testable import OneWindowClient

/// Values survive the replica exactly, and damage is reported rather than trusted.
@Suite struct ReplicaValueTests {
  /// One field of every kind, with the edge cases a lossy encoding would get wrong.
  static let everyKind: [String: SyncValue] = [
    "null": .null,
    "yes": .bool(true),
    "no": .bool(false),
    "int_min": .int(.min),
    "int_max": .int(.max),
    "int_one": .int(1),
    "double_one": .double(1.0),
    "negative_zero": .double(-0.0),
    "pi": .double(Double.pi),
    "tiny": .double(.leastNonzeroMagnitude),
    "nan": .double(.nan),
    "infinity": .double(-.infinity),
    "text": .string("办事指南 \"quoted\" \\ \n\t\u{0}\u{1F600}"),
    "empty_text": .string(""),
    "bytes": .bytes([0, 1, 127, 128, 255]),
    "empty_bytes": .bytes([]),
    "stamp": .timestamp(1_800_000_000_123),
    "stamp_not_int": .timestamp(1),
    "list": .list([.int(1), .double(1), .string("1"), .timestamp(1), .null, .list([]), .map([:])]),
    "map": .map(["$bytes": .string("not a tag"), "nested": .map(["deeper": .list([.bytes([9])])]), "": .int(0)]),
  ]

  /// Equality by canonical bytes: exact to the bit (NaN equals itself, -0.0 differs from 0.0).
  func same(_ a: [String: SyncValue]?, _ b: [String: SyncValue]) -> Bool {
    a.map { SyncValue.map($0).canonicalBytes() } == SyncValue.map(b).canonicalBytes()
  }

  @Test func everyValueKindRoundTripsThroughLocalEdits() async throws {
    let file = try TemporaryReplica()
    defer { file.remove() }
    let id = newID()
    var replica = try file.open()
    try await replica.put(collection: preferences, id: id, fields: Self.everyKind)
    #expect(same(try await replica.fields(preferences, id), Self.everyKind))
    try await replica.close()

    replica = try file.open()
    #expect(same(try await replica.fields(preferences, id), Self.everyKind))
    let queued = try #require(try await replica.pending().first)
    guard case .upsert(let changes) = queued.operation else { Issue.record("not an upsert"); return }
    #expect(same(changes.mapValues(\.value), Self.everyKind))
    // And onto the wire.
    let wire = Onewindow_V1_Mutation(queued)
    #expect(same(try wire.upsert.fields.mapValues { try $0.value.domain() }, Self.everyKind))
    try await replica.close()
  }

  @Test func everyValueKindRoundTripsThroughServerState() async throws {
    try await withReplica { replica, _ in
      let id = newID()
      try await replica.applyPull(pullPage([upsert(preferences, id, version: 9, Self.everyKind)], cursor: "c1"))
      #expect(same(try await replica.serverState(collection: preferences, id: id)?.fields, Self.everyKind))
      #expect(same(try await replica.fields(preferences, id), Self.everyKind))
      var expected = ReplicaChecksum()
      expected.add(id: id, values: Self.everyKind)
      #expect(try await replica.checksums(collections: [preferences])[preferences] == expected)
    }
  }

  @Test func jsonTextRoundTripsEveryKind() throws {
    for (name, value) in Self.everyKind {
      let text = value.jsonText
      let back = try SyncValue(jsonText: text)
      #expect(back.canonicalBytes() == value.canonicalBytes(), "\(name): \(text)")
    }
    let whole = SyncValue.map(Self.everyKind)
    #expect(try SyncValue(jsonText: whole.jsonText).canonicalBytes() == whole.canonicalBytes())
  }

  @Test func jsonTextKeepsIntegersAndDoublesApart() throws {
    #expect(try SyncValue(jsonText: "1") == .int(1))
    #expect(try SyncValue(jsonText: "1.0") == .double(1))
    #expect(try SyncValue(jsonText: "-2e3") == .double(-2000))
    #expect(try SyncValue(jsonText: " true ") == .bool(true))
    #expect(try SyncValue(jsonText: "null") == .null)
    #expect(try SyncValue(jsonText: #""a\u00e9\ud83d\ude00\n""#) == .string("aé😀\n"))
    #expect(try SyncValue(jsonText: #"{"$timestamp": 5}"#) == .timestamp(5))
    #expect(try SyncValue(jsonText: #"{"$bytes": "AAH/"}"#) == .bytes([0, 1, 255]))
    #expect(try SyncValue(jsonText: #"{"$map": {"$timestamp": 5}}"#) == .map(["$timestamp": .int(5)]))
    #expect(try SyncValue(jsonText: #"[1, {"a": [] }]"#) == .list([.int(1), .map(["a": .list([])])]))
    #expect(SyncValue.double(2).jsonText == "2.0")
    #expect(SyncValue.map(["b": .int(1), "a": .string("x")]).jsonText == #"{"a":"x","b":1}"#)
    for bad in ["", "01", "1.", "+1", "[1,]", #"{"a":1,"a":2}"#, "9223372036854775808", "[", #""\x""#, "nul", #"{"$bytes": 1}"#, "1 2"] {
      #expect(throws: ValidationError.self, "\(bad)") { try SyncValue(jsonText: bad) }
    }
    let deep = String(repeating: "[", count: 40) + String(repeating: "]", count: 40)
    #expect(throws: ValidationError.self) { try SyncValue(jsonText: deep) }
  }

  @Test func damagedRowsAreReportedNotTrusted() async throws {
    try await withReplica { replica, _ in
      let id = newID()
      try await replica.put(collection: preferences, id: id, fields: ["a": .int(1)])
      try await replica.pool.write { db in
        try db.execute(sql: "UPDATE records SET fields = x'0102' WHERE id = ?", arguments: [id])
        try db.execute(sql: "UPDATE pending SET fields = x'FF' WHERE mutation_id = 1")
      }
      await #expect(throws: SyncClientError.self) { try await replica.get(collection: preferences, id: id) }
      let error = await #expect(throws: SyncClientError.self) { try await replica.pending() }
      guard case .corruptReplica? = error else { Issue.record("expected corruptReplica, got \(String(describing: error))"); return }
    }
  }

  @Test func pulledChangesThatCannotBeStoredFaithfullyAreRefused() throws {
    var missingStamp = upsert(preferences, newID(), version: 1, ["a": .int(1)])
    missingStamp.stamps = [:]
    #expect(throws: SyncClientError.self) { try ServerChange(missingStamp) }
    var unknownKind = upsert(preferences, newID(), version: 1, ["a": .int(1)])
    unknownKind.kind = .unspecified
    #expect(throws: SyncClientError.self) { try ServerChange(unknownKind) }
    var badCounter = upsert(preferences, newID(), version: 1, ["a": .int(1)])
    badCounter.stamps["a"]?.counter = 70_000
    #expect(throws: SyncClientError.self) { try ServerChange(badCounter) }
  }
}
