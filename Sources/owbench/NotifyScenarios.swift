import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import Histogram
import OneWindowAPI
import OneWindowClientPosix
import Synchronization

typealias InboxClient = Onewindow_V1_InboxService.Client<HTTP2ClientTransport.Posix>
typealias NotifyClient = Onewindow_V1_NotifyService.Client<HTTP2ClientTransport.Posix>

/// Notification workloads (docs/notifications.md): live Subscribe streams receiving what an
/// administrator publishes. Publisher and subscribers run in this process, so a message's
/// publish → arrival time is read off one monotonic clock: the publisher puts its send time in
/// the message's `data["sent_ns"]` (nanoseconds since `notifyEpoch`).
///
/// - notify-direct: `--direct-subscribers` accounts (registered citizens while the registration
///   limit allows, caseworkers created by the administrator after that) each hold one live
///   stream; a call publishes one message to one of them. The table shows publishes/s and the
///   publish RPC's latency; publish → arrival is reported beside it. Every published message
///   must arrive (checked after each run, with a grace period). Subscribers acknowledge every
///   100 messages, as an app would, so nothing would replay on a reconnect.
/// - notify-broadcast(-1k, -10k): N live streams over a pool of `--notify-accounts` accounts, or
///   N / 32 when that is more (the server's default `--max-inbox-streams-per-account`; owbench's
///   `--max-streams-per-account`); every stream of an account gets each topic message. One HTTP/2
///   connection per 200 streams. A call is a round: publish one topic message, wait until the
///   last stream has it, then wait out the rest of 500 ms. The table shows rounds and time to
///   the last stream; publish RPC latency and per-stream arrival are reported beside it. Each
///   stream must get each message exactly once. The streams are opened before each run and
///   closed after it, so they do not weigh on the other scenarios.
extension Scenarios {
  static let notifyDirect = Scenario(name: "notify-direct") { client in
    try await NotifyDirect.setup(client, name: "notify-direct")
  }

  /// N from `--subscribers`.
  static let notifyBroadcast = Scenario(name: "notify-broadcast") { client in
    try await NotifyBroadcast.setup(client, name: "notify-broadcast", streams: NotifyBench.config.broadcastSubscribers)
  }

  static let notifyBroadcast1k = Scenario(name: "notify-broadcast-1k") { client in
    try await NotifyBroadcast.setup(client, name: "notify-broadcast-1k", streams: 1000)
  }

  static let notifyBroadcast10k = Scenario(name: "notify-broadcast-10k") { client in
    try await NotifyBroadcast.setup(client, name: "notify-broadcast-10k", streams: 10_000)
  }
}

// MARK: - Settings

struct NotifyBenchConfig: Sendable {
  /// The server, for the extra connections of the broadcast streams.
  var address = "127.0.0.1:50051"
  var gzip = false
  var adminLogin = "admin"
  var adminPassword: String?
  /// Whether owbench created the administrator itself (--spawn).
  var adminProvisioned = false
  var directSubscribers = 10
  var broadcastSubscribers = 1000
  var broadcastAccounts = 200
  /// The server's `--max-inbox-streams-per-account` (32 by default): a broadcast scenario uses
  /// at least N / this many accounts.
  var maxStreamsPerAccount = 32
  /// The server allows 256 concurrent streams per HTTP/2 connection.
  var streamsPerConnection = 200
  var broadcastInterval: Duration = .milliseconds(500)
  var roundTimeout: Duration = .seconds(10)
  /// How long after a run owbench still waits for messages to arrive before calling them lost.
  var arrivalGrace: Duration = .seconds(5)
  var ackEvery = 100
}

/// The settings behind a class: with Swift 6.3.1 -O, a global `Mutex(NotifyBenchConfig())` starts
/// out zeroed (every default lost: 0 ms intervals, ack every 0 messages), while one made in an
/// initializer at run time is right.
final class NotifyBenchSettings: Sendable {
  let state: Mutex<NotifyBenchConfig>
  init() { state = Mutex(NotifyBenchConfig()) }
}

enum NotifyBench {
  private static let settings = NotifyBenchSettings()

  static var config: NotifyBenchConfig { settings.state.withLock { $0 } }

  static func configure(_ update: (inout NotifyBenchConfig) -> Void) {
    settings.state.withLock { update(&$0) }
  }

  static let broadcastNames = ["notify-broadcast", "notify-broadcast-1k", "notify-broadcast-10k"]
  static let names: Set<String> = Set(broadcastNames + ["notify-direct"])

  /// A broadcast call is one round at a time: one worker.
  static var concurrencyOverrides: [String: Int] { Dictionary(uniqueKeysWithValues: broadcastNames.map { ($0, 1) }) }

  static func uses(_ scenarios: [Scenario]) -> Bool { scenarios.contains { names.contains($0.name) } }

  /// Creates an administrator for owbench on a server it spawned (the demo administrator's
  /// password goes to the server's stdout, which owbench discards): `onewindow admin
  /// create-user` on the server's data directory (and its `--database-url`, when it runs on
  /// PostgreSQL), while it runs (SQLite WAL; one small write).
  static func provisionAdmin(executable: String, server: SpawnedServer) async throws {
    let dataDirectory = server.dataDirectory
    let username = "owbench-admin"
    let password = "Owb-" + String(UInt64.random(in: 0...UInt64.max), radix: 36) + "-7x"
    let log = dataDirectory.deletingLastPathComponent().appendingPathComponent("create-admin.log")
    guard FileManager.default.createFile(atPath: log.path, contents: nil) else { throw BenchError("cannot create \(log.path)") }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = [
      "admin", "create-user", "--role", "admin", "--username", username, "--name", "owbench", "--password-stdin",
    ] + server.databaseArguments
    let input = Pipe()
    process.standardInput = input
    process.standardOutput = FileHandle.nullDevice
    process.standardError = try FileHandle(forWritingTo: log)
    try process.run()
    input.fileHandleForWriting.write(Data((password + "\n").utf8))
    try input.fileHandleForWriting.close()
    let clock = ContinuousClock()
    let deadline = clock.now + .seconds(60)
    while process.isRunning {
      if clock.now > deadline {
        process.terminate()
        throw BenchError("`\(executable) admin create-user` did not finish within 60 s")
      }
      try await Task.sleep(for: .milliseconds(50))
    }
    guard process.terminationStatus == 0 else {
      let output = (FileManager.default.contents(atPath: log.path)).map { String(decoding: $0, as: UTF8.self) } ?? ""
      throw BenchError("`\(executable) admin create-user` failed (status \(process.terminationStatus)): \(output)")
    }
    configure {
      $0.adminLogin = username
      $0.adminPassword = password
      $0.adminProvisioned = true
    }
  }

