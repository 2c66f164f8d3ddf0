import Foundation
import Logging
import OneWindowCore
import OneWindowServer
import OneWindowStore
import OneWindowTestSupport
import ServiceLifecycle
import Testing

/// The webhook dispatcher against a real SQLite store and a real HTTP receiver on loopback,
/// driven pass by pass (`runOnce`) with a manual clock. No gRPC: the RPC-level tests are elsewhere.
@Suite struct WebhookDispatcherTests {
  // MARK: - Delivery and signature

  @Test func deliversASignedRequestTheReceiverCanVerify() async throws {
    try await WebhookWorld.run { world in
      let receiver = try await WebhookReceiver.start(statuses: [200])
      defer { Task { await receiver.stop() } }
      let (endpoint, secret) = try await world.addEndpoint(url: receiver.url)
      let event = try await world.queueEvent()

      #expect(try await world.dispatcher.runOnce() == 1)

      let requests = receiver.requests
      try #require(requests.count == 1)
      let request = requests[0]
      #expect(request.method == "POST")
      #expect(request.uri == "/hooks")
      #expect(request.body == event.body)
      #expect(request.header("Content-Type") == "application/json")
      #expect(request.header("User-Agent") == "OneWindow-Webhooks/1")
      #expect(request.header("OneWindow-Event-Type") == WebhookEvent.notificationPublished)
      #expect(request.header("OneWindow-Event-Id") == event.id)
      let header = try #require(request.header(WebhookSignature.headerName))
      // The receiver's check, with the secret AddWebhook returned once.
      try WebhookSignature.verify(header: header, body: request.body, secret: secret, now: world.clock.now())
      #expect(throws: WebhookSignature.Failure.self) {
        try WebhookSignature.verify(header: header, body: request.body, secret: SecretBox.newSecret(), now: world.clock.now())
      }
      #expect(throws: WebhookSignature.Failure.self) {
        try WebhookSignature.verify(header: header, body: request.body + Array(" ".utf8), secret: secret, now: world.clock.now())
      }

