import Foundation
import Testing

@testable import OneWindowCore

@Suite struct MessageTemplateTests {
  let template = MessageTemplateTests.make()

  static func make() -> MessageTemplate {
    do {
      return try MessageTemplate(
        name: "case.correction_required", version: 1, title: "办件((tracking_code))需补正",
        body: "您好((name))，请在((due))前补交：((items))。((name))，谢谢。")
    } catch {
      preconditionFailure("the fixture template is valid: \(error)")
    }
  }

  @Test func placeholdersAreCollectedOnceAndSorted() {
    #expect(template.placeholders == ["due", "items", "name", "tracking_code"])
  }

  @Test func renderingFillsEveryOccurrence() throws {
    let out = try template.render(["tracking_code": "7K3M-9QXT-2B8N-4WZP-3", "name": "张三", "due": "2026-11-27", "items": "身份证复印件"])
    #expect(out.title == "办件7K3M-9QXT-2B8N-4WZP-3需补正")
    #expect(out.body == "您好张三，请在2026-11-27前补交：身份证复印件。张三，谢谢。")
  }

  @Test func missingAndUnknownValuesAreNamedAllAtOnce() {
    #expect(throws: ValidationError("personalisation", "missing ((due)), ((items)) in template case.correction_required")) {
      try template.render(["tracking_code": "x", "name": "y"])
    }
    #expect(throws: ValidationError("personalisation", "no placeholder extra, zz in template case.correction_required")) {
      try template.render(["tracking_code": "x", "name": "y", "due": "d", "items": "i", "zz": "1", "extra": "2"])
    }
    #expect(throws: ValidationError("personalisation", "missing ((items)); no placeholder zz in template case.correction_required")) {
      try template.render(["tracking_code": "x", "name": "y", "due": "d", "zz": "1"])
    }
  }

  @Test func malformedTemplatesAreRefused() {
    #expect(throws: ValidationError.self) { try MessageTemplate(name: "t1", version: 1, title: "a ((b", body: "x") }
    #expect(throws: ValidationError.self) { try MessageTemplate(name: "t1", version: 1, title: "t", body: "((Bad Name))") }
    #expect(throws: ValidationError.self) { try MessageTemplate(name: "t1", version: 1, title: "t", body: "(())") }
    #expect(throws: ValidationError.self) { try MessageTemplate(name: "T!", version: 1, title: "t", body: "b") }
    #expect(throws: ValidationError.self) { try MessageTemplate(name: "t1", version: 0, title: "t", body: "b") }
  }

  @Test func textWithoutPlaceholdersRendersAsIs() throws {
    let plain = try MessageTemplate(name: "notice", version: 2, title: "停电通知", body: "明天 9:30 停电 (一小时)")
    #expect(plain.placeholders.isEmpty)
    #expect(try plain.render([:]).body == "明天 9:30 停电 (一小时)")
  }
}

@Suite struct WebhookSignatureTests {
  let body = Array(#"{"event":"case.transition","state":"accepted"}"#.utf8)
  let now = Date(timeIntervalSince1970: 1_795_000_000)

  @Test func aSignedRequestVerifies() throws {
    let header = WebhookSignature.sign(body: body, secrets: ["whsec_a"], timestamp: 1_795_000_000)
    #expect(header.hasPrefix("t=1795000000,v1="))
    try WebhookSignature.verify(header: header, body: body, secret: "whsec_a", now: now.addingTimeInterval(299))
  }

  @Test func aKnownVectorMatchesHMACSHA256OfTimestampDotBody() {
    // HMAC-SHA256(key "secret", message "1.{}"), computed with Python's hmac module.
    let header = WebhookSignature.sign(body: Array("{}".utf8), secrets: ["secret"], timestamp: 1)
    #expect(header == "t=1,v1=1122767b193110cfec322b6f199b599edbf608ed087f2d27afb0b97d99523908")
  }

  @Test func tamperingWrongSecretsAndStaleTimestampsFail() {
    let header = WebhookSignature.sign(body: body, secrets: ["whsec_a"], timestamp: 1_795_000_000)
    var altered = body
    altered[3] ^= 1
    #expect(throws: WebhookSignature.Failure.noMatchingSignature) {
      try WebhookSignature.verify(header: header, body: altered, secret: "whsec_a", now: now)
    }
    #expect(throws: WebhookSignature.Failure.noMatchingSignature) {
      try WebhookSignature.verify(header: header, body: body, secret: "whsec_b", now: now)
    }
    #expect(throws: WebhookSignature.Failure.timestampOutOfTolerance(seconds: 301)) {
      try WebhookSignature.verify(header: header, body: body, secret: "whsec_a", now: now.addingTimeInterval(301))
    }
    #expect(throws: WebhookSignature.Failure.malformedHeader) {
      try WebhookSignature.verify(header: "v1=abc", body: body, secret: "whsec_a", now: now)
    }
  }

  @Test func duringRotationEitherSecretVerifies() throws {
    let header = WebhookSignature.sign(body: body, secrets: ["old", "new"], timestamp: 1_795_000_000)
    try WebhookSignature.verify(header: header, body: body, secret: "old", now: now)
    try WebhookSignature.verify(header: header, body: body, secret: "new", now: now)
  }
}

