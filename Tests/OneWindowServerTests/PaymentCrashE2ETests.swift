import Foundation
import GRPCCore
import NIOCore
import OneWindowAPI
import OneWindowClientPosix
import OneWindowCore
import Testing
import OneWindowTestSupport

@Suite(.serialized) struct PaymentCrashE2ETests {
  /// The provider took the money but OneWindow never heard (its process died before the
  /// callback): the restarted server's first repair pass asks the provider, captures the payment
  /// with its receipt, and the ledger balances and reconciles — also after a `kill -9`.
  @Test(arguments: TestEngine.enabled) func aPaymentTheProviderTookBeforeACrashIsRepairedByTheStatusQuery(engine: TestEngine) async throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ow-paycrash-\(UUID().uuidString)").path
    let database = try await TestDatabase.create(engine, directory: directory)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    // Phase 1 (in process): pay; the provider's callbacks are held back, so our side stays
    // `submitted` while the provider's books say "paid". The process then stops without ever
    // applying the outcome, as a crash would leave it.
    let paymentID = try await TestEnvironment.run(
      configure: { $0.payments.sandboxCallbackDelay = .seconds(3600) }, database: database
    ) { env in
      let w = try await PaymentWorld.make(env, start: Date())
      let (_, order) = try await w.orderedCase()
      let payment = try await w.pay(order)
      #expect(try await w.authorise(payment).status == 202)
      #expect(try await w.callback(payment, status: "processing").status == 200)
      #expect(try await w.payment(payment.id).state == .submitted)
      return payment.id
    }

