import Foundation
import Synchronization
import Testing
@testable import OneWindowCore
@testable import OneWindowStore
import OneWindowTestSupport

/// What several nodes on one database share: leases, rate limits, blobs, doorbells and the sync
/// feed. Each test runs on every engine; where two processes matter, two stores are opened on
/// the same database (on the embedded engine the second open is the same single-process file,
/// whose doorbells are silent).
@Suite struct LeaseTests {
  @Test(arguments: TestEngine.enabled) func oneHolderAtATimeUntilReleaseOrExpiry(engine: TestEngine) async throws {
    try await withTemporaryStore(engine) { store in
      let leases = store.leases
      #expect(try await leases.holder(of: "job") == nil)
      #expect(try await leases.acquire("job", holder: "a", for: .seconds(30)))
      #expect(try await !leases.acquire("job", holder: "b", for: .seconds(30)))
      // Renewal by the holder.
      #expect(try await leases.acquire("job", holder: "a", for: .seconds(30)))
      let held = try #require(try await leases.holder(of: "job"))
      #expect(held.holder == "a")
      #expect(held.remaining > .seconds(25) && held.remaining <= .seconds(30))
      // Another name is another lease.
      #expect(try await leases.acquire("other", holder: "b", for: .seconds(30)))
      // Only the holder releases.
      try await leases.release("job", holder: "b")
      #expect(try await leases.holder(of: "job")?.holder == "a")
      try await leases.release("job", holder: "a")
      #expect(try await leases.holder(of: "job") == nil)
      #expect(try await leases.acquire("job", holder: "b", for: .seconds(30)))
      #expect(try await !leases.acquire("job", holder: "a", for: .seconds(30)))
      // Expired (by the database's clock): anyone may take it. (No check in between: on a loaded
      // machine a short lease may already have run out by the next statement.)
      #expect(try await leases.acquire("short", holder: "b", for: .milliseconds(200)))
      try await Task.sleep(for: .seconds(1))
      #expect(try await leases.holder(of: "short") == nil)
      #expect(try await leases.acquire("short", holder: "a", for: .seconds(30)))
      #expect(try await leases.holder(of: "short")?.holder == "a")
    }
  }

  @Test(arguments: TestEngine.enabled) func concurrentTakersGetOneHolder(engine: TestEngine) async throws {
    try await withTemporaryStore(engine) { store in
      let won = try await withThrowingTaskGroup(of: Bool.self) { group in
        for i in 0..<16 { group.addTask { try await store.leases.acquire("race", holder: "node-\(i)", for: .seconds(30)) } }
        return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
      }
      #expect(won == 1)
    }
  }
}

