import Foundation
import Testing
@testable import OneWindowCore
@testable import OneWindowStore
import OneWindowTestSupport

/// Fixtures for the notification store tests.
private enum N {
  static let topic = "district.310104"

  static func content(
    _ title: String = "办件进度", priority: MessagePriority = .normal, collapseKey: String? = nil, category: String = "general"
  ) -> MessageContent {
    MessageContent(
      title: title, body: "正文", category: category, priority: priority, data: ["case_id": "c1"], template: "case.update",
      templateVersion: 1, collapseKey: collapseKey)
  }

  static func publication(
    _ audience: Audience, key: String = UUID().uuidString, content: MessageContent = content(), ttl: TimeInterval? = nil,
    sendAt: Date? = nil, publisher: String? = "admin-1", webhook: WebhookEvent? = nil
  ) -> NewPublication {
    NewPublication(
      id: ULID.make(at: t0), audience: audience, content: content, ttl: ttl, sendAt: sendAt, publisherID: publisher,
      idempotencyKey: key, webhookEvent: webhook)
  }

  /// A new account; `idNumber`/`creditCode` place it in a region.
  static func account(
    _ store: any Store, role: Role = .citizen, idNumber: String? = nil, creditCode: String? = nil, department: String? = nil
  ) async throws -> String {
    let account = Account(
      id: ULID.make(at: t0), role: role, displayName: "张三", idNumber: idNumber, creditCode: creditCode,
      departmentCode: department, hasPassword: false, createdAt: t0)
    return try await store.identity.createAccount(NewAccount(account: account, passwordHash: nil)).id
  }

  static func endpoint(_ id: String, types: [String], enabled: Bool = true) -> WebhookEndpoint {
    WebhookEndpoint(
      id: id, url: "https://example.com/\(id)", eventTypes: types, enabled: enabled, description: "", createdAt: t0,
      sealedSecret: [1, 2, 3])
  }

  static func inboxRows(_ store: any Store, _ accountID: String) async throws -> [(seq: Int64, state: String)] {
    try await store.inspection.rows("SELECT seq, state FROM inbox_messages WHERE account_id = $1 ORDER BY seq", [.text(accountID)])
      .map { ($0["seq"]?.int ?? -1, $0["state"]?.text ?? "") }
  }
}