  // MARK: Shared setup

  private static let adminSession = Mutex<Task<NotifySession, any Error>?>(nil)

  /// Forgets what belongs to the previous server (its administrator session, the broadcast
  /// accounts made there), before the scenarios are set up against another one.
  static func forgetServer() {
    adminSession.withLock { $0 = nil }
    broadcastPool.withLock { $0 = nil }
    configure { $0.adminProvisioned = false }
  }

  /// The administrator who publishes; logged in once for every notify scenario.
  static func admin(_ client: BenchClient) async throws -> NotifySession {
    let task = adminSession.withLock { current -> Task<NotifySession, any Error> in
      if let current { return current }
      let config = config
      let task = Task<NotifySession, any Error> {
        guard let password = config.adminPassword else {
          throw BenchError(
            "the notify scenarios publish as an administrator: pass --admin-password (or set OWBENCH_ADMIN_PASSWORD; "
              + "--admin-user defaults to admin), or use --spawn, which creates an administrator for owbench")
        }
        do {
          return try await NotifySession.logIn(client, login: config.adminLogin, password: password)
        } catch {
          throw BenchError("cannot log in as administrator \(config.adminLogin): \(error)")
        }
      }
      current = task
      return task
    }
    return try await task.value
  }

  /// Creates the template `name` (title "owbench", body `((n))`) unless it exists with that placeholder.
  static func ensureTemplate(_ client: BenchClient, admin: NotifySession, name: String) async throws {
    let notify = NotifyClient(wrapping: client)
    let metadata = try await admin.metadata(client)
    do {
      _ = try await notify.putTemplate(
        .with {
          $0.name = name
          $0.title = "owbench"
          $0.body = "((n))"
          $0.expectedVersion = 0
        }, metadata: metadata)
    } catch let error as RPCError where error.code == .aborted || error.code == .alreadyExists {
      let existing = try await notify.getTemplate(.with { $0.name = name }, metadata: metadata)
      guard existing.placeholders == ["n"] else {
        throw BenchError("template \(name) already exists with placeholders \(existing.placeholders), not [n]")
      }
    }
  }

  private static let broadcastPool = Mutex<Task<NotifyAccounts, any Error>?>(nil)

  /// How many accounts a broadcast of `streams` streams uses: `--notify-accounts` (at most one
  /// per stream), but never more streams per account than the server allows.
  static func broadcastAccountCount(streams: Int) -> Int {
    let c = config
    return max(min(c.broadcastAccounts, streams), (streams + c.maxStreamsPerAccount - 1) / c.maxStreamsPerAccount)
  }

  /// The accounts the broadcast scenarios spread their streams over, shared by all of them and
  /// grown to `count` when a scenario needs more. A scenario subscribes its prefix of them to its
  /// topic only for its own runs.
  static func broadcastAccounts(_ count: Int, _ client: BenchClient, admin: NotifySession) async throws -> NotifyAccounts {
    let task = broadcastPool.withLock { current -> Task<NotifyAccounts, any Error> in
      let previous = current
      let task = Task<NotifyAccounts, any Error> {
        var pool = try await previous?.value ?? NotifyAccounts(sessions: [], citizens: 0, caseworkers: 0, registrationLimited: false)
        if pool.sessions.count < count {
          let more = try await makeAccounts(
            count - pool.sessions.count, client, admin: admin, citizensFirst: false, prefix: "b", label: "notify-broadcast",
            firstIndex: pool.sessions.count)
          pool.sessions += more.sessions
          pool.caseworkers += more.caseworkers
        }
        return pool
      }
      current = task
      return task
    }
    let pool = try await task.value
    return NotifyAccounts(sessions: Array(pool.sessions.prefix(count)), citizens: 0, caseworkers: count, registrationLimited: false)
  }

  /// `count` accounts, logged in. With `citizensFirst`, registered citizens as long as the
  /// server's registration limit (20 per address and hour, shared with the other scenarios)
  /// allows; caseworkers created with CreateStaffAccount for the rest.
  static func makeAccounts(
    _ count: Int, _ client: BenchClient, admin: NotifySession, citizensFirst: Bool, prefix: String, label: String,
    firstIndex: Int = 0
  ) async throws -> NotifyAccounts {
    var sessions: [NotifySession] = []
    var citizens = 0
    var registrationLimited = false
    if citizensFirst {
      while sessions.count < count {
        do {
          let phone = try await Scenarios.registerBenchCitizen(client, password: BenchAccount.password)
          sessions.append(try await NotifySession.logIn(client, login: phone, password: BenchAccount.password))
          citizens += 1
        } catch let error as RPCError where error.code == .resourceExhausted {
          registrationLimited = true
          progress("\(label): the registration limit stopped at \(citizens) citizens; creating \(count - citizens) caseworkers")
          break
        }
      }
    }
    let remaining = count - sessions.count
    if remaining > 0 {
      let departments = try await Onewindow_V1_CatalogService.Client(wrapping: client).listDepartments(.init()).departments
      guard let department = departments.first?.code else { throw BenchError("\(label): the server has no departments for caseworker accounts") }
      let identity = Onewindow_V1_IdentityService.Client(wrapping: client)
      let password = BenchAccount.password
      let tag = benchRunTag
      let made = Atomic<Int>(0)
      let staff = try await concurrentMap(remaining, limit: 4) { i -> NotifySession in
        let username = "owb-\(tag)-\(prefix)\(firstIndex + i)"
        _ = try await identity.createStaffAccount(
          .with {
            $0.role = .caseworker
            $0.username = username
            $0.displayName = "压测订阅 \(firstIndex + i)"
            $0.departmentCode = department
            $0.password = password
          }, metadata: try await admin.metadata(client))
        let session = try await NotifySession.logIn(client, login: username, password: password)
        let done = made.add(1, ordering: .relaxed).newValue
        if done % 50 == 0 || done == remaining { progress("\(label): \(done) of \(remaining) caseworker accounts created and logged in") }
        return session
      }
      sessions += staff
    }
    return NotifyAccounts(sessions: sessions, citizens: citizens, caseworkers: remaining, registrationLimited: registrationLimited)
  }
}