@Suite struct RateLimitTests {
  @Test(arguments: TestEngine.enabled) func admitsTheLimitThenRefusesUntilTheWindowPasses(engine: TestEngine) async throws {
    try await withTemporaryStore(engine) { store in
      let limits = store.rateLimits
      for _ in 0..<3 { #expect(try await limits.take("code:ipv4:10.0.0.1", limit: 3, window: 60, now: t0) == nil) }
      let wait = try #require(try await limits.take("code:ipv4:10.0.0.1", limit: 3, window: 60, now: t0.addingTimeInterval(1)))
      #expect(wait > 0 && wait <= 60)
      // A refused call is not counted; another key is another count.
      #expect(try await limits.take("code:ipv4:10.0.0.2", limit: 3, window: 60, now: t0) == nil)
      // A call given back frees its place.
      try await limits.giveBack("code:ipv4:10.0.0.1", window: 60, takenAt: t0)
      #expect(try await limits.take("code:ipv4:10.0.0.1", limit: 3, window: 60, now: t0.addingTimeInterval(2)) == nil)
      #expect(try await limits.take("code:ipv4:10.0.0.1", limit: 3, window: 60, now: t0.addingTimeInterval(3)) != nil)
      // Two windows later nothing of the burst counts.
      #expect(try await limits.take("code:ipv4:10.0.0.1", limit: 3, window: 60, now: t0.addingTimeInterval(121)) == nil)
      _ = try await limits.purgeExpired(now: t0.addingTimeInterval(10_000))
      for _ in 0..<3 {
        #expect(try await limits.take("code:ipv4:10.0.0.1", limit: 3, window: 60, now: t0.addingTimeInterval(10_000)) == nil)
      }
    }
  }

  /// The limit holds at, just below and far above it, under concurrency: 40 callers at once
  /// with a limit of 10 get exactly 10 places (a read-then-write counter would give more).
  @Test(arguments: TestEngine.enabled) func concurrentCallersNeverPassTheLimit(engine: TestEngine) async throws {
    try await withTemporaryStore(engine) { store in
      for (limit, callers) in [(10, 40), (10, 10), (10, 9)] {
        let key = "track:\(limit)-\(callers)"
        let admitted = try await withThrowingTaskGroup(of: Bool.self) { group in
          for _ in 0..<callers {
            group.addTask { try await store.rateLimits.take(key, limit: limit, window: 600, now: t0) == nil }
          }
          return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(admitted == min(limit, callers), "limit \(limit), \(callers) callers")
      }
    }
  }
}

@Suite struct BlobStoreTests {
  @Test(arguments: TestEngine.enabled) func storesOnceAndReadsBackInOrder(engine: TestEngine) async throws {
    try await withTemporaryStore(engine) { store in
      let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ow-blob-\(UUID().uuidString)").path
      try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
      defer { try? FileManager.default.removeItem(atPath: dir) }
      // Just over two pieces of 1 MiB, with every piece's bytes distinct.
      let content = Data((0..<(2 * 1024 * 1024 + 17)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 20) })
      let sha = Hex.sha256(Array(content))
      func file() throws -> String {
        let path = (dir as NSString).appendingPathComponent(UUID().uuidString)
        try content.write(to: URL(fileURLWithPath: path))
        return path
      }
      let first = try file()
      #expect(try await store.blobs.put(sha256: sha, file: first))
      #expect(!FileManager.default.fileExists(atPath: first), "the file is consumed")
      let second = try file()
      #expect(try await !store.blobs.put(sha256: sha, file: second))
      #expect(!FileManager.default.fileExists(atPath: second))
      var read = Data()
      var pieces = 0
      try await store.blobs.read(sha256: sha) { piece in
        #expect(piece.count <= 1024 * 1024)
        read += piece
        pieces += 1
      }
      #expect(read == content)
      #expect(pieces == 3)
      await #expect(throws: StoreError.self) { try await store.blobs.read(sha256: String(repeating: "0", count: 64)) { _ in } }
    }
  }
}

@Suite struct SharedDatabaseTests {
  /// Opens a second store on the same database, as another node would.
  func withTwoNodes(_ engine: TestEngine, _ body: (any Store, any Store) async throws -> Void) async throws {
    let database = try await TestDatabase.create(engine)
    do {
      let a = try await database.open()
      let b = try await database.open()
      do {
        try await body(a.store, b.store)
      } catch {
        try? await a.close()
        try? await b.close()
        throw error
      }
      try await a.close()
      try await b.close()
    } catch {
      await database.drop()
      throw error
    }
    await database.drop()
  }

  @Test(arguments: TestEngine.enabled) func aDoorbellReachesTheOtherNodeOnly(engine: TestEngine) async throws {
    try await withTwoNodes(engine) { a, b in
      #expect(a.doorbells.isShared == (engine == .postgres))
      guard a.doorbells.isShared else { return }
      let heardByB = Heard()
      let heardByA = Heard()
      let tokenB = b.doorbells.observe(.catalog) { payload in heardByB.log.withLock { $0.append(payload) } }
      let tokenA = a.doorbells.observe(.catalog) { payload in heardByA.log.withLock { $0.append(payload) } }
      defer {
        b.doorbells.cancel(tokenB)
        a.doorbells.cancel(tokenA)
      }
      // Both listeners are up once each hears the other's probe (rung until heard).
      for (from, log) in [(a, heardByB), (b, heardByA)] {
        try await waitUntil {
          if log.log.withLock({ $0.contains("probe") }) { return true }
          await from.doorbells.ring(.catalog, "probe")
          return false
        }
      }
      heardByA.log.withLock { $0.removeAll() }
      heardByB.log.withLock { $0.removeAll() }
      await a.doorbells.ring(.catalog, "revision 7")
      await a.doorbells.ring(.sync, "not for catalog observers")
      try await waitUntil { heardByB.log.withLock { $0.contains("revision 7") } }
      // (Probes rung while waiting may still arrive.)
      #expect(heardByB.log.withLock { $0.compactMap { $0 }.filter { $0 != "probe" } } == ["revision 7"])
      // A node does not hear itself.
      try await Task.sleep(for: .milliseconds(200))
      #expect(heardByA.log.withLock { $0.compactMap { $0 }.filter { $0 != "probe" } }.isEmpty)
      // Too long for one doorbell: not sent (the other nodes find the change by polling).
      await a.doorbells.ring(.catalog, String(repeating: "x", count: DoorbellTopic.maxPayloadBytes + 1))
      await a.doorbells.ring(.catalog, String(repeating: "y", count: DoorbellTopic.maxPayloadBytes))
      try await waitUntil { heardByB.log.withLock { $0.count(where: { $0?.first == "y" }) == 1 } }
      #expect(heardByB.log.withLock { $0.contains { $0?.first == "x" } } == false)
    }
  }

