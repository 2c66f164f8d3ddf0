import Foundation
import Logging
import OneWindowCore
import OneWindowStore
import PostgresNIO
import Synchronization

/// Leases in PostgreSQL: one upsert takes or renews a lease only while it is free, expired or
/// already the caller's, judged by the server's `clock_timestamp()`, so the nodes' own clocks
/// never decide who holds a lease. Nothing is held between calls (no session advisory lock), so
/// it works through a transaction-pooling proxy.
struct PostgresLeases: Leases {
  let pool: PostgresPool

  static let nowMillis = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint"

  func acquire(_ name: String, holder: String, for duration: Duration) async throws -> Bool {
    let millis = LeaseRules.millis(duration)
    let rows = try await pool.rows(
      """
      INSERT INTO leases (name, holder, expires_at) VALUES (\(name), \(holder), \(unescaped: Self.nowMillis) + \(millis))
      ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
        WHERE leases.holder = excluded.holder OR leases.expires_at <= \(unescaped: Self.nowMillis)
      RETURNING holder
      """)
    return !rows.isEmpty
  }

  func release(_ name: String, holder: String) async throws {
    _ = try await pool.rows("DELETE FROM leases WHERE name = \(name) AND holder = \(holder) RETURNING 1")
  }

  func holder(of name: String) async throws -> (holder: String, remaining: Duration)? {
    let rows = try await pool.all(
      "SELECT holder, expires_at - \(unescaped: Self.nowMillis) FROM leases WHERE name = \(name)", as: (String, Int64).self)
    guard let (holder, remaining) = rows.first, remaining > 0 else { return nil }
    return (holder, .milliseconds(remaining))
  }
}

/// Doorbells over PostgreSQL's LISTEN/NOTIFY. Every process keeps one connection listening on
/// one channel (named after the schema, so databases sharing a server do not hear each other)
/// through its own one-connection client, which may point past a pooling proxy
/// (`PostgresSettings.listener`). A doorbell is `pg_notify` of the topic's letter, the ringing
/// process's id (so a node ignores its own) and the payload.
///
/// When the listening connection drops, it is opened again with a growing pause (up to 5 s);
/// each time listening (re)starts, every observer is called with nil, because doorbells rung
/// meanwhile are gone.
final class PostgresDoorbells: Doorbells {
  private let pool: PostgresPool
  private let logger: Logger
  let channel: String
  /// This process's id in doorbells (8 characters).
  let node: String
  private let listenerClient: PostgresClient
  private let tasks: Mutex<[Task<Void, Never>]>
  private let handlers = Mutex<(next: UInt64, byID: [UInt64: (topic: DoorbellTopic, handler: @Sendable (String?) -> Void)])>((0, [:]))
  /// True while the LISTEN is in place (for tests and metrics).
  let listening = Atomic<Bool>(false)

  var isShared: Bool { true }

  init(pool: PostgresPool, settings: PostgresSettings, logger: Logger) throws {
    self.pool = pool
    self.logger = logger
    channel = "onewindow" + (settings.schema.map { "_" + $0 } ?? "")
    node = String(UUID().uuidString.prefix(8)).lowercased()
    listenerClient = PostgresClient(configuration: try settings.listenerSettings.clientConfiguration(), backgroundLogger: logger)
    tasks = Mutex([])
    let client = listenerClient
    let runner = Task { await client.run() }
    let listen = Task { [weak self] in
      guard let self else { return }
      await self.listenLoop()
    }
    tasks.withLock { $0 = [runner, listen] }
  }

  func close() async {
    let all = tasks.withLock { t in
      defer { t = [] }
      return t
    }
    // The listening loop first, then its client.
    for task in all.reversed() {
      task.cancel()
      await task.value
    }
  }

  func ring(_ topic: DoorbellTopic, _ payload: String) async {
    guard payload.utf8.count <= DoorbellTopic.maxPayloadBytes else {
      logger.error("doorbell payload too long; not sent (other nodes find the change by polling)", metadata: ["topic": "\(topic)"])
      return
    }
    let message = topic.rawValue + node + " " + payload
    do {
      _ = try await pool.rows("SELECT pg_notify(\(channel), \(message))")
    } catch {
      logger.warning("ringing a doorbell failed", metadata: ["topic": "\(topic)", "error": "\(String(reflecting: type(of: error)))"])
    }
  }

  func observe(_ topic: DoorbellTopic, _ handler: @escaping @Sendable (String?) -> Void) -> UInt64 {
    handlers.withLock { h in
      h.next += 1
      h.byID[h.next] = (topic, handler)
      return h.next
    }
  }

  func cancel(_ token: UInt64) {
    _ = handlers.withLock { $0.byID.removeValue(forKey: token) }
  }

  private func listenLoop() async {
    // Let the client's run() start first (leasing before it only waits, but logs a warning).
    try? await Task.sleep(for: .milliseconds(20))
    var pause: Duration = .milliseconds(100)
    while !Task.isCancelled {
      do {
        try await listenerClient.withConnection { connection in
          try await connection.listen(on: self.channel) { notifications in
            self.listening.store(true, ordering: .relaxed)
            // Anything rung before this LISTEN took effect was not heard.
            self.dispatchToAll(nil)
            for try await notification in notifications { self.dispatch(notification.payload) }
          }
        }
      } catch {
        if Task.isCancelled { break }
        logger.warning("doorbell listener lost its connection; reconnecting", metadata: ["error": "\(String(reflecting: type(of: error)))"])
      }
      // A connection that got as far as listening starts the next attempt's pause afresh.
      if listening.exchange(false, ordering: .relaxed) { pause = .milliseconds(100) }
      if Task.isCancelled { break }
      try? await Task.sleep(for: pause)
      pause = min(pause * 2, .seconds(5))
    }
    listening.store(false, ordering: .relaxed)
  }

