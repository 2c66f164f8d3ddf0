import Foundation
import GRPCCore
import OneWindowAPI
import OneWindowClientPosix
import OneWindowCore
import Testing
import OneWindowTestSupport

@Suite(.serialized) struct NotificationCrashE2ETests {
  /// A message is committed before Publish returns: killing the server right after loses
  /// nothing, and the restarted server replays it to the subscriber.
  @Test(arguments: TestEngine.enabled) func aPublishedMessageSurvivesAServerKilledRightAfterPublishReturns(engine: TestEngine) async throws {
    let server = try await ServerProcess.make(engine)
    try server.createAdmin(username: "root", password: "Admin-pass-1")
    try await server.start()
    let options = ConnectionOptions(host: "127.0.0.1", port: server.port)
    let phone = "13900000088"
    let (citizenID, eventIDs) = try await OneWindowClients.with(options) { clients in
      let admin = try await clients.identity.loginWithPassword(.with { $0.login = "root"; $0.password = "Admin-pass-1" }).accessToken
      _ = try await clients.identity.registerCitizen(.with {
        $0.name = "赵六"; $0.phone = phone; $0.idNumber = "11010519491231002X"; $0.password = "Citizen-pass-1"
      })
      let citizen = try await clients.identity.loginWithPassword(.with { $0.login = phone; $0.password = "Citizen-pass-1" })
      let notify = Onewindow_V1_NotifyService.Client(wrapping: clients.grpc)
      _ = try await notify.putTemplate(.with { $0.name = "crash.test"; $0.title = "t"; $0.body = "((text))" }, metadata: bearer(admin))
      var ids: [String] = []
      for i in 1...20 {
        let response = try await notify.publish(.with {
          $0.audience = .with { $0.accountID = citizen.account.id }
          $0.template = "crash.test"
          $0.personalisation = ["text": "m\(i)"]
          $0.idempotencyKey = "crash-\(i)"
        }, metadata: bearer(admin))
        ids.append(response.publication.eventID)
      }
      return (citizen.account.id, ids)
    }
    server.crash()

    try await server.start()
    try await OneWindowClients.with(options) { clients in
      let token = try await clients.identity.loginWithPassword(.with { $0.login = phone; $0.password = "Citizen-pass-1" }).accessToken
      let recorder = InboxRecorder.open(clients.grpc, token: token)
      try await recorder.waitCaughtUp()
      #expect(recorder.messages.map(\.eventID) == eventIDs)
      #expect(recorder.messages.map(\.seq) == Array(1...20))
      await recorder.stop()
      #expect(!citizenID.isEmpty)
    }
    server.crash()
  }
}
