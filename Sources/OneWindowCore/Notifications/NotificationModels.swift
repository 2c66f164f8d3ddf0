#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// What one message says, rendered from a template: shared by every inbox copy of a
/// publication and by a topic's single log entry.
public struct MessageContent: Sendable, Equatable, Codable {
  public var title: String
  public var body: String
  public var category: String
  public var priority: MessagePriority
  /// Machine-readable context (case_id, tracking_code, ...) for the app to link to.
  public var data: [String: String]
  public var template: String
  public var templateVersion: Int
  public var collapseKey: String?

  public init(
    title: String, body: String, category: String, priority: MessagePriority, data: [String: String] = [:], template: String,
    templateVersion: Int, collapseKey: String? = nil
  ) {
    self.title = title
    self.body = body
    self.category = category
    self.priority = priority
    self.data = data
    self.template = template
    self.templateVersion = templateVersion
    self.collapseKey = collapseKey
  }

  public static let maxDataEntries = 20
  public static let maxDataValueLength = 500

  /// Publisher-supplied data: at most 20 keys named like placeholders, values ≤ 500 characters.
  public static func validateData(_ data: [String: String]) throws(ValidationError) {
    guard data.count <= maxDataEntries else { throw ValidationError("data", "at most \(maxDataEntries) entries") }
    for (key, value) in data.sorted(by: { $0.key < $1.key }) {
      guard (1...64).contains(key.utf8.count), key.utf8.allSatisfy(MessageTemplate.isPlaceholderByte) else {
        throw ValidationError("data", "key \(key) must be 1–64 characters of a-z, 0-9 or '_'")
      }
      try Check.optionalText(value, field: "data.\(key)", max: maxDataValueLength)
    }
  }
}

/// Where a message stands in one inbox (the overlay of §8.3: pending → delivered by a cursor
/// acknowledgement; expired or replaced instead when that happens first).
public enum InboxMessageState: String, Sendable, Codable, CaseIterable {
  case pending
  case delivered
  case expired
  case replaced
}

/// One message as an account sees it: from its own inbox (`topic` nil) or from a topic log.
public struct InboxEntry: Sendable, Equatable {
  public var eventID: String
  public var topic: String?
  public var seq: Int64
  public var content: MessageContent
  public var publicationID: String?
  public var replacesEventID: String?
  public var sentAt: Date
  public var expiresAt: Date?
  public var readAt: Date?
  public var state: InboxMessageState

  public init(
    eventID: String, topic: String?, seq: Int64, content: MessageContent, publicationID: String?, replacesEventID: String?,
    sentAt: Date, expiresAt: Date?, readAt: Date?, state: InboxMessageState
  ) {
    self.eventID = eventID
    self.topic = topic
    self.seq = seq
    self.content = content
    self.publicationID = publicationID
    self.replacesEventID = replacesEventID
    self.sentAt = sentAt
    self.expiresAt = expiresAt
    self.readAt = readAt
    self.state = state
  }

  public func isExpired(at now: Date) -> Bool { expiresAt.map { $0 <= now } ?? false }
}

/// Accounts matching every given field (at least one).
public struct Segment: Sendable, Equatable, Codable {
  public var role: Role?
  public var departmentCode: String?
  /// An administrative-division prefix (2, 4 or 6 digits).
  public var region: String?

  public init(role: Role? = nil, departmentCode: String? = nil, region: String? = nil) {
    self.role = role
    self.departmentCode = departmentCode
    self.region = region
  }

  public func validated() throws(ValidationError) -> Segment {
    guard role != nil || departmentCode != nil || region != nil else {
      throw ValidationError("audience.segment", "give at least one of role, department_code, region")
    }
    if let region {
      guard [2, 4, 6].contains(region.utf8.count), region.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
        throw ValidationError("audience.segment.region", "must be a 2-, 4- or 6-digit administrative division code (e.g. 31, 3101, 310104)")
      }
    }
    return self
  }

  /// The division an account belongs to: a resident ID number's first six digits, or a unified
  /// social credit code's registration region (characters 3–8).
  public static func regionCode(idNumber: String?, creditCode: String?) -> String? {
    if let id = idNumber, id.utf8.count >= 6 { return String(id.prefix(6)) }
    if let code = creditCode, code.utf8.count >= 8 { return String(code.dropFirst(2).prefix(6)) }
    return nil
  }
}

/// Who a publication reaches.
public enum Audience: Sendable, Equatable, Codable {
  case account(String)
  case segment(Segment)
  case topic(String)
}