@Suite struct DeliveryRuleTests {
  @Test func terminalStatusesStick() {
    for terminal in DeliveryStatus.allCases where terminal.isTerminal {
      for next in DeliveryStatus.allCases { #expect(terminal.applying(next) == nil) }
    }
    #expect(DeliveryStatus.created.applying(.sending) == .sending)
    #expect(DeliveryStatus.sending.applying(.temporaryFailure) == .temporaryFailure)
    #expect(DeliveryStatus.temporaryFailure.applying(.sending) == .sending)
    #expect(DeliveryStatus.created.applying(.delivered) == nil)
  }

  @Test func onlyServerErrorsTooManyRequestsAndNetworkErrorsAreRetried() {
    #expect(RetryPolicy.classify(httpStatus: 200) == .delivered)
    #expect(RetryPolicy.classify(httpStatus: 204) == .delivered)
    #expect(RetryPolicy.classify(httpStatus: 500) == .retryable)
    #expect(RetryPolicy.classify(httpStatus: 503) == .retryable)
    #expect(RetryPolicy.classify(httpStatus: 429) == .retryable)
    #expect(RetryPolicy.classify(httpStatus: nil) == .retryable)
    #expect(RetryPolicy.classify(httpStatus: 400) == .rejected)
    #expect(RetryPolicy.classify(httpStatus: 404) == .rejected)
    #expect(RetryPolicy.classify(httpStatus: 301) == .rejected)
  }

  @Test func backoffGrowsWithJitterAndEndsAtTheLastAttempt() throws {
    let policy = RetryPolicy(maxAttempts: 4, baseDelay: 10, maxDelay: 25)
    #expect(policy.delay(afterAttempt: 1, jitter: 0) == 5)
    #expect(policy.delay(afterAttempt: 1, jitter: 1) == 10)
    #expect(policy.delay(afterAttempt: 2, jitter: 0.5) == 15)
    #expect(policy.delay(afterAttempt: 3, jitter: 1) == 25)  // capped
    #expect(policy.delay(afterAttempt: 4, jitter: 0) == nil)
    #expect(policy.status(after: .retryable, attempt: 3) == .temporaryFailure)
    #expect(policy.status(after: .retryable, attempt: 4) == .technicalFailure)
    #expect(policy.status(after: .rejected, attempt: 1) == .permanentFailure)
  }
}

@Suite struct InboxRuleTests {
  let now = Date(timeIntervalSince1970: 1_795_000_000)

  @Test func optionsAreValidated() throws {
    #expect(throws: ValidationError.self) { try MessageOptions(ttl: 0).validated(now: now) }
    #expect(throws: ValidationError.self) { try MessageOptions(ttl: 29 * 24 * 3600).validated(now: now) }
    #expect(throws: ValidationError.self) { try MessageOptions(collapseKey: String(repeating: "k", count: 65)).validated(now: now) }
    #expect(throws: ValidationError.self) { try MessageOptions(sendAt: now).validated(now: now) }
    #expect(throws: ValidationError.self) { try MessageOptions(category: "").validated(now: now) }
    let scheduled = try MessageOptions(ttl: 60, sendAt: now.addingTimeInterval(3600)).validated(now: now)
    #expect(scheduled.expiry(now: now) == now.addingTimeInterval(3660))
  }

  @Test func pruningTakesOldestReadThenOldestUnreadNormalNeverUnreadHigh() {
    let entries: [InboxRules.Entry] = [
      .init(sequence: 1, priority: .high, read: false),
      .init(sequence: 2, priority: .normal, read: false),
      .init(sequence: 3, priority: .normal, read: true),
      .init(sequence: 4, priority: .high, read: true),
      .init(sequence: 5, priority: .normal, read: false),
      .init(sequence: 6, priority: .high, read: false),
    ]
    #expect(InboxRules.prune(entries, cap: 6).isEmpty)
    #expect(InboxRules.prune(entries, cap: 4) == [3, 4])
    #expect(InboxRules.prune(entries, cap: 3) == [2, 3, 4])
    // Only the two unread high-priority messages can never go: the inbox stays above a cap of 1.
    #expect(InboxRules.prune(entries, cap: 1) == [2, 3, 4, 5])
  }
}

@Suite struct StreamCursorTests {
  @Test func aFreshStreamCountsFirstDeliveries() {
    let cursor = StreamCursor().beginningStream()
    #expect(cursor.rounds == 0)
    #expect(cursor.deliveryCount(of: 1) == 1)
  }

