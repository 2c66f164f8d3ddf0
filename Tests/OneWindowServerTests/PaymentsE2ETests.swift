import Foundation
import GRPCCore
import OneWindowAPI
import OneWindowClientPosix
import OneWindowCore
import Testing
import OneWindowTestSupport

/// Payments end to end: the real server, the sandbox provider's cashier and signed HTTP
/// callbacks, the generated gRPC client.
@Suite struct PaymentsE2ETests {
  /// Behind a load balancer every node hands out cashier URLs on the configured public base, not
  /// on its own listener's address (scale-out: the payer may reach any node).
  @Test func cashierURLsUseTheConfiguredPublicBase() async throws {
    try await TestEnvironment.run(configure: { $0.publicHTTPURL = "https://pay.example.gov.cn/onewindow/" }) { env in
      let w = try await PaymentWorld.make(env)
      let (_, order) = try await w.orderedCase()
      let payment = try await w.pay(order)
      #expect(payment.cashierURL.hasPrefix("https://pay.example.gov.cn/onewindow/sandbox/cashier/"), "\(payment.cashierURL)")
      #expect(!payment.cashierURL.contains("127.0.0.1"))
    }
  }

  @Test(arguments: TestEngine.enabled) func aPaidFeeGivesAVerifiableReceiptAndLetsTheCaseComplete(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { env in
      let w = try await PaymentWorld.make(env)
      let (caseID, order) = try await w.orderedCase()
      #expect(order.totalFen == PaymentWorld.total && order.state == .open && order.lines.map(\.originalFen) == [2000, 1500])
      // Unpaid: the case cannot complete.
      try await w.world.bringToSecondStep(caseID)
      try await w.world.act(w.world.d2, caseID, .approve)
      let refused = await expectRPCError(.failedPrecondition) { try await w.world.act(w.world.d2, caseID, .complete) }
      #expect(refused?.message.contains("not paid") == true)

      let payment = try await w.pay(order)
      #expect(payment.state == .started && payment.cashierURL.contains("/sandbox/cashier/") && payment.amountFen == 3500)
      #expect(try await w.authorise(payment).status == 202)
      let paid = try await w.waitFor(payment.id, .success)
      #expect(!paid.receiptNumber.isEmpty && paid.refundableFen == 3500)

      let receipt = try await w.api.getReceipt(.with { $0.number = paid.receiptNumber }, metadata: bearer(w.world.citizen))
      #expect(receipt.totalFen == 3500 && receipt.items.map(\.amountFen) == [2000, 1500] && receipt.payerName == "王五")
      let verified = try await w.api.verifyReceipt(.with { $0.signed = receipt.signed })
      #expect(verified.valid && verified.receipt.number == receipt.number)
      // One changed character of the payload breaks the signature.
      var parts = receipt.signed.split(separator: ".").map(String.init)
      var payload = try #require(Base64URL.decode(parts[1]))
      let index = try #require(payload.firstIndex(of: UInt8(ascii: "3")))
      payload[index] = UInt8(ascii: "9")
      parts[1] = Base64URL.encode(payload)
      let forged = try await w.api.verifyReceipt(.with { $0.signed = parts.joined(separator: ".") })
      #expect(!forged.valid && !forged.problem.isEmpty)

      let after = try await w.api.getOrder(.with { $0.caseID = caseID }, metadata: bearer(w.world.citizen))
      #expect(after.state == .paid && after.payments.first?.state == .success)
      _ = try await w.world.act(w.world.d2, caseID, .complete)
      let ledger = try await w.ledgerCheck()
      #expect(ledger.violations.isEmpty && ledger.transactions == 1)
      #expect(ledger.balances["provider_clearing"] == 3500 && ledger.balances["fee_revenue:\(CaseWorld.d1)"] == -3500)
      // The payer is told, with the receipt number.
      try await env.app.systemEvents.runOnce()
      let inbox = try await env.inboxAPI.listInbox(.init(), metadata: bearer(w.world.citizen))
      #expect(inbox.messages.contains { $0.title == "缴费成功" && $0.body.contains(paid.receiptNumber) })
    }
  }

