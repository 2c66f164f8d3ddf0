import Foundation
import OneWindowCore

// MARK: - Notifications

/// Limits an inbox write applies.
public struct InboxLimits: Sendable {
  /// Messages kept per inbox; past it the oldest read (then unread normal-priority) ones are
  /// pruned, never an unread high-priority one.
  public var cap: Int
  /// Accounts one segment publication may reach.
  public var maxSegmentRecipients: Int

  public init(cap: Int = InboxRules.defaultCap, maxSegmentRecipients: Int = 200_000) {
    self.cap = cap
    self.maxSegmentRecipients = maxSegmentRecipients
  }
}

/// What a publish (or the release of a scheduled one) wrote: what the live streams need to push.
public struct PublishOutcome: Sendable {
  public var publication: Publication
  /// The idempotency key had been used: `publication` is the original and nothing was written.
  public var replayed: Bool
  /// Inbox messages written, with their owners (direct and segment publications).
  public var inboxMessages: [(accountID: String, entry: InboxEntry)]
  /// The topic log entry written (topic publications).
  public var topicMessage: InboxEntry?

  public init(
    publication: Publication, replayed: Bool, inboxMessages: [(accountID: String, entry: InboxEntry)] = [],
    topicMessage: InboxEntry? = nil
  ) {
    self.publication = publication
    self.replayed = replayed
    self.inboxMessages = inboxMessages
    self.topicMessage = topicMessage
  }
}

/// An event of the transactional outbox (written by the cases store in the same transaction as
/// the change), waiting to become notifications.
public struct OutboxEvent: Sendable, Equatable {
  public var id: Int64
  public var topic: String
  public var aggregateID: String
  public var payload: [String: String]
  public var createdAt: Date

  public init(id: Int64, topic: String, aggregateID: String, payload: [String: String], createdAt: Date) {
    self.id = id
    self.topic = topic
    self.aggregateID = aggregateID
    self.payload = payload
    self.createdAt = createdAt
  }
}

/// A template to store as the next version of its name.
public struct NewTemplate: Sendable, Equatable {
  public var name: String
  public var title: String
  public var body: String
  public var category: String
  public var system: Bool

  public init(name: String, title: String, body: String, category: String, system: Bool = false) {
    self.name = name
    self.title = title
    self.body = body
    self.category = category
    self.system = system
  }
}

/// The last seq of an account's inbox and of each topic it subscribes to (with the account's
/// acknowledged cursor of that topic).
public struct StreamHeads: Sendable, Equatable {
  public struct Topic: Sendable, Equatable {
    public var acked: Int64
    public var head: Int64

    public init(acked: Int64, head: Int64) {
      self.acked = acked
      self.head = head
    }
  }

  public var inbox: Int64
  public var topics: [String: Topic]

  public init(inbox: Int64, topics: [String: Topic]) {
    self.inbox = inbox
    self.topics = topics
  }
}

/// How far one account's stream sent: its inbox, and topics by code.
public struct SentPositions: Sendable, Equatable {
  public var accountID: String
  public var inbox: Int64?
  public var topics: [String: Int64]

  public init(accountID: String, inbox: Int64?, topics: [String: Int64]) {
    self.accountID = accountID
    self.inbox = inbox
    self.topics = topics
  }
}

/// A page of an inbox or a topic, newest first.
public struct InboxPage: Sendable {
  public var entries: [InboxEntry]
  public var unreadCount: Int64

  public init(entries: [InboxEntry], unreadCount: Int64) {
    self.entries = entries
    self.unreadCount = unreadCount
  }
}

public protocol NotificationStore: Sendable {
  // Templates

  /// Stores the next version of a template. `versionConflict(current:)` unless the latest
  /// version is `expectedVersion` (0: the name must be new).
  func putTemplate(_ template: NewTemplate, expectedVersion: Int, now: Date, audit: AuditEvent?) async throws -> StoredTemplate
  /// Stores version 1 of each template whose name does not exist yet (system templates at start).
  func seedTemplates(_ templates: [NewTemplate], now: Date) async throws
  /// The given version, or the latest when `version` is nil.
  func template(name: String, version: Int?) async throws -> StoredTemplate?
  /// The latest version of every template, by name.
  func latestTemplates() async throws -> [StoredTemplate]

  // Topics

  /// `alreadyExists(field: "code")` when taken.
  func createTopic(code: String, title: String, description: String, now: Date, audit: AuditEvent?) async throws -> TopicInfo
  /// Every topic, with `subscribed` for `accountID`.
  func topics(accountID: String?) async throws -> [TopicInfo]
  /// Subscribes from the topic's current head (or unsubscribes); idempotent. `notFound` for an
  /// unknown topic. Returns the cursor after the change.
  func setSubscription(accountID: String, topic: String, subscribed: Bool, now: Date) async throws -> StreamCursor

  // Publishing