  private func dispatch(_ message: String) {
    guard let first = message.first, let topic = DoorbellTopic(rawValue: String(first)) else { return }
    let rest = message.dropFirst()
    guard rest.count >= node.count + 1 else { return }
    let sender = rest.prefix(node.count)
    if sender == node { return }
    let payload = String(rest.dropFirst(node.count + 1))
    let targets = handlers.withLock { h in h.byID.values.filter { $0.topic == topic }.map(\.handler) }
    for handler in targets { handler(payload) }
  }

  private func dispatchToAll(_ payload: String?) {
    let targets = handlers.withLock { h in h.byID.values.map(\.handler) }
    for handler in targets { handler(payload) }
  }
}

/// Rate limits counted in `rate_counters`, shared by every node: one row per key and fixed
/// window, judged by `WindowedCount`'s two-window estimate. `take` increments and reads in one
/// statement, so the row lock orders concurrent callers on every node and the k-th caller sees
/// count k: no more than `limit` are admitted. A refused call takes its increment back.
struct PostgresRateLimits: RateLimits {
  let pool: PostgresPool

  func take(_ key: String, limit: Int, window: TimeInterval, now: Date) async throws -> TimeInterval? {
    let (at, size, start) = Self.window(window, now)
    let rows = try await pool.all(
      """
      WITH cur AS (
        INSERT INTO rate_counters (key, window_start, count, expires_at) VALUES (\(key), \(start), 1, \(start + 2 * size))
        ON CONFLICT (key, window_start) DO UPDATE SET count = rate_counters.count + 1
        RETURNING count)
      SELECT cur.count, COALESCE((SELECT r.count FROM rate_counters r WHERE r.key = \(key) AND r.window_start = \(start - size)), 0)
      FROM cur
      """, as: (Int64, Int64).self)
    guard let (current, previous) = rows.first else { return nil }
    let elapsed = Double(at - start) / Double(size)
    guard let wait = WindowedCount.retryAfter(previous: previous, current: current - 1, limit: limit, elapsed: elapsed, window: window)
    else { return nil }
    // The caller is refused whatever happens here; a failed give-back only leaves the count one
    // high until the window moves on (stricter, never looser).
    try? await giveBack(key, window: window, takenAt: now)
    return wait
  }

  func giveBack(_ key: String, window: TimeInterval, takenAt now: Date) async throws {
    let (_, _, start) = Self.window(window, now)
    _ = try await pool.rows(
      "UPDATE rate_counters SET count = count - 1 WHERE key = \(key) AND window_start = \(start) AND count > 0 RETURNING 1")
  }

  func purgeExpired(now: Date) async throws -> Int {
    try await pool.rows("DELETE FROM rate_counters WHERE expires_at < \(PGTime.ms(now)) RETURNING 1").count
  }

  /// `now` and the window's size and start, in milliseconds.
  static func window(_ window: TimeInterval, _ now: Date) -> (at: Int64, size: Int64, start: Int64) {
    let at = PGTime.ms(now)
    let size = max(1, Int64((window * 1000).rounded()))
    return (at, size, WindowedCount.windowStart(at, window: size))
  }
}

/// Materials' content in `material_blobs`, in parts of at most 1 MiB, so every node serves
/// every upload. All parts of a blob are inserted in one transaction, so part 0 existing means
/// the whole blob does; two nodes storing the same content at once serialize on part 0's key
/// and the second finds it stored.
struct PostgresBlobStore: BlobStore {
  let pool: PostgresPool

  func put(sha256: String, file path: String) async throws -> Bool {
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try await pool.write { conn in
      guard let handle = FileHandle(forReadingAtPath: path) else {
        throw CocoaError(.fileReadNoSuchFile, userInfo: [NSFilePathErrorKey: path])
      }
      defer { try? handle.close() }
      var part: Int32 = 0
      while true {
        let data = try handle.read(upToCount: FileBlobStore.pieceBytes) ?? Data()
        if data.isEmpty && part > 0 { return true }
        let inserted = try await conn.run(
          """
          INSERT INTO material_blobs (sha256, part, bytes) VALUES (\(sha256), \(part), \(ByteBuffer(bytes: data)))
          ON CONFLICT (sha256, part) DO NOTHING RETURNING 1
          """, logger: pool.logger)
        if part == 0 && inserted == 0 { return false }
        if data.isEmpty { return true }
        part += 1
      }
    }
  }

  func read(sha256: String, _ body: (Data) async throws -> Void) async throws {
    var part: Int32 = 0
    while true {
      let rows = try await pool.all(
        "SELECT bytes FROM material_blobs WHERE sha256 = \(sha256) AND part = \(part)", as: ByteBuffer.self)
      guard let bytes = rows.first else {
        if part == 0 { throw StoreError.notFound("content \(sha256)") }
        return
      }
      if bytes.readableBytes > 0 { try await body(Data(buffer: bytes)) }
      part += 1
    }
  }
}
