#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The delivery status of one message on one outbound channel (after GOV.UK Notify):
/// `created → sending → delivered | temporary-failure | permanent-failure | technical-failure`.
/// A temporary failure goes back to `sending` for the next attempt; `delivered`,
/// `permanent-failure` and `technical-failure` (retries exhausted: dead-lettered) are terminal
/// and stick — late updates to them are ignored. An administrator's replay of a dead letter is a
/// new delivery, not a change to the old one.
public enum DeliveryStatus: String, Sendable, Codable, CaseIterable {
  case created
  case sending
  case delivered
  case temporaryFailure = "temporary-failure"
  case permanentFailure = "permanent-failure"
  case technicalFailure = "technical-failure"

  public var isTerminal: Bool {
    switch self {
    case .delivered, .permanentFailure, .technicalFailure: true
    case .created, .sending, .temporaryFailure: false
    }
  }

  /// The status after an update to `next`; nil when the update is not allowed (a terminal
  /// status, or a skipped step), in which case it is ignored.
  public func applying(_ next: DeliveryStatus) -> DeliveryStatus? {
    switch (self, next) {
    case (.created, .sending), (.created, .technicalFailure): next
    case (.sending, .delivered), (.sending, .temporaryFailure), (.sending, .permanentFailure), (.sending, .technicalFailure): next
    case (.temporaryFailure, .sending), (.temporaryFailure, .technicalFailure): next
    default: nil
    }
  }
}

/// Retries of webhook deliveries: exponential backoff with jitter on 5xx, 429 and network
/// errors; never on other 4xx (the receiver said the request itself is wrong); dead-lettered
/// after the last attempt.
public struct RetryPolicy: Sendable, Equatable {
  public var maxAttempts: Int
  public var baseDelay: TimeInterval
  public var maxDelay: TimeInterval

  public init(maxAttempts: Int = 6, baseDelay: TimeInterval = 30, maxDelay: TimeInterval = 6 * 3600) {
    self.maxAttempts = maxAttempts
    self.baseDelay = baseDelay
    self.maxDelay = maxDelay
  }

  public enum Outcome: Sendable, Equatable {
    case delivered
    /// Worth another attempt.
    case retryable
    /// The receiver refused the request as such: no retry.
    case rejected
  }

  /// How an attempt ended: an HTTP status, or nil for a network error or timeout.
  public static func classify(httpStatus: Int?) -> Outcome {
    guard let status = httpStatus else { return .retryable }
    switch status {
    case 200..<300: return .delivered
    case 429, 500..<600: return .retryable
    default: return .rejected
    }
  }

  /// The wait before attempt `attempt + 1` after `attempt` failed (attempts count from 1), or
  /// nil when it was the last: half the exponential step fixed, half random ("equal jitter"),
  /// so waits grow steadily and receivers are not hit by synchronized retries.
  public func delay(afterAttempt attempt: Int, jitter: Double) -> TimeInterval? {
    guard attempt >= 1, attempt < maxAttempts else { return nil }
    let step = min(maxDelay, baseDelay * Double(1 << min(attempt - 1, 40)))
    return step / 2 + step / 2 * min(max(jitter, 0), 1)
  }

  /// The status an attempt leaves the delivery in.
  public func status(after outcome: Outcome, attempt: Int) -> DeliveryStatus {
    switch outcome {
    case .delivered: .delivered
    case .rejected: .permanentFailure
    case .retryable: attempt >= maxAttempts ? .technicalFailure : .temporaryFailure
    }
  }
}