public enum PublicationStatus: String, Sendable, Codable {
  case scheduled, sent, cancelled
}

/// A publish request, validated and rendered, ready to store.
public struct NewPublication: Sendable, Equatable {
  public var id: String
  public var audience: Audience
  public var content: MessageContent
  public var ttl: TimeInterval?
  /// nil: now.
  public var sendAt: Date?
  public var publisherID: String?
  /// Scoped to the publisher (system events use `system`).
  public var idempotencyKey: String
  /// Sent to webhook endpoints subscribed to `notification.published`, when set.
  public var webhookEvent: WebhookEvent?
  public var audit: AuditEvent?

  public init(
    id: String, audience: Audience, content: MessageContent, ttl: TimeInterval?, sendAt: Date?, publisherID: String?,
    idempotencyKey: String, webhookEvent: WebhookEvent? = nil, audit: AuditEvent? = nil
  ) {
    self.id = id
    self.audience = audience
    self.content = content
    self.ttl = ttl
    self.sendAt = sendAt
    self.publisherID = publisherID
    self.idempotencyKey = idempotencyKey
    self.webhookEvent = webhookEvent
    self.audit = audit
  }
}

public struct Publication: Sendable, Equatable {
  public var id: String
  public var audience: Audience
  public var content: MessageContent
  public var ttl: TimeInterval?
  public var status: PublicationStatus
  public var sendAt: Date?
  public var createdAt: Date
  public var sentAt: Date?
  public var recipientCount: Int64
  /// The message's event id for a direct or topic publication; empty for a segment.
  public var eventID: String
  public var publisherID: String?

  public init(
    id: String, audience: Audience, content: MessageContent, ttl: TimeInterval?, status: PublicationStatus, sendAt: Date?,
    createdAt: Date, sentAt: Date?, recipientCount: Int64, eventID: String, publisherID: String?
  ) {
    self.id = id
    self.audience = audience
    self.content = content
    self.ttl = ttl
    self.status = status
    self.sendAt = sendAt
    self.createdAt = createdAt
    self.sentAt = sentAt
    self.recipientCount = recipientCount
    self.eventID = eventID
    self.publisherID = publisherID
  }
}

/// An event sent to the webhook endpoints subscribed to its type, as a signed JSON POST.
public struct WebhookEvent: Sendable, Equatable {
  public static let caseTransition = "case.transition"
  public static let notificationPublished = "notification.published"
  public static let paymentSucceeded = "payment.succeeded"
  public static let paymentFailed = "payment.failed"
  public static let refundSucceeded = "refund.succeeded"
  public static let knownTypes: Set<String> = [caseTransition, notificationPublished, paymentSucceeded, paymentFailed, refundSucceeded]

  public var id: String
  public var type: String
  /// The exact request body (JSON), signed as sent.
  public var body: [UInt8]

  public init(id: String, type: String, body: [UInt8]) {
    self.id = id
    self.type = type
    self.body = body
  }

  /// `{"id":…,"type":…,"created_at":…,"data":{…}}` with sorted keys, so the same event always has
  /// the same bytes.
  public static func make(id: String, type: String, createdAt: Date, data: [String: String]) -> WebhookEvent {
    struct Envelope: Encodable {
      var id: String
      var type: String
      var created_at: String
      var data: [String: String]
    }
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    let envelope = Envelope(id: id, type: type, created_at: Date.ISO8601FormatStyle(includingFractionalSeconds: true).format(createdAt), data: data)
    let body = (try? encoder.encode(envelope)).map { Array($0) } ?? Array("{}".utf8)
    return WebhookEvent(id: id, type: type, body: body)
  }
}

/// A stored template version.
public struct StoredTemplate: Sendable, Equatable {
  public var template: MessageTemplate
  public var category: String
  public var system: Bool
  public var createdAt: Date

  public init(template: MessageTemplate, category: String, system: Bool, createdAt: Date) {
    self.template = template
    self.category = category
    self.system = system
    self.createdAt = createdAt
  }
}

public struct TopicInfo: Sendable, Equatable {
  public var code: String
  public var title: String
  public var description: String
  public var subscriberCount: Int64
  public var subscribed: Bool
  public var headSeq: Int64
  public var createdAt: Date

  public init(
    code: String, title: String, description: String, subscriberCount: Int64, subscribed: Bool, headSeq: Int64, createdAt: Date
  ) {
    self.code = code
    self.title = title
    self.description = description
    self.subscriberCount = subscriberCount
    self.subscribed = subscribed
    self.headSeq = headSeq
    self.createdAt = createdAt
  }