      let delivery = try await world.onlyDelivery(endpoint)
      #expect(request.header("OneWindow-Delivery-Id") == delivery.id)
      #expect(delivery.status == .delivered)
      #expect(delivery.attempts.map(\.number) == [1])
      #expect(delivery.attempts.first?.httpStatus == 200)
      #expect(delivery.attempts.first?.error == "")
      #expect(try await world.dispatcher.runOnce() == 0)
      #expect(receiver.requests.count == 1)
    }
  }

  // MARK: - Retries

  @Test func serverErrorIsRetriedAfterTheBackoffThenDelivered() async throws {
    try await WebhookWorld.run { world in
      let receiver = try await WebhookReceiver.start(statuses: [500, 200])
      defer { Task { await receiver.stop() } }
      let (endpoint, _) = try await world.addEndpoint(url: receiver.url)
      _ = try await world.queueEvent()

      #expect(try await world.dispatcher.runOnce() == 1)
      var delivery = try await world.onlyDelivery(endpoint)
      #expect(delivery.status == .temporaryFailure)
      #expect(delivery.attempts.map(\.httpStatus) == [500])
      #expect(delivery.attempts.first?.error.hasPrefix("HTTP 500") == true)
      let next = try #require(delivery.nextAttemptAt)
      // Equal jitter after attempt 1 with a 30 s base: 15–30 s after the attempt.
      let wait = next.timeIntervalSince(world.clock.now())
      #expect(wait >= 14 && wait <= 31, "waits \(wait) s")

      // Not due before next_attempt_at.
      world.clock.advance(by: wait - 1)
      #expect(try await world.dispatcher.runOnce() == 0)
      #expect(receiver.requests.count == 1)

      world.clock.advance(by: 2)
      #expect(try await world.dispatcher.runOnce() == 1)
      delivery = try await world.onlyDelivery(endpoint)
      #expect(delivery.status == .delivered)
      #expect(delivery.attempts.map(\.number) == [1, 2])
      #expect(delivery.attempts.map(\.httpStatus) == [500, 200])
      #expect(receiver.requests.count == 2)
      // Both attempts carry the same event and delivery ids (receivers deduplicate on them).
      #expect(Set(receiver.requests.compactMap { $0.header("OneWindow-Event-Id") }).count == 1)
      #expect(Set(receiver.requests.compactMap { $0.header("OneWindow-Delivery-Id") }) == [delivery.id])
    }
  }

  @Test func tooManyRequestsIsRetried() async throws {
    try await WebhookWorld.run { world in
      let receiver = try await WebhookReceiver.start(statuses: [429, 200])
      defer { Task { await receiver.stop() } }
      let (endpoint, _) = try await world.addEndpoint(url: receiver.url)
      _ = try await world.queueEvent()

      #expect(try await world.dispatcher.runOnce() == 1)
      #expect(try await world.onlyDelivery(endpoint).status == .temporaryFailure)
      world.clock.advance(by: 31)
      #expect(try await world.dispatcher.runOnce() == 1)
      let delivery = try await world.onlyDelivery(endpoint)
      #expect(delivery.status == .delivered)
      #expect(delivery.attempts.map(\.httpStatus) == [429, 200])
    }
  }

  @Test func clientErrorIsAPermanentFailureAndNeverRetried() async throws {
    try await WebhookWorld.run { world in
      let receiver = try await WebhookReceiver.start(statuses: [400])
      defer { Task { await receiver.stop() } }
      let (endpoint, _) = try await world.addEndpoint(url: receiver.url)
      _ = try await world.queueEvent()

      #expect(try await world.dispatcher.runOnce() == 1)
      let delivery = try await world.onlyDelivery(endpoint)
      #expect(delivery.status == .permanentFailure)
      #expect(delivery.nextAttemptAt == nil)
      #expect(delivery.attempts.map(\.httpStatus) == [400])
      // The receiver's answer explains the failure (at most 200 characters).
      #expect(delivery.attempts.first?.error == "HTTP 400: status 400")

      world.clock.advance(by: 7 * 86400)
      #expect(try await world.dispatcher.runOnce() == 0)
      #expect(receiver.requests.count == 1)
    }
  }

  @Test func redirectsAreNotFollowed() async throws {
    try await WebhookWorld.run { world in
      let receiver = try await WebhookReceiver.start(statuses: [302])
      defer { Task { await receiver.stop() } }
      receiver.setLocation(receiver.url + "/elsewhere")
      let (endpoint, _) = try await world.addEndpoint(url: receiver.url)
      _ = try await world.queueEvent()

      #expect(try await world.dispatcher.runOnce() == 1)
      let delivery = try await world.onlyDelivery(endpoint)
      #expect(delivery.status == .permanentFailure)
      #expect(delivery.attempts.first?.httpStatus == 302)
      #expect(delivery.attempts.first?.error.contains("redirect") == true)
      #expect(receiver.requests.map(\.uri) == ["/hooks"])
    }
  }

  @Test func deadLetterAfterTheLastAttemptThenReplaySucceeds() async throws {
    try await WebhookWorld.run(policy: RetryPolicy(maxAttempts: 3, baseDelay: 30)) { world in
      let receiver = try await WebhookReceiver.start(otherwise: 503)
      defer { Task { await receiver.stop() } }
      let (endpoint, _) = try await world.addEndpoint(url: receiver.url)
      let event = try await world.queueEvent()

      for attempt in 1...3 {
        #expect(try await world.dispatcher.runOnce() == 1, "attempt \(attempt)")
        world.clock.advance(by: 3600)
      }
      let dead = try await world.onlyDelivery(endpoint)
      #expect(dead.status == .technicalFailure)
      #expect(dead.attempts.map(\.number) == [1, 2, 3])
      #expect(dead.attempts.map(\.httpStatus) == [503, 503, 503])
      #expect(dead.nextAttemptAt == nil)

      // A terminal delivery is never sent again.
      world.clock.advance(by: 86400)
      #expect(try await world.dispatcher.runOnce() == 0)
      #expect(receiver.requests.count == 3)

      // The receiver is fixed; an administrator replays the dead letter as a new delivery.
      receiver.script([], otherwise: 200)
      let replay = try await world.store.notifications.replayDelivery(
        id: dead.id, newID: ULID.make(at: world.clock.now()), now: world.clock.now(), audit: nil)
      #expect(replay.id != dead.id)
      #expect(replay.replayOf == dead.id)
      #expect(replay.eventID == event.id)
      #expect(try await world.dispatcher.runOnce() == 1)

      let replayed = try #require(try await world.store.notifications.delivery(id: replay.id))
      #expect(replayed.status == .delivered)
      #expect(replayed.attempts.map(\.number) == [1])
      #expect(try await world.store.notifications.delivery(id: dead.id)?.status == .technicalFailure)
      #expect(receiver.requests.count == 4)
      #expect(receiver.requests.last?.header("OneWindow-Event-Id") == event.id)
      #expect(receiver.requests.last?.header("OneWindow-Delivery-Id") == replay.id)
      #expect(receiver.requests.last?.body == event.body)
    }
  }

  @Test func networkErrorIsRetried() async throws {
    // A refused connection is retried by the HTTP client until the request's deadline. The
    // deadline also bounds the second attempt, whose new connection may wait out the client's
    // reconnect backoff: 3 s leaves room for a loaded machine (1 s failed 2 runs in 4).
    try await WebhookWorld.run(timeout: .seconds(3)) { world in
      // A bound socket that never listens refuses connections and keeps its port from other
      // tests' ephemeral listeners until the receiver takes it over.
      let reserved = try ReservedPort()
      let port = reserved.port
      let (endpoint, _) = try await world.addEndpoint(url: "http://127.0.0.1:\(port)/hooks")
      _ = try await world.queueEvent()

      #expect(try await world.dispatcher.runOnce() == 1)
      var delivery = try await world.onlyDelivery(endpoint)
      #expect(delivery.status == .temporaryFailure)
      #expect(delivery.attempts.first?.httpStatus == nil)
      #expect(delivery.attempts.first?.error.isEmpty == false)
      #expect(delivery.nextAttemptAt != nil)

      // The receiver comes back on the same port.
      reserved.release()
      let second = try await WebhookReceiver.start(statuses: [200], port: port)
      defer { Task { await second.stop() } }
      world.clock.advance(by: 31)
      #expect(try await world.dispatcher.runOnce() == 1)
      delivery = try await world.onlyDelivery(endpoint)
      #expect(delivery.status == .delivered)
      #expect(delivery.attempts.map(\.httpStatus) == [nil, 200])
    }
  }

  @Test func timeoutIsRetried() async throws {
    try await WebhookWorld.run(timeout: .milliseconds(300)) { world in
      let receiver = try await WebhookReceiver.start(statuses: [200])
      defer { Task { await receiver.stop() } }
      receiver.setDelay(.seconds(10))
      let (endpoint, _) = try await world.addEndpoint(url: receiver.url)
      _ = try await world.queueEvent()

      let started = ContinuousClock.now
      #expect(try await world.dispatcher.runOnce() == 1)
      // Well before the receiver's answer: the attempt gave up at its 300 ms timeout.
      #expect(ContinuousClock.now - started < .seconds(8))
      let delivery = try await world.onlyDelivery(endpoint)
      #expect(delivery.status == .temporaryFailure)
      #expect(delivery.attempts.first?.httpStatus == nil)
      #expect(delivery.attempts.first?.error == "timed out")
    }
  }

  // MARK: - Endpoints and channels

  @Test func disabledEndpointIsAPermanentFailure() async throws {
    try await WebhookWorld.run { world in
      let receiver = try await WebhookReceiver.start(statuses: [200])
      defer { Task { await receiver.stop() } }
      let (endpoint, _) = try await world.addEndpoint(url: receiver.url)
      _ = try await world.queueEvent()
      _ = try await world.store.notifications.setWebhookEnabled(id: endpoint.id, enabled: false, now: world.clock.now(), audit: nil)

      #expect(try await world.dispatcher.runOnce() == 1)
      let delivery = try await world.onlyDelivery(endpoint)
      #expect(delivery.status == .permanentFailure)
      #expect(delivery.attempts.first?.error == "endpoint disabled")
      #expect(receiver.requests.isEmpty)
    }
  }

  @Test func deliveryForAnUnconfiguredChannelIsATechnicalFailure() async throws {
    try await WebhookWorld.run { world in
      let (endpoint, _) = try await world.addEndpoint(url: "http://127.0.0.1:9/hooks")
      _ = try await world.queueEvent()
      let noChannels = DeliveryDispatcher(
        store: world.store.notifications, channels: [String: any NotificationChannel](), clock: world.clock, logger: world.logger)

      #expect(try await noChannels.runOnce() == 1)
      let delivery = try await world.onlyDelivery(endpoint)
      #expect(delivery.status == .technicalFailure)
      #expect(delivery.attempts.first?.error.contains("webhook") == true)
    }
  }

  @Test func loggingChannelReportsDelivered() async throws {
    try await WebhookWorld.run { world in
      let (endpoint, _) = try await world.addEndpoint(url: "http://127.0.0.1:9/hooks")
      _ = try await world.queueEvent()
      let logging = DeliveryDispatcher(
        store: world.store.notifications, channels: [LoggingChannel(name: "webhook", logger: world.logger)], clock: world.clock,
        logger: world.logger)

      #expect(try await logging.runOnce() == 1)
      #expect(try await world.onlyDelivery(endpoint).status == .delivered)
    }
  }

  @Test func deliveriesToSeveralEndpointsAreSentConcurrently() async throws {
    try await WebhookWorld.run { world in
      let receiver = try await WebhookReceiver.start()
      defer { Task { await receiver.stop() } }
      receiver.setDelay(.seconds(1))
      var endpoints: [WebhookEndpoint] = []
      for _ in 0..<5 { endpoints.append(try await world.addEndpoint(url: receiver.url).endpoint) }
      _ = try await world.queueEvent()

      #expect(try await world.dispatcher.runOnce() == 5)
      // The 1 s answers overlapped: the deliveries were in flight together, not one after
      // another (judged by the receiver, not by a clock, which a loaded machine stretches).
      #expect(receiver.maxInFlight > 1, "at most \(receiver.maxInFlight) delivery in flight at once")
      for endpoint in endpoints { #expect(try await world.onlyDelivery(endpoint).status == .delivered) }
      #expect(Set(receiver.requests.compactMap { $0.header("OneWindow-Delivery-Id") }).count == 5)
    }
  }

  @Test func aChannelDroppedWithoutShutdownClosesItsClient() async throws {
    try await WebhookWorld.run { world in
      let receiver = try await WebhookReceiver.start()
      defer { Task { await receiver.stop() } }
      let (endpoint, _) = try await world.addEndpoint(url: receiver.url)
      _ = try await world.queueEvent()
      do {
        // runOnce without run() and without shutdownChannels(): the channel's deinit starts the
        // client's shutdown (a leaked client would trip AsyncHTTPClient's debug check).
        let dispatcher = DeliveryDispatcher(
          store: world.store.notifications,
          channels: [WebhookChannel(store: world.store.notifications, secrets: world.secrets, clock: world.clock, logger: world.logger)],
          clock: world.clock, logger: world.logger)
        #expect(try await dispatcher.runOnce() == 1)
      }
      try await Task.sleep(for: .milliseconds(100))
      #expect(try await world.onlyDelivery(endpoint).status == .delivered)
    }
  }

  // MARK: - The background loop

  @Test func runSendsAfterAKickAndStopsPromptlyOnGracefulShutdown() async throws {
    try await WebhookWorld.run { world in
      let receiver = try await WebhookReceiver.start()
      defer { Task { await receiver.stop() } }
      let (endpoint, _) = try await world.addEndpoint(url: receiver.url)
      // Its own dispatcher: run() shuts its channels down when it ends.
      let channel = WebhookChannel(
        store: world.store.notifications, secrets: world.secrets, timeout: .seconds(5), clock: world.clock, logger: world.logger)
      let dispatcher = DeliveryDispatcher(
        store: world.store.notifications, channels: [channel], policy: RetryPolicy(), clock: world.clock, logger: world.logger)
      let group = ServiceGroup(services: [dispatcher], gracefulShutdownSignals: [], logger: world.logger)
      try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        // Idle first (nothing queued), then a publication and a kick.
        try await Task.sleep(for: .milliseconds(100))
        _ = try await world.queueEvent()
        dispatcher.kick()
        let deadline = ContinuousClock.now + .seconds(5)
        while receiver.requests.isEmpty && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        #expect(receiver.requests.count == 1)
        // Recorded once the request finished.
        var status = try await world.onlyDelivery(endpoint).status
        while status != .delivered && ContinuousClock.now < deadline {
          try await Task.sleep(for: .milliseconds(20))
          status = try await world.onlyDelivery(endpoint).status
        }
        #expect(status == .delivered)

        // Promptly: well before the loop's 60 s idle wait would end (the bound is loose because
        // a loaded 2-core CI machine took 2.2 s once).
        let stopping = ContinuousClock.now
        await group.triggerGracefulShutdown()
        try await tasks.waitForAll()
        #expect(ContinuousClock.now - stopping < .seconds(15))
      }
    }
  }

  @Test func runRecoversDeliveriesLeftSendingByACrash() async throws {
    try await WebhookWorld.run { world in
      let receiver = try await WebhookReceiver.start()
      defer { Task { await receiver.stop() } }
      let (endpoint, _) = try await world.addEndpoint(url: receiver.url)
      _ = try await world.queueEvent()
      // A worker claimed it and died before recording the attempt.
      #expect(try await world.store.notifications.claimDueDeliveries(now: world.clock.now(), limit: 10).count == 1)
      #expect(try await world.onlyDelivery(endpoint).status == .sending)
      #expect(try await world.dispatcher.runOnce() == 0)

      let channel = WebhookChannel(
        store: world.store.notifications, secrets: world.secrets, clock: world.clock, logger: world.logger)
      let dispatcher = DeliveryDispatcher(
        store: world.store.notifications, channels: ["webhook": channel], clock: world.clock, logger: world.logger)
      let run = Task { try await dispatcher.run() }
      let deadline = ContinuousClock.now + .seconds(5)
      var status = try await world.onlyDelivery(endpoint).status
      while status != .delivered && ContinuousClock.now < deadline {
        try await Task.sleep(for: .milliseconds(20))
        status = try await world.onlyDelivery(endpoint).status
      }
      run.cancel()
      try await run.value
      #expect(status == .delivered)
      #expect(receiver.requests.count == 1)
    }
  }

  // MARK: - Secrets and validation

  @Test func secretBoxKeyIsCreatedOnceWithOwnerOnlyPermissions() throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ow-secrets-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let box = try SecretBox.loadOrCreate(directory: dir)
    let path = (dir as NSString).appendingPathComponent("webhook-secrets.key")
    let attributes = try FileManager.default.attributesOfItem(atPath: path)
    #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
    #expect((attributes[.size] as? NSNumber)?.intValue == 32)
    #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["webhook-secrets.key"])

    let secret = SecretBox.newSecret()
    #expect(secret.hasPrefix("whsec_"))
    #expect(secret.count == 6 + 43)
    #expect(SecretBox.newSecret() != secret)
    let sealed = try box.seal(secret)
    #expect(!String(decoding: sealed, as: UTF8.self).contains(secret))
    #expect(try box.seal(secret) != sealed)  // a fresh nonce each time
    // Reopened after a restart: the same key.
    #expect(try SecretBox.loadOrCreate(directory: dir).open(sealed) == secret)
    // Another server's key cannot open it, and tampering is detected.
    let other = FileManager.default.temporaryDirectory.appendingPathComponent("ow-secrets-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: other) }
    #expect(throws: SecretBox.Failure.self) { try SecretBox.loadOrCreate(directory: other).open(sealed) }
    var tampered = sealed
    tampered[tampered.count - 1] ^= 1
    #expect(throws: SecretBox.Failure.self) { try box.open(tampered) }
  }

  @Test func webhookURLsMustBeHTTPS() throws {
    func valid(_ url: String, loopback: Bool = false) -> Bool {
      (try? NotificationSettings.validateWebhookURL(url, allowLoopbackHTTP: loopback)) != nil
    }
    #expect(valid("https://hooks.example.gov.cn/onewindow"))
    #expect(valid("https://hooks.example.gov.cn:8443/a?b=c"))
    #expect(try NotificationSettings.validateWebhookURL("  https://example.com/x ", allowLoopbackHTTP: false) == "https://example.com/x")
    #expect(!valid("http://hooks.example.gov.cn/onewindow"))
    #expect(!valid("http://127.0.0.1:8080/hooks"))
    #expect(valid("http://127.0.0.1:8080/hooks", loopback: true))
    #expect(valid("http://localhost:8080/hooks", loopback: true))
    #expect(valid("http://[::1]:8080/hooks", loopback: true))
    #expect(!valid("http://10.0.0.1/hooks", loopback: true))
    #expect(!valid("https://127.0.0.1/hooks"))
    #expect(!valid("https://localhost/hooks"))
    #expect(!valid("https://169.254.169.254/latest/meta-data"))
    #expect(!valid("https://user:pass@example.com/hooks"))
    #expect(!valid("https:///hooks"))
    #expect(!valid("ftp://example.com/hooks"))
    #expect(!valid("example.com/hooks"))
    #expect(!valid("https://example.com/a b"))
    #expect(!valid("https://example.com/#frag"))
    #expect(!valid(""))
    #expect(valid("https://example.com/" + String(repeating: "a", count: 1980)))
    #expect(!valid("https://example.com/" + String(repeating: "a", count: 1981)))
    #expect(throws: ValidationError.self) { try NotificationSettings.validateWebhookURL("http://example.com", allowLoopbackHTTP: false) }
  }

  @Test func eventTypesMustBeKnownAndDistinct() throws {
    #expect(
      try NotificationSettings.validateEventTypes([WebhookEvent.caseTransition, WebhookEvent.notificationPublished])
        == [WebhookEvent.caseTransition, WebhookEvent.notificationPublished])
    #expect(throws: ValidationError.self) { try NotificationSettings.validateEventTypes([]) }
    #expect(throws: ValidationError.self) { try NotificationSettings.validateEventTypes(["case.created"]) }
    #expect(throws: ValidationError.self) {
      try NotificationSettings.validateEventTypes([WebhookEvent.caseTransition, WebhookEvent.caseTransition])
    }
  }
}