  @Test(arguments: TestEngine.enabled) func fiftyConcurrentCreatesWithOneKeyMakeOneOrderAndOnePayment(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { env in
      let w = try await PaymentWorld.make(env)
      let submitted = try await w.world.submitCase().case
      let key = "order-\(UUID().uuidString)"
      let orders = try await withThrowingTaskGroup(of: String.self) { group in
        for _ in 0..<50 {
          group.addTask {
            try await w.api.createOrder(.with { $0.caseID = submitted.id; $0.idempotencyKey = key }, metadata: bearer(w.world.citizen)).id
          }
        }
        return try await group.reduce(into: Set<String>()) { $0.insert($1) }
      }
      #expect(orders.count == 1)
      #expect(try await env.count("payment_orders") == 1)
      let order = try await w.api.getOrder(.with { $0.orderID = orders.first ?? "" }, metadata: bearer(w.world.citizen))
      // The key may also come as metadata.
      let payKey = "pay-\(UUID().uuidString)"
      var metadata = bearer(w.world.citizen)
      metadata.addString(payKey, forKey: "idempotency-key")
      let payments = try await withThrowingTaskGroup(of: String.self) { group in
        for _ in 0..<50 {
          group.addTask { [metadata] in
            try await w.api.createPayment(.with { $0.orderID = order.id; $0.amountFen = order.totalFen }, metadata: metadata).id
          }
        }
        return try await group.reduce(into: Set<String>()) { $0.insert($1) }
      }
      #expect(payments.count == 1)
      #expect(try await env.count("payments") == 1)
      // Another case of the same account with the same key is a different request.
      let other = try await w.world.submitCase().case
      let reused = await expectRPCError(.alreadyExists) {
        try await w.api.createOrder(.with { $0.caseID = other.id; $0.idempotencyKey = key }, metadata: bearer(w.world.citizen))
      }
      #expect(reused?.message.contains("case_id") == true)
    }
  }

  @Test(arguments: TestEngine.enabled) func aKeyReusedForAnotherAmountIsRefusedAndAWrongAmountIsStale(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { env in
      let w = try await PaymentWorld.make(env)
      let (_, order) = try await w.orderedCase()
      await expectRPCError(.invalidArgument) {
        try await w.api.createPayment(.with { $0.orderID = order.id; $0.amountFen = order.totalFen }, metadata: bearer(w.world.citizen))
      }
      let stale = await expectRPCError(.failedPrecondition) {
        try await w.api.createPayment(
          .with { $0.orderID = order.id; $0.amountFen = 100; $0.idempotencyKey = "k1" }, metadata: bearer(w.world.citizen))
      }
      #expect(stale?.message.contains("35.00") == true)
      let payment = try await w.pay(order, key: "k2")
      let mismatch = await expectRPCError(.alreadyExists) {
        try await w.api.createPayment(
          .with { $0.orderID = order.id; $0.amountFen = 3400; $0.idempotencyKey = "k2" }, metadata: bearer(w.world.citizen))
      }
      #expect(mismatch?.message.contains("amount_fen") == true)
      // Same key, same parameters: the original.
      #expect(try await w.pay(order, key: "k2").id == payment.id)
      // One unfinished payment per order.
      let second = await expectRPCError(.failedPrecondition) { try await w.pay(order, key: "k3") }
      #expect(second?.message.contains(payment.id) == true)
      let cancelled = try await w.api.cancelPayment(.with { $0.paymentID = payment.id }, metadata: bearer(w.world.citizen))
      #expect(cancelled.state == .failed && cancelled.code == "P0030")
      #expect(try await w.pay(order, key: "k3").state == .started)
    }
  }