  @Test func unacknowledgedSentMessagesCountAsRedeliveries() {
    // Sent up to 6, acknowledged up to 4: the next stream re-sends 5 and 6 as second deliveries.
    let next = StreamCursor(acked: 4, sent: 6, rounds: 0).beginningStream()
    #expect(next.rounds == 1)
    #expect(next.deliveryCount(of: 5) == 2)
    #expect(next.deliveryCount(of: 6) == 2)
    #expect(next.deliveryCount(of: 7) == 1)
    #expect(next.beginningStream().deliveryCount(of: 5) == 3)
  }

  @Test func acknowledgementsAreMonotonicAndResetRoundsWhenTheyCatchUp() {
    let cursor = StreamCursor(acked: 4, sent: 6, rounds: 2)
    #expect(cursor.acknowledging(3).acked == 4)
    #expect(cursor.acknowledging(5).rounds == 2)
    let caughtUp = cursor.acknowledging(6)
    #expect(caughtUp.acked == 6 && caughtUp.rounds == 0)
    #expect(cursor.acknowledging(9).sent == 9)
  }
}

@Suite struct AudienceRuleTests {
  @Test func regionsComeFromTheIDNumberOrTheCreditCode() {
    #expect(Segment.regionCode(idNumber: "31010419900307001X", creditCode: nil) == "310104")
    #expect(Segment.regionCode(idNumber: nil, creditCode: "91310115MA1K4XXXX1") == "310115")
    #expect(Segment.regionCode(idNumber: nil, creditCode: nil) == nil)
  }

  @Test func aSegmentNeedsAFieldAndAWellFormedRegion() throws {
    #expect(throws: ValidationError.self) { try Segment().validated() }
    #expect(throws: ValidationError.self) { try Segment(region: "3101x").validated() }
    #expect(throws: ValidationError.self) { try Segment(region: "310").validated() }
    #expect(try Segment(role: .citizen, region: "31").validated().region == "31")
  }

  @Test func dataKeysAndSizesAreChecked() throws {
    try MessageContent.validateData(["case_id": "01J", "tracking_code": "7K3M"])
    #expect(throws: ValidationError.self) { try MessageContent.validateData(["Bad-Key": "x"]) }
    #expect(throws: ValidationError.self) { try MessageContent.validateData(["k": String(repeating: "x", count: 501)]) }
    #expect(throws: ValidationError.self) {
      try MessageContent.validateData(Dictionary(uniqueKeysWithValues: (0..<21).map { ("k\($0)", "v") }))
    }
  }

  @Test func topicCodesFollowTemplateNames() throws {
    #expect(try TopicInfo.validateCode("district.310104") == "district.310104")
    #expect(throws: ValidationError.self) { try TopicInfo.validateCode("District 1") }
    #expect(throws: ValidationError.self) { try TopicInfo.validateCode("x") }
  }
}

@Suite struct WebhookEventTests {
  @Test func theEnvelopeIsCanonicalJSONWithSortedKeys() throws {
    let at = Date(timeIntervalSince1970: 1_795_000_000)
    let a = WebhookEvent.make(id: "evt_1", type: WebhookEvent.caseTransition, createdAt: at, data: ["state": "accepted", "case_id": "c/1"])
    let b = WebhookEvent.make(id: "evt_1", type: WebhookEvent.caseTransition, createdAt: at, data: ["case_id": "c/1", "state": "accepted"])
    #expect(a.body == b.body)
    let text = String(decoding: a.body, as: UTF8.self)
    #expect(text.hasPrefix(#"{"created_at":"2026-11-18T"#))
    #expect(text.contains(#""data":{"case_id":"c/1","state":"accepted"},"id":"evt_1","type":"case.transition"}"#))
  }

  @Test func aReceiverVerifiesTheSignatureOverTheExactBody() throws {
    let event = WebhookEvent.make(id: "evt_2", type: WebhookEvent.notificationPublished, createdAt: Date(), data: [:])
    let now = Date()
    let header = WebhookSignature.sign(body: event.body, secrets: ["whsec_test"], timestamp: Int64(now.timeIntervalSince1970))
    try WebhookSignature.verify(header: header, body: event.body, secret: "whsec_test", now: now)
    #expect(throws: WebhookSignature.Failure.noMatchingSignature) {
      try WebhookSignature.verify(header: header, body: event.body + [0x20], secret: "whsec_test", now: now)
    }
  }
}
