import Foundation
import GRPCCore
import OneWindowAPI
import OneWindowClientPosix
import OneWindowCore
import OneWindowStore
import Testing

@Suite struct InitialSyncE2ETests {
  /// T7: an initial pull of 100k records, interrupted at random pages (the page is lost before
  /// it is applied) and resumed from the last applied cursor, ends with a replica identical to
  /// the server's, proven by Verify.
  @Test func anInterruptedInitialPullOf100kRecordsResumesToAnIdenticalReplica() async throws {
    try await TestEnvironment.run { (env) async throws in
      let session = try await env.citizenSession()
      let principal = SyncPrincipal(accountID: session.account.id, role: .citizen, departmentCode: nil)
      // Seed through the store (the same write path as Push, without 100 round trips).
      var device = RawDevice("seed-device")
      let total = 100_000
      for start in stride(from: 0, to: total, by: 1000) {
        let mutations = (start..<start + 1000).map { i in
          IncomingMutation(wire: device.upsert("preferences", newRecordID(), ["i": .int(Int64(i)), "label": .string("记录 \(i)")], now: Date()))
        }
        let outcome = try await env.store.sync.push(PushBatch(
          clientID: device.clientID, principal: principal, mutations: mutations, rules: SyncWriteRules(), now: Date()))
        #expect(outcome.results.count == 1000)
      }
      let seed = UInt64.random(in: 0...UInt64.max)
      var random = SeededGenerator(seed: seed)
      var replica: [String: [String: SyncValue]] = [:]
      var cursor = ""
      var interruptions = 0
      var pages = 0
      while true {
        let page = try await env.sync.pull(.with { $0.cursor = cursor; $0.collections = ["preferences"] }, metadata: bearer(session.accessToken))
        pages += 1
        if page.hasMore_p, Int.random(in: 0..<10, using: &random) == 0 {
          interruptions += 1  // lost before it was applied: resume from the last applied cursor
          continue
        }
        for change in page.changes {
          switch change.kind {
          case .upsert: replica[change.recordID] = try change.fields.mapValues { try $0.domain() }
          default: replica[change.recordID] = nil
          }
        }
        cursor = page.cursor
        if !page.hasMore_p { break }
      }
      #expect(replica.count == total, "seed \(seed)")
      var local = ReplicaChecksum()
      for (id, values) in replica { local.add(id: id, values: values) }
      let verify = try await env.sync.verify(.with { $0.collections = ["preferences"] }, metadata: bearer(session.accessToken))
      #expect(verify.collections.first?.count == Int64(total))
      #expect(verify.collections.first?.checksum == local.hex, "seed \(seed)")
      #expect(pages >= total / 1000 + interruptions)
    }
  }
}

/// A small deterministic generator (SplitMix64), so a failing random test can be replayed.
struct SeededGenerator: RandomNumberGenerator {
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
