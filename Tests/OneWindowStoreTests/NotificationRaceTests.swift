import Foundation
import Testing
@testable import OneWindowCore
@testable import OneWindowStore
import OneWindowTestSupport

/// Concurrent calls on one store: each checks an invariant that SQLite's single writer gives
/// for free and PostgreSQL keeps only through the row (or advisory) lock the store takes.
@Suite struct NotificationRaceTests {
  static let callers = 16

  private static func account(_ store: any Store) async throws -> String {
    let account = Account(
      id: ULID.make(at: t0), role: .citizen, displayName: "张三", idNumber: nil, creditCode: nil, departmentCode: nil,
      hasPassword: false, createdAt: t0)
    return try await store.identity.createAccount(NewAccount(account: account, passwordHash: nil)).id
  }

  private static func publication(
    _ audience: Audience, key: String = UUID().uuidString, publisher: String? = "admin-1", webhook: WebhookEvent? = nil
  ) -> NewPublication {
    NewPublication(
      id: ULID.make(at: t0),
      audience: audience,
      content: MessageContent(
        title: "办件进度", body: "正文", category: "general", priority: .normal, data: [:], template: "case.update",
        templateVersion: 1, collapseKey: nil),
      ttl: nil, sendAt: nil, publisherID: publisher, idempotencyKey: key, webhookEvent: webhook)
  }

  @Test(arguments: TestEngine.enabled) func concurrentPublishesToOneInboxTakeConsecutiveSeqs(engine: TestEngine) async throws {
    try await withTemporaryStore(engine) { store in
      let n = store.notifications
      let a = try await Self.account(store)
      let seqs = try await withThrowingTaskGroup(of: [Int64].self) { group in
        for _ in 0..<Self.callers {
          group.addTask {
            try await n.publish(Self.publication(.account(a)), now: t0, limits: InboxLimits()).inboxMessages.map(\.entry.seq)
          }
        }
        return try await group.reduce(into: []) { $0 += $1 }
      }
      #expect(seqs.sorted() == Array(1...Int64(Self.callers)))
      let stored = try await store.inspection.rows(
        "SELECT seq FROM inbox_messages WHERE account_id = $1 ORDER BY seq", [.text(a)]
      ).map { $0["seq"]?.int ?? -1 }
      #expect(stored == Array(1...Int64(Self.callers)))
      let count = try await store.inspection.int("SELECT message_count FROM inbox_heads WHERE account_id = $1", .text(a))
      let head = try await store.inspection.int("SELECT last_seq FROM inbox_heads WHERE account_id = $1", .text(a))
      #expect(count == Int64(Self.callers) && head == Int64(Self.callers))
    }
  }

  /// Topic writes: 16 publishes to one topic take the topic log's seqs 1…16, each once, and the
  /// topic's head ends at 16 (the topic row is locked before its next seq is read).
  @Test(arguments: TestEngine.enabled) func concurrentPublishesToOneTopicTakeConsecutiveSeqs(engine: TestEngine) async throws {
    try await withTemporaryStore(engine) { store in
      let n = store.notifications
      _ = try await n.createTopic(code: "district.310104", title: "徐汇区通知", description: "", now: t0, audit: nil)
      let seqs = try await withThrowingTaskGroup(of: Int64?.self) { group in
        for _ in 0..<Self.callers {
          group.addTask {
            try await n.publish(Self.publication(.topic("district.310104")), now: t0, limits: InboxLimits()).topicMessage?.seq
          }
        }
        return try await group.reduce(into: []) { $0.append($1) }
      }
      #expect(seqs.compactMap { $0 }.sorted() == Array(1...Int64(Self.callers)))
      let stored = try await store.inspection.rows("SELECT seq FROM topic_messages ORDER BY seq", []).map { $0["seq"]?.int ?? -1 }
      #expect(stored == Array(1...Int64(Self.callers)))
      #expect(try await n.topics(accountID: nil).first { $0.code == "district.310104" }?.headSeq == Int64(Self.callers))
    }
  }

  @Test(arguments: TestEngine.enabled) func concurrentAcknowledgementsOnlyMoveForward(engine: TestEngine) async throws {
    try await withTemporaryStore(engine) { store in
      let n = store.notifications
      let a = try await Self.account(store)
      for _ in 0..<Self.callers { _ = try await n.publish(Self.publication(.account(a)), now: t0, limits: InboxLimits()) }
      // Interleaved positions: high and low acknowledgements race.
      let positions = (1...Int64(Self.callers)).map { $0 }.shuffled()
      let results = try await withThrowingTaskGroup(of: (Int64, Int64).self) { group in
        for position in positions {
          group.addTask { (position, try await n.acknowledge(accountID: a, inbox: position, topics: [:], now: t0).inbox.acked) }
        }
        return try await group.reduce(into: []) { $0.append($1) }
      }
      // Each caller sees at least its own position (the cursor never went back under it).
      #expect(results.allSatisfy { position, acked in acked >= position })
      #expect(try await n.streamCursors(accountID: a).inbox.acked == Int64(Self.callers))
      let pending = try await store.inspection.int(
        "SELECT COUNT(*) FROM inbox_messages WHERE account_id = $1 AND state = 'pending'", .text(a))
      #expect(pending == 0)
    }
  }