  /// One transaction: the publication, unless its idempotency key (per publisher) was used —
  /// then the original with `replayed`. Sent now unless `sendAt` is in the future: inbox rows
  /// with the next seq of each inbox (replacing undelivered messages with the same collapse
  /// key, pruning past the cap), or one topic log entry; plus a webhook delivery per enabled
  /// endpoint subscribed to the publication's webhook event. `notFound` for an unknown account
  /// or topic; `failedPrecondition` when a segment exceeds `limits.maxSegmentRecipients`.
  func publish(_ publication: NewPublication, now: Date, limits: InboxLimits) async throws -> PublishOutcome
  /// Sends scheduled publications whose time has come (each in its own transaction), oldest first.
  func releaseDue(now: Date, limit: Int, limits: InboxLimits) async throws -> [PublishOutcome]
  /// The earliest send time of a scheduled publication (the scheduler sleeps until then).
  func nextScheduled() async throws -> Date?
  /// `failedPrecondition` unless it is still scheduled.
  func cancelPublication(id: String, now: Date, audit: AuditEvent?) async throws -> Publication
  func publication(id: String) async throws -> Publication?
  /// The publication an idempotency key of `publisherID` (nil: the system) already produced.
  func publication(publisherID: String?, idempotencyKey: String) async throws -> Publication?
  /// Newest first, before the publication `before` (a page token), at most `limit`.
  func publications(before: String?, limit: Int) async throws -> [Publication]

  // Streams

  /// The account's cursors, after counting a new stream round (see `StreamCursor.beginningStream`).
  func beginStream(accountID: String) async throws -> StreamCursors
  /// The account's cursors as stored (read only).
  func streamCursors(accountID: String) async throws -> StreamCursors
  /// The heads of the account's inbox and subscribed topics, with each topic's acknowledged
  /// cursor: what a live stream compares its positions with (one cheap read).
  func streamHeads(accountID: String) async throws -> StreamHeads
  /// Inbox messages after `seq` still to send, oldest first, at most `limit`: neither replaced
  /// nor expired (acknowledged ones included: the stream's own position decides, since another
  /// device may acknowledge while this one catches up). Messages whose TTL passed are marked
  /// expired instead.
  func pendingInbox(accountID: String, after seq: Int64, limit: Int, now: Date) async throws -> [InboxEntry]
  /// A topic's messages after `seq`, oldest first, skipping replaced and expired ones.
  func pendingTopic(topic: String, after seq: Int64, limit: Int, now: Date) async throws -> [InboxEntry]
  /// Records how far streams have sent (monotonic), many in one transaction; best effort, for
  /// delivery counts.
  func recordSent(_ positions: [SentPositions]) async throws
  /// Moves the cursors forward (never back), marks inbox messages up to `inbox` delivered, and
  /// returns the cursors. Topics the account does not subscribe to are `notFound`.
  func acknowledge(accountID: String, inbox: Int64?, topics: [String: Int64], now: Date) async throws -> StreamCursors

  // The inbox as a list

  /// Newest first, seq below `beforeSeq` when given.
  func inbox(accountID: String, unreadOnly: Bool, category: String?, beforeSeq: Int64?, limit: Int) async throws -> InboxPage
  /// A subscribed topic's messages, newest first, read state from the account's read marker.
  /// `notFound` when the account does not subscribe.
  func topicMessages(accountID: String, topic: String, beforeSeq: Int64?, limit: Int) async throws -> InboxPage
  /// Marks the account's own messages read; returns how many changed.
  func markRead(accountID: String, seqs: [Int64], now: Date) async throws -> Int
  /// Moves the account's read marker of a topic forward.
  func markTopicRead(accountID: String, topic: String, upTo seq: Int64) async throws -> Int
  func deleteMessages(accountID: String, seqs: [Int64]) async throws -> Int
  /// Marks pending messages whose TTL passed as expired (the scheduler's sweep); returns how many.
  func expireMessages(now: Date) async throws -> Int

  // System events

  /// Unconsumed outbox events of `topic`, oldest first.
  func pendingEvents(topic: String, limit: Int) async throws -> [OutboxEvent]
  /// One transaction: publishes each publication (as `publish` does, idempotent by key), queues
  /// the webhook events, and marks the outbox events consumed.
  func consumeEvents(
    ids: [Int64], publications: [NewPublication], webhookEvents: [WebhookEvent], now: Date, limits: InboxLimits
  ) async throws -> [PublishOutcome]

  // Webhooks and outbound deliveries

  func addWebhook(_ endpoint: WebhookEndpoint, audit: AuditEvent?) async throws -> WebhookEndpoint
  func webhooks() async throws -> [WebhookEndpoint]
  func webhook(id: String) async throws -> WebhookEndpoint?
  func setWebhookEnabled(id: String, enabled: Bool, now: Date, audit: AuditEvent?) async throws -> WebhookEndpoint
  /// Deliveries due by `now` (created, or temporary-failure past `nextAttemptAt`), oldest
  /// first; each is moved to `sending` in the same transaction, so no two workers take one.
  func claimDueDeliveries(now: Date, limit: Int) async throws -> [Delivery]
  /// Appends the attempt and applies `status` (ignored once the delivery is terminal).
  func recordAttempt(deliveryID: String, attempt: DeliveryAttempt, status: DeliveryStatus, nextAttemptAt: Date?) async throws
  /// Deliveries left in `sending` by a crash go back to temporary-failure, due now.
  func recoverInterruptedDeliveries(now: Date) async throws -> Int
  func delivery(id: String) async throws -> Delivery?
  /// Newest first, with attempts.
  func deliveries(endpointID: String?, status: DeliveryStatus?, before: String?, limit: Int) async throws -> [Delivery]
  /// A new delivery of the same event to the same target; `failedPrecondition` unless the
  /// original ended in permanent-failure or technical-failure.
  func replayDelivery(id: String, newID: String, now: Date, audit: AuditEvent?) async throws -> Delivery
  /// The earliest time a delivery comes due (the dispatcher sleeps until then).
  func nextDeliveryDue() async throws -> Date?
}