/// Accounts made for a notify scenario, and what kind they are (for the report).
struct NotifyAccounts: Sendable {
  var sessions: [NotifySession]
  var citizens: Int
  var caseworkers: Int
  var registrationLimited: Bool

  var description: String {
    var parts: [String] = []
    if citizens > 0 { parts.append("\(citizens) registered citizen\(citizens == 1 ? "" : "s")") }
    if caseworkers > 0 {
      let why = registrationLimited ? "the registration limit of 20 per address and hour was reached" : "registering citizens is limited to 20 per address and hour"
      parts.append("\(caseworkers) caseworker\(caseworkers == 1 ? "" : "s") made with CreateStaffAccount (\(why))")
    }
    return parts.joined(separator: " + ")
  }
}

/// A logged-in account: its id and access token, refreshed (Refresh, not the slow password
/// login) once it is 10 minutes old; access tokens last 15.
final class NotifySession: Sendable {
  static let renewAfter: Duration = .seconds(600)

  let login: String
  let accountID: String
  private let password: String

  private struct Tokens {
    var access: String
    var refresh: String
    var obtained: ContinuousClock.Instant
    var renewing: Bool
  }

  private let tokens: Mutex<Tokens>

  private init(login: String, password: String, session: Onewindow_V1_Session) {
    self.login = login
    self.password = password
    accountID = session.account.id
    tokens = Mutex(Tokens(access: session.accessToken, refresh: session.refreshToken, obtained: .now, renewing: false))
  }

  static func logIn(_ client: BenchClient, login: String, password: String) async throws -> NotifySession {
    let session = try await Onewindow_V1_IdentityService.Client(wrapping: client).loginWithPassword(.with {
      $0.login = login
      $0.password = password
    })
    return NotifySession(login: login, password: password, session: session)
  }

  /// `authorization: Bearer …` for the next call.
  func metadata(_ client: BenchClient) async throws -> Metadata {
    let now = ContinuousClock.now
    let (access, refresh, renew) = tokens.withLock { t -> (String, String, Bool) in
      guard !t.renewing, now - t.obtained >= Self.renewAfter else { return (t.access, t.refresh, false) }
      t.renewing = true
      return (t.access, t.refresh, true)
    }
    guard renew else { return bearer(access) }
    let identity = Onewindow_V1_IdentityService.Client(wrapping: client)
    do {
      let fresh: Onewindow_V1_Session
      do {
        fresh = try await identity.refresh(.with { $0.refreshToken = refresh })
      } catch {
        fresh = try await identity.loginWithPassword(.with {
          $0.login = login
          $0.password = password
        })
      }
      tokens.withLock { $0 = Tokens(access: fresh.accessToken, refresh: fresh.refreshToken, obtained: .now, renewing: false) }
      return bearer(fresh.accessToken)
    } catch {
      tokens.withLock { $0.renewing = false }
      throw error
    }
  }
}

// MARK: - Run hooks and extra figures

/// Work a scenario does around each run's load loop (open streams, reset counters; then
/// verify deliveries and close), and the figures it reports beside its table row.
protocol RunHooks: Sendable {
  /// Right before the load loop, which starts its warmup as this returns.
  func beforeRun(_ settings: LoadSettings) async throws
  /// Right after the load loop.
  func afterRun() async -> ExtraFigures
}

enum ScenarioHooks {
  private static let registry = Mutex<[String: any RunHooks]>([:])

  static func register(_ name: String, _ hooks: any RunHooks) {
    registry.withLock { $0[name] = hooks }
  }

  static func named(_ name: String) -> (any RunHooks)? {
    registry.withLock { $0[name] }
  }
}

/// A latency distribution measured beside a scenario's calls (µs recorded, ms reported).
struct LatencyFigure: Codable, Sendable {
  var label: String
  var count: Int
  var p50Ms: Double
  var p99Ms: Double
  var maxMs: Double

  init(label: String, count: Int, p50Ms: Double, p99Ms: Double, maxMs: Double) {
    self.label = label
    self.count = count
    self.p50Ms = p50Ms
    self.p99Ms = p99Ms
    self.maxMs = maxMs
  }

  init(_ label: String, _ h: Histogram<UInt64>) {
    func ms(_ us: UInt64) -> Double { h.totalCount == 0 ? 0 : Double(us) / 1000 }
    self.init(
      label: label, count: Int(h.totalCount), p50Ms: ms(h.valueAtPercentile(50)), p99Ms: ms(h.valueAtPercentile(99)),
      maxMs: ms(h.max))
  }
}

/// What a scenario with run hooks measured beside its calls.
struct ExtraFigures: Codable, Sendable {
  /// What the scenario is made of (accounts, streams, connections): the same every run.
  var about: [String] = []
  var latencies: [LatencyFigure] = []
  /// What this run observed (counts, verification).
  var notes: [String] = []
  /// Failed delivery checks (missing or duplicated messages, dropped streams); any fails the run.
  var failedChecks = 0
  /// Live streams (broadcast).
  var streams: Int?
  /// False when a call is not an RPC (a broadcast round), so QPS × ping means nothing.
  var comparableToPing = true

  func latency(_ label: String) -> LatencyFigure? { latencies.first { $0.label == label } }

  /// The median of each figure across runs; the first run's description; notes dropped.
  static func medians(_ all: [ExtraFigures]) -> ExtraFigures? {
    guard let first = all.first else { return nil }
    var out = ExtraFigures(about: first.about, streams: first.streams, comparableToPing: first.comparableToPing)
    out.failedChecks = all.map(\.failedChecks).reduce(0, +)
    out.latencies = first.latencies.map { figure in
      let same = all.compactMap { $0.latency(figure.label) }
      return LatencyFigure(
        label: figure.label, count: Int(median(same.map { Double($0.count) })), p50Ms: median(same.map(\.p50Ms)),
        p99Ms: median(same.map(\.p99Ms)), maxMs: median(same.map(\.maxMs)))
    }
    return out
  }
}

extension TextReport {
  /// The extra latencies of a scenario as a small indented table, then its notes.
  static func extra(_ scenario: String, _ e: ExtraFigures, medians: Bool = false) -> String {
    var out = "  \(scenario)\(medians ? " (medians)" : ""):\n"
    for line in e.about { out += "    \(line)\n" }
    if !e.latencies.isEmpty {
      let body = table(
        headers: ["measured", "count", "p50 ms", "p99 ms", "max ms"],
        rows: e.latencies.map { [$0.label, "\($0.count)", fixed($0.p50Ms, 2), fixed($0.p99Ms, 2), fixed($0.maxMs, 2)] })
      out += body.split(separator: "\n").map { "    " + $0 + "\n" }.joined()
    }
    for line in e.notes { out += "    \(line)\n" }
    return out
  }
}

