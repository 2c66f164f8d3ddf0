import Foundation
import GRPCCore
import OneWindowCore
import OneWindowStore

/// A sliding-window limit per caller address, counted by the store for every node sharing the
/// database (`RateLimits`), so a cluster of N nodes admits what one node would. The address is
/// the caller's behind trusted proxies (`CallerAddress.current`), so callers behind one
/// load balancer are counted apart.
struct PeerLimiter: Sendable {
  let store: any RateLimits
  /// Namespaces this limit's keys (`code`, `register`, `track`).
  let name: String
  let limit: Int
  let window: TimeInterval
  let what: String

  init(store: any RateLimits, name: String, limit: Int, window: TimeInterval, what: String) {
    self.store = store
    self.name = name
    self.limit = limit
    self.window = window
    self.what = what
  }

  /// Counts one call from the caller's address, or throws RESOURCE_EXHAUSTED with `retry-after`.
  /// Returns the ticket `refund` takes.
  @discardableResult
  func admit(_ context: ServerContext, now: Date) async throws -> Ticket {
    let key = name + ":" + (CallerAddress.current ?? SlidingWindowLimit.peerAddress(context.remotePeer))
    if let wait = try await store.take(key, limit: limit, window: window, now: now) {
      throw RateLimited.error("too many \(what) from this address", retryAfter: wait)
    }
    return Ticket(key: key, at: now)
  }

  /// Takes back the call `admit` counted (pair them to limit failed attempts only: admit
  /// before the work, refund when it succeeded).
  func refund(_ ticket: Ticket) async throws {
    try await store.giveBack(ticket.key, window: window, takenAt: ticket.at)
  }

  struct Ticket: Sendable {
    var key: String
    var at: Date
  }
}

enum RateLimited {
  /// RESOURCE_EXHAUSTED with the wait in the message and in `retry-after` metadata (seconds).
  static func error(_ message: String, retryAfter: TimeInterval) -> RPCError {
    let seconds = max(1, Int(retryAfter.rounded(.up)))
    return RPCError(
      code: .resourceExhausted, message: "\(message); retry after \(seconds) s", metadata: ["retry-after": "\(seconds)"])
  }
}
