import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import OneWindowAPI
import OneWindowClientPosix
import OneWindowCore
import Synchronization

typealias SyncClient = Onewindow_V1_SyncService.Client<HTTP2ClientTransport.Posix>

/// Offline-sync workloads, speaking the raw wire protocol as a device would (docs/sync-protocol.md).
/// Each scenario registers its own citizen account, so one scenario's records never show up in
/// another's pulls or streams.
extension Scenarios {
  /// Private and schemaless: any small record will do, and only its owner sees it.
  static let syncCollection = "preferences"
  /// New records per sync-push call.
  static let pushBatch = 500
  /// Records sync-pull seeds for its account, in pushes of `seedBatch` (the server's maximum).
  static let pullSeed = 100_000
  static let seedBatch = 1000
  /// Changes per Pull page: the server's maximum.
  static let pullPage: Int32 = 1000
  /// A paging loop that has not ended after this many pages is broken, not slow.
  static let maxPages = 10_000
  /// How long sync-watch waits for a pushed record to come back on the Watch stream.
  static let watchTimeout: Duration = .seconds(5)

  /// One push of 500 new records (2–3 small fields each). Every call in flight pushes as its own
  /// device (`DevicePool`), so mutation ids stay consecutive per client id at any concurrency.
  /// Every mutation must come back APPLIED.
  static let syncPush = Scenario(name: "sync-push") { client in
    let account = try await BenchAccount.register(client)
    let devices = DevicePool(role: "push")
    let call: BenchCall = { client, index in
      let metadata = try await account.metadata(client)
      try await devices.using { device in
        let now = Date()
        let mutations = (0..<pushBatch).map { i in device.upsert(newRecordID(), smallFields(index &* pushBatch &+ i), now: now) }
        try await pushExpectingApplied(SyncClient(wrapping: client), clientID: device.clientID, mutations, metadata: metadata)
      }
    }
    // One push now, so a server that refuses sync fails the setup rather than every call.
    try await call(client, 0)
    return PreparedScenario(call: call, items: ItemCount(perCall: pushBatch, unit: "mutations"))
  }

  /// A complete initial sync per call: Pull from an empty cursor, 1000 changes a page, until
  /// has_more is false. The setup seeds 100 000 records for the account; it also sees public
  /// collections (published catalog items), so a call counts a few more.
  static let syncPull = Scenario(name: "sync-pull") { client in
    let account = try await BenchAccount.register(client)
    let sync = SyncClient(wrapping: client)
    var device = BenchDevice(clientID: benchClientID("seed"))
    var seeded = 0
    while seeded < pullSeed {
      let now = Date()
      let count = min(seedBatch, pullSeed - seeded)
      let mutations = (0..<count).map { i in device.upsert(newRecordID(), smallFields(seeded + i), now: now) }
      try await pushExpectingApplied(sync, clientID: device.clientID, mutations, metadata: account.metadata(client))
      seeded += count
      if seeded % 20_000 == 0 || seeded == pullSeed { progress("sync-pull: seeded \(seeded) of \(pullSeed) records") }
    }
    let records = try await fullSync(sync, metadata: account.metadata(client))
    progress("sync-pull: a full sync of the bench account is \(records) records")
    return PreparedScenario(
      call: { client, _ in _ = try await fullSync(SyncClient(wrapping: client), metadata: account.metadata(client)) },
      items: ItemCount(perCall: records, unit: "records"))
  }