  @Test(arguments: TestEngine.enabled) func forgedStaleAndReplayedCallbacksChangeNothing(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine, configure: { $0.payments.sandboxCallbackDelay = .seconds(3600) }) { env in
      let w = try await PaymentWorld.make(env)
      let (_, order) = try await w.orderedCase()
      let payment = try await w.pay(order)
      #expect(try await w.authorise(payment).status == 202)  // the provider took the money; its callbacks are held back
      let notifications = try await env.count("provider_notifications")

      #expect(try await w.callback(payment, status: "success", secret: "not-the-secret").status == 401)
      let now = Int64(env.clock.now().timeIntervalSince1970)
      #expect(try await w.callback(payment, status: "success", timestamp: now - 301).status == 401)
      #expect(try await w.callback(payment, status: "success", timestamp: now + 301).status == 401)
      var unknown = payment
      unknown.id = "pay_unknown"
      unknown.providerReference = "sbx_unknown"
      #expect(try await w.callback(unknown, status: "success").status == 404)
      #expect(try await env.count("provider_notifications") == notifications)
      #expect(try await w.payment(payment.id).state == .started)

      // The same success callback five times at once: captured once.
      let replies = try await withThrowingTaskGroup(of: Int.self) { group in
        for _ in 0..<5 { group.addTask { try await w.callback(payment, status: "success", notificationID: "ntf_same").status } }
        return try await group.reduce(into: [Int]()) { $0.append($1) }
      }
      #expect(replies == [200, 200, 200, 200, 200])
      #expect(try await w.payment(payment.id).state == .success)
      #expect(try await env.count("ledger_postings") == 2)
      #expect(try await env.count("provider_notifications") == notifications + 1)
      // Five more successes with new ids: still one capture.
      for _ in 0..<5 { #expect(try await w.callback(payment, status: "success").status == 200) }
      // A late failure never regresses the state.
      let late = try await w.callback(payment, status: "declined")
      #expect(late.status == 200 && late.text.contains("ignored"))
      #expect(try await w.payment(payment.id).state == .success)
      let ledger = try await w.ledgerCheck()
      #expect(ledger.violations.isEmpty && ledger.transactions == 1)
    }
  }

