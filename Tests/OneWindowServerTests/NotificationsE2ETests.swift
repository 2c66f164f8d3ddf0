import Foundation
import GRPCCore
import OneWindowAPI
import OneWindowClientPosix
import OneWindowCore
import OneWindowServer
import OneWindowStore
import Testing
import OneWindowTestSupport

@Suite struct NotificationsE2ETests {
  /// Messages arrive in inbox order, live after the replay; each has a unique event id.
  @Test(arguments: TestEngine.enabled) func aSubscriberGetsThePendingMessagesThenLiveOnesInOrder(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { env in
      let admin = try await env.adminSession().accessToken
      try await env.plainTemplate(admin)
      let citizen = try await env.quickCitizen(1)
      for i in 1...3 { try await env.publish(admin, to: .account(citizen.id), text: "before \(i)") }
      let stream = InboxRecorder.open(env.clients.grpc, token: citizen.token)
      try await stream.waitCaughtUp()
      #expect(stream.messages.map(\.seq) == [1, 2, 3])
      for i in 4...20 { try await env.publish(admin, to: .account(citizen.id), text: "live \(i)") }
      try await stream.waitMessages(20)
      #expect(stream.messages.map(\.seq) == Array(1...20))
      #expect(stream.messages.map(\.body) == (1...3).map { "before \($0)" } + (4...20).map { "live \($0)" })
      #expect(Set(stream.messages.map(\.eventID)).count == 20)
      #expect(stream.messages.allSatisfy { $0.deliveryCount == 1 && $0.state == .pending })
      await stream.stop()
    }
  }

  /// Resume after a disconnect: acknowledged messages are not replayed, unacknowledged ones are
  /// (with a delivery count of 2), messages published while away follow — no gap, no duplicate
  /// beyond the redelivery.
  @Test(arguments: TestEngine.enabled) func resumingAfterADisconnectHasNoGapAndRedeliversOnlyTheUnacknowledged(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { env in
      let admin = try await env.adminSession().accessToken
      try await env.plainTemplate(admin)
      let citizen = try await env.quickCitizen(2)
      let first = InboxRecorder.open(env.clients.grpc, token: citizen.token)
      try await first.waitCaughtUp()
      for i in 1...6 { try await env.publish(admin, to: .account(citizen.id), text: "m\(i)") }
      try await first.waitMessages(6)
      let ack = try await env.inboxAPI.ack(.with { $0.upToSeq = 4 }, metadata: bearer(citizen.token))
      #expect(ack.inboxAckedSeq == 4)
      await first.stop()
      #expect(try await eventually { try await env.store.notifications.streamCursors(accountID: citizen.id).inbox.sent == 6 })
      for i in 7...8 { try await env.publish(admin, to: .account(citizen.id), text: "m\(i)") }

      let second = InboxRecorder.open(env.clients.grpc, token: citizen.token)
      try await second.waitCaughtUp()
      #expect(second.messages.map(\.seq) == [5, 6, 7, 8])
      #expect(second.messages.map(\.deliveryCount) == [2, 2, 1, 1])
      try await env.publish(admin, to: .account(citizen.id), text: "m9")
      try await second.waitMessages(5)
      #expect(second.messages.map(\.seq) == [5, 6, 7, 8, 9])
      await second.stop()

      // Acknowledging is monotonic and clamped to the head; acknowledged messages are delivered.
      let back = try await env.inboxAPI.ack(.with { $0.upToSeq = 2 }, metadata: bearer(citizen.token))
      #expect(back.inboxAckedSeq == 4)
      let far = try await env.inboxAPI.ack(.with { $0.upToSeq = 1000 }, metadata: bearer(citizen.token))
      #expect(far.inboxAckedSeq == 9)
      let list = try await env.inboxAPI.listInbox(.init(), metadata: bearer(citizen.token))
      #expect(list.messages.map(\.seq) == Array((1...9).reversed()))
      #expect(list.messages.allSatisfy { $0.state == .delivered })
      let third = InboxRecorder.open(env.clients.grpc, token: citizen.token)
      try await third.waitCaughtUp()
      #expect(third.messages.isEmpty)
      await third.stop()
    }
  }