/// A temporary store, a manual clock, a secret box, the webhook channel and a dispatcher.
struct WebhookWorld: Sendable {
  let store: any Store
  let clock: ManualClock
  let secrets: SecretBox
  let dispatcher: DeliveryDispatcher
  let logger: Logger
  static let topic = "district.310104"

  static func run(
    policy: RetryPolicy = RetryPolicy(), timeout: Duration = .seconds(5), _ body: (WebhookWorld) async throws -> Void
  ) async throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ow-webhooks-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let database = try await TestDatabase.create(.sqlite, directory: dir)
    let opened = try await database.open()
    let store = opened.store
    var logger = Logger(label: "onewindow-webhook-test")
    logger.logLevel = .critical
    let clock = ManualClock()
    let secrets = try SecretBox.loadOrCreate(directory: dir)
    let channel = WebhookChannel(store: store.notifications, secrets: secrets, timeout: timeout, clock: clock, logger: logger)
    let dispatcher = DeliveryDispatcher(
      store: store.notifications, channels: ["webhook": channel], policy: policy, clock: clock, logger: logger)
    _ = try await store.notifications.createTopic(
      code: topic, title: "徐汇区公告", description: "", now: clock.now(), audit: nil)
    let world = WebhookWorld(store: store, clock: clock, secrets: secrets, dispatcher: dispatcher, logger: logger)
    do {
      try await body(world)
    } catch {
      await dispatcher.shutdownChannels()
      try? await opened.close()
      throw error
    }
    await dispatcher.shutdownChannels()
    try await opened.close()
  }

  /// What AddWebhook does: validate, make a secret, store it sealed. Returns the secret.
  func addEndpoint(
    url: String, eventTypes: [String] = [WebhookEvent.notificationPublished]
  ) async throws -> (endpoint: WebhookEndpoint, secret: String) {
    let secret = SecretBox.newSecret()
    let endpoint = WebhookEndpoint(
      id: ULID.make(at: clock.now()), url: try NotificationSettings.validateWebhookURL(url, allowLoopbackHTTP: true),
      eventTypes: try NotificationSettings.validateEventTypes(eventTypes), enabled: true, description: "test receiver",
      createdAt: clock.now(), sealedSecret: try secrets.seal(secret))
    return (try await store.notifications.addWebhook(endpoint, audit: nil), secret)
  }

  /// Publishes a topic message with a `notification.published` webhook event (queued for every
  /// subscribed endpoint in the same transaction).
  @discardableResult
  func queueEvent() async throws -> WebhookEvent {
    let now = clock.now()
    let id = ULID.make(at: now)
    let content = MessageContent(
      title: "停水通知", body: "明日 9:00–17:00 停水", category: "announcement", priority: .normal, template: "announcement",
      templateVersion: 1)
    let event = WebhookEvent.make(
      id: "evt_\(id)", type: WebhookEvent.notificationPublished, createdAt: now,
      data: ["publication_id": id, "topic": Self.topic])
    _ = try await store.notifications.publish(
      NewPublication(
        id: id, audience: .topic(Self.topic), content: content, ttl: nil, sendAt: nil, publisherID: nil,
        idempotencyKey: "test-\(id)", webhookEvent: event),
      now: now, limits: InboxLimits())
    return event
  }

  /// The one delivery (replays excluded) of an endpoint.
  func onlyDelivery(_ endpoint: WebhookEndpoint) async throws -> Delivery {
    let all = try await store.notifications.deliveries(endpointID: endpoint.id, status: nil, before: nil, limit: 50)
    let originals = all.filter { $0.replayOf == nil }
    try #require(originals.count == 1, "deliveries of \(endpoint.id): \(all.map(\.status))")
    return originals[0]
  }
}
