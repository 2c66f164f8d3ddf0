import Foundation
import OneWindowCore
import Synchronization

/// What a doorbell is about. Each node listens to all of them; the payload says what changed
/// in the topic's own terms.
public enum DoorbellTopic: String, Sendable, CaseIterable {
  /// The sync log grew; the payload is the new head sequence.
  case sync = "s"
  /// Inbox messages were committed or subscriptions changed (`InboxDoorbell` lines).
  case inbox = "i"
  /// The catalog changed; reload the published snapshot.
  case catalog = "c"
  /// A background job has new work (the payload names the job).
  case jobs = "j"

  /// The largest payload one doorbell may carry (PostgreSQL's NOTIFY limit is 8,000 bytes,
  /// less the topic and node prefix); a longer one is not sent.
  public static let maxPayloadBytes = 7_800
}

/// Doorbells between the nodes that share one database: a writer rings after committing, the
/// other nodes' listeners hear it and read the store. A doorbell only makes another node look
/// sooner; it carries no data that is not in the store, and correctness never depends on one
/// arriving — every listener also polls, and is told (`nil`) whenever it may have missed some.
///
/// The embedded engine has one process and no other nodes: its doorbells are silent.
public protocol Doorbells: Sendable {
  /// True when other processes may write to the same database (so listeners must poll and pump).
  var isShared: Bool { get }
  /// Tells the other nodes. Best effort: failures are logged, not thrown (the writer's commit
  /// stands, and the other nodes' polling finds it).
  func ring(_ topic: DoorbellTopic, _ payload: String) async
  /// Calls `handler` with each doorbell another node rings on `topic`, and with nil whenever
  /// doorbells may have been missed (listening started or restarted after a lost connection).
  /// Handlers must be quick and never block. Keep the token to cancel.
  func observe(_ topic: DoorbellTopic, _ handler: @escaping @Sendable (String?) -> Void) -> UInt64
  func cancel(_ token: UInt64)
}

/// Named leases for work that must run on one node of the cluster at a time (singleton jobs).
/// Expiry is judged by the database's clock, never by a node's, so nodes with skewed clocks
/// agree on who holds a lease.
public protocol Leases: Sendable {
  /// Takes the lease for `holder`, or renews it if `holder` already has it, for `duration` from
  /// the database's now. True when `holder` holds it afterwards; false while another holder's
  /// lease has not expired.
  func acquire(_ name: String, holder: String, for duration: Duration) async throws -> Bool
  /// Gives the lease up early (a holder that is stopping), so another node need not wait for
  /// it to expire. Does nothing when `holder` does not hold it.
  func release(_ name: String, holder: String) async throws
  /// The current holder and how long its lease still runs, by the database's clock (nil: free).
  func holder(of name: String) async throws -> (holder: String, remaining: Duration)?
}

/// Doorbells for a database only one process uses: nothing to tell, nothing to hear.
public struct SilentDoorbells: Doorbells {
  public init() {}
  public var isShared: Bool { false }
  public func ring(_ topic: DoorbellTopic, _ payload: String) async {}
  public func observe(_ topic: DoorbellTopic, _ handler: @escaping @Sendable (String?) -> Void) -> UInt64 { 0 }
  public func cancel(_ token: UInt64) {}
}

/// Rules every engine's leases share.
public enum LeaseRules {
  /// A lease's duration in whole milliseconds (at least 1).
  public static func millis(_ duration: Duration) -> Int64 {
    let (seconds, attoseconds) = duration.components
    return max(1, seconds * 1000 + attoseconds / 1_000_000_000_000_000)
  }
}

/// Rate limits counted for the whole cluster (per caller address: login code requests,
/// registrations, failed progress queries), so adding nodes does not multiply them.
public protocol RateLimits: Sendable {
  /// Counts one event for `key` if fewer than `limit` happened in the last `window` seconds and
  /// returns nil; otherwise counts nothing and returns how long until one is allowed. Atomic:
  /// concurrent calls on any node never admit more than `limit`.
  func take(_ key: String, limit: Int, window: TimeInterval, now: Date) async throws -> TimeInterval?
  /// Takes back an event `take` counted at `now` (a call that turned out not to count).
  func giveBack(_ key: String, window: TimeInterval, takenAt now: Date) async throws
  /// Forgets counts older than their windows (housekeeping); returns how many were removed.
  func purgeExpired(now: Date) async throws -> Int
}

/// Rate limits kept in this process: exact sliding windows, for a database only one process
/// uses (the embedded engine), where this process's count is the cluster's.
public final class InProcessRateLimits: RateLimits {
  private let limits = Mutex<[String: SlidingWindowLimit]>([:])

  public init() {}

  private static func slot(limit: Int, window: TimeInterval) -> String { "\(limit)/\(window)" }

  public func take(_ key: String, limit: Int, window: TimeInterval, now: Date) async throws -> TimeInterval? {
    limits.withLock { all in
      all[Self.slot(limit: limit, window: window), default: SlidingWindowLimit(limit: limit, window: window)].acquire(key, now: now)
    }
  }

  public func giveBack(_ key: String, window: TimeInterval, takenAt now: Date) async throws {
    limits.withLock { all in
      for slot in all.keys where all[slot]?.window == window { all[slot]?.refund(key) }
    }
  }

  /// Nothing to do: each window forgets its old events as it goes.
  public func purgeExpired(now: Date) async throws -> Int { 0 }
}

/// Content-addressed storage of verified uploads (case materials): each content once, by its
/// SHA-256. The caller verifies size, hash and type before `put`; a blob store only keeps bytes.
public protocol BlobStore: Sendable {
  /// Takes the verified file at `path` into storage under `sha256` (the file is consumed: moved
  /// or deleted). False when that content was already stored.
  func put(sha256: String, file path: String) async throws -> Bool
  /// Calls `body` with the content in order, in pieces of at most 1 MiB; `notFound` when absent.
  func read(sha256: String, _ body: (Data) async throws -> Void) async throws
}

/// Blobs as files under one directory (`ab/abcdef…`), for a single node: a file is renamed
/// into place only whole, so a crash never leaves a partial blob.
public struct FileBlobStore: BlobStore {
  public let root: String
  public static let pieceBytes = 1024 * 1024

  public init(root: String) throws {
    self.root = root
    try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
  }

  public func path(sha256: String) -> String {
    (root as NSString).appendingPathComponent("\(sha256.prefix(2))/\(sha256)")
  }

  public func put(sha256: String, file: String) async throws -> Bool {
    let fm = FileManager.default
    let final = path(sha256: sha256)
    if fm.fileExists(atPath: final) {
      try? fm.removeItem(atPath: file)
      return false
    }
    try fm.createDirectory(
      atPath: (final as NSString).deletingLastPathComponent, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    // rename(2) within one file system is atomic: the content appears whole or not at all.
    guard rename(file, final) == 0 else {
      try? fm.removeItem(atPath: file)
      if fm.fileExists(atPath: final) { return false }
      throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: final])
    }
    return true
  }

  public func read(sha256: String, _ body: (Data) async throws -> Void) async throws {
    guard let handle = FileHandle(forReadingAtPath: path(sha256: sha256)) else {
      throw StoreError.notFound("content \(sha256)")
    }
    defer { try? handle.close() }
    while let data = try handle.read(upToCount: Self.pieceBytes), !data.isEmpty {
      try await body(data)
    }
  }
}