/// The notification targets, checked when those scenarios ran.
enum NotifyTargets {
  static func check(_ rows: [SummaryRow]) -> [TargetCheck] {
    var checks: [TargetCheck] = []
    if let row = rows.first(where: { $0.scenario == "notify-direct" }), let arrival = row.extra?.latency(NotifyDirect.arrivalLabel) {
      checks.append(TargetCheck(
        target: "notify-direct p99 < 20 ms (publish to arrival)", value: fixed(arrival.p99Ms, 2) + " ms", met: arrival.p99Ms < 20))
    }
    for row in rows where row.scenario.hasPrefix("notify-broadcast") {
      guard let extra = row.extra, let streams = extra.streams, streams >= 10_000 else { continue }
      if let each = extra.latency(NotifyBroadcast.eachLabel) {
        checks.append(TargetCheck(
          target: "\(row.scenario) p99 < 1 s (publish to arrival, \(streams) live streams)", value: fixed(each.p99Ms, 1) + " ms",
          met: each.p99Ms < 1000))
      }
      if let last = extra.latency(NotifyBroadcast.lastLabel) {
        checks.append(TargetCheck(
          target: "\(row.scenario) p99 < 1 s (publish to the last of \(streams) streams)", value: fixed(last.p99Ms, 1) + " ms",
          met: last.p99Ms < 1000))
      }
    }
    return checks
  }
}

// MARK: - Helpers

/// The in-process reference for `data["sent_ns"]` (publisher and subscribers share it).
let notifyEpoch = ContinuousClock.now

func nanosSinceEpoch(_ instant: ContinuousClock.Instant) -> Int64 {
  let c = (instant - notifyEpoch).components
  return c.seconds * 1_000_000_000 + c.attoseconds / 1_000_000_000
}

func instant(sinceEpochNanos ns: Int64) -> ContinuousClock.Instant {
  notifyEpoch + .nanoseconds(ns)
}

/// `body(0..<count)` with at most `limit` running at once, results in order.
func concurrentMap<T: Sendable>(
  _ count: Int, limit: Int, _ body: @escaping @Sendable (Int) async throws -> T
) async throws -> [T] {
  guard count > 0 else { return [] }
  return try await withThrowingTaskGroup(of: (Int, T).self) { group in
    var results = [T?](repeating: nil, count: count)
    var next = 0
    while next < min(limit, count) {
      let i = next
      group.addTask { (i, try await body(i)) }
      next += 1
    }
    while let (i, value) = try await group.next() {
      results[i] = value
      if next < count {
        let j = next
        group.addTask { (j, try await body(j)) }
        next += 1
      }
    }
    return results.map { $0! }
  }
}

/// Extra HTTP/2 connections (gRPC clients) for streams, running until `close`.
final class StreamConnections: Sendable {
  let clients: [BenchClient]
  private let tasks: [Task<Void, Never>]

  init(count: Int) throws {
    let config = NotifyBench.config
    let options = try ConnectionOptions(server: config.address, gzip: config.gzip)
    let clients = try (0..<count).map { _ in BenchClient(transport: try options.makeTransport()) }
    self.clients = clients
    tasks = clients.map { client in Task { try? await client.runConnections() } }
  }

  /// Graceful: cancel the streams first.
  func close() async {
    for client in clients { client.beginGracefulShutdown() }
    for task in tasks { await task.value }
  }
}

func measuredWindow(_ settings: LoadSettings) -> (start: ContinuousClock.Instant, end: ContinuousClock.Instant) {
  let start = ContinuousClock.now + settings.warmup
  return (start, start + settings.duration)
}

func newHistogram() -> Histogram<UInt64> { Histogram<UInt64>(numberOfSignificantValueDigits: .three) }

// MARK: - notify-direct

final class NotifyDirect: RunHooks {
  static let template = "bench.direct"
  static let arrivalLabel = "publish → arrival"

  let name: String
  let accounts: NotifyAccounts
  let admin: NotifySession
  /// Carries the subscriber streams and their acks (the setup's connection).
  let client: BenchClient
  private var subscribers: [NotifySession] { accounts.sessions }

  private struct State {
    var window: (start: ContinuousClock.Instant, end: ContinuousClock.Instant)?
    /// Message number → subscriber: published (or being published), not arrived yet.
    var expected: [Int: Int] = [:]
    /// Publishes that failed: the message may or may not arrive.
    var uncertain: Set<Int> = []
    /// Missing after an earlier run's grace period.
    var lost: Set<Int> = []
    var arrived: Set<Int> = []
    var arrival = newHistogram()
    // This run (warmup included):
    var published = 0
    var delivered = 0
    var duplicates = 0
    var late = 0
    var wrongStream = 0
    var wrongBody = 0
    var unexpected = 0
    var acks = 0
    var ackErrors = 0
    // Streams:
    var caughtUp: Set<Int> = []
    var ended: [Int: String] = [:]
    var closing = false
    var lastSeq: [Int64]
    var sinceAck: [Int]
  }

  private let state: Mutex<State>
  private let streams = Mutex<[Task<Void, Never>]>([])
  private let counter = Atomic<Int>(0)
  private let ackEvery = NotifyBench.config.ackEvery

  private init(name: String, accounts: NotifyAccounts, admin: NotifySession, client: BenchClient) {
    self.name = name
    self.accounts = accounts
    self.admin = admin
    self.client = client
    let n = accounts.sessions.count
    state = Mutex(State(lastSeq: Array(repeating: 0, count: n), sinceAck: Array(repeating: 0, count: n)))
  }