  /// Topic codes follow template names: 2–64 characters of a-z, 0-9, '-', '_', '.'.
  public static func validateCode(_ code: String, field: String = "topic") throws(ValidationError) -> String {
    guard (2...64).contains(code.utf8.count), code.utf8.allSatisfy(MessageTemplate.isNameByte) else {
      throw ValidationError(field, "must be 2–64 characters of a-z, 0-9, '-', '_' or '.' (e.g. district.310104)")
    }
    return code
  }
}

/// One stream position of an account (its inbox, or one topic): acknowledged up to `acked`,
/// sent up to `sent`; `rounds` counts the streams that re-sent unacknowledged messages since
/// the last acknowledgement caught up, which gives each redelivery its delivery count.
public struct StreamCursor: Sendable, Equatable {
  public var acked: Int64
  public var sent: Int64
  public var rounds: Int

  public init(acked: Int64 = 0, sent: Int64 = 0, rounds: Int = 0) {
    self.acked = acked
    self.sent = sent
    self.rounds = rounds
  }

  /// The delivery count of message `seq` on a stream that began at this cursor.
  public func deliveryCount(of seq: Int64) -> Int { seq <= sent ? rounds + 1 : 1 }

  /// At the start of a stream: one more round when unacknowledged messages were already sent.
  public func beginningStream() -> StreamCursor {
    var next = self
    if sent > acked { next.rounds += 1 }
    return next
  }

  /// An acknowledgement up to `seq` (monotonic); rounds reset when it covers everything sent.
  public func acknowledging(_ seq: Int64) -> StreamCursor {
    var next = self
    next.acked = max(acked, seq)
    next.sent = max(sent, next.acked)
    if next.acked >= next.sent { next.rounds = 0 }
    return next
  }
}

/// The cursors of one account: its inbox, and each topic it subscribes to.
public struct StreamCursors: Sendable, Equatable {
  public var inbox: StreamCursor
  public var topics: [String: StreamCursor]

  public init(inbox: StreamCursor = StreamCursor(), topics: [String: StreamCursor] = [:]) {
    self.inbox = inbox
    self.topics = topics
  }
}

public struct WebhookEndpoint: Sendable, Equatable {
  public var id: String
  public var url: String
  public var eventTypes: [String]
  public var enabled: Bool
  public var description: String
  public var createdAt: Date
  /// The signing secret, sealed with the server's key (never returned by the API after creation).
  public var sealedSecret: [UInt8]

  public init(
    id: String, url: String, eventTypes: [String], enabled: Bool, description: String, createdAt: Date, sealedSecret: [UInt8]
  ) {
    self.id = id
    self.url = url
    self.eventTypes = eventTypes
    self.enabled = enabled
    self.description = description
    self.createdAt = createdAt
    self.sealedSecret = sealedSecret
  }
}

public struct DeliveryAttempt: Sendable, Equatable {
  public var number: Int
  public var at: Date
  /// nil: a network error or timeout.
  public var httpStatus: Int?
  public var error: String
  public var durationMillis: Int64

  public init(number: Int, at: Date, httpStatus: Int?, error: String, durationMillis: Int64) {
    self.number = number
    self.at = at
    self.httpStatus = httpStatus
    self.error = error
    self.durationMillis = durationMillis
  }
}

/// One event on its way to one endpoint of an outbound channel.
public struct Delivery: Sendable, Equatable {
  public var id: String
  public var channel: String
  /// The endpoint id (webhooks) or the channel's recipient.
  public var target: String
  public var eventType: String
  public var eventID: String
  public var body: [UInt8]
  public var status: DeliveryStatus
  public var attempts: [DeliveryAttempt]
  public var createdAt: Date
  public var nextAttemptAt: Date?
  public var replayOf: String?

  public init(
    id: String, channel: String, target: String, eventType: String, eventID: String, body: [UInt8], status: DeliveryStatus,
    attempts: [DeliveryAttempt], createdAt: Date, nextAttemptAt: Date?, replayOf: String?
  ) {
    self.id = id
    self.channel = channel
    self.target = target
    self.eventType = eventType
    self.eventID = eventID
    self.body = body
    self.status = status
    self.attempts = attempts
    self.createdAt = createdAt
    self.nextAttemptAt = nextAttemptAt
    self.replayOf = replayOf
  }
}
