#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A sliding-window limit: at most `limit` events per `window` for each key (a caller's network
/// address). Used where the per-account limits cannot apply because no account is involved yet:
/// requesting login codes for arbitrary phones, registering accounts.
public struct SlidingWindowLimit: Sendable {
  public let limit: Int
  public let window: TimeInterval
  /// Bound on remembered keys; the quietest are forgotten first.
  public let maxKeys: Int
  private var events: [String: [Date]] = [:]

  public init(limit: Int, window: TimeInterval, maxKeys: Int = 100_000) {
    self.limit = limit
    self.window = window
    self.maxKeys = maxKeys
  }

  /// Records an event for `key` and returns nil, or returns how long until one is allowed.
  public mutating func acquire(_ key: String, now: Date) -> TimeInterval? {
    var recent = (events[key] ?? []).filter { now.timeIntervalSince($0) < window }
    if recent.count >= limit, let oldest = recent.first {
      events[key] = recent
      return window - now.timeIntervalSince(oldest)
    }
    recent.append(now)
    events[key] = recent
    if events.count > maxKeys { forgetQuietest(now: now) }
    return nil
  }

  /// Takes back the newest event of `key` (a call that turned out not to count).
  public mutating func refund(_ key: String) {
    guard var recent = events[key], !recent.isEmpty else { return }
    recent.removeLast()
    events[key] = recent.isEmpty ? nil : recent
  }

  private mutating func forgetQuietest(now: Date) {
    events = events.filter { _, times in times.contains { now.timeIntervalSince($0) < window } }
    while events.count > maxKeys, let quietest = events.min(by: { ($0.value.last ?? .distantPast) < ($1.value.last ?? .distantPast) }) {
      events.removeValue(forKey: quietest.key)
    }
  }

  /// The address part of a gRPC peer string: `ipv4:10.1.2.3:5555` → `ipv4:10.1.2.3`,
  /// `ipv6:[::1]:5555` → `ipv6:[::1]`.
  public static func peerAddress(_ peer: String) -> String {
    guard let colon = peer.lastIndex(of: ":"), peer[peer.index(after: colon)...].allSatisfy(\.isNumber),
          peer.filter({ $0 == ":" }).count >= 2 || peer.hasPrefix("ipv4:")
    else { return peer }
    return String(peer[..<colon])
  }
}

/// The sliding-window estimate a shared counter uses (one row per key and fixed window rather
/// than one per event): the events of the current window plus the previous window's, weighted
/// by the share of it the sliding window still covers. A burst can never pass `limit` within a
/// window; spread-out traffic is judged within a few per cent of an exact sliding window.
public enum WindowedCount {
  /// The fixed window holding `millis` (both in milliseconds since 1970).
  public static func windowStart(_ millis: Int64, window: Int64) -> Int64 {
    millis - ((millis % window) + window) % window
  }

  /// nil when one more event is allowed after `current` events in this window and `previous`
  /// in the one before, `elapsed` (0..<1) of the way through this one; else how long until one is.
  public static func retryAfter(previous: Int64, current: Int64, limit: Int, elapsed: Double, window: TimeInterval) -> TimeInterval? {
    let weight = max(0, 1 - elapsed)
    let estimate = Double(previous) * weight + Double(current)
    guard estimate >= Double(limit) else { return nil }
    // When this window's own events already fill the limit, only the next window helps.
    guard current < Int64(limit), previous > 0 else { return (1 - elapsed) * window }
    // Otherwise, when the previous window's weight has fallen far enough.
    let needed = 1 - (Double(limit) - Double(current)) / Double(previous)
    return max(0.001, (needed - elapsed) * window)
  }
}