  /// `after_seq` resumes after what the device processed and acknowledges it (Matrix `since`).
  @Test(arguments: TestEngine.enabled) func afterSeqResumesAndAcknowledges(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { env in
      let admin = try await env.adminSession().accessToken
      try await env.plainTemplate(admin)
      let citizen = try await env.quickCitizen(3)
      for i in 1...5 { try await env.publish(admin, to: .account(citizen.id), text: "m\(i)") }
      let stream = InboxRecorder.open(env.clients.grpc, token: citizen.token, afterSeq: 3)
      try await stream.waitCaughtUp()
      #expect(stream.messages.map(\.seq) == [4, 5])
      await stream.stop()
      let again = InboxRecorder.open(env.clients.grpc, token: citizen.token)
      try await again.waitCaughtUp()
      #expect(again.messages.map(\.seq) == [4, 5])
      await again.stop()
    }
  }

  /// Two devices of one account, subscribed at once, each get every message.
  @Test(arguments: TestEngine.enabled) func twoDevicesOfOneAccountEachGetEveryMessage(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { env in
      let admin = try await env.adminSession().accessToken
      try await env.plainTemplate(admin)
      let citizen = try await env.quickCitizen(4)
      let tokens = IssuedTokens.issue(now: env.clock.now())
      _ = try await env.store.identity.createSession(accountID: citizen.id, tokens: tokens, now: env.clock.now())
      let phone = InboxRecorder.open(env.clients.grpc, token: citizen.token)
      let tablet = InboxRecorder.open(env.clients.grpc, token: tokens.accessToken)
      try await phone.waitCaughtUp()
      try await tablet.waitCaughtUp()
      for i in 1...10 { try await env.publish(admin, to: .account(citizen.id), text: "m\(i)") }
      try await phone.waitMessages(10)
      try await tablet.waitMessages(10)
      #expect(phone.messages.map(\.eventID) == tablet.messages.map(\.eventID))
      await phone.stop()
      await tablet.stop()
    }
  }

  /// An expired message is never delivered and is marked expired; TTL counts from the send.
  @Test(arguments: TestEngine.enabled) func anExpiredMessageIsNeverDelivered(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { env in
      let admin = try await env.adminSession().accessToken
      try await env.plainTemplate(admin)
      let citizen = try await env.quickCitizen(5)
      try await env.publish(admin, to: .account(citizen.id), text: "short") { $0.ttlSeconds = 60 }
      try await env.publish(admin, to: .account(citizen.id), text: "long") { $0.ttlSeconds = 3600 }
      env.clock.advance(by: 120)
      let stream = InboxRecorder.open(env.clients.grpc, token: citizen.token)
      try await stream.waitCaughtUp()
      #expect(stream.messages.map(\.body) == ["long"])
      await stream.stop()
      let expired = try await env.store.inspection.strings("SELECT state FROM inbox_messages WHERE seq = 1").first
      #expect(expired == "expired")
      await expectRPCError(.invalidArgument) {
        try await env.publish(admin, to: .account(citizen.id), text: "x") { $0.ttlSeconds = 29 * 24 * 3600 }
      }
    }
  }