  static func setup(_ client: BenchClient, name: String) async throws -> PreparedScenario {
    let config = NotifyBench.config
    let admin = try await NotifyBench.admin(client)
    try await NotifyBench.ensureTemplate(client, admin: admin, name: template)
    let accounts = try await NotifyBench.makeAccounts(
      config.directSubscribers, client, admin: admin, citizensFirst: true, prefix: "d", label: name)
    let bench = NotifyDirect(name: name, accounts: accounts, admin: admin, client: client)
    do {
      try await bench.open()
      // One message now, so a server that does not deliver fails the setup rather than every run.
      try await bench.call(client, 0)
      let clock = ContinuousClock()
      let deadline = clock.now + config.arrivalGrace
      while bench.state.withLock({ !$0.expected.isEmpty }), clock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
      guard bench.state.withLock({ $0.expected.isEmpty }) else {
        throw BenchError("\(name): a published message did not arrive on its subscriber's stream within \(config.arrivalGrace)")
      }
    } catch {
      await bench.close()
      throw error
    }
    ScenarioHooks.register(name, bench)
    return PreparedScenario(call: { client, index in try await bench.call(client, index) }, teardown: { await bench.close() })
  }

  /// One Subscribe stream per subscriber; returns when every one has sent caught_up.
  private func open() async throws {
    let tasks = subscribers.indices.map { i in Task { await self.stream(i) } }
    streams.withLock { $0 = tasks }
    let clock = ContinuousClock()
    let deadline = clock.now + .seconds(30)
    while true {
      let (ready, ended) = state.withLock { ($0.caughtUp.count, $0.ended) }
      if let (i, reason) = ended.first { throw BenchError("\(name): subscriber \(i)'s stream ended while opening: \(reason)") }
      if ready == subscribers.count { return }
      if clock.now > deadline { throw BenchError("\(name): only \(ready) of \(subscribers.count) streams caught up within 30 s") }
      try await Task.sleep(for: .milliseconds(10))
    }
  }

  private func stream(_ i: Int) async {
    let session = subscribers[i]
    do {
      let metadata = try await session.metadata(client)
      try await InboxClient(wrapping: client).subscribe(.with { $0.device = "owbench-direct-\(i)" }, metadata: metadata) { response in
        for try await event in response.messages {
          let at = ContinuousClock.now
          switch event.event {
          case .message(let message): self.arrived(message, on: i, at: at)
          case .caughtUp: _ = self.state.withLock { $0.caughtUp.insert(i) }
          case .heartbeat, .none: break
          }
        }
      }
      ended(i, "the server ended it")
    } catch {
      ended(i, "\(errorName(error)): \(error)")
    }
  }

  private func ended(_ i: Int, _ reason: String) {
    state.withLock { s in
      if !s.closing { s.ended[i] = reason }
    }
  }

  private func arrived(_ message: Onewindow_V1_InboxMessage, on stream: Int, at: ContinuousClock.Instant) {
    let number = Int(message.data["n"] ?? "")
    let ack: Int64? = state.withLock { s -> Int64? in
      s.lastSeq[stream] = max(s.lastSeq[stream], message.seq)
      s.sinceAck[stream] += 1
      var ack: Int64?
      if s.sinceAck[stream] >= ackEvery {
        s.sinceAck[stream] = 0
        ack = s.lastSeq[stream]
      }
      guard let n = number, message.topic.isEmpty else {
        s.unexpected += 1
        return ack
      }
      guard s.arrived.insert(n).inserted else {
        s.duplicates += 1
        return ack
      }
      if message.data["to"] != String(stream) { s.wrongStream += 1 }
      if message.body != String(n) { s.wrongBody += 1 }
      if s.expected.removeValue(forKey: n) != nil || s.uncertain.remove(n) != nil {
        s.delivered += 1
      } else if s.lost.remove(n) != nil {
        s.late += 1
      } else {
        s.unexpected += 1
      }
      if let sentNs = message.data["sent_ns"].flatMap({ Int64($0) }), let window = s.window {
        let sent = instant(sinceEpochNanos: sentNs)
        if sent >= window.start && sent < window.end { s.arrival.record((at - sent).microseconds) }
      }
      return ack
    }
    if let ack { Task { await self.acknowledge(stream, upTo: ack) } }
  }

  private func acknowledge(_ stream: Int, upTo seq: Int64) async {
    do {
      let metadata = try await subscribers[stream].metadata(client)
      _ = try await InboxClient(wrapping: client).ack(.with { $0.upToSeq = seq }, metadata: metadata)
      state.withLock { $0.acks += 1 }
    } catch {
      state.withLock { $0.ackErrors += 1 }
    }
  }

  /// Publishes message number n (a process-wide counter) to subscriber n mod N.
  func call(_ client: BenchClient, _ index: Int) async throws {
    let n = counter.add(1, ordering: .relaxed).newValue
    let to = n % subscribers.count
    let metadata = try await admin.metadata(client)
    let sent = ContinuousClock.now
    let request = Onewindow_V1_PublishRequest.with {
      $0.audience.accountID = subscribers[to].accountID
      $0.template = Self.template
      $0.personalisation = ["n": String(n)]
      $0.data = ["n": String(n), "to": String(to), "sent_ns": String(nanosSinceEpoch(sent))]
      $0.idempotencyKey = "owb-\(benchRunTag)-d\(n)"
    }
    // Expected before the call: the message may arrive before the response.
    state.withLock { $0.expected[n] = to }
    do {
      let response = try await NotifyClient(wrapping: client).publish(request, metadata: metadata)
      guard !response.replayed else { throw CheckFailure("notify-direct: a new idempotency key came back as a replay") }
      state.withLock { $0.published += 1 }
    } catch {
      state.withLock { s in
        if s.expected.removeValue(forKey: n) != nil { s.uncertain.insert(n) }
      }
      throw error
    }
  }

  func beforeRun(_ settings: LoadSettings) async throws {
    let window = measuredWindow(settings)
    state.withLock { s in
      s.window = window
      s.arrival = newHistogram()
      s.published = 0
      s.delivered = 0
      s.duplicates = 0
      s.late = 0
      s.wrongStream = 0
      s.wrongBody = 0
      s.unexpected = 0
      s.acks = 0
      s.ackErrors = 0
    }
  }