  /// Push-to-arrival latency of a live change. Device B of the account catches up (a Pull to the
  /// end) and opens one Watch stream, shared by every call. A call: a device A pushes one new
  /// record whose field carries a unique token, then waits until B's stream delivers that record
  /// id. The call reports push start → arrival as its latency: it also waits for the push
  /// response, which usually comes a little after the arrival.
  static let syncWatch = Scenario(name: "sync-watch") { client in
    let account = try await BenchAccount.register(client)
    let sync = SyncClient(wrapping: client)
    let cursor = try await pullAll(sync, collections: [syncCollection], metadata: account.metadata(client)).cursor
    let inbox = WatchInbox()
    let request = Onewindow_V1_WatchRequest.with {
      $0.cursor = cursor
      $0.collections = [syncCollection]
    }
    let metadata = try await account.metadata(client)
    let stream = Task { await inbox.receive(from: sync, request, metadata: metadata) }
    do {
      try await inbox.waitUntilOpen(timeout: .seconds(10))
    } catch {
      stream.cancel()
      await stream.value
      throw error
    }

    let writers = DevicePool(role: "watch")
    let call: BenchCall = { client, index in
      let id = newRecordID()
      let token = "\(index)-\(UInt64.random(in: 0...UInt64.max))"
      // Registered before the push, so an arrival that beats the push response is not missed.
      let arrival = inbox.expect(id)
      defer { inbox.forget(id) }
      let metadata = try await account.metadata(client)
      let start = ContinuousClock.now
      try await writers.using { device in
        let mutation = device.upsert(id, ["token": .string(token)], now: Date())
        try await pushExpectingApplied(SyncClient(wrapping: client), clientID: device.clientID, [mutation], metadata: metadata)
      }
      let received = try await withTimeout(
        watchTimeout, CheckFailure("sync-watch: a pushed record did not arrive on the Watch stream within \(watchTimeout)")
      ) {
        var arrivals = arrival.makeAsyncIterator()
        guard let received = await arrivals.next() else {
          throw CheckFailure("sync-watch: the Watch stream ended (\(inbox.endReason ?? "no reason"))")
        }
        return received
      }
      guard received.token == token else { throw CheckFailure("sync-watch: the record arrived with another token") }
      CallLatency.report(received.at - start)
    }
    return PreparedScenario(call: call) {
      stream.cancel()
      await stream.value
    }
  }

  // MARK: Protocol helpers

  /// Two or three small fields, as a preferences record might hold.
  static func smallFields(_ n: Int) -> [String: SyncValue] {
    var fields: [String: SyncValue] = ["label": .string("pref-\(n)"), "count": .int(Int64(n))]
    if n.isMultiple(of: 2) { fields["enabled"] = .bool(true) }
    return fields
  }

  /// Pushes, and checks the server took every mutation whole: no gap, one APPLIED result each.
  static func pushExpectingApplied(
    _ sync: SyncClient, clientID: String, _ mutations: [Onewindow_V1_Mutation], metadata: Metadata
  ) async throws {
    let response = try await sync.push(
      .with {
        $0.clientID = clientID
        $0.mutations = mutations
      }, metadata: metadata)
    guard response.gapExpectedID == 0 else { throw CheckFailure("push: the server reported a mutation-id gap") }
    guard response.results.count == mutations.count else { throw CheckFailure("push: fewer results than mutations") }
    if let result = response.results.first(where: { $0.outcome != .applied }) {
      throw CheckFailure("push: a mutation came back \(result.outcome), reason \(result.reason): \(result.message)")
    }
  }

  /// Pages from an empty cursor until has_more is false: every change the caller sees in
  /// `collections` (empty: all), and the cursor to continue from.
  static func pullAll(_ sync: SyncClient, collections: [String] = [], metadata: Metadata) async throws -> (changes: Int, cursor: String) {
    var cursor = ""
    var changes = 0
    for _ in 0..<maxPages {
      let page = try await sync.pull(
        .with {
          $0.cursor = cursor
          $0.collections = collections
          $0.limit = pullPage
        }, metadata: metadata)
      guard page.reset == .unspecified else { throw CheckFailure("pull: the server asked for a reset (\(page.reset))") }
      changes += page.changes.count
      cursor = page.cursor
      if !page.hasMore_p { return (changes, cursor) }
    }
    throw CheckFailure("pull: paging did not end within \(maxPages) pages")
  }

  /// A complete initial sync of everything the account sees; at least the seeded records.
  static func fullSync(_ sync: SyncClient, metadata: Metadata) async throws -> Int {
    let changes = try await pullAll(sync, metadata: metadata).changes
    guard changes >= pullSeed else { throw CheckFailure("sync-pull: a full sync returned fewer than \(pullSeed) records") }
    return changes
  }
}

/// A new record id: a lowercase UUID, as the client SDK makes them.
func newRecordID() -> String { UUID().uuidString.lowercased() }