  @Test(arguments: TestEngine.enabled) func aSuccessCallbackTheProviderDoesNotConfirmIsNotApplied(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine, configure: { $0.payments.sandboxCallbackDelay = .seconds(3600) }) { env in
      let w = try await PaymentWorld.make(env)
      let (_, order) = try await w.orderedCase()
      let payment = try await w.pay(order)
      // Correctly signed, but the payer never paid: the provider's answer wins.
      #expect(try await w.callback(payment, status: "success").status == 200)
      #expect(try await w.payment(payment.id).state == .started)
      #expect(try await env.count("ledger_postings") == 0)
    }
  }

  @Test(arguments: TestEngine.enabled) func refundsCheckTheRefundableAmountTheCallerSaw(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { env in
      let w = try await PaymentWorld.make(env)
      let (_, order) = try await w.orderedCase()
      let payment = try await w.pay(order)
      try await w.authorise(payment)
      _ = try await w.waitFor(payment.id, .success)
      let worker = w.world.d1
      await expectRPCError(.permissionDenied) {
        try await w.api.refund(
          .with { $0.paymentID = payment.id; $0.amountFen = 100; $0.refundableSeenFen = 3500; $0.reason = "x" },
          metadata: bearer(w.world.citizen))
      }
      await expectRPCError(.notFound) {
        try await w.api.refund(
          .with { $0.paymentID = payment.id; $0.amountFen = 100; $0.refundableSeenFen = 3500; $0.reason = "x" },
          metadata: bearer(w.world.d3))
      }
      let first = try await w.api.refund(
        .with { $0.paymentID = payment.id; $0.amountFen = 1500; $0.refundableSeenFen = 3500; $0.reason = "现场核查未进行" },
        metadata: bearer(worker))
      #expect(first.state == .success)
      // A retry of the same request saw 35.00, which is no longer true: refused, not paid twice.
      let retried = await expectRPCError(.failedPrecondition) {
        try await w.api.refund(
          .with { $0.paymentID = payment.id; $0.amountFen = 1500; $0.refundableSeenFen = 3500; $0.reason = "现场核查未进行" },
          metadata: bearer(worker))
      }
      #expect(retried?.message.contains("20.00") == true)
      await expectRPCError(.failedPrecondition) {
        try await w.api.refund(
          .with { $0.paymentID = payment.id; $0.amountFen = 2001; $0.refundableSeenFen = 2000; $0.reason = "too much" },
          metadata: bearer(worker))
      }
      let after = try await w.payment(payment.id)
      #expect(after.refundedFen == 1500 && after.refundableFen == 2000 && after.refunds.count == 1)
      let ledger = try await w.ledgerCheck()
      #expect(ledger.violations.isEmpty && ledger.transactions == 2 && ledger.balances["refunds_payable"] == -1500)
    }
  }

  @Test(arguments: TestEngine.enabled) func expiryQueriesTheProviderForAuthorisedPayments(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine, configure: { $0.payments.sandboxCallbackDelay = .seconds(3600) }) { env in
      var w = try await PaymentWorld.make(env)
      // Never authorised: expires after 90 minutes.
      let (_, o1) = try await w.orderedCase()
      let p1 = try await w.pay(o1)
      // Authorised, and the provider never answers (the timeout account).
      let (_, o2) = try await w.orderedCase()
      let p2 = try await w.pay(o2)
      try await w.authorise(p2, account: SandboxAccounts.timeout)
      _ = try await w.callback(p2, status: "processing")
      #expect(try await w.payment(p2.id).state == .submitted)
      // Authorised; the provider decides "success" 3 s later but its callback is lost.
      let (_, o3) = try await w.orderedCase()
      let p3 = try await w.pay(o3)
      try await w.authorise(p3, account: SandboxAccounts.delayedSuccess)
      _ = try await w.callback(p3, status: "processing")

      env.clock.advance(by: 89 * 60)
      try await env.app.paymentJobs.runOnce()
      try await w.world.relogin()
      #expect(try await w.payment(p1.id).state == .started)
      env.clock.advance(by: 2 * 60)
      try await env.app.paymentJobs.runOnce()
      try await w.world.relogin()
      let expired = try await w.payment(p1.id)
      #expect(expired.state == .failed && expired.code == "P0020")
      let unanswered = try await w.payment(p2.id)
      #expect(unanswered.state == .failed && unanswered.code == "P0020")
      // The provider said it was paid: not expired, captured.
      let repaired = try await w.payment(p3.id)
      #expect(repaired.state == .success && !repaired.receiptNumber.isEmpty)
      // The payer can no longer pay an expired session.
      #expect(try await w.authorise(p1).status == 409)
      #expect(try await w.ledgerCheck().violations.isEmpty)
    }
  }

  /// An immediate success sends one callback and no "processing" first; when that callback
  /// is lost, a payer who returns from the cashier and asks (here 50 times at once) sees the
  /// success, the provider is asked once, and the payer is told exactly once.
  @Test(arguments: TestEngine.enabled) func aPayerReturningAfterALostCallbackSeesTheSuccessAndIsToldOnce(engine: TestEngine) async throws {
    let receiver = try await WebhookReceiver.start()
    defer { Task { await receiver.stop() } }
    try await TestEnvironment.run(engine: engine, configure: {
      $0.payments.sandboxCallbackDelay = .seconds(3600)  // the provider's callback never arrives
      $0.notifications.allowLoopbackHTTPWebhooks = true
    }) { env in
      let w = try await PaymentWorld.make(env)
      _ = try await env.notifyAPI.addWebhook(
        .with { $0.url = receiver.url; $0.eventTypes = ["payment.succeeded"] }, metadata: bearer(w.world.admin))
      let (_, order) = try await w.orderedCase()
      let payment = try await w.pay(order)
      #expect(try await w.authorise(payment).status == 202)
      // A payment younger than 5 s is read from our books only.
      let before = env.app.sandbox.statusQueries
      #expect(try await w.payment(payment.id, w.world.citizen).state == .started)
      #expect(env.app.sandbox.statusQueries == before)

      env.clock.advance(by: 6)
      let states = try await withThrowingTaskGroup(of: Onewindow_V1_PaymentState.self) { group in
        for _ in 0..<50 { group.addTask { try await w.payment(payment.id, w.world.citizen).state } }
        return try await group.reduce(into: [Onewindow_V1_PaymentState]()) { $0.append($1) }
      }
      #expect(states.count == 50 && states.allSatisfy { $0 == .success }, "\(Set(states))")
      let queries = env.app.sandbox.statusQueries - before
      #expect((1...2).contains(queries), "\(queries) provider queries")
      let paid = try await w.payment(payment.id)
      #expect(paid.state == .success && !paid.receiptNumber.isEmpty)
      // Within 5 s of that check the provider is not asked again.
      #expect(env.app.sandbox.statusQueries - before == queries)

      // The late callback (or a provider's retry) changes nothing and tells nobody again.
      #expect(try await w.callback(payment, status: "success").text.contains("ignored"))
      try await env.app.systemEvents.runOnce()
      _ = try await env.app.deliveries.runOnce()
      let delivered = await eventually { !receiver.requests.isEmpty }
      #expect(delivered)
      try await env.app.systemEvents.runOnce()
      _ = try await env.app.deliveries.runOnce()
      try await Task.sleep(for: .milliseconds(300))
      #expect(receiver.requests.filter { $0.header("OneWindow-Event-Type") == "payment.succeeded" }.count == 1)
      let inbox = try await env.inboxAPI.listInbox(.init(), metadata: bearer(w.world.citizen))
      #expect(inbox.messages.filter { $0.title == "缴费成功" }.count == 1)
      let ledger = try await w.ledgerCheck()
      #expect(ledger.violations.isEmpty && ledger.transactions == 1)
    }
  }

  /// Lost callbacks without a crash: the periodic repair pass asks about `started` payments
  /// too (an immediate success sends no "processing"), and each payment at most once a minute.
  @Test(arguments: TestEngine.enabled) func theRepairPassFindsSuccessesOfStartedPayments(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine, configure: { $0.payments.sandboxCallbackDelay = .seconds(3600) }) { env in
      var w = try await PaymentWorld.make(env)
      var paid: [String] = []
      for _ in 0..<3 {
        let (_, order) = try await w.orderedCase()
        let payment = try await w.pay(order)
        try await w.authorise(payment)
        paid.append(payment.id)
      }
      // Authorised with the timeout account: the provider keeps it pending.
      let (_, o4) = try await w.orderedCase()
      let pending = try await w.pay(o4)
      try await w.authorise(pending, account: SandboxAccounts.timeout)
      // Never authorised.
      let (_, o5) = try await w.orderedCase()
      let open = try await w.pay(o5)

      // (A background pass the last case submission kicked may run after the jump too and
      // check some of them itself: counted from before the jump, each is asked once or twice.)
      let before = env.app.sandbox.statusQueries
      env.clock.advance(by: 61)
      try await env.app.paymentJobs.runOnce()
      let asked = env.app.sandbox.statusQueries - before
      #expect((5...10).contains(asked), "\(asked) provider queries")
      try await w.world.relogin()
      for id in paid {
        let payment = try await w.payment(id)
        #expect(payment.state == .success && !payment.receiptNumber.isEmpty)
      }
      // Its lost "processing" is learnt too; the unpaid one stays as it was.
      #expect(try await w.payment(pending.id).state == .submitted)
      #expect(try await w.payment(open.id).state == .started)
      // Checked a moment ago: the next pass leaves them alone.
      try await env.app.paymentJobs.runOnce()
      #expect(env.app.sandbox.statusQueries - before == asked)
      let ledger = try await w.ledgerCheck()
      #expect(ledger.violations.isEmpty && ledger.transactions == 3)
    }
  }

  /// Expiry asks first: a `started` payment the provider reports as paid (its callback lost) is
  /// captured, and never closed at the provider. (An unpaid one is closed and expired:
  /// `expiryQueriesTheProviderForAuthorisedPayments`.)
  @Test(arguments: TestEngine.enabled) func expiryCapturesAStartedPaymentTheProviderReportsAsPaid(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine, configure: { $0.payments.sandboxCallbackDelay = .seconds(3600) }) { env in
      var w = try await PaymentWorld.make(env)
      let (_, order) = try await w.orderedCase()
      let payment = try await w.pay(order)
      try await w.authorise(payment)

      let closes = env.app.sandbox.closeRequests
      env.clock.advance(by: 91 * 60)
      try await env.app.paymentJobs.runOnce()
      try await w.world.relogin()
      let captured = try await w.payment(payment.id)
      #expect(captured.state == .success && !captured.receiptNumber.isEmpty)
      #expect(env.app.sandbox.closeRequests == closes)
      let ledger = try await w.ledgerCheck()
      #expect(ledger.violations.isEmpty && ledger.transactions == 1)
    }
  }

  @Test(arguments: TestEngine.enabled) func withdrawingAPaidCaseRefundsItAutomatically(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { env in
      let w = try await PaymentWorld.make(env)
      let (caseID, order) = try await w.orderedCase()
      let payment = try await w.pay(order)
      try await w.authorise(payment)
      _ = try await w.waitFor(payment.id, .success)
      try await w.world.act(w.world.citizen, caseID, .withdraw, reason: "不再需要")
      try await env.app.paymentJobs.runOnce()
      let refunded = try await w.payment(payment.id)
      #expect(refunded.refundedFen == 3500 && refunded.refundableFen == 0 && refunded.refunds.first?.automatic == true)
      try await env.app.paymentJobs.runOnce()
      #expect(try await w.payment(payment.id).refunds.count == 1)
      #expect(try await w.ledgerCheck().violations.isEmpty)
    }
  }

  @Test(arguments: TestEngine.enabled) func aCitizenCannotPaySeeOrRefundAnothersOrder(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { env in
      let w = try await PaymentWorld.make(env)
      let (caseID, order) = try await w.orderedCase()
      let payment = try await w.pay(order)
      try await w.authorise(payment)
      let paid = try await w.waitFor(payment.id, .success)
      let other = try await w.world.otherCitizen().accessToken
      await expectRPCError(.notFound) { try await w.api.getOrder(.with { $0.orderID = order.id }, metadata: bearer(other)) }
      await expectRPCError(.notFound) { try await w.api.getOrder(.with { $0.caseID = caseID }, metadata: bearer(other)) }
      await expectRPCError(.notFound) { try await w.payment(payment.id, other) }
      await expectRPCError(.notFound) { try await w.api.getReceipt(.with { $0.number = paid.receiptNumber }, metadata: bearer(other)) }
      await expectRPCError(.notFound) {
        try await w.api.createOrder(.with { $0.caseID = caseID; $0.idempotencyKey = "steal" }, metadata: bearer(other))
      }
      await expectRPCError(.notFound) { try await w.pay(order, other) }
      await expectRPCError(.notFound) { try await w.api.cancelPayment(.with { $0.paymentID = payment.id }, metadata: bearer(other)) }
      await expectRPCError(.permissionDenied) {
        try await w.api.refund(
          .with { $0.paymentID = payment.id; $0.amountFen = 1; $0.refundableSeenFen = 3500; $0.reason = "x" }, metadata: bearer(other))
      }
      #expect(try await w.api.listOrders(.init(), metadata: bearer(other)).orders.isEmpty)
      #expect(try await w.api.listOrders(.init(), metadata: bearer(w.world.citizen)).orders.map(\.id) == [order.id])
      #expect(try await w.api.listOrders(.init(), metadata: bearer(w.world.d1)).orders.map(\.id) == [order.id])
      #expect(try await w.api.listOrders(.init(), metadata: bearer(w.world.d3)).orders.isEmpty)
      await expectRPCError(.permissionDenied) { try await w.api.reconcile(.with { $0.date = "2026-11-16" }, metadata: bearer(other)) }
    }
  }

  @Test(arguments: TestEngine.enabled) func aCaseworkerWaivesAFeeWithAReasonAndAWaivedOrderNeedsNoPayment(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { env in
      let w = try await PaymentWorld.make(env)
      let (_, order) = try await w.orderedCase()
      await expectRPCError(.permissionDenied) {
        try await w.api.adjustFee(.with { $0.orderID = order.id; $0.line = 0; $0.waive = true; $0.reason = "x" }, metadata: bearer(w.world.citizen))
      }
      await expectRPCError(.invalidArgument) {
        try await w.api.adjustFee(.with { $0.orderID = order.id; $0.line = 0; $0.waive = true; $0.reason = "" }, metadata: bearer(w.world.d1))
      }
      let reduced = try await w.api.adjustFee(
        .with { $0.orderID = order.id; $0.line = 1; $0.reduceByFen = 500; $0.reason = "低保户减免" }, metadata: bearer(w.world.d1))
      #expect(reduced.totalFen == 3000 && reduced.lines[1].adjustment.kind == "reduction")
      await expectRPCError(.aborted) {
        try await w.api.adjustFee(
          .with { $0.orderID = order.id; $0.line = 0; $0.waive = true; $0.reason = "x"; $0.expectedVersion = order.version },
          metadata: bearer(w.world.d1))
      }
      let waived = try await w.api.adjustFee(
        .with { $0.orderID = order.id; $0.line = 0; $0.waive = true; $0.reason = "困难群众"; $0.expectedVersion = reduced.version },
        metadata: bearer(w.world.d1))
      #expect(waived.totalFen == 1000 && waived.state == .open)
      let all = try await w.api.adjustFee(
        .with { $0.orderID = order.id; $0.line = 1; $0.waive = true; $0.reason = "困难群众" }, metadata: bearer(w.world.d1))
      #expect(all.totalFen == 0 && all.state == .waived)
      await expectRPCError(.failedPrecondition) { try await w.pay(all) }
      // Each adjustment is audited with its reason.
      let audited = try await env.store.inspection.strings(
        "SELECT action || ':' || reason FROM audit_log WHERE target_id = $1 ORDER BY seq", .text(order.id))
      #expect(audited == ["payment.fee_reduce:低保户减免", "payment.fee_waive:困难群众", "payment.fee_waive:困难群众"])
    }
  }

  @Test(arguments: TestEngine.enabled) func reconciliationMatchesTheSettlementFileAndFindsWhatTheLedgerMissed(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine, configure: { $0.payments.sandboxCallbackDelay = .seconds(3600) }) { env in
      let w = try await PaymentWorld.make(env)
      let (_, o1) = try await w.orderedCase()
      let p1 = try await w.pay(o1)
      try await w.authorise(p1)
      #expect(try await w.callback(p1, status: "success").status == 200)
      _ = try await w.api.refund(
        .with { $0.paymentID = p1.id; $0.amountFen = 500; $0.refundableSeenFen = 3500; $0.reason = "部分退费" },
        metadata: bearer(w.world.d1))
      let clean = try await w.api.reconcile(.with { $0.date = "2026-11-16" }, metadata: bearer(w.world.admin))
      #expect(clean.matched == 2 && clean.mismatches.isEmpty && clean.capturedFen == 3500 && clean.refundedFen == 500)
      // The provider takes a second payment whose outcome never reaches us.
      let (_, o2) = try await w.orderedCase()
      let p2 = try await w.pay(o2)
      try await w.authorise(p2)
      // The sandbox decides when it is next asked; the cashier page asks.
      let cashier = try #require(p2.cashierURL.range(of: "/sandbox/")).lowerBound
      #expect(try await httpRequest(.GET, port: env.httpPort, String(p2.cashierURL[cashier...])).text.contains("success"))
      let found = try await w.api.reconcile(.with { $0.date = "2026-11-16" }, metadata: bearer(w.world.admin))
      #expect(found.mismatches.map(\.kind) == ["missing_on_our_side"] && found.mismatches.first?.reference == p2.id)
      #expect(found.mismatches.first?.theirAmountFen == 3500)
      await expectRPCError(.invalidArgument) { try await w.api.reconcile(.with { $0.date = "16/11/2026" }, metadata: bearer(w.world.admin)) }
    }
  }

  @Test(arguments: TestEngine.enabled) func aCaseworkerCanOrderAndWaiveFeesTheApplicantNeverOrdered(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { env in
      let w = try await PaymentWorld.make(env)
      let submitted = try await w.world.submitCase().case
      await expectRPCError(.notFound) {
        try await w.api.createOrder(.with { $0.caseID = submitted.id; $0.idempotencyKey = "x" }, metadata: bearer(w.world.d3))
      }
      let order = try await w.api.createOrder(.with { $0.caseID = submitted.id; $0.idempotencyKey = "x" }, metadata: bearer(w.world.d1))
      #expect(order.applicantID == w.world.citizenID)
      for line in 0..<2 {
        _ = try await w.api.adjustFee(
          .with { $0.orderID = order.id; $0.line = Int32(line); $0.waive = true; $0.reason = "免收" }, metadata: bearer(w.world.d1))
      }
      try await w.world.bringToSecondStep(submitted.id)
      try await w.world.act(w.world.d2, submitted.id, .approve)
      #expect(try await w.world.act(w.world.d2, submitted.id, .complete).state == .completed)
      // The applicant sees the order the caseworker created.
      #expect(try await w.api.getOrder(.with { $0.caseID = submitted.id }, metadata: bearer(w.world.citizen)).state == .waived)
    }
  }
}
