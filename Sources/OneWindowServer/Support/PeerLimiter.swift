import Foundation
import GRPCCore
import OneWindowCore
import Synchronization

/// A sliding-window limit per caller address, shared by every call to one server process.
/// Behind a proxy every caller shares the proxy's address, so the limits are generous.
final class PeerLimiter: Sendable {
  private let state: Mutex<SlidingWindowLimit>
  private let what: String

  init(limit: Int, window: TimeInterval, what: String) {
    state = Mutex(SlidingWindowLimit(limit: limit, window: window))
    self.what = what
  }

  /// Counts one call from the context's peer, or throws RESOURCE_EXHAUSTED with `retry-after`.
  func admit(_ context: ServerContext, now: Date) throws {
    let key = SlidingWindowLimit.peerAddress(context.remotePeer)
    if let wait = state.withLock({ $0.acquire(key, now: now) }) {
      throw RateLimited.error("too many \(what) from this address", retryAfter: wait)
    }
  }

  /// Takes back the call `admit` counted (pair them to limit failed attempts only: admit
  /// before the work, refund when it succeeded).
  func refund(_ context: ServerContext) {
    let key = SlidingWindowLimit.peerAddress(context.remotePeer)
    state.withLock { $0.refund(key) }
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
