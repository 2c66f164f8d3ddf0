import Foundation
import OneWindowAPI
import OneWindowCore
import SwiftProtobuf

// Conversions between the notification wire messages and the core's value types.

extension MessagePriority {
  var proto: Onewindow_V1_MessagePriority { self == .high ? .high : .normal }

  /// Unset means normal.
  init(proto: Onewindow_V1_MessagePriority) throws(ValidationError) {
    switch proto {
    case .unspecified, .normal: self = .normal
    case .high: self = .high
    case .UNRECOGNIZED(let n): throw ValidationError("priority", "has unknown value \(n)")
    }
  }
}

extension InboxMessageState {
  var proto: Onewindow_V1_InboxMessageState {
    switch self {
    case .pending: .pending
    case .delivered: .delivered
    case .expired: .expired
    case .replaced: .replaced
    }
  }
}

extension DeliveryStatus {
  var proto: Onewindow_V1_DeliveryStatus {
    switch self {
    case .created: .created
    case .sending: .sending
    case .delivered: .delivered
    case .temporaryFailure: .temporaryFailure
    case .permanentFailure: .permanentFailure
    case .technicalFailure: .technicalFailure
    }
  }

  /// nil for unspecified (no filter).
  static func filter(proto: Onewindow_V1_DeliveryStatus) throws(ValidationError) -> DeliveryStatus? {
    switch proto {
    case .unspecified: nil
    case .created: .created
    case .sending: .sending
    case .delivered: .delivered
    case .temporaryFailure: .temporaryFailure
    case .permanentFailure: .permanentFailure
    case .technicalFailure: .technicalFailure
    case .UNRECOGNIZED(let n): throw ValidationError("status", "has unknown value \(n)")
    }
  }
}

extension Onewindow_V1_InboxMessage {
  init(_ e: InboxEntry, deliveryCount: Int = 0) {
    self.init()
    eventID = e.eventID
    topic = e.topic ?? ""
    seq = e.seq
    category = e.content.category
    priority = e.content.priority.proto
    title = e.content.title
    body = e.content.body
    data = e.content.data
    template = e.content.template
    templateVersion = Int32(clamping: e.content.templateVersion)
    collapseKey = e.content.collapseKey ?? ""
    replacesEventID = e.replacesEventID ?? ""
    sentAt = .init(e.sentAt)
    if let at = e.expiresAt { expiresAt = .init(at) }
    if let at = e.readAt { readAt = .init(at) }
    state = e.state.proto
    self.deliveryCount = UInt32(clamping: deliveryCount)
    publicationID = e.publicationID ?? ""
  }
}

extension Onewindow_V1_Audience {
  init(_ a: Audience) {
    self.init()
    switch a {
    case .account(let id): accountID = id
    case .topic(let code): topic = code
    case .segment(let s):
      segment = .with {
        if let role = s.role { $0.role = role.proto }
        $0.departmentCode = s.departmentCode ?? ""
        $0.region = s.region ?? ""
      }
    }
  }

  func domain() throws(ValidationError) -> Audience {
    switch target {
    case .accountID(let id):
      guard !id.isEmpty, id.utf8.count <= 64 else { throw ValidationError("audience.account_id", "is required (an account id)") }
      return .account(id)
    case .topic(let code):
      return .topic(try TopicInfo.validateCode(code, field: "audience.topic"))
    case .segment(let s):
      let role: Role? = s.role == .unspecified ? nil : try Role(proto: s.role, field: "audience.segment.role")
      let segment = Segment(
        role: role, departmentCode: s.departmentCode.isEmpty ? nil : s.departmentCode, region: s.region.isEmpty ? nil : s.region)
      return .segment(try segment.validated())
    case nil:
      throw ValidationError("audience", "is required: one of account_id, segment, topic")
    }
  }
}

extension Onewindow_V1_Publication {
  init(_ p: Publication) {
    self.init()
    id = p.id
    audience = .init(p.audience)
    template = p.content.template
    templateVersion = Int32(clamping: p.content.templateVersion)
    title = p.content.title
    body = p.content.body
    category = p.content.category
    priority = p.content.priority.proto
    collapseKey = p.content.collapseKey ?? ""
    ttlSeconds = Int64(p.ttl ?? 0)
    status = switch p.status {
    case .scheduled: .scheduled
    case .sent: .sent
    case .cancelled: .cancelled
    }
    if let at = p.sendAt { sendAt = .init(at) }
    createdAt = .init(p.createdAt)
    if let at = p.sentAt { sentAt = .init(at) }
    recipientCount = p.recipientCount
    eventID = p.eventID
    data = p.content.data
  }
}

extension Onewindow_V1_NotificationTemplate {
  init(_ t: StoredTemplate) {
    self.init()
    name = t.template.name
    version = Int32(clamping: t.template.version)
    title = t.template.title
    body = t.template.body
    category = t.category
    placeholders = t.template.placeholders
    createdAt = .init(t.createdAt)
    system = t.system
  }
}

extension Onewindow_V1_Topic {
  init(_ t: TopicInfo) {
    self.init()
    code = t.code
    title = t.title
    description_p = t.description
    subscriberCount = t.subscriberCount
    subscribed = t.subscribed
    headSeq = t.headSeq
    createdAt = .init(t.createdAt)
  }
}

extension Onewindow_V1_WebhookEndpoint {
  init(_ e: WebhookEndpoint) {
    self.init()
    id = e.id
    url = e.url
    eventTypes = e.eventTypes
    enabled = e.enabled
    description_p = e.description
    createdAt = .init(e.createdAt)
  }
}

extension Onewindow_V1_Delivery {
  init(_ d: Delivery) {
    self.init()
    id = d.id
    channel = d.channel
    target = d.target
    eventType = d.eventType
    eventID = d.eventID
    status = d.status.proto
    attempts = d.attempts.map { a in
      .with {
        $0.number = Int32(clamping: a.number)
        $0.at = .init(a.at)
        $0.httpStatus = Int32(clamping: a.httpStatus ?? 0)
        $0.error = a.error
        $0.durationMs = a.durationMillis
      }
    }
    createdAt = .init(d.createdAt)
    if let at = d.nextAttemptAt { nextAttemptAt = .init(at) }
    replayOf = d.replayOf ?? ""
  }
}

extension Onewindow_V1_StreamPositions {
  init(inbox: Int64, topics: [String: Int64], now: Date) {
    self.init()
    inboxSeq = inbox
    self.topics = topics.sorted { $0.key < $1.key }.map { t in .with { $0.topic = t.key; $0.seq = t.value } }
    serverTime = .init(now)
  }
}

/// Page tokens of the notification lists: the last item's seq (inbox, topics) or id
/// (publications, deliveries).
enum NotificationPaging {
  static func pageSize(_ requested: Int32) throws(ValidationError) -> Int {
    try Paging.pageSize(requested, default: 50, max: 200)
  }

  static func seqToken(_ seq: Int64) -> String { Paging.makeToken("s", "\(seq)") }

  static func seq(fromToken token: String) throws(ValidationError) -> Int64? {
    guard !token.isEmpty else { return nil }
    guard let seq = Int64(try Paging.token(token, prefix: "s")), seq > 0 else { throw Paging.badToken }
    return seq
  }

  static func idToken(_ id: String) -> String { Paging.makeToken("i", id) }

  static func id(fromToken token: String) throws(ValidationError) -> String? {
    guard !token.isEmpty else { return nil }
    let id = try Paging.token(token, prefix: "i")
    guard (1...64).contains(id.utf8.count) else { throw Paging.badToken }
    return id
  }
}
