import Foundation
import GRPCCore
import Logging
import OneWindowAPI
import OneWindowCore
import OneWindowStore

/// Every account's own inbox: the live stream, cursor acknowledgements, the list, read state and
/// topic subscriptions. Each RPC acts on the caller's account only, so no request can name
/// another account's messages.
struct InboxService: Onewindow_V1_InboxService.SimpleServiceProtocol {
  let store: any Store
  let hub: NotificationHub
  let sentPositions: SentPositionRecorder
  let settings: NotificationSettings
  let clock: any WallClock
  let shutdown: StreamShutdown
  let logger: Logger

  static let maxSeqsPerRequest = 500

  func subscribe(
    request: Onewindow_V1_SubscribeRequest, response: RPCWriter<Onewindow_V1_InboxEvent>, context: ServerContext
  ) async throws {
    let p = try RequestContext.requirePrincipal()
    if request.hasAfterSeq, request.afterSeq < 0 { throw ValidationError("after_seq", "must not be negative") }
    try Check.optionalText(request.device, field: "device", max: 64)
    let stream = InboxStream(
      store: store.notifications, identity: store.identity, hub: hub, principal: p, heartbeat: settings.heartbeat,
      maxStreamsPerAccount: settings.maxStreamsPerAccount, sentPositions: sentPositions, clock: clock, shutdown: shutdown)
    try await stream.run(afterSeq: request.hasAfterSeq ? request.afterSeq : nil, response: response, context: context)
  }

  func ack(request: Onewindow_V1_AckRequest, context: ServerContext) async throws -> Onewindow_V1_AckResponse {
    let p = try RequestContext.requirePrincipal()
    let m = request
    guard m.upToSeq >= 0 else { throw ValidationError("up_to_seq", "must not be negative") }
    let topics = try Self.topicPositions(m.topics, field: "topics")
    guard m.upToSeq > 0 || !topics.isEmpty else { throw ValidationError("up_to_seq", "give up_to_seq or at least one topic position") }
    let cursors = try await store.notifications.acknowledge(
      accountID: p.accountID, inbox: m.upToSeq > 0 ? m.upToSeq : nil, topics: topics, now: clock.now())
    return .with {
      $0.inboxAckedSeq = cursors.inbox.acked
      $0.topics = cursors.topics.sorted { $0.key < $1.key }.map { t in .with { $0.topic = t.key; $0.seq = t.value.acked } }
    }
  }

  func listInbox(
    request: Onewindow_V1_ListInboxRequest, context: ServerContext
  ) async throws -> Onewindow_V1_ListInboxResponse {
    let p = try RequestContext.requirePrincipal()
    let m = request
    let limit = try NotificationPaging.pageSize(m.pageSize)
    let before = try NotificationPaging.seq(fromToken: m.pageToken)
    if !m.category.isEmpty { try Check.optionalText(m.category, field: "category", max: 32) }
    let page = try await store.notifications.inbox(
      accountID: p.accountID, unreadOnly: m.unreadOnly, category: m.category.isEmpty ? nil : m.category, beforeSeq: before,
      limit: limit + 1)
    return Self.listResponse(page, limit: limit)
  }

  func markRead(
    request: Onewindow_V1_MarkReadRequest, context: ServerContext
  ) async throws -> Onewindow_V1_MarkReadResponse {
    let p = try RequestContext.requirePrincipal()
    let m = request
    let marked: Int
    if m.hasTopic {
      guard m.seqs.isEmpty else { throw ValidationError("topic", "give either seqs or a topic, not both") }
      let topic = try TopicInfo.validateCode(m.topic.topic, field: "topic.topic")
      guard m.topic.seq > 0 else { throw ValidationError("topic.seq", "must be positive") }
      marked = try await store.notifications.markTopicRead(accountID: p.accountID, topic: topic, upTo: m.topic.seq)
    } else {
      marked = try await store.notifications.markRead(accountID: p.accountID, seqs: try Self.seqs(m.seqs), now: clock.now())
    }
    return .with { $0.marked = Int64(marked) }
  }