  /// A change committed through one node reaches the other node's sync feed (what its Watch
  /// streams forward) in order, once.
  @Test(arguments: TestEngine.enabled) func changesCommittedOnOneNodeReachTheOthersFeed(engine: TestEngine) async throws {
    try await withTwoNodes(engine) { a, b in
      guard a.doorbells.isShared else { return }
      let batches = Mutex<[CommittedChanges]>([])
      let token = b.sync.feed.subscribe { batch in batches.withLock { $0.append(batch) } }
      defer { b.sync.feed.cancel(token) }
      let before = try await b.sync.logState().sequence
      for round in 1...3 {
        let records: [String: [String: SyncValue]] = ["item-\(round)": ["code": .string("item-\(round)")]]
        _ = try await a.sync.publish(collection: SyncCollections.catalogItems.name, records: records, now: t0)
      }
      let head = try await a.sync.logState().sequence
      #expect(head > before)
      try await waitUntil { batches.withLock { $0.last?.upTo ?? 0 } >= head }
      let seen = batches.withLock { $0 }
      // Contiguous ranges in order, and each record once.
      var position = before
      for batch in seen {
        #expect(batch.after <= position && batch.upTo > position)
        position = batch.upTo
      }
      // Every record once, in sequence order, within its batch's range.
      let sequences = seen.flatMap(\.records).map(\.sequence)
      #expect(sequences == sequences.sorted() && Set(sequences).count == sequences.count)
      for batch in seen { #expect(batch.records.allSatisfy { $0.sequence > batch.after && $0.sequence <= batch.upTo }) }
      #expect(seen.flatMap(\.records).contains { $0.id == "item-3" && !$0.state.deleted })
    }
  }
}

extension SharedDatabaseTests {
  /// M5: a node whose listening connection is cut (a database restart, a proxy dropping it)
  /// listens again, tells its observers they may have missed doorbells (nil), hears the next
  /// ones, and its sync feed still gets what was committed while it was deaf (the pump polls).
  @Test(arguments: TestEngine.enabled) func aNodeWhoseListenerWasCutCatchesUp(engine: TestEngine) async throws {
    try await withTwoNodes(engine) { a, b in
      guard a.doorbells.isShared else { return }
      let heard = Heard()
      let token = b.doorbells.observe(.catalog) { payload in heard.log.withLock { $0.append(payload) } }
      defer { b.doorbells.cancel(token) }
      try await waitUntil {
        if heard.log.withLock({ $0.contains("probe") }) { return true }
        await a.doorbells.ring(.catalog, "probe")
        return false
      }
      let batches = Mutex<[CommittedChanges]>([])
      let feedToken = b.sync.feed.subscribe { batch in batches.withLock { $0.append(batch) } }
      defer { b.sync.feed.cancel(feedToken) }
      heard.log.withLock { $0.removeAll() }
      // Cut every LISTEN connection of this database's channel (both nodes'), as a restart would.
      let cut = try await a.inspection.rows(
        "SELECT pg_terminate_backend(pid) AS cut FROM pg_stat_activity WHERE query LIKE 'LISTEN%' AND datname = current_database() AND pid <> pg_backend_pid() AND query LIKE '%' || current_schema() || '%'", [])
      #expect(!cut.isEmpty)
      // Committed while B may be deaf: the pump's poll brings it all the same.
      _ = try await a.sync.publish(collection: SyncCollections.catalogItems.name, records: ["cut": ["code": .string("cut")]], now: t0)
      let head = try await a.sync.logState().sequence
      try await waitUntil { batches.withLock { $0.last?.upTo ?? 0 } >= head }
      // B listens again and says so (nil), then hears doorbells again.
      try await waitUntil { heard.log.withLock { $0.contains(nil) } }
      try await waitUntil {
        if heard.log.withLock({ $0.contains("after") }) { return true }
        await a.doorbells.ring(.catalog, "after")
        return false
      }
    }
  }
}

/// Doorbell payloads one observer heard.
final class Heard: Sendable {
  let log = Mutex<[String?]>([])
}

/// Polls `condition` every 20 ms for up to 10 s (generous for a loaded CI machine).
func waitUntil(_ condition: () async -> Bool, sourceLocation: SourceLocation = #_sourceLocation) async throws {
  let deadline = ContinuousClock.now + .seconds(10)
  while ContinuousClock.now < deadline {
    if await condition() { return }
    try await Task.sleep(for: .milliseconds(20))
  }
  Issue.record("condition not met within 10 s", sourceLocation: sourceLocation)
}