    // Phase 2: the real binary on the same data; its first repair pass queries the provider.
    let server = try ServerProcess(database: database)
    try await server.start(extraArguments: ["--sandbox-callback-delay-seconds", "3600"])
    let options = ConnectionOptions(host: "127.0.0.1", port: server.port)
    try await OneWindowClients.with(options) { clients in
      let admin = try await clients.identity.loginWithPassword(.with { $0.login = "root"; $0.password = "Admin-pass-1" }).accessToken
      let api = Onewindow_V1_PaymentService.Client(wrapping: clients.grpc)
      var state = Onewindow_V1_PaymentState.unspecified
      let repaired = try await eventually(.seconds(20)) {
        state = try await api.getPayment(.with { $0.paymentID = paymentID }, metadata: bearer(admin)).state
        return state == .success
      }
      #expect(repaired, "payment stayed \(state)")
    }
    server.crash()
    try await server.start()
    try await OneWindowClients.with(options) { clients in
      let admin = try await clients.identity.loginWithPassword(.with { $0.login = "root"; $0.password = "Admin-pass-1" }).accessToken
      let api = Onewindow_V1_PaymentService.Client(wrapping: clients.grpc)
      let payment = try await api.getPayment(.with { $0.paymentID = paymentID }, metadata: bearer(admin))
      #expect(payment.state == .success && !payment.receiptNumber.isEmpty)
      let ledger = try await api.checkLedger(.init(), metadata: bearer(admin))
      #expect(ledger.violations.isEmpty && ledger.transactions == 1)
    }
    _ = server.terminate()
    // The operator's offline checks agree.
    let check = try await Self.runCLI(["payments", "check"] + database.commandLineArguments)
    #expect(check.status == 0 && check.output.contains("ledger OK"))
    let today = SettlementDay.of(Date()).description
    let reconcile = try await Self.runCLI(["payments", "reconcile", "--date", today] + database.commandLineArguments)
    #expect(reconcile.status == 0 && reconcile.output.contains("1 matched"), "\(reconcile.output)")
  }

  /// The sequence with the real binary: callbacks delayed 30 s, an immediate success
  /// at the cashier (one callback, no "processing" first), `kill -9` before that callback, a
  /// restart. The startup repair pass asks the provider about the `started` payment and
  /// captures it once, with its receipt, one inbox message and one webhook.
  @Test(arguments: TestEngine.enabled) func anImmediateSuccessWhoseCallbackDiedWithTheServerIsRecordedAfterTheRestart(engine: TestEngine) async throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ow-paycrash-\(UUID().uuidString)").path
    let database = try await TestDatabase.create(engine, directory: directory)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let receiver = try await WebhookReceiver.start()
    defer { Task { await receiver.stop() } }
    // Phase 1 (in process): the item with fees, the accounts, an order and a webhook endpoint.
    let orderID = try await TestEnvironment.run(
      configure: { $0.notifications.allowLoopbackHTTPWebhooks = true }, database: database
    ) { env in
      let w = try await PaymentWorld.make(env, start: Date())
      _ = try await env.notifyAPI.addWebhook(
        .with { $0.url = receiver.url; $0.eventTypes = ["payment.succeeded"] }, metadata: bearer(w.world.admin))
      return try await w.orderedCase().order.id
    }

    // Phase 2: the real binary. Pay; the provider takes the money at once and would call back in 30 s.
    let server = try ServerProcess(database: database)
    let arguments = ["--sandbox-callback-delay-seconds", "30", "--allow-loopback-webhooks"]
    try await server.start(extraArguments: arguments)
    let options = ConnectionOptions(host: "127.0.0.1", port: server.port)
    let payment = try await OneWindowClients.with(options) { clients in
      let citizen = try await clients.identity.loginWithPassword(
        .with { $0.login = CaseWorld.citizenPhone; $0.password = CaseWorld.citizenPassword }).accessToken
      let api = Onewindow_V1_PaymentService.Client(wrapping: clients.grpc)
      let payment = try await api.createPayment(
        .with { $0.orderID = orderID; $0.amountFen = PaymentWorld.total; $0.idempotencyKey = UUID().uuidString },
        metadata: bearer(citizen))
      let path = String(payment.cashierURL[try #require(payment.cashierURL.range(of: "/sandbox/cashier/")).lowerBound...])
      let paid = try await httpRequest(
        .POST, port: server.httpPort, path, headers: [("content-type", "application/json")],
        body: .bytes(ByteBuffer(string: "{\"account\":\"\(SandboxAccounts.success)\"}")))
      #expect(paid.status == 202)
      // The provider's own books say success.
      #expect(try await httpRequest(.GET, port: server.httpPort, path).text.contains("\"status\":\"success\""))
      return payment
    }
    server.crash()

    try await server.start(extraArguments: arguments)
    try await OneWindowClients.with(options) { clients in
      let admin = try await clients.identity.loginWithPassword(.with { $0.login = "root"; $0.password = "Admin-pass-1" }).accessToken
      let citizen = try await clients.identity.loginWithPassword(
        .with { $0.login = CaseWorld.citizenPhone; $0.password = CaseWorld.citizenPassword }).accessToken
      let api = Onewindow_V1_PaymentService.Client(wrapping: clients.grpc)
      // GetOrder reads our books only: the repair pass, not a GetPayment, records the success.
      var state = Onewindow_V1_PaymentState.unspecified
      let repaired = try await eventually(.seconds(20)) {
        state = try await api.getOrder(.with { $0.orderID = orderID }, metadata: bearer(admin)).payments.first?.state ?? .unspecified
        return state == .success
      }
      #expect(repaired, "payment stayed \(state)")
      let after = try await api.getPayment(.with { $0.paymentID = payment.id }, metadata: bearer(citizen))
      #expect(after.state == .success && !after.receiptNumber.isEmpty)
      let receipt = try await api.getReceipt(.with { $0.paymentID = payment.id }, metadata: bearer(citizen))
      #expect(receipt.totalFen == PaymentWorld.total)
      let ledger = try await api.checkLedger(.init(), metadata: bearer(admin))
      #expect(ledger.violations.isEmpty && ledger.transactions == 1)
      // Told once: one inbox message, one webhook.
      let inboxAPI = Onewindow_V1_InboxService.Client(wrapping: clients.grpc)
      var told = 0
      _ = try await eventually(.seconds(10)) {
        told = try await inboxAPI.listInbox(.init(), metadata: bearer(citizen)).messages.filter { $0.title == "缴费成功" }.count
        return told > 0 && !receiver.requests.isEmpty
      }
      try await Task.sleep(for: .seconds(1))
      told = try await inboxAPI.listInbox(.init(), metadata: bearer(citizen)).messages.filter { $0.title == "缴费成功" }.count
      #expect(told == 1)
      #expect(receiver.requests.filter { $0.header("OneWindow-Event-Type") == "payment.succeeded" }.count == 1)
    }
    #expect(server.terminate() == 0)
    let check = try await Self.runCLI(["payments", "check"] + database.commandLineArguments)
    #expect(check.status == 0 && check.output.contains("ledger OK"), "\(check.output)")
    let today = SettlementDay.of(Date()).description
    let reconcile = try await Self.runCLI(["payments", "reconcile", "--date", today] + database.commandLineArguments)
    #expect(reconcile.status == 0 && reconcile.output.contains("1 matched"), "\(reconcile.output)")
  }

  static func runCLI(_ arguments: [String]) async throws -> (status: Int32, output: String) {
    try await ChildProcess.run(try #require(ServerProcess.binary), arguments)
  }
}