/// Tells this owbench's client ids from those of earlier runs against the same server (a client
/// id is bound to the first account that pushes with it).
let benchRunTag = String(UInt32.random(in: 0...UInt32.max), radix: 16)

/// `owb-<role>-<run tag>`: 8–64 letters, digits, '-' and '_', as the protocol requires.
func benchClientID(_ role: String) -> String { "owb-\(role)-\(benchRunTag)" }

// MARK: Devices and accounts

/// A device speaking the raw protocol: its client id, its hybrid logical clock (stamps' node is
/// the client id) and its next mutation id (from 1, consecutive). Its pushes must not overlap,
/// or the server would see mutation-id gaps.
struct BenchDevice: Sendable {
  let clientID: String
  private var clock: HybridLogicalClock
  private var nextMutationID: Int64 = 1

  init(clientID: String) {
    self.clientID = clientID
    clock = HybridLogicalClock(node: clientID)
  }

  /// A new record `id` in `collection` (base version 0), every field stamped now.
  mutating func upsert(
    _ id: String, _ fields: [String: SyncValue], now: Date, collection: String = Scenarios.syncCollection
  ) -> Onewindow_V1_Mutation {
    let stamp = Onewindow_V1_HlcStamp(clock.tick(now: now))
    let mutationID = nextMutationID
    nextMutationID += 1
    return .with {
      $0.mutationID = mutationID
      $0.collection = collection
      $0.recordID = id
      $0.baseVersion = 0
      $0.upsert = .with { upsert in
        for (name, value) in fields {
          upsert.fields[name] = .with {
            $0.value = Onewindow_V1_Value(value)
            $0.stamp = stamp
          }
        }
      }
    }
  }
}

/// Devices of one account for concurrent calls: a call takes an idle device (or makes a new one)
/// and gives it back once its push succeeded. So each push in flight has its own client id and
/// mutation ids stay consecutive per device, whatever the concurrency or the worker; a device
/// whose push failed (its server-side state unknown) is dropped.
final class DevicePool: Sendable {
  private let role: String
  private let state = Mutex<(idle: [BenchDevice], made: Int)>(([], 0))

  init(role: String) {
    self.role = role
  }

  func using<T>(_ body: (inout BenchDevice) async throws -> T) async throws -> T {
    var device = take()
    let result = try await body(&device)
    state.withLock { [device] in $0.idle.append(device) }
    return result
  }

  private func take() -> BenchDevice {
    let (idle, number) = state.withLock { state -> (BenchDevice?, Int) in
      if let device = state.idle.popLast() { return (device, 0) }
      state.made += 1
      return (nil, state.made)
    }
    return idle ?? BenchDevice(clientID: benchClientID("\(role)-\(number)"))
  }
}

/// A bench citizen and its access token. Tokens last 15 minutes: the first call after 10 logs in
/// again (the others keep the old token meanwhile), so runs longer than a token still work.
final class BenchAccount: Sendable {
  static let password = "Bench-pass-123"
  static let renewAfter: Duration = .seconds(600)

  let login: String
  private let token: Mutex<(value: String, obtained: ContinuousClock.Instant, renewing: Bool)>

  private init(login: String, token: String) {
    self.login = login
    self.token = Mutex((token, ContinuousClock.now, false))
  }

  /// Registers a new citizen (the server allows 20 registrations per address and hour) and logs in.
  static func register(_ client: BenchClient) async throws -> BenchAccount {
    let phone = try await Scenarios.registerBenchCitizen(client, password: password)
    return BenchAccount(login: phone, token: try await logIn(client, phone))
  }

  /// `authorization: Bearer …` for the next call.
  func metadata(_ client: BenchClient) async throws -> Metadata {
    let now = ContinuousClock.now
    let (current, renew) = token.withLock { token -> (String, Bool) in
      guard !token.renewing, now - token.obtained >= Self.renewAfter else { return (token.value, false) }
      token.renewing = true
      return (token.value, true)
    }
    guard renew else { return bearer(current) }
    do {
      let fresh = try await Self.logIn(client, login)
      token.withLock { $0 = (fresh, ContinuousClock.now, false) }
      return bearer(fresh)
    } catch {
      token.withLock { $0.renewing = false }
      throw error
    }
  }