  func afterRun() async -> ExtraFigures {
    let config = NotifyBench.config
    let clock = ContinuousClock()
    let waitStart = clock.now
    while state.withLock({ !$0.expected.isEmpty }), clock.now - waitStart < config.arrivalGrace {
      try? await Task.sleep(for: .milliseconds(5))
    }
    let waited = clock.now - waitStart
    // Acknowledge what arrived since the last periodic ack.
    let positions = state.withLock { s -> [Int64] in
      for i in s.sinceAck.indices { s.sinceAck[i] = 0 }
      return s.lastSeq
    }
    for (i, seq) in positions.enumerated() where seq > 0 { await acknowledge(i, upTo: seq) }

    let s = state.withLock { s -> State in
      let snapshot = s
      s.lost.formUnion(s.expected.keys)
      s.expected = [:]
      return snapshot
    }
    let missing = s.expected.count
    var extra = ExtraFigures()
    extra.about = [
      "\(subscribers.count) subscriber accounts (\(accounts.description)), one live Subscribe stream each; "
        + "a call publishes one message (template \(Self.template)) to one of them, round robin",
      "publish → arrival: data[\"sent_ns\"] set just before the Publish call → the subscriber stream decodes the message (one process, one monotonic clock)",
    ]
    extra.latencies = [LatencyFigure(Self.arrivalLabel, s.arrival)]
    let graceNote = missing == 0 ? "waited \(fixed(waited.seconds * 1000, 0)) ms after the run" : "still missing \(missing) after \(config.arrivalGrace) grace"
    extra.notes.append(
      "published \(s.published) this run (warmup included), \(s.delivered) arrived on their subscriber's stream (\(graceNote)); "
        + "duplicates \(s.duplicates), late from an earlier run \(s.late), unexpected \(s.unexpected); "
        + "acks (every \(config.ackEvery) messages and after the run) \(s.acks), ack errors \(s.ackErrors)")
    var failed = 0
    if missing > 0 {
      failed += missing
      extra.notes.append("FAILED: \(missing) published message\(missing == 1 ? "" : "s") never arrived")
      progress("\(name): \(missing) published messages never arrived within \(config.arrivalGrace) after the run")
    }
    if s.wrongStream > 0 {
      failed += s.wrongStream
      extra.notes.append("FAILED: \(s.wrongStream) message\(s.wrongStream == 1 ? "" : "s") arrived on another account's stream")
    }
    if s.wrongBody > 0 {
      failed += s.wrongBody
      extra.notes.append("FAILED: \(s.wrongBody) message\(s.wrongBody == 1 ? "" : "s") arrived with a body other than the rendered template")
    }
    if !s.ended.isEmpty {
      failed += s.ended.count
      extra.notes.append("FAILED: \(s.ended.count) subscriber stream\(s.ended.count == 1 ? "" : "s") ended: \(Set(s.ended.values).sorted().joined(separator: "; "))")
    }
    extra.failedChecks = failed
    return extra
  }

  func close() async {
    state.withLock { $0.closing = true }
    let tasks = streams.withLock { tasks in
      defer { tasks = [] }
      return tasks
    }
    for task in tasks { task.cancel() }
    for task in tasks { await task.value }
  }
}

// MARK: - notify-broadcast

final class NotifyBroadcast: RunHooks {
  static let template = "bench.broadcast"
  static let publishLabel = "publish RPC"
  static let lastLabel = "publish → last stream"
  static let eachLabel = "publish → each stream"
  /// OWBENCH_TRACE_ROUNDS=1: one progress line per round (when, publish RPC, last stream).
  static let traceRounds = ProcessInfo.processInfo.environment["OWBENCH_TRACE_ROUNDS"] == "1"

  let name: String
  let streamCount: Int
  let topic: String
  let admin: NotifySession
  let pool: NotifyAccounts
  /// The accounts this scenario's streams use (`NotifyBench.broadcastAccountCount`).
  let accounts: [NotifySession]
  let connectionCount: Int

  private struct Round {
    var number: Int
    var start: ContinuousClock.Instant
    var arrivals: [ContinuousClock.Instant]
    var signal: AsyncStream<Void>.Continuation
  }

  private struct State {
    var window: (start: ContinuousClock.Instant, end: ContinuousClock.Instant)?
    var current: Round?
    /// Arrivals per round (every stream at most once: duplicates are counted apart).
    var counts: [Int: Int] = [:]
    /// The event id each round's message arrived with first; another one on any stream is a mismatch.
    var eventIDs: [Int: String] = [:]
    var mismatchedEventIDs = 0
    /// Rounds whose publish succeeded this run, and those that did not reach every stream in time.
    var published: [Int] = []
    var timedOut: Set<Int> = []
    var publish = newHistogram()
    var last = newHistogram()
    var each = newHistogram()
    var measuredRounds = 0
    var caughtUp = 0
    var ended: [String] = []
    var closing = false
    var opened: Duration = .zero
    var subscribed: Duration = .zero
    /// When the streams began opening (for OWBENCH_TRACE_ROUNDS).
    var begin: ContinuousClock.Instant = .now
  }

  private struct Live {
    var connections: StreamConnections
    var tasks: [Task<Void, Never>]
  }

  private let state = Mutex(State())
  private let live = Mutex<Live?>(nil)
  private let duplicates = Atomic<Int>(0)
  private let unexpected = Atomic<Int>(0)
  private let heartbeats = Atomic<Int>(0)
  /// Round numbers continue across runs: they make the idempotency keys.
  private let rounds = Atomic<Int>(0)

  private init(name: String, streams: Int, topic: String, admin: NotifySession, pool: NotifyAccounts) {
    self.name = name
    streamCount = streams
    self.topic = topic
    self.admin = admin
    self.pool = pool
    accounts = pool.sessions
    let perConnection = NotifyBench.config.streamsPerConnection
    connectionCount = (streams + perConnection - 1) / perConnection
  }

  static func setup(_ client: BenchClient, name: String, streams: Int) async throws -> PreparedScenario {
    let admin = try await NotifyBench.admin(client)
    try await NotifyBench.ensureTemplate(client, admin: admin, name: template)
    let pool = try await NotifyBench.broadcastAccounts(NotifyBench.broadcastAccountCount(streams: streams), client, admin: admin)
    let topic = "owbench.\(benchRunTag).\(name)"
    _ = try await NotifyClient(wrapping: client).createTopic(
      .with {
        $0.code = topic
        $0.title = "owbench \(name)"
        $0.description_p = "Topic of an owbench broadcast scenario"
      }, metadata: try await admin.metadata(client))
    let bench = NotifyBroadcast(name: name, streams: streams, topic: topic, admin: admin, pool: pool)
    ScenarioHooks.register(name, bench)
    return PreparedScenario(
      call: { client, index in try await bench.call(client, index) },
      items: ItemCount(perCall: streams, unit: "deliveries"),
      teardown: { await bench.closeStreams() })
  }

  // MARK: Streams

