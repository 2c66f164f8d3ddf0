import Logging
import OneWindowCore

/// An outbound channel the dispatcher sends deliveries through: webhooks today; SMS, email and
/// push providers plug in later under their own `name` (the `channel` column of a delivery).
/// `deliver` never throws: every way an attempt can end is a `ChannelResult`, which the
/// dispatcher records as the attempt and turns into the delivery's next status.
public protocol NotificationChannel: Sendable {
  /// The delivery `channel` this handles ("webhook", ...).
  var name: String { get }
  /// One attempt (`attempt` counts from 1).
  func deliver(_ delivery: Delivery, attempt: Int) async -> ChannelResult
  /// Releases the channel's resources (connections, clients); called once by
  /// `DeliveryDispatcher.run()` when it stops. No delivery is made after it.
  func shutdown() async
}

extension NotificationChannel {
  /// Nothing to release.
  public func shutdown() async {}
}

/// How one attempt ended.
public struct ChannelResult: Sendable, Equatable {
  public var outcome: RetryPolicy.Outcome
  /// nil: no HTTP response (a network error, timeout, or a channel that is not HTTP).
  public var httpStatus: Int?
  /// Short, for administrators: never personal data or the message body. Empty when delivered.
  public var error: String
  public var durationMillis: Int64

  public init(outcome: RetryPolicy.Outcome, httpStatus: Int? = nil, error: String = "", durationMillis: Int64 = 0) {
    self.outcome = outcome
    self.httpStatus = httpStatus
    self.error = error
    self.durationMillis = durationMillis
  }

  public static let maxErrorLength = 200

  /// `text` cut to `maxErrorLength` characters (with an ellipsis when cut).
  public static func truncated(_ text: String) -> String {
    text.count <= maxErrorLength ? text : String(text.prefix(maxErrorLength - 1)) + "…"
  }
}

/// Development stand-in for providers not connected yet: logs the channel, event type, event
/// id, target and body size (never the body, which may hold personal data) and reports the
/// delivery as delivered.
public struct LoggingChannel: NotificationChannel {
  public let name: String
  let logger: Logger

  public init(name: String, logger: Logger) {
    self.name = name
    self.logger = logger
  }

  public func deliver(_ delivery: Delivery, attempt: Int) async -> ChannelResult {
    logger.info(
      "notification delivered (logging channel)",
      metadata: [
        "channel": "\(name)", "event_type": "\(delivery.eventType)", "event_id": "\(delivery.eventID)",
        "delivery": "\(delivery.id)", "target": "\(delivery.target)", "bytes": "\(delivery.body.count)",
        "attempt": "\(attempt)",
      ])
    return ChannelResult(outcome: .delivered)
  }
}