  /// A newer message with the same collapse key replaces an undelivered older one, but not one
  /// already acknowledged.
  @Test(arguments: TestEngine.enabled) func aCollapseKeyReplacesTheUndeliveredOlderMessage(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { env in
      let admin = try await env.adminSession().accessToken
      try await env.plainTemplate(admin)
      let citizen = try await env.quickCitizen(6)
      let first = try await env.publish(admin, to: .account(citizen.id), text: "进度 1") { $0.collapseKey = "case:42" }
      try await env.publish(admin, to: .account(citizen.id), text: "其他") { $0.collapseKey = "case:7" }
      try await env.publish(admin, to: .account(citizen.id), text: "进度 2") { $0.collapseKey = "case:42" }
      let stream = InboxRecorder.open(env.clients.grpc, token: citizen.token)
      try await stream.waitCaughtUp()
      #expect(stream.messages.map(\.body) == ["其他", "进度 2"])
      #expect(stream.messages.last?.replacesEventID == first.publication.eventID)
      _ = try await env.inboxAPI.ack(.with { $0.upToSeq = 3 }, metadata: bearer(citizen.token))
      try await env.publish(admin, to: .account(citizen.id), text: "进度 3") { $0.collapseKey = "case:42" }
      try await stream.waitMessages(3)
      #expect(stream.messages.last?.replacesEventID == "")
      await stream.stop()
      let list = try await env.inboxAPI.listInbox(.init(), metadata: bearer(citizen.token))
      #expect(list.messages.map(\.body) == ["进度 3", "进度 2", "其他"])
    }
  }

  /// A scheduled message is sent by the scheduler at its time; a cancelled one never is.
  @Test(arguments: TestEngine.enabled) func scheduledMessagesAreSentAtTheirTimeAndCancelledOnesNever(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { env in
      let admin = try await env.adminSession().accessToken
      try await env.plainTemplate(admin)
      let citizen = try await env.quickCitizen(7)
      let stream = InboxRecorder.open(env.clients.grpc, token: citizen.token)
      try await stream.waitCaughtUp()
      let at = env.clock.now().addingTimeInterval(3600)
      let kept = try await env.publish(admin, to: .account(citizen.id), text: "明天 9:30 预约", key: "appointment-1") {
        $0.sendAt = .init(date: at)
      }
      let dropped = try await env.publish(admin, to: .account(citizen.id), text: "取消的") { $0.sendAt = .init(date: at) }
      #expect(kept.publication.status == .scheduled)
      let cancelled = try await env.notifyAPI.cancelPublication(.with { $0.id = dropped.publication.id }, metadata: bearer(admin))
      #expect(cancelled.status == .cancelled)
      #expect(try await env.app.notificationScheduler.runOnce() == 0)
      #expect(stream.messages.isEmpty)
      env.clock.advance(by: 3601)
      let admin2 = try await env.login("root", password: "Admin-pass-1")
      #expect(try await env.app.notificationScheduler.runOnce() == 1)
      try await stream.waitMessages(1)
      #expect(stream.messages.map(\.body) == ["明天 9:30 预约"])
      #expect(stream.messages.first?.seq == 1)  // seq given at send time, not at scheduling
      let sent = try await env.notifyAPI.getPublication(.with { $0.id = kept.publication.id }, metadata: bearer(admin2))
      #expect(sent.status == .sent && sent.recipientCount == 1)
      await expectRPCError(.failedPrecondition) {
        try await env.notifyAPI.cancelPublication(.with { $0.id = kept.publication.id }, metadata: bearer(admin2))
      }
      // A retry after the send time passed still returns the original (not "send_at must be in the future").
      let retry = try await env.publish(admin2, to: .account(citizen.id), text: "明天 9:30 预约", key: "appointment-1") {
        $0.sendAt = .init(date: at)
      }
      #expect(retry.replayed && retry.publication.id == kept.publication.id)
      await stream.stop()
    }
  }