  /// Subscribes the accounts to the topic (from its head), opens the N streams and waits until
  /// each has sent caught_up.
  func beforeRun(_ settings: LoadSettings) async throws {
    state.withLock { s in
      s = State()
    }
    duplicates.store(0, ordering: .relaxed)
    heartbeats.store(0, ordering: .relaxed)
    unexpected.store(0, ordering: .relaxed)
    let config = NotifyBench.config
    let clock = ContinuousClock()
    let begin = clock.now
    state.withLock { $0.begin = begin }
    let connections = try StreamConnections(count: connectionCount)
    let subscriber = connections.clients[0]
    let topic = topic
    let accounts = accounts
    do {
      _ = try await concurrentMap(accounts.count, limit: 16) { i in
        _ = try await InboxClient(wrapping: subscriber).subscribeTopic(
          .with { $0.topic = topic }, metadata: try await accounts[i].metadata(subscriber))
      }
    } catch {
      await connections.close()
      throw BenchError("\(name): SubscribeTopic failed: \(error)")
    }
    let subscribed = clock.now - begin
    let perConnection = config.streamsPerConnection
    let tasks = (0..<streamCount).map { j in
      let client = connections.clients[j / perConnection]
      let session = accounts[j % accounts.count]
      return Task { await self.stream(j, session: session, client: client) }
    }
    live.withLock { $0 = Live(connections: connections, tasks: tasks) }
    let limit: Duration = .seconds(30) + .milliseconds(20 * streamCount)
    var reported = 0
    while true {
      let (ready, ended) = state.withLock { ($0.caughtUp, $0.ended) }
      if let reason = ended.first {
        await closeStreams()
        throw BenchError("\(name): a stream ended while opening (\(ended.count) so far): \(reason)")
      }
      if ready == streamCount { break }
      if clock.now - begin > limit {
        await closeStreams()
        throw BenchError("\(name): only \(ready) of \(streamCount) streams caught up within \(limit)")
      }
      if streamCount >= 5000, ready / 2500 > reported {
        reported = ready / 2500
        progress("\(name): \(ready) of \(streamCount) streams caught up")
      }
      try await Task.sleep(for: .milliseconds(10))
    }
    let opened = clock.now - begin
    let window = measuredWindow(settings)
    state.withLock { s in
      s.opened = opened
      s.subscribed = subscribed
      s.window = window
    }
  }

  private func stream(_ j: Int, session: NotifySession, client: BenchClient) async {
    let topic = topic
    do {
      let metadata = try await session.metadata(client)
      try await InboxClient(wrapping: client).subscribe(.with { $0.device = "owbench-\(j)" }, metadata: metadata) { response in
        var seen = Set<Int>()
        for try await event in response.messages {
          switch event.event {
          case .message(let message):
            let at = ContinuousClock.now
            guard message.topic == topic, let round = Int(message.data["round"] ?? "") else {
              self.unexpected.add(1, ordering: .relaxed)
              continue
            }
            guard seen.insert(round).inserted else {
              self.duplicates.add(1, ordering: .relaxed)
              continue
            }
            self.arrived(round, eventID: message.eventID, at: at)
          case .caughtUp:
            self.state.withLock { $0.caughtUp += 1 }
          case .heartbeat:
            self.heartbeats.add(1, ordering: .relaxed)
          case .none:
            break
          }
        }
      }
      ended("the server ended a stream")
    } catch {
      ended("\(errorName(error)): \(error)")
    }
  }

  private func ended(_ reason: String) {
    state.withLock { s in
      if !s.closing { s.ended.append(reason) }
    }
  }

  private func arrived(_ round: Int, eventID: String, at: ContinuousClock.Instant) {
    let signal = state.withLock { s -> AsyncStream<Void>.Continuation? in
      s.counts[round, default: 0] += 1
      if let first = s.eventIDs[round] {
        if first != eventID { s.mismatchedEventIDs += 1 }
      } else {
        s.eventIDs[round] = eventID
      }
      guard s.current?.number == round else { return nil }
      s.current!.arrivals.append(at)
      return s.current!.arrivals.count == streamCount ? s.current!.signal : nil
    }
    signal?.finish()
  }

  /// Cancels the streams, closes their connections and unsubscribes the accounts from the topic.
  /// Returns how long the cancelled streams took to end and the unsubscribing took.
  @discardableResult
  func closeStreams() async -> (streams: Duration, unsubscribe: Duration)? {
    state.withLock { $0.closing = true }
    guard let current = live.withLock({ live -> Live? in
      defer { live = nil }
      return live
    }) else { return nil }
    let clock = ContinuousClock()
    let begin = clock.now
    for task in current.tasks { task.cancel() }
    for task in current.tasks { await task.value }
    let ended = clock.now
    let subscriber = current.connections.clients[0]
    let topic = topic
    let accounts = accounts
    do {
      _ = try await concurrentMap(accounts.count, limit: 16) { i in
        _ = try await InboxClient(wrapping: subscriber).unsubscribeTopic(
          .with { $0.topic = topic }, metadata: try await accounts[i].metadata(subscriber))
      }
    } catch {
      progress("\(name): UnsubscribeTopic failed (later runs may replay this topic): \(error)")
    }
    let unsubscribed = clock.now
    await current.connections.close()
    return (ended - begin, unsubscribed - ended)
  }

  // MARK: Rounds