  private static func logIn(_ client: BenchClient, _ login: String) async throws -> String {
    try await Onewindow_V1_IdentityService.Client(wrapping: client).loginWithPassword(.with {
      $0.login = login
      $0.password = password
    }).accessToken
  }
}

// MARK: Watch

/// The receiving end of sync-watch's one Watch stream: calls register the record id they wait
/// for, the stream task hands each arriving record to its waiter. Records nobody waits for
/// (a waiter that timed out) are dropped.
final class WatchInbox: Sendable {
  private struct State {
    var waiters: [String: AsyncStream<WatchArrival>.Continuation] = [:]
    var ended: String?
  }

  private let state = Mutex(State())
  private let opened: AsyncStream<Void>
  private let openedSignal: AsyncStream<Void>.Continuation

  init() {
    (opened, openedSignal) = AsyncStream.makeStream(of: Void.self)
  }

  /// Why the stream ended; nil while it runs.
  var endReason: String? { state.withLock { $0.ended } }

  /// Runs the stream until it ends or the task is cancelled; then fails every waiter.
  func receive(from sync: SyncClient, _ request: Onewindow_V1_WatchRequest, metadata: Metadata) async {
    do {
      try await sync.watch(request, metadata: metadata) { response in
        for try await event in response.messages {
          // The first event ends the catch-up: from here on every commit reaches this stream.
          self.openedSignal.finish()
          let at = ContinuousClock.now
          for change in event.changes where change.kind == .upsert {
            self.deliver(change.recordID, WatchArrival(token: change.fields["token"]?.stringValue ?? "", at: at))
          }
        }
      }
      close("the server ended it")
    } catch {
      close(Task.isCancelled ? "cancelled" : "\(errorName(error)): \(error)")
    }
  }

  /// Waits for the stream's first event (or its end, which is an error).
  func waitUntilOpen(timeout: Duration) async throws {
    let opened = self.opened
    try await withTimeout(timeout, CheckFailure("sync-watch: the Watch stream sent nothing within \(timeout)")) {
      for await _ in opened {}
    }
    if let reason = endReason { throw BenchError("sync-watch: the Watch stream ended: \(reason)") }
  }

  /// Record `id`'s token and arrival time once it arrives; the stream finishes empty if the Watch
  /// ends first.
  func expect(_ id: String) -> AsyncStream<WatchArrival> {
    let (arrival, continuation) = AsyncStream.makeStream(of: WatchArrival.self, bufferingPolicy: .bufferingNewest(1))
    let ended = state.withLock { state -> Bool in
      guard state.ended == nil else { return true }
      state.waiters[id] = continuation
      return false
    }
    if ended { continuation.finish() }
    return arrival
  }

  /// Stops waiting for `id` (it arrived, or the caller gave up).
  func forget(_ id: String) {
    _ = state.withLock { $0.waiters.removeValue(forKey: id) }
  }

  private func deliver(_ id: String, _ arrival: WatchArrival) {
    guard let waiter = state.withLock({ $0.waiters.removeValue(forKey: id) }) else { return }
    waiter.yield(arrival)
    waiter.finish()
  }

  private func close(_ reason: String) {
    let waiters = state.withLock { state in
      state.ended = state.ended ?? reason
      defer { state.waiters = [:] }
      return Array(state.waiters.values)
    }
    for waiter in waiters { waiter.finish() }
    openedSignal.finish()
  }
}

/// A record as sync-watch's stream received it.
struct WatchArrival: Sendable {
  var token: String
  /// When its event was decoded.
  var at: ContinuousClock.Instant
}

/// `body`'s result, or `failure` thrown once `limit` has passed.
func withTimeout<T: Sendable>(
  _ limit: Duration, _ failure: CheckFailure, _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
  try await withThrowingTaskGroup(of: T?.self) { group in
    group.addTask { try await body() }
    group.addTask {
      try await Task.sleep(for: limit)
      return nil
    }
    defer { group.cancelAll() }
    guard let first = try await group.next(), let value = first else { throw failure }
    return value
  }
}