  func deleteMessages(
    request: Onewindow_V1_DeleteMessagesRequest, context: ServerContext
  ) async throws -> Onewindow_V1_DeleteMessagesResponse {
    let p = try RequestContext.requirePrincipal()
    let deleted = try await store.notifications.deleteMessages(accountID: p.accountID, seqs: try Self.seqs(request.seqs))
    return .with { $0.deleted = Int64(deleted) }
  }

  func listTopics(
    request: Onewindow_V1_ListTopicsRequest, context: ServerContext
  ) async throws -> Onewindow_V1_ListTopicsResponse {
    let p = try RequestContext.requirePrincipal()
    let topics = try await store.notifications.topics(accountID: p.accountID)
    return .with { $0.topics = topics.map(Onewindow_V1_Topic.init) }
  }

  func subscribeTopic(
    request: Onewindow_V1_TopicSubscriptionRequest, context: ServerContext
  ) async throws -> Onewindow_V1_TopicSubscription {
    try await setSubscription(request, subscribed: true)
  }

  func unsubscribeTopic(
    request: Onewindow_V1_TopicSubscriptionRequest, context: ServerContext
  ) async throws -> Onewindow_V1_TopicSubscription {
    try await setSubscription(request, subscribed: false)
  }

  private func setSubscription(_ m: Onewindow_V1_TopicSubscriptionRequest, subscribed: Bool) async throws -> Onewindow_V1_TopicSubscription {
    let p = try RequestContext.requirePrincipal()
    let topic = try TopicInfo.validateCode(m.topic)
    let cursor = try await store.notifications.setSubscription(accountID: p.accountID, topic: topic, subscribed: subscribed, now: clock.now())
    hub.subscriptionChanged(accountID: p.accountID, topic: topic, cursor: subscribed ? cursor.acked : nil)
    return .with {
      $0.topic = topic
      $0.subscribed = subscribed
      $0.ackedSeq = cursor.acked
    }
  }

  func listTopicMessages(
    request: Onewindow_V1_ListTopicMessagesRequest, context: ServerContext
  ) async throws -> Onewindow_V1_ListInboxResponse {
    let p = try RequestContext.requirePrincipal()
    let m = request
    let topic = try TopicInfo.validateCode(m.topic)
    let limit = try NotificationPaging.pageSize(m.pageSize)
    let page = try await store.notifications.topicMessages(
      accountID: p.accountID, topic: topic, beforeSeq: try NotificationPaging.seq(fromToken: m.pageToken), limit: limit + 1)
    return Self.listResponse(page, limit: limit)
  }

  /// A page fetched with one extra entry: that entry only says whether there is a next page.
  static func listResponse(_ page: InboxPage, limit: Int) -> Onewindow_V1_ListInboxResponse {
    .with {
      $0.messages = page.entries.prefix(limit).map { Onewindow_V1_InboxMessage($0) }
      if page.entries.count > limit, let last = page.entries.prefix(limit).last { $0.nextPageToken = NotificationPaging.seqToken(last.seq) }
      $0.unreadCount = page.unreadCount
    }
  }

  static func seqs(_ raw: [Int64]) throws(ValidationError) -> [Int64] {
    guard !raw.isEmpty else { throw ValidationError("seqs", "give at least one seq") }
    guard raw.count <= maxSeqsPerRequest else { throw ValidationError("seqs", "at most \(maxSeqsPerRequest) per request") }
    guard raw.allSatisfy({ $0 > 0 }) else { throw ValidationError("seqs", "must be positive") }
    return Array(Set(raw)).sorted()
  }

  static func topicPositions(_ raw: [Onewindow_V1_TopicCursor], field: String) throws(ValidationError) -> [String: Int64] {
    guard raw.count <= 100 else { throw ValidationError(field, "at most 100 topics") }
    var out: [String: Int64] = [:]
    for (i, t) in raw.enumerated() {
      let code = try TopicInfo.validateCode(t.topic, field: "\(field)[\(i)].topic")
      guard t.seq >= 0 else { throw ValidationError("\(field)[\(i)].seq", "must not be negative") }
      guard out[code] == nil else { throw ValidationError("\(field)[\(i)].topic", "\(code) is listed twice") }
      out[code] = t.seq
    }
    return out
  }
}