  /// Missing and unknown placeholders are INVALID_ARGUMENT naming all of them; nothing is written.
  @Test(arguments: TestEngine.enabled) func templateErrorsNameEveryPlaceholder(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { env in
      let admin = try await env.adminSession().accessToken
      _ = try await env.notifyAPI.putTemplate(.with {
        $0.name = "appointment.reminder"
        $0.title = "预约提醒"
        $0.body = "((name))，您预约的((service))将于((time))办理。"
      }, metadata: bearer(admin))
      let citizen = try await env.quickCitizen(8)
      let missing = await expectRPCError(.invalidArgument) {
        try await env.notifyAPI.publish(.with {
          $0.audience = .account(citizen.id)
          $0.template = "appointment.reminder"
          $0.personalisation = ["name": "王五", "colour": "red"]
          $0.idempotencyKey = "k1"
        }, metadata: bearer(admin))
      }
      #expect(missing?.message.contains("((service))") == true)
      #expect(missing?.message.contains("((time))") == true)
      let unknown = await expectRPCError(.invalidArgument) {
        try await env.notifyAPI.publish(.with {
          $0.audience = .account(citizen.id)
          $0.template = "appointment.reminder"
          $0.personalisation = ["name": "王五", "service": "换证", "time": "9:30", "colour": "red"]
          $0.idempotencyKey = "k2"
        }, metadata: bearer(admin))
      }
      #expect(unknown?.message.contains("colour") == true)
      await expectRPCError(.invalidArgument) {
        try await env.notifyAPI.putTemplate(.with { $0.name = "bad"; $0.title = "t"; $0.body = "((unclosed" }, metadata: bearer(admin))
      }
      await expectRPCError(.aborted) {
        try await env.notifyAPI.putTemplate(.with {
          $0.name = "appointment.reminder"; $0.title = "t"; $0.body = "b"; $0.expectedVersion = 0
        }, metadata: bearer(admin))
      }
      // System templates keep their placeholders.
      await expectRPCError(.invalidArgument) {
        try await env.notifyAPI.putTemplate(.with {
          $0.name = "login.code"; $0.title = "t"; $0.body = "no code here"; $0.expectedVersion = 1
        }, metadata: bearer(admin))
      }
      #expect(try await env.count("inbox_messages") == 0)
      #expect(try await env.count("publications") == 0)
    }
  }

  /// The same idempotency key never makes a second message, even from concurrent retries.
  @Test(arguments: TestEngine.enabled) func publishIsIdempotentByKey(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { env in
      let admin = try await env.adminSession().accessToken
      try await env.plainTemplate(admin)
      let citizen = try await env.quickCitizen(9)
      let responses = try await withThrowingTaskGroup(of: Onewindow_V1_PublishResponse.self) { group in
        for _ in 0..<20 {
          group.addTask { try await env.publish(admin, to: .account(citizen.id), text: "一次", key: "same-key") }
        }
        return try await group.reduce(into: []) { $0.append($1) }
      }
      #expect(Set(responses.map(\.publication.id)).count == 1)
      #expect(responses.filter { !$0.replayed }.count == 1)
      #expect(try await env.count("inbox_messages") == 1)
    }
  }

  /// 200 concurrent subscribers each receive one topic broadcast exactly once; the topic
  /// message is stored once.
  @Test(arguments: TestEngine.enabled) func aTopicBroadcastReachesEachOf200SubscribersExactlyOnce(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { env in
      let admin = try await env.adminSession().accessToken
      try await env.plainTemplate(admin)
      _ = try await env.notifyAPI.createTopic(.with { $0.code = "district.310104"; $0.title = "徐汇区公告" }, metadata: bearer(admin))
      var citizens: [(id: String, token: String)] = []
      for i in 0..<200 { citizens.append(try await env.quickCitizen(100 + i, region: "310104")) }
      for c in citizens {
        _ = try await env.inboxAPI.subscribeTopic(.with { $0.topic = "district.310104" }, metadata: bearer(c.token))
      }
      let published = try await env.withConnections(4) { connections in
        let streams = citizens.enumerated().map { InboxRecorder.open(connections[$0.offset % 4], token: $0.element.token) }
        for s in streams { try await s.waitCaughtUp() }
        let published = try await env.publish(admin, to: .topic("district.310104"), text: "停水通知") { $0.priority = .high }
        #expect(published.publication.recipientCount == 1)
        for s in streams { try await s.waitMessages(1) }
        try await Task.sleep(for: .milliseconds(200))
        for s in streams {
          #expect(s.messages.count == 1)
          #expect(s.messages.first?.eventID == published.publication.eventID)
          #expect(s.messages.first?.topic == "district.310104")
        }
        for s in streams { await s.stop() }
        return published
      }
      #expect(try await env.count("topic_messages") == 1)
      #expect(try await env.count("inbox_messages") == 0)

      // The server records how far the closed streams sent (batched, a moment later).
      #expect(try await eventually {
        try await env.store.notifications.streamCursors(accountID: citizens[1].id).topics["district.310104"]?.sent == 1
      })
      // Each subscriber's own cursor: one acknowledges, the other gets it again on resume.
      _ = try await env.inboxAPI.ack(
        .with { $0.topics = [.with { $0.topic = "district.310104"; $0.seq = 1 }] }, metadata: bearer(citizens[0].token))
      let acked = InboxRecorder.open(env.clients.grpc, token: citizens[0].token)
      let unacked = InboxRecorder.open(env.clients.grpc, token: citizens[1].token)
      try await acked.waitCaughtUp()
      try await unacked.waitCaughtUp()
      #expect(acked.messages.isEmpty)
      #expect(unacked.messages.map(\.eventID) == [published.publication.eventID])
      #expect(unacked.messages.first?.deliveryCount == 2)
      await acked.stop()
      await unacked.stop()