  /// One round: publish a topic message, wait until every stream has it, then until 500 ms
  /// after the start. Reports publish → last arrival as the call's latency.
  func call(_ client: BenchClient, _ index: Int) async throws {
    let config = NotifyBench.config
    let metadata = try await admin.metadata(client)
    let (signalled, signal) = AsyncStream.makeStream(of: Void.self)
    let round = rounds.add(1, ordering: .relaxed).newValue
    var arrivals: [ContinuousClock.Instant] = []
    arrivals.reserveCapacity(streamCount)
    let start = ContinuousClock.now
    state.withLock { $0.current = Round(number: round, start: start, arrivals: arrivals, signal: signal) }
    let request = Onewindow_V1_PublishRequest.with {
      $0.audience.topic = topic
      $0.template = Self.template
      $0.personalisation = ["n": String(round)]
      $0.data = ["round": String(round), "sent_ns": String(nanosSinceEpoch(start))]
      $0.idempotencyKey = "owb-\(benchRunTag)-\(name)-\(round)"
    }
    do {
      let response = try await NotifyClient(wrapping: client).publish(request, metadata: metadata)
      guard !response.replayed else { throw CheckFailure("\(name): a new idempotency key came back as a replay") }
    } catch {
      state.withLock { $0.current = nil }
      signal.finish()
      throw error
    }
    let publishTime = ContinuousClock.now - start
    state.withLock { $0.published.append(round) }
    let timeout = config.roundTimeout
    do {
      try await withTimeout(timeout, CheckFailure("\(name): a topic message did not reach every live stream within \(timeout)")) {
        for await _ in signalled {}
      }
    } catch {
      let got = state.withLock { s -> Int in
        let got = s.current?.arrivals.count ?? 0
        s.current = nil
        s.timedOut.insert(round)
        return got
      }
      progress("\(name): round \(round) reached \(got) of \(streamCount) streams within \(timeout)")
      throw error
    }
    let done = ContinuousClock.now
    let endsAt = max(done, start + config.broadcastInterval)
    let (last, begin, measured) = state.withLock { s -> (Duration, ContinuousClock.Instant, Bool) in
      guard let current = s.current else { return (.zero, s.begin, false) }
      s.current = nil
      let last = (current.arrivals.max() ?? start) - start
      var measured = false
      if let window = s.window, endsAt >= window.start, endsAt < window.end {
        measured = true
        s.measuredRounds += 1
        s.publish.record(publishTime.microseconds)
        s.last.record(last.microseconds)
        for arrival in current.arrivals { s.each.record((arrival - start).microseconds) }
      }
      return (last, s.begin, measured)
    }
    if Self.traceRounds {
      progress(
        "\(name): round \(round) at +\(fixed((start - begin).seconds, 2)) s since the streams began opening\(measured ? "" : " (not measured)"): "
          + "publish RPC \(fixed(publishTime.seconds * 1000, 1)) ms, last stream \(fixed(last.seconds * 1000, 1)) ms; "
          + "heartbeats so far \(heartbeats.load(ordering: .relaxed))")
    }
    CallLatency.report(last)
    try await Task.sleep(until: start + config.broadcastInterval, clock: .continuous)
  }

  func afterRun() async -> ExtraFigures {
    let config = NotifyBench.config
    let clock = ContinuousClock()
    let waitStart = clock.now
    // Rounds that timed out may still complete late.
    func incomplete() -> [Int] {
      state.withLock { s in s.published.filter { (s.counts[$0] ?? 0) < streamCount } }
    }
    while !incomplete().isEmpty, clock.now - waitStart < config.arrivalGrace {
      try? await Task.sleep(for: .milliseconds(10))
    }
    let missingRounds = incomplete()
    let closed = await closeStreams()
    let s = state.withLock { $0 }
    let duplicates = duplicates.load(ordering: .relaxed)
    let unexpected = unexpected.load(ordering: .relaxed)
    let missing = missingRounds.map { streamCount - (s.counts[$0] ?? 0) }.reduce(0, +)
    let perAccount = Double(streamCount) / Double(accounts.count)
    var extra = ExtraFigures(streams: streamCount, comparableToPing: false)
    let limit = config.maxStreamsPerAccount
    let accountsWhy = accounts.count > min(config.broadcastAccounts, streamCount)
      ? " (more than --notify-accounts \(config.broadcastAccounts): the server allows \(limit) streams per account)" : ""
    extra.about = [
      "\(streamCount) live Subscribe stream\(streamCount == 1 ? "" : "s") over \(accounts.count) account\(accounts.count == 1 ? "" : "s")\(accountsWhy) (\(perAccount == perAccount.rounded() ? String(Int(perAccount)) : fixed(perAccount, 1)) streams each; "
        + "\(pool.description)), each subscribed to topic \(topic); \(connectionCount) HTTP/2 connection\(connectionCount == 1 ? "" : "s") of ≤ \(config.streamsPerConnection) streams",
      "a call is a round: publish one topic message, wait for its arrival on every stream, then wait out \(trimmed(config.broadcastInterval.seconds * 1000)) ms; "
        + "the table's latency is publish → last stream",
    ]
    extra.latencies = [
      LatencyFigure(Self.publishLabel, s.publish), LatencyFigure(Self.lastLabel, s.last), LatencyFigure(Self.eachLabel, s.each),
    ]
    let closing = closed.map {
      "; after the run, the cancelled streams ended in \(fixed($0.streams.seconds, 2)) s and UnsubscribeTopic × \(accounts.count) took \(fixed($0.unsubscribe.seconds, 2)) s"
    } ?? ""
    let heartbeats = heartbeats.exchange(0, ordering: .relaxed)
    extra.notes.append(
      "\(streamCount) stream\(streamCount == 1 ? "" : "s") subscribed and caught up in \(fixed(s.opened.seconds, 2)) s "
        + "(SubscribeTopic × \(accounts.count) took \(fixed(s.subscribed.seconds, 2)) s of it, 16 at a time)\(closing); "
        + "\(s.measuredRounds) measured rounds of \(s.published.count); \(heartbeats) heartbeats received")
    let deliveries = s.published.map { s.counts[$0] ?? 0 }.reduce(0, +)
    var failed = 0
    if missing == 0 && duplicates == 0 && s.mismatchedEventIDs == 0 {
      extra.notes.append(
        "exactly once: each of the \(streamCount) streams got each of the \(s.published.count) messages once, with the same event_id on every stream (\(deliveries) deliveries)")
    }
    if s.mismatchedEventIDs > 0 {
      failed += s.mismatchedEventIDs
      extra.notes.append("FAILED: \(s.mismatchedEventIDs) deliveries carried another event_id than the same message on other streams")
    }
    if missing > 0 {
      failed += missingRounds.count
      extra.notes.append("FAILED: \(missingRounds.count) message\(missingRounds.count == 1 ? "" : "s") never reached every stream (\(missing) deliveries missing after \(config.arrivalGrace) grace)")
    }
    if duplicates > 0 {
      failed += duplicates
      extra.notes.append("FAILED: \(duplicates) duplicate deliveries (a stream got a message twice)")
    }
    if unexpected > 0 { extra.notes.append("\(unexpected) messages of no round of this run (replays?) were ignored") }
    if !s.ended.isEmpty {
      failed += s.ended.count
      extra.notes.append("FAILED: \(s.ended.count) stream\(s.ended.count == 1 ? "" : "s") ended during the run: \(Set(s.ended).sorted().prefix(3).joined(separator: "; "))")
    }
    extra.failedChecks = failed
    return extra
  }
}
