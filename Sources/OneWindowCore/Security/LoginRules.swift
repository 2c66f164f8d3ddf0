#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// One-time login codes sent by SMS: 6 digits, 5 minutes, single use, at most 5 attempts.
/// Issuing is rate limited per phone (1 a minute, 10 a day).
public struct LoginCodePolicy: Sendable {
  public var validity: TimeInterval = 5 * 60
  public var maxAttempts = 5
  public var minInterval: TimeInterval = 60
  public var maxPerDay = 10

  public init() {}

  /// Given when earlier codes for this phone were issued, how long until another may be issued
  /// (nil: now).
  public func retryAfter(previousIssues: [Date], now: Date) -> TimeInterval? {
    let lastDay = previousIssues.filter { now.timeIntervalSince($0) < 24 * 3600 }
    if let latest = lastDay.max(), now.timeIntervalSince(latest) < minInterval {
      return minInterval - now.timeIntervalSince(latest)
    }
    if lastDay.count >= maxPerDay, let oldest = lastDay.min() {
      return 24 * 3600 - now.timeIntervalSince(oldest)
    }
    return nil
  }

  public static func generateCode() -> String {
    var rng = SystemRandomNumberGenerator()
    let n = Int.random(in: 0..<1_000_000, using: &rng)
    let digits = String(n)
    return String(repeating: "0", count: 6 - digits.count) + digits
  }

  public static func validateCodeShape(_ code: String) throws(ValidationError) {
    guard code.utf8.count == 6, code.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
      throw ValidationError("code", "must be exactly 6 digits")
    }
  }
}

/// Password-guessing defence: after `maxFailures` failed logins within `window`, the account is
/// locked for `lockout`.
public struct LoginLockoutPolicy: Sendable {
  public var maxFailures = 5
  public var window: TimeInterval = 15 * 60
  public var lockout: TimeInterval = 15 * 60

  public init() {}

  public struct State: Sendable, Equatable {
    public var failures: Int
    public var firstFailureAt: Date?
    public var lockedUntil: Date?

    public init(failures: Int, firstFailureAt: Date?, lockedUntil: Date?) {
      self.failures = failures
      self.firstFailureAt = firstFailureAt
      self.lockedUntil = lockedUntil
    }
  }

  /// Seconds the account stays locked, or nil when a login may be attempted.
  public func lockedFor(_ state: State, now: Date) -> TimeInterval? {
    guard let until = state.lockedUntil, until > now else { return nil }
    return until.timeIntervalSince(now)
  }

  /// The state after one more failure at `now`.
  public func recordingFailure(_ state: State, now: Date) -> State {
    var failures = state.failures
    var first = state.firstFailureAt
    if let f = first, now.timeIntervalSince(f) <= window {
      failures += 1
    } else {
      failures = 1
      first = now
    }
    if failures >= maxFailures {
      return State(failures: 0, firstFailureAt: nil, lockedUntil: now.addingTimeInterval(lockout))
    }
    return State(failures: failures, firstFailureAt: first, lockedUntil: nil)
  }
}