      // Read state through the subscriber's own marker.
      let before = try await env.inboxAPI.listTopicMessages(.with { $0.topic = "district.310104" }, metadata: bearer(citizens[2].token))
      #expect(before.unreadCount == 1)
      _ = try await env.inboxAPI.markRead(
        .with { $0.topic = .with { $0.topic = "district.310104"; $0.seq = 1 } }, metadata: bearer(citizens[2].token))
      let after = try await env.inboxAPI.listTopicMessages(.with { $0.topic = "district.310104" }, metadata: bearer(citizens[2].token))
      #expect(after.unreadCount == 0)
      #expect(after.messages.first?.hasReadAt == true)
    }
  }

  /// A subscription made while a stream is open starts delivering on that stream.
  @Test(arguments: TestEngine.enabled) func subscribingWhileStreamingStartsDeliveryOnTheOpenStream(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { env in
      let admin = try await env.adminSession().accessToken
      try await env.plainTemplate(admin)
      _ = try await env.notifyAPI.createTopic(.with { $0.code = "policy.news"; $0.title = "政策" }, metadata: bearer(admin))
      try await env.publish(admin, to: .topic("policy.news"), text: "before subscribing")
      let citizen = try await env.quickCitizen(10)
      let stream = InboxRecorder.open(env.clients.grpc, token: citizen.token)
      try await stream.waitCaughtUp()
      let sub = try await env.inboxAPI.subscribeTopic(.with { $0.topic = "policy.news" }, metadata: bearer(citizen.token))
      #expect(sub.ackedSeq == 1)  // from the head: the earlier announcement is not replayed
      try await env.publish(admin, to: .topic("policy.news"), text: "after")
      try await stream.waitMessages(1)
      #expect(stream.messages.map(\.body) == ["after"])
      _ = try await env.inboxAPI.unsubscribeTopic(.with { $0.topic = "policy.news" }, metadata: bearer(citizen.token))
      try await env.publish(admin, to: .topic("policy.news"), text: "unsubscribed")
      try await Task.sleep(for: .milliseconds(200))
      #expect(stream.messages.count == 1)
      await stream.stop()
      let topics = try await env.inboxAPI.listTopics(.init(), metadata: bearer(citizen.token))
      #expect(topics.topics.map(\.code) == ["policy.news"])
      #expect(topics.topics.first?.subscribed == false)
      await expectRPCError(.notFound) {
        try await env.inboxAPI.subscribeTopic(.with { $0.topic = "no.such.topic" }, metadata: bearer(citizen.token))
      }
    }
  }

  /// Segments by role and region, resolved at send time.
  @Test(arguments: TestEngine.enabled) func aSegmentReachesTheMatchingAccountsOnly(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { env in
      let admin = try await env.adminSession().accessToken
      try await env.plainTemplate(admin)
      let xuhui = try await env.quickCitizen(11, region: "310104")
      let pudong = try await env.quickCitizen(12, region: "310115")
      let beijing = try await env.quickCitizen(13, region: "110105")
      let response = try await env.publish(admin, to: .with { $0.segment = .with { $0.role = .citizen; $0.region = "31" } }, text: "上海市民")
      #expect(response.publication.recipientCount == 2)
      for (who, expected) in [(xuhui, 1), (pudong, 1), (beijing, 0)] {
        let list = try await env.inboxAPI.listInbox(.init(), metadata: bearer(who.token))
        #expect(list.messages.count == expected)
      }
      await expectRPCError(.invalidArgument) {
        try await env.publish(admin, to: .with { $0.segment = .with { $0.region = "3" } }, text: "x")
      }
    }
  }

  /// The inbox as a list: unread filter, mark read, delete, paging.
  @Test(arguments: TestEngine.enabled) func theInboxListPagesFiltersMarksAndDeletes(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { env in
      let admin = try await env.adminSession().accessToken
      try await env.plainTemplate(admin)
      let citizen = try await env.quickCitizen(14)
      for i in 1...7 { try await env.publish(admin, to: .account(citizen.id), text: "m\(i)") }
      let marked = try await env.inboxAPI.markRead(.with { $0.seqs = [1, 2, 99] }, metadata: bearer(citizen.token))
      #expect(marked.marked == 2)
      let unread = try await env.inboxAPI.listInbox(.with { $0.unreadOnly = true }, metadata: bearer(citizen.token))
      #expect(unread.messages.map(\.seq) == [7, 6, 5, 4, 3])
      #expect(unread.unreadCount == 5)
      let deleted = try await env.inboxAPI.deleteMessages(.with { $0.seqs = [3, 4] }, metadata: bearer(citizen.token))
      #expect(deleted.deleted == 2)
      var seen: [Int64] = []
      var token = ""
      repeat {
        let page = try await env.inboxAPI.listInbox(.with { $0.pageSize = 2; $0.pageToken = token }, metadata: bearer(citizen.token))
        seen += page.messages.map(\.seq)
        token = page.nextPageToken
      } while !token.isEmpty
      #expect(seen == [7, 6, 5, 2, 1])
      await expectRPCError(.invalidArgument) {
        try await env.inboxAPI.listInbox(.with { $0.pageToken = "garbage" }, metadata: bearer(citizen.token))
      }
      await expectRPCError(.invalidArgument) {
        try await env.inboxAPI.markRead(.with { $0.seqs = [] }, metadata: bearer(citizen.token))
      }
    }
  }

  /// A citizen cannot publish, manage templates or webhooks, or touch another citizen's inbox.
  @Test(arguments: TestEngine.enabled) func citizensCannotPublishOrReachAnotherInbox(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { env in
      let admin = try await env.adminSession().accessToken
      try await env.plainTemplate(admin)
      let alice = try await env.quickCitizen(15)
      let bob = try await env.quickCitizen(16)
      try await env.publish(admin, to: .account(alice.id), text: "alice's secret")
      await expectRPCError(.permissionDenied) { try await env.publish(bob.token, to: .account(alice.id), text: "spoof") }
      await expectRPCError(.permissionDenied) {
        try await env.notifyAPI.addWebhook(.with { $0.url = "https://example.org/hook"; $0.eventTypes = ["case.transition"] }, metadata: bearer(bob.token))
      }
      await expectRPCError(.permissionDenied) { try await env.notifyAPI.listTemplates(.init(), metadata: bearer(bob.token)) }
      // Bob's own inbox calls never see Alice's message, whatever seq he names.
      let list = try await env.inboxAPI.listInbox(.init(), metadata: bearer(bob.token))
      #expect(list.messages.isEmpty)
      let marked = try await env.inboxAPI.markRead(.with { $0.seqs = [1] }, metadata: bearer(bob.token))
      #expect(marked.marked == 0)
      let deleted = try await env.inboxAPI.deleteMessages(.with { $0.seqs = [1] }, metadata: bearer(bob.token))
      #expect(deleted.deleted == 0)
      let stream = InboxRecorder.open(env.clients.grpc, token: bob.token)
      try await stream.waitCaughtUp()
      #expect(stream.messages.isEmpty)
      await stream.stop()
      let aliceList = try await env.inboxAPI.listInbox(.init(), metadata: bearer(alice.token))
      #expect(aliceList.messages.map(\.body) == ["alice's secret"])
      #expect(aliceList.messages.first?.hasReadAt == false)
      await expectRPCError(.unauthenticated) { try await env.inboxAPI.listInbox(.init()) }
    }
  }

  /// Case transitions reach the applicant through the system templates: the one-time notice
  /// lists every missing item.
  @Test(arguments: TestEngine.enabled) func caseTransitionsNotifyTheApplicant(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { env in
      let world = try await CaseWorld.make(env)
      let stream = InboxRecorder.open(env.clients.grpc, token: world.citizen)
      try await stream.waitCaughtUp()
      let submitted = try await world.submitCase().case
      try await env.app.systemEvents.runOnce()
      try await stream.waitMessages(1)
      #expect(stream.messages.first?.template == "case.received")
      #expect(stream.messages.first?.body.contains(submitted.trackingCode) == true)
      #expect(stream.messages.first?.data["case_id"] == submitted.id)
      try await world.act(world.d1, submitted.id, .requestCorrection, reason: "材料不全", missingItems: ["身份证复印件", "场地证明"])
      try await env.app.systemEvents.runOnce()
      try await stream.waitMessages(2)
      let notice = try #require(stream.messages.last)
      #expect(notice.template == "case.correction_required")
      #expect(notice.priority == .high)
      #expect(notice.body.contains("1. 身份证复印件") && notice.body.contains("2. 场地证明"))
      // Consumed once: another pass sends nothing more.
      #expect(try await env.app.systemEvents.runOnce() == 0)
      try await Task.sleep(for: .milliseconds(100))
      #expect(stream.messages.count == 2)
      await stream.stop()
    }
  }
}