  @Test(arguments: TestEngine.enabled) func concurrentTemplateVersionsAreDistinct(engine: TestEngine) async throws {
    try await withTemporaryStore(engine) { store in
      let n = store.notifications
      let versions = try await withThrowingTaskGroup(of: Int.self) { group in
        for i in 0..<Self.callers {
          group.addTask {
            // Optimistic concurrency as a client does it: retry from the version reported.
            var expected = 0
            while true {
              do {
                return try await n.putTemplate(
                  NewTemplate(name: "case.update", title: "标题\(i)", body: "正文", category: "case"), expectedVersion: expected,
                  now: t0, audit: nil
                ).template.version
              } catch StoreError.versionConflict(let current) {
                expected = Int(current)
              }
            }
          }
        }
        return try await group.reduce(into: []) { $0.append($1) }
      }
      #expect(versions.sorted() == Array(1...Self.callers))
      #expect(try await n.template(name: "case.update", version: nil)?.template.version == Self.callers)
    }
  }

  @Test(arguments: TestEngine.enabled) func concurrentClaimersTakeEachDeliveryOnce(engine: TestEngine) async throws {
    try await withTemporaryStore(engine) { store in
      let n = store.notifications
      let a = try await Self.account(store)
      _ = try await n.addWebhook(
        WebhookEndpoint(
          id: "ep1", url: "https://example.com/ep1", eventTypes: [WebhookEvent.caseTransition], enabled: true, description: "",
          createdAt: t0, sealedSecret: [1]),
        audit: nil)
      let total = Self.callers * 2
      for i in 0..<total {
        let event = WebhookEvent.make(id: "evt-\(i)", type: WebhookEvent.caseTransition, createdAt: t0, data: [:])
        _ = try await n.publish(Self.publication(.account(a), webhook: event), now: t0, limits: InboxLimits())
      }
      let claimed = try await withThrowingTaskGroup(of: [String].self) { group in
        for _ in 0..<Self.callers {
          group.addTask {
            var mine: [String] = []
            while true {
              let batch = try await n.claimDueDeliveries(now: t0, limit: 3)
              if batch.isEmpty { return mine }
              mine += batch.map(\.id)
            }
          }
        }
        return try await group.reduce(into: []) { $0 += $1 }
      }
      #expect(claimed.count == total && Set(claimed).count == total)
      let sending = try await store.inspection.int("SELECT COUNT(*) FROM deliveries WHERE status = 'sending'")
      #expect(sending == Int64(total))
    }
  }

  @Test(arguments: TestEngine.enabled) func concurrentConsumersConsumeAnOutboxEventOnce(engine: TestEngine) async throws {
    try await withTemporaryStore(engine) { store in
      let n = store.notifications
      let a = try await Self.account(store)
      _ = try await n.addWebhook(
        WebhookEndpoint(
          id: "ep1", url: "https://example.com/ep1", eventTypes: [WebhookEvent.caseTransition], enabled: true, description: "",
          createdAt: t0, sealedSecret: [1]),
        audit: nil)
      try await store.inspection.execute(
        "INSERT INTO event_outbox (topic, aggregate_id, payload, created_at) VALUES ('case.transition', 'c1', $1, $2)",
        .text(#"{"case_id":"c1"}"#), .int(Int64(t0.timeIntervalSince1970 * 1000)))
      let events = try await n.pendingEvents(topic: "case.transition", limit: 10)
      #expect(events.count == 1)
      let ids = events.map(\.id)
      let webhook = WebhookEvent.make(id: "evt-c1", type: WebhookEvent.caseTransition, createdAt: t0, data: [:])
      let outcomes = try await withThrowingTaskGroup(of: Int.self) { group in
        for i in 0..<Self.callers {
          group.addTask {
            // Each consumer builds its own publication for the event (same idempotency key).
            try await n.consumeEvents(
              ids: ids, publications: [Self.publication(.account(a), key: "case.transition:\(ids[0])", publisher: nil)],
              webhookEvents: [webhook], now: t0.addingTimeInterval(Double(i)), limits: InboxLimits()
            ).count
          }
        }
        return try await group.reduce(0, +)
      }
      #expect(outcomes == 1)
      #expect(try await n.pendingEvents(topic: "case.transition", limit: 10).isEmpty)
      #expect(try await store.inspection.int("SELECT COUNT(*) FROM inbox_messages WHERE account_id = $1", .text(a)) == 1)
      #expect(try await store.inspection.int("SELECT COUNT(*) FROM publications") == 1)
      #expect(try await store.inspection.int("SELECT COUNT(*) FROM deliveries") == 1)
    }
  }
}