@Suite struct NotificationStoreTests {
  @Test(arguments: TestEngine.enabled) func templatesAreVersioned(engine: TestEngine) async throws {
    try await withTemporaryStore(engine) { store in
      let n = store.notifications
      let first = try await n.putTemplate(
        NewTemplate(name: "case.update", title: "((item)) 有新进度", body: "您的办件 ((code)) 已更新", category: "case"),
        expectedVersion: 0, now: t0, audit: nil)
      #expect(first.template.version == 1 && first.template.placeholders == ["code", "item"])
      await #expect(throws: StoreError.versionConflict(current: 1)) {
        try await n.putTemplate(NewTemplate(name: "case.update", title: "t", body: "b", category: "case"), expectedVersion: 0, now: t0, audit: nil)
      }
      await #expect(throws: ValidationError.self) {
        try await n.putTemplate(NewTemplate(name: "case.update", title: "((broken", body: "b", category: "case"), expectedVersion: 1, now: t0, audit: nil)
      }
      let second = try await n.putTemplate(
        NewTemplate(name: "case.update", title: "新标题", body: "新正文", category: "case"), expectedVersion: 1, now: t0, audit: nil)
      #expect(second.template.version == 2)
      // Seeding keeps existing names and adds new ones at version 1.
      try await n.seedTemplates(
        [
          NewTemplate(name: "case.update", title: "seed", body: "seed", category: "case", system: true),
          NewTemplate(name: "account.notice", title: "通知", body: "正文", category: "account", system: true),
        ], now: t0)
      let latest = try await n.latestTemplates()
      #expect(latest.map(\.template.name) == ["account.notice", "case.update"])
      #expect(latest.map(\.template.version) == [1, 2])
      #expect(latest[0].system && !latest[1].system)
      #expect(try await n.template(name: "case.update", version: 1)?.template.title == "((item)) 有新进度")
      #expect(try await n.template(name: "case.update", version: nil)?.template.title == "新标题")
      #expect(try await n.template(name: "missing", version: nil) == nil)
    }
  }

  @Test(arguments: TestEngine.enabled) func inboxSeqsAreConsecutivePerAccount(engine: TestEngine) async throws {
    try await withTemporaryStore(engine) { store in
      let n = store.notifications
      let a = try await N.account(store)
      let b = try await N.account(store)
      var seqs: [Int64] = []
      for i in 1...3 {
        let outcome = try await n.publish(N.publication(.account(a), content: N.content("m\(i)")), now: t0, limits: InboxLimits())
        #expect(!outcome.replayed && outcome.publication.status == .sent && outcome.publication.recipientCount == 1)
        #expect(outcome.inboxMessages.count == 1 && outcome.inboxMessages[0].accountID == a)
        #expect(outcome.publication.eventID == outcome.inboxMessages[0].entry.eventID)
        seqs.append(outcome.inboxMessages[0].entry.seq)
      }
      #expect(seqs == [1, 2, 3])
      let other = try await n.publish(N.publication(.account(b)), now: t0, limits: InboxLimits())
      #expect(other.inboxMessages.map(\.entry.seq) == [1])

      #expect(try await n.pendingInbox(accountID: a, after: 0, limit: 10, now: t0).map(\.seq) == [1, 2, 3])
      #expect(try await n.pendingInbox(accountID: a, after: 2, limit: 10, now: t0).map(\.seq) == [3])
      #expect(try await n.pendingInbox(accountID: a, after: 0, limit: 2, now: t0).map(\.content.title) == ["m1", "m2"])
      let page = try await n.inbox(accountID: a, unreadOnly: false, category: nil, beforeSeq: nil, limit: 10)
      #expect(page.entries.map(\.seq) == [3, 2, 1] && page.unreadCount == 3)
      #expect(try await n.inbox(accountID: a, unreadOnly: false, category: nil, beforeSeq: 3, limit: 10).entries.map(\.seq) == [2, 1])
      #expect(try await n.inbox(accountID: a, unreadOnly: false, category: "other", beforeSeq: nil, limit: 10).entries.isEmpty)

      #expect(try await n.markRead(accountID: a, seqs: [1, 2, 2], now: t0) == 2)
      #expect(try await n.markRead(accountID: a, seqs: [1], now: t0) == 0)
      #expect(try await n.markRead(accountID: b, seqs: [3], now: t0) == 0)
      let unread = try await n.inbox(accountID: a, unreadOnly: true, category: nil, beforeSeq: nil, limit: 10)
      #expect(unread.entries.map(\.seq) == [3] && unread.unreadCount == 1)
      #expect(try await n.deleteMessages(accountID: a, seqs: [1, 3]) == 2)
      #expect(try await n.inbox(accountID: a, unreadOnly: false, category: nil, beforeSeq: nil, limit: 10).entries.map(\.seq) == [2])
      // The next message still takes the next seq.
      let next = try await n.publish(N.publication(.account(a)), now: t0, limits: InboxLimits())
      #expect(next.inboxMessages.map(\.entry.seq) == [4])

      await #expect(throws: StoreError.notFound("account nobody")) {
        try await n.publish(N.publication(.account("nobody")), now: t0, limits: InboxLimits())
      }
    }
  }

  @Test(arguments: TestEngine.enabled) func publishIsIdempotentPerPublisher(engine: TestEngine) async throws {
    try await withTemporaryStore(engine) { store in
      let n = store.notifications
      let a = try await N.account(store)
      let first = try await n.publish(N.publication(.account(a), key: "k1"), now: t0, limits: InboxLimits())
      let again = try await n.publish(N.publication(.account(a), key: "k1"), now: t0.addingTimeInterval(5), limits: InboxLimits())
      #expect(again.replayed && again.publication == first.publication && again.inboxMessages.isEmpty)
      #expect(try await N.inboxRows(store, a).count == 1)
      // The key is scoped to its publisher.
      let system = try await n.publish(N.publication(.account(a), key: "k1", publisher: nil), now: t0, limits: InboxLimits())
      #expect(!system.replayed && system.publication.publisherID == nil)
      #expect(try await N.inboxRows(store, a).count == 2)
      #expect(try await n.publication(id: first.publication.id) == first.publication)
      #expect(try await n.publications(before: nil, limit: 10).count == 2)
    }
  }

  @Test(arguments: TestEngine.enabled) func collapseKeyReplacesOnlyPendingMessages(engine: TestEngine) async throws {
    try await withTemporaryStore(engine) { store in
      let n = store.notifications
      let a = try await N.account(store)
      let content = N.content(collapseKey: "case-c1")
      let first = try await n.publish(N.publication(.account(a), content: content), now: t0, limits: InboxLimits())
      let second = try await n.publish(N.publication(.account(a), content: content), now: t0, limits: InboxLimits())
      let firstEntry = try #require(first.inboxMessages.first?.entry)
      let secondEntry = try #require(second.inboxMessages.first?.entry)
      #expect(secondEntry.replacesEventID == firstEntry.eventID)
      #expect(try await n.pendingInbox(accountID: a, after: 0, limit: 10, now: t0).map(\.seq) == [2])
      #expect(try await N.inboxRows(store, a).map(\.state) == ["replaced", "pending"])

      // Once delivered, a message is not replaced.
      _ = try await n.acknowledge(accountID: a, inbox: 2, topics: [:], now: t0)
      let third = try await n.publish(N.publication(.account(a), content: content), now: t0, limits: InboxLimits())
      #expect(third.inboxMessages.first?.entry.replacesEventID == nil)
      #expect(try await N.inboxRows(store, a).map(\.state) == ["replaced", "delivered", "pending"])
      let page = try await n.inbox(accountID: a, unreadOnly: false, category: nil, beforeSeq: nil, limit: 10)
      #expect(page.entries.map(\.seq) == [3, 2])
    }
  }

  @Test(arguments: TestEngine.enabled) func expiredMessagesAreNotSent(engine: TestEngine) async throws {
    try await withTemporaryStore(engine) { store in
      let n = store.notifications
      let a = try await N.account(store)
      let short = try await n.publish(N.publication(.account(a), ttl: 60), now: t0, limits: InboxLimits())
      #expect(short.inboxMessages.first?.entry.expiresAt == t0.addingTimeInterval(60))
      _ = try await n.publish(N.publication(.account(a)), now: t0, limits: InboxLimits())
      #expect(try await n.pendingInbox(accountID: a, after: 0, limit: 10, now: t0.addingTimeInterval(30)).map(\.seq) == [1, 2])
      #expect(try await n.pendingInbox(accountID: a, after: 0, limit: 10, now: t0.addingTimeInterval(60)).map(\.seq) == [2])
      #expect(try await N.inboxRows(store, a).map(\.state) == ["expired", "pending"])
      #expect(try await n.inbox(accountID: a, unreadOnly: false, category: nil, beforeSeq: nil, limit: 10).entries.map(\.seq) == [2])

      // The sweep: inbox and topic messages.
      _ = try await n.createTopic(code: N.topic, title: "徐汇区", description: "", now: t0, audit: nil)
      _ = try await n.publish(N.publication(.account(a), ttl: 10), now: t0, limits: InboxLimits())
      _ = try await n.publish(N.publication(.topic(N.topic), ttl: 10), now: t0, limits: InboxLimits())
      #expect(try await n.expireMessages(now: t0.addingTimeInterval(5)) == 0)
      #expect(try await n.expireMessages(now: t0.addingTimeInterval(10)) == 2)
      #expect(try await n.pendingTopic(topic: N.topic, after: 0, limit: 10, now: t0).isEmpty)
    }
  }

  @Test(arguments: TestEngine.enabled) func scheduledPublicationsWaitForRelease(engine: TestEngine) async throws {
    try await withTemporaryStore(engine) { store in
      let n = store.notifications
      let a = try await N.account(store)
      let later = t0.addingTimeInterval(3600)
      let scheduled = try await n.publish(N.publication(.account(a), ttl: 60, sendAt: later), now: t0, limits: InboxLimits())
      #expect(scheduled.publication.status == .scheduled && scheduled.inboxMessages.isEmpty)
      let cancelled = try await n.publish(N.publication(.account(a), sendAt: later.addingTimeInterval(60)), now: t0, limits: InboxLimits())
      #expect(try await n.nextScheduled() == later)
      #expect(try await n.pendingInbox(accountID: a, after: 0, limit: 10, now: t0).isEmpty)

      let withdrawn = try await n.cancelPublication(id: cancelled.publication.id, now: t0, audit: nil)
      #expect(withdrawn.status == .cancelled)
      await #expect(throws: StoreError.failedPrecondition("publication is cancelled; only a scheduled one can be cancelled")) {
        try await n.cancelPublication(id: cancelled.publication.id, now: t0, audit: nil)
      }
      await #expect(throws: StoreError.notFound("publication nope")) { try await n.cancelPublication(id: "nope", now: t0, audit: nil) }

      #expect(try await n.releaseDue(now: t0.addingTimeInterval(60), limit: 10, limits: InboxLimits()).isEmpty)
      let released = try await n.releaseDue(now: later.addingTimeInterval(7200), limit: 10, limits: InboxLimits())
      #expect(released.map(\.publication.id) == [scheduled.publication.id])
      let entry = try #require(released.first?.inboxMessages.first?.entry)
      // TTL counts from the time it was sent.
      #expect(entry.expiresAt == later.addingTimeInterval(7260))
      #expect(try await n.publication(id: scheduled.publication.id)?.status == .sent)
      #expect(try await n.nextScheduled() == nil)
      #expect(try await n.releaseDue(now: later.addingTimeInterval(7200), limit: 10, limits: InboxLimits()).isEmpty)
      #expect(try await N.inboxRows(store, a).count == 1)
      await #expect(throws: StoreError.failedPrecondition("publication is sent; only a scheduled one can be cancelled")) {
        try await n.cancelPublication(id: scheduled.publication.id, now: t0, audit: nil)
      }
    }
  }

  @Test(arguments: TestEngine.enabled) func acknowledgementsMoveForwardAndCountRounds(engine: TestEngine) async throws {
    try await withTemporaryStore(engine) { store in
      let n = store.notifications
      let a = try await N.account(store)
      for _ in 1...3 { _ = try await n.publish(N.publication(.account(a)), now: t0, limits: InboxLimits()) }
      #expect(try await n.beginStream(accountID: a).inbox == StreamCursor())
      try await n.recordSent([SentPositions(accountID: a, inbox: 3, topics: [:])])
      // A new stream while messages were sent but not acknowledged: one more round.
      let second = try await n.beginStream(accountID: a)
      #expect(second.inbox == StreamCursor(acked: 0, sent: 3, rounds: 1))
      #expect(second.inbox.deliveryCount(of: 2) == 2 && second.inbox.deliveryCount(of: 4) == 1)

      let acked = try await n.acknowledge(accountID: a, inbox: 2, topics: [:], now: t0)
      #expect(acked.inbox == StreamCursor(acked: 2, sent: 3, rounds: 1))
      #expect(try await N.inboxRows(store, a).map(\.state) == ["delivered", "delivered", "pending"])
      // A stream reads from its own position: another device's acknowledgement does not hide
      // messages from a stream still catching up (a new stream starts at the cursor, 2).
      #expect(try await n.pendingInbox(accountID: a, after: 0, limit: 10, now: t0).map(\.seq) == [1, 2, 3])
      #expect(try await n.pendingInbox(accountID: a, after: acked.inbox.acked, limit: 10, now: t0).map(\.seq) == [3])
      // Never backwards; never past the head.
      #expect(try await n.acknowledge(accountID: a, inbox: 1, topics: [:], now: t0).inbox.acked == 2)
      let all = try await n.acknowledge(accountID: a, inbox: 99, topics: [:], now: t0)
      #expect(all.inbox == StreamCursor(acked: 3, sent: 3, rounds: 0))
      #expect(try await n.beginStream(accountID: a).inbox.rounds == 0)
      #expect(try await N.inboxRows(store, a).map(\.state) == ["delivered", "delivered", "delivered"])
      // A delivered message is still in the list, unread.
      #expect(try await n.inbox(accountID: a, unreadOnly: true, category: nil, beforeSeq: nil, limit: 10).unreadCount == 3)
      await #expect(throws: StoreError.notFound("a subscription to topic \(N.topic)")) {
        try await n.acknowledge(accountID: a, inbox: nil, topics: [N.topic: 1], now: t0)
      }
    }
  }

  @Test(arguments: TestEngine.enabled) func topicMessagesAreStoredOnceAndReadThroughCursors(engine: TestEngine) async throws {
    try await withTemporaryStore(engine) { store in
      let n = store.notifications
      let a = try await N.account(store)
      let b = try await N.account(store)
      let c = try await N.account(store)
      let topic = try await n.createTopic(code: N.topic, title: "徐汇区通知", description: "区内公告", now: t0, audit: nil)
      #expect(topic.headSeq == 0 && topic.subscriberCount == 0)
      await #expect(throws: StoreError.alreadyExists(field: "code")) {
        try await n.createTopic(code: N.topic, title: "again", description: "", now: t0, audit: nil)
      }
      await #expect(throws: ValidationError.self) { try await n.createTopic(code: "Bad Code", title: "x", description: "", now: t0, audit: nil) }
      await #expect(throws: StoreError.notFound("topic nope")) { try await n.setSubscription(accountID: a, topic: "nope", subscribed: true, now: t0) }

      #expect(try await n.setSubscription(accountID: a, topic: N.topic, subscribed: true, now: t0) == StreamCursor())
      #expect(try await n.setSubscription(accountID: b, topic: N.topic, subscribed: true, now: t0) == StreamCursor())
      let first = try await n.publish(N.publication(.topic(N.topic), content: N.content("一")), now: t0, limits: InboxLimits())
      let second = try await n.publish(N.publication(.topic(N.topic), content: N.content("二")), now: t0, limits: InboxLimits())
      #expect(first.topicMessage?.seq == 1 && second.topicMessage?.seq == 2 && first.inboxMessages.isEmpty)
      #expect(second.publication.eventID == second.topicMessage?.eventID)
      let stored = try await store.inspection.count("topic_messages")
      #expect(stored == 2)
      #expect(try await N.inboxRows(store, a).isEmpty)

      let streamA = try await n.beginStream(accountID: a)
      #expect(streamA.topics == [N.topic: StreamCursor()])
      #expect(try await n.pendingTopic(topic: N.topic, after: 0, limit: 10, now: t0).map(\.content.title) == ["一", "二"])
      let ackA = try await n.acknowledge(accountID: a, inbox: nil, topics: [N.topic: 2], now: t0)
      let ackB = try await n.acknowledge(accountID: b, inbox: nil, topics: [N.topic: 1], now: t0)
      #expect(ackA.topics[N.topic]?.acked == 2 && ackB.topics[N.topic]?.acked == 1)
      #expect(try await n.acknowledge(accountID: b, inbox: nil, topics: [N.topic: 50], now: t0).topics[N.topic]?.acked == 2)

      var page = try await n.topicMessages(accountID: a, topic: N.topic, beforeSeq: nil, limit: 10)
      #expect(page.entries.map(\.seq) == [2, 1] && page.unreadCount == 2 && page.entries.allSatisfy { $0.readAt == nil })
      #expect(try await n.markTopicRead(accountID: a, topic: N.topic, upTo: 1) == 1)
      #expect(try await n.markTopicRead(accountID: a, topic: N.topic, upTo: 1) == 0)
      page = try await n.topicMessages(accountID: a, topic: N.topic, beforeSeq: nil, limit: 10)
      #expect(page.unreadCount == 1 && page.entries.map(\.readAt) == [nil, page.entries[1].sentAt])
      #expect(try await n.topicMessages(accountID: a, topic: N.topic, beforeSeq: 2, limit: 10).entries.map(\.seq) == [1])
      // b's read marker is its own.
      #expect(try await n.topicMessages(accountID: b, topic: N.topic, beforeSeq: nil, limit: 10).unreadCount == 2)
      await #expect(throws: StoreError.notFound("a subscription to topic \(N.topic)")) {
        try await n.topicMessages(accountID: c, topic: N.topic, beforeSeq: nil, limit: 10)
      }

      // A late subscriber starts at the head (earlier messages count as read).
      #expect(try await n.setSubscription(accountID: c, topic: N.topic, subscribed: true, now: t0) == StreamCursor(acked: 2, sent: 2))
      #expect(try await n.topicMessages(accountID: c, topic: N.topic, beforeSeq: nil, limit: 10).unreadCount == 0)
      let listed = try await n.topics(accountID: a)
      #expect(listed.count == 1 && listed[0].subscriberCount == 3 && listed[0].subscribed && listed[0].headSeq == 2)
      #expect(try await n.topics(accountID: nil).first?.subscribed == false)
      #expect(try await n.setSubscription(accountID: c, topic: N.topic, subscribed: false, now: t0) == StreamCursor())
      #expect(try await n.topics(accountID: c).first?.subscribed == false)

      // Collapse in a topic: the pending older entry is replaced.
      let x = try await n.publish(N.publication(.topic(N.topic), content: N.content(collapseKey: "k")), now: t0, limits: InboxLimits())
      let y = try await n.publish(N.publication(.topic(N.topic), content: N.content(collapseKey: "k")), now: t0, limits: InboxLimits())
      #expect(y.topicMessage?.replacesEventID == x.topicMessage?.eventID)
      #expect(try await n.pendingTopic(topic: N.topic, after: 2, limit: 10, now: t0).map(\.seq) == [4])
      await #expect(throws: StoreError.notFound("topic nope")) {
        try await n.publish(N.publication(.topic("nope")), now: t0, limits: InboxLimits())
      }
    }
  }

  @Test(arguments: TestEngine.enabled) func segmentsSelectByRoleDepartmentAndRegion(engine: TestEngine) async throws {
    try await withTemporaryStore(engine) { store in
      let n = store.notifications
      _ = try await store.catalog.upsertDepartment(Department(code: "gongan", name: "市公安局"), now: t0)
      let xuhui = try await N.account(store, idNumber: "310104199001011234")
      let nanjing = try await N.account(store, idNumber: "320102199001011234")
      let company = try await N.account(store, role: .enterprise, creditCode: "91310104MA1FL8XQ3K")
      let officer = try await N.account(store, role: .caseworker, department: "gongan")

      func reach(_ segment: Segment, limits: InboxLimits = InboxLimits()) async throws -> Set<String> {
        let outcome = try await n.publish(N.publication(.segment(segment)), now: t0, limits: limits)
        #expect(outcome.publication.recipientCount == Int64(outcome.inboxMessages.count) && outcome.publication.eventID == "")
        return Set(outcome.inboxMessages.map(\.accountID))
      }
      #expect(try await reach(Segment(role: .citizen)) == [xuhui, nanjing])
      #expect(try await reach(Segment(region: "31")) == [xuhui, company])
      #expect(try await reach(Segment(region: "310104")) == [xuhui, company])
      #expect(try await reach(Segment(role: .citizen, region: "3201")) == [nanjing])
      #expect(try await reach(Segment(departmentCode: "gongan")) == [officer])
      #expect(try await reach(Segment(region: "44")) == [])
      await #expect(throws: StoreError.failedPrecondition("segment matches 2 accounts, over the limit of 1")) {
        try await n.publish(N.publication(.segment(Segment(role: .citizen))), now: t0, limits: InboxLimits(maxSegmentRecipients: 1))
      }
      // Each inbox got its own consecutive seqs.
      #expect(try await N.inboxRows(store, xuhui).map(\.seq) == [1, 2, 3])
    }
  }

  @Test(arguments: TestEngine.enabled) func pruningPastTheCapKeepsUnreadHighPriority(engine: TestEngine) async throws {
    try await withTemporaryStore(engine) { store in
      let n = store.notifications
      let a = try await N.account(store)
      let limits = InboxLimits(cap: 3)
      func send(_ priority: MessagePriority) async throws {
        _ = try await n.publish(N.publication(.account(a), content: N.content(priority: priority)), now: t0, limits: limits)
      }
      try await send(.high)    // 1
      try await send(.normal)  // 2
      try await send(.normal)  // 3
      try await send(.high)    // 4: over the cap, the oldest unread normal goes
      #expect(try await N.inboxRows(store, a).map(\.seq) == [1, 3, 4])
      _ = try await n.markRead(accountID: a, seqs: [1, 3], now: t0)
      try await send(.normal)  // 5: read ones go first, oldest first
      #expect(try await N.inboxRows(store, a).map(\.seq) == [3, 4, 5])
      try await send(.high)    // 6
      #expect(try await N.inboxRows(store, a).map(\.seq) == [4, 5, 6])
      try await send(.high)    // 7
      #expect(try await N.inboxRows(store, a).map(\.seq) == [4, 6, 7])
      try await send(.high)    // 8: only unread high-priority left; the inbox stays over the cap
      #expect(try await N.inboxRows(store, a).map(\.seq) == [4, 6, 7, 8])
      let count = try await store.inspection.int("SELECT message_count FROM inbox_heads WHERE account_id = $1", .text(a))
      #expect(count == 4)
    }
  }

  @Test(arguments: TestEngine.enabled) func webhookDeliveriesGoToSubscribedEnabledEndpoints(engine: TestEngine) async throws {
    try await withTemporaryStore(engine) { store in
      let n = store.notifications
      let a = try await N.account(store)
      _ = try await n.addWebhook(N.endpoint("ep1", types: [WebhookEvent.notificationPublished]), audit: nil)
      _ = try await n.addWebhook(N.endpoint("ep2", types: [WebhookEvent.caseTransition]), audit: nil)
      _ = try await n.addWebhook(N.endpoint("ep3", types: [WebhookEvent.notificationPublished], enabled: false), audit: nil)
      await #expect(throws: StoreError.alreadyExists(field: "id")) {
        try await n.addWebhook(N.endpoint("ep1", types: []), audit: nil)
      }
      #expect(try await n.webhooks().map(\.id) == ["ep1", "ep2", "ep3"])
      #expect(try await n.webhook(id: "ep1")?.sealedSecret == [1, 2, 3])

      let event = WebhookEvent.make(id: "evt-1", type: WebhookEvent.notificationPublished, createdAt: t0, data: ["x": "1"])
      _ = try await n.publish(N.publication(.account(a), webhook: event), now: t0, limits: InboxLimits())
      // The same event again queues nothing new.
      _ = try await n.publish(N.publication(.account(a), webhook: event), now: t0, limits: InboxLimits())
      var queued = try await n.deliveries(endpointID: nil, status: nil, before: nil, limit: 10)
      #expect(queued.map(\.target) == ["ep1"])
      #expect(queued.first?.body == event.body && queued.first?.status == .created && queued.first?.nextAttemptAt == t0)
      #expect(try await n.nextDeliveryDue() == t0)

      // Enabled later: the next event reaches it too; a scheduled publication queues on release.
      _ = try await n.setWebhookEnabled(id: "ep3", enabled: true, now: t0, audit: nil)
      await #expect(throws: StoreError.notFound("webhook nope")) { try await n.setWebhookEnabled(id: "nope", enabled: true, now: t0, audit: nil) }
      let later = WebhookEvent.make(id: "evt-2", type: WebhookEvent.notificationPublished, createdAt: t0, data: [:])
      _ = try await n.publish(
        N.publication(.account(a), sendAt: t0.addingTimeInterval(60), webhook: later), now: t0, limits: InboxLimits())
      #expect(try await n.deliveries(endpointID: nil, status: nil, before: nil, limit: 10).count == 1)
      _ = try await n.releaseDue(now: t0.addingTimeInterval(60), limit: 10, limits: InboxLimits())
      queued = try await n.deliveries(endpointID: nil, status: nil, before: nil, limit: 10)
      #expect(Set(queued.filter { $0.eventID == "evt-2" }.map(\.target)) == ["ep1", "ep3"])
      #expect(queued.first { $0.eventID == "evt-2" }?.body == later.body)
      #expect(try await n.deliveries(endpointID: "ep3", status: .created, before: nil, limit: 10).count == 1)
    }
  }

  @Test(arguments: TestEngine.enabled) func claimsRecordAttemptsAndReplays(engine: TestEngine) async throws {
    try await withTemporaryStore(engine) { store in
      let n = store.notifications
      let a = try await N.account(store)
      _ = try await n.addWebhook(N.endpoint("ep1", types: [WebhookEvent.caseTransition]), audit: nil)
      for i in 1...2 {
        let event = WebhookEvent.make(id: "evt-\(i)", type: WebhookEvent.caseTransition, createdAt: t0, data: [:])
        _ = try await n.publish(N.publication(.account(a), webhook: event), now: t0, limits: InboxLimits())
      }
      #expect(try await n.claimDueDeliveries(now: t0.addingTimeInterval(-1), limit: 10).isEmpty)
      let claimed = try await n.claimDueDeliveries(now: t0, limit: 10)
      #expect(claimed.count == 2 && claimed.allSatisfy { $0.status == .sending })
      #expect(try await n.claimDueDeliveries(now: t0.addingTimeInterval(3600), limit: 10).isEmpty)
      #expect(try await n.nextDeliveryDue() == nil)
      let delivered = try #require(claimed.first { $0.eventID == "evt-1" }).id
      let failed = try #require(claimed.first { $0.eventID == "evt-2" }).id

      try await n.recordAttempt(
        deliveryID: delivered, attempt: DeliveryAttempt(number: 1, at: t0, httpStatus: 200, error: "", durationMillis: 12),
        status: .delivered, nextAttemptAt: nil)
      // A late update to a terminal status is ignored, but the attempt is kept.
      try await n.recordAttempt(
        deliveryID: delivered, attempt: DeliveryAttempt(number: 2, at: t0, httpStatus: nil, error: "timeout", durationMillis: 5000),
        status: .temporaryFailure, nextAttemptAt: t0.addingTimeInterval(30))
      let done = try #require(try await n.delivery(id: delivered))
      #expect(done.status == .delivered && done.attempts.map(\.number) == [1, 2] && done.nextAttemptAt == nil)
      #expect(done.attempts.first?.httpStatus == 200 && done.attempts.last?.error == "timeout")

      try await n.recordAttempt(
        deliveryID: failed, attempt: DeliveryAttempt(number: 1, at: t0, httpStatus: 503, error: "unavailable", durationMillis: 8),
        status: .temporaryFailure, nextAttemptAt: t0.addingTimeInterval(30))
      #expect(try await n.delivery(id: failed)?.status == .temporaryFailure)
      #expect(try await n.nextDeliveryDue() == t0.addingTimeInterval(30))
      #expect(try await n.claimDueDeliveries(now: t0.addingTimeInterval(29), limit: 10).isEmpty)
      #expect(try await n.claimDueDeliveries(now: t0.addingTimeInterval(30), limit: 10).map(\.id) == [failed])
      // A crash mid-send: back to temporary-failure, due now.
      #expect(try await n.recoverInterruptedDeliveries(now: t0.addingTimeInterval(40)) == 1)
      #expect(try await n.delivery(id: failed)?.status == .temporaryFailure)
      #expect(try await n.claimDueDeliveries(now: t0.addingTimeInterval(40), limit: 10).map(\.id) == [failed])

      await #expect(throws: StoreError.failedPrecondition("delivery is sending; only a failed one can be replayed")) {
        try await n.replayDelivery(id: failed, newID: "replay-1", now: t0, audit: nil)
      }
      await #expect(throws: StoreError.failedPrecondition("delivery is delivered; only a failed one can be replayed")) {
        try await n.replayDelivery(id: delivered, newID: "replay-1", now: t0, audit: nil)
      }
      await #expect(throws: StoreError.notFound("delivery nope")) { try await n.replayDelivery(id: "nope", newID: "replay-1", now: t0, audit: nil) }
      try await n.recordAttempt(
        deliveryID: failed, attempt: DeliveryAttempt(number: 2, at: t0, httpStatus: 400, error: "bad request", durationMillis: 8),
        status: .permanentFailure, nextAttemptAt: nil)
      let replay = try await n.replayDelivery(id: failed, newID: "replay-1", now: t0.addingTimeInterval(50), audit: nil)
      #expect(replay.status == .created && replay.replayOf == failed && replay.eventID == "evt-2" && replay.attempts.isEmpty)
      #expect(try await n.delivery(id: "replay-1") == replay)
      #expect(try await n.claimDueDeliveries(now: t0.addingTimeInterval(50), limit: 10).map(\.id) == ["replay-1"])
      #expect(try await n.deliveries(endpointID: "ep1", status: .permanentFailure, before: nil, limit: 10).map(\.id) == [failed])
    }
  }

  @Test(arguments: TestEngine.enabled) func outboxEventsAreConsumedOnce(engine: TestEngine) async throws {
    try await withTemporaryStore(engine) { store in
      let n = store.notifications
      let a = try await N.account(store)
      try await store.inspection.execute(
        "INSERT INTO event_outbox (topic, aggregate_id, payload, created_at) VALUES ('case.transition', 'c1', $1, $2)",
        .text(#"{"case_id":"c1","state":"accepted"}"#), .int(Int64(t0.timeIntervalSince1970 * 1000)))
      let events = try await n.pendingEvents(topic: "case.transition", limit: 10)
      #expect(events.map(\.payload) == [["case_id": "c1", "state": "accepted"]])
      let publication = N.publication(.account(a), key: "case.transition:1", publisher: nil)
      let unknown = N.publication(.account("gone"), key: "case.transition:1b", publisher: nil)
      let outcomes = try await n.consumeEvents(
        ids: events.map(\.id), publications: [publication, unknown], webhookEvents: [], now: t0, limits: InboxLimits())
      #expect(outcomes.count == 1 && outcomes[0].inboxMessages.first?.accountID == a)
      #expect(try await n.pendingEvents(topic: "case.transition", limit: 10).isEmpty)
      // Consuming again (a crash before the caller learned of the commit) writes nothing new.
      #expect(try await n.consumeEvents(ids: events.map(\.id), publications: [publication], webhookEvents: [], now: t0, limits: InboxLimits()).isEmpty)
      #expect(try await N.inboxRows(store, a).count == 1)
    }
  }
}