@Suite struct InboxStreamLimitTests {
  /// One account cannot hold more than the configured number of streams.
  @Test(arguments: TestEngine.enabled) func streamsPerAccountAreCapped(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine, configure: { $0.notifications.maxStreamsPerAccount = 2 }) { env in
      let citizen = try await env.quickCitizen(40)
      let one = InboxRecorder.open(env.clients.grpc, token: citizen.token)
      let two = InboxRecorder.open(env.clients.grpc, token: citizen.token)
      try await one.waitCaughtUp()
      try await two.waitCaughtUp()
      let three = InboxRecorder.open(env.clients.grpc, token: citizen.token)
      try await three.wait("the third stream to be refused") { $0.finished }
      #expect((three.endedWith as? RPCError)?.code == .resourceExhausted)
      await one.stop()
      let again = InboxRecorder.open(env.clients.grpc, token: citizen.token)
      try await again.waitCaughtUp()
      await two.stop()
      await again.stop()
    }
  }

  /// A subscription made in another session reaches an open stream by its next heartbeat even
  /// when the hub could not route it (the stream re-reads its subscriptions).
  @Test(arguments: TestEngine.enabled) func heartbeatsResynchronizeSubscriptionsAndMissedMessages(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine, configure: { $0.notifications.heartbeat = .milliseconds(200) }) { env in
      let admin = try await env.adminSession().accessToken
      try await env.plainTemplate(admin)
      _ = try await env.notifyAPI.createTopic(.with { $0.code = "district.310104"; $0.title = "徐汇区" }, metadata: bearer(admin))
      let citizen = try await env.quickCitizen(41)
      let stream = InboxRecorder.open(env.clients.grpc, token: citizen.token)
      try await stream.waitCaughtUp()
      // Straight in the store: no hub notification, as if the push had been lost.
      _ = try await env.store.notifications.setSubscription(
        accountID: citizen.id, topic: "district.310104", subscribed: true, now: env.clock.now())
      try await env.publish(admin, to: .topic("district.310104"), text: "停电通知")
      try await stream.waitMessages(1, timeout: .seconds(15))
      #expect(stream.messages.map(\.body) == ["停电通知"])
      await stream.stop()
    }
  }
}
