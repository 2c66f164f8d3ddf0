import Foundation
import GRPCCore
import OneWindowAPI
import OneWindowClientPosix
import OneWindowCore
import OneWindowServer
import Testing
import OneWindowTestSupport

/// Webhooks through the RPCs: an administrator registers an endpoint, case transitions and
/// publications reach it signed, failures are listed with every attempt and replayable.
@Suite struct WebhookE2ETests {
  @Test(arguments: TestEngine.enabled) func caseTransitionsReachARegisteredEndpointSignedAndWithoutPersonalData(engine: TestEngine) async throws {
    let receiver = try await WebhookReceiver.start()
    defer { Task { await receiver.stop() } }
    try await TestEnvironment.run(engine: engine, configure: { $0.notifications.allowLoopbackHTTPWebhooks = true }) { env in
      let world = try await CaseWorld.make(env)
      let added = try await env.notifyAPI.addWebhook(.with {
        $0.url = receiver.url
        $0.eventTypes = ["case.transition"]
        $0.description_p = "某政务小程序"
      }, metadata: bearer(world.admin))
      #expect(added.secret.hasPrefix("whsec_"))
      let listed = try await env.notifyAPI.listWebhooks(.init(), metadata: bearer(world.admin))
      #expect(listed.endpoints.map(\.id) == [added.endpoint.id])

      let submitted = try await world.submitCase().case
      try await world.act(world.d1, submitted.id, .accept)
      try await env.app.systemEvents.runOnce()
      #expect(try await env.app.deliveries.runOnce() == 3)  // submit, receive, accept
      let requests = receiver.requests
      #expect(requests.count == 3)
      for request in requests {
        try WebhookSignature.verify(
          header: request.header("OneWindow-Signature") ?? "", body: request.body, secret: added.secret, now: env.clock.now())
        #expect(request.header("OneWindow-Event-Type") == "case.transition")
        let text = String(decoding: request.body, as: UTF8.self)
        #expect(text.contains(submitted.trackingCode))
        #expect(!text.contains(world.citizenID) && !text.contains("13900000001"))
      }
      let states = try requests.map { try JSONDecoder().decode(Envelope.self, from: Data($0.body)).data["state"] ?? "" }
      // Deliveries run concurrently: a receiver orders them by the data's `at`, not by arrival.
      #expect(Set(states) == ["submitted", "pending_acceptance", "accepted"])
      let deliveries = try await env.notifyAPI.listDeliveries(.with { $0.endpointID = added.endpoint.id }, metadata: bearer(world.admin))
      #expect(deliveries.deliveries.count == 3)
      #expect(deliveries.deliveries.allSatisfy { $0.status == .delivered && $0.attempts.count == 1 && $0.attempts[0].httpStatus == 200 })
    }
  }

  @Test(arguments: TestEngine.enabled) func aRejectedDeliveryIsListedWithItsAttemptAndReplayedAsANewDelivery(engine: TestEngine) async throws {
    let receiver = try await WebhookReceiver.start(statuses: [400], otherwise: 200)
    defer { Task { await receiver.stop() } }
    try await TestEnvironment.run(engine: engine, configure: { $0.notifications.allowLoopbackHTTPWebhooks = true }) { env in
      let admin = try await env.adminSession().accessToken
      try await env.plainTemplate(admin)
      _ = try await env.notifyAPI.createTopic(.with { $0.code = "district.310104"; $0.title = "徐汇区" }, metadata: bearer(admin))
      let added = try await env.notifyAPI.addWebhook(.with {
        $0.url = receiver.url
        $0.eventTypes = ["notification.published"]
      }, metadata: bearer(admin))
      let published = try await env.publish(admin, to: .topic("district.310104"), text: "停水")
      #expect(try await env.app.deliveries.runOnce() == 1)
      let failed = try await env.notifyAPI.listDeliveries(.with { $0.status = .permanentFailure }, metadata: bearer(admin))
      let dead = try #require(failed.deliveries.first)
      #expect(dead.attempts.map(\.httpStatus) == [400])
      #expect(dead.eventType == "notification.published")
      // The rendered text and the audience's members never leave: only ids and the template.
      let body = String(decoding: try #require(receiver.requests.first).body, as: UTF8.self)
      #expect(body.contains(published.publication.id) && !body.contains("停水"))

      let replay = try await env.notifyAPI.replayDelivery(.with { $0.id = dead.id }, metadata: bearer(admin))
      #expect(replay.replayOf == dead.id && replay.status == .created)
      #expect(try await env.app.deliveries.runOnce() == 1)
      let all = try await env.notifyAPI.listDeliveries(.with { $0.endpointID = added.endpoint.id }, metadata: bearer(admin))
      #expect(Set(all.deliveries.map(\.status)) == [.permanentFailure, .delivered])
      await expectRPCError(.failedPrecondition) {
        try await env.notifyAPI.replayDelivery(.with { $0.id = replay.id }, metadata: bearer(admin))
      }
      await expectRPCError(.invalidArgument) {
        try await env.notifyAPI.addWebhook(.with { $0.url = "ftp://example.org"; $0.eventTypes = ["case.transition"] }, metadata: bearer(admin))
      }
      await expectRPCError(.invalidArgument) {
        try await env.notifyAPI.addWebhook(.with { $0.url = "https://example.org/h"; $0.eventTypes = ["payment.secret"] }, metadata: bearer(admin))
      }
    }
  }

  @Test(arguments: TestEngine.enabled) func plainHTTPToLoopbackIsRefusedUnlessAllowed(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { env in
      let admin = try await env.adminSession().accessToken
      await expectRPCError(.invalidArgument) {
        try await env.notifyAPI.addWebhook(.with { $0.url = "http://127.0.0.1:9/hooks"; $0.eventTypes = ["case.transition"] }, metadata: bearer(admin))
      }
      #expect(try await env.count("webhook_endpoints") == 0)
    }
  }

  struct Envelope: Decodable {
    var id: String
    var type: String
    var data: [String: String]
  }
}
