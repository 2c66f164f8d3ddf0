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
