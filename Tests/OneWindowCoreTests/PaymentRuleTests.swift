import Crypto
import Foundation
import PropertyBased
import Testing

@testable import OneWindowCore

private func fen(_ v: Int64) -> Fen {
  do { return try Fen(v) } catch { preconditionFailure("fixture amount \(v) is valid") }
}

@Suite struct PaymentRuleTests {
  static let events: [PaymentEvent] = [
    .start, .submit, .succeed, .fail(.declined), .fail(.timedOut), .fail(.cancelledByUser), .cancel, .providerError, .expire,
  ]

  static let allowed: [PaymentState: [PaymentEvent: PaymentState]] = [
    .created: [.start: .started, .cancel: .cancelled, .fail(.cancelledByUser): .failed, .fail(.timedOut): .failed, .expire: .failed],
    .started: [
      .submit: .submitted, .cancel: .cancelled, .fail(.cancelledByUser): .failed, .fail(.timedOut): .failed, .expire: .failed,
      .providerError: .error,
    ],
    .submitted: [.succeed: .success, .fail(.declined): .failed, .fail(.timedOut): .failed, .expire: .failed, .providerError: .error],
  ]

  @Test func everyTransitionIsAllowedOrRefusedExactlyAsTabled() {
    for state in PaymentState.allCases {
      for event in Self.events {
        let expected = Self.allowed[state]?[event]
        #expect(PaymentLifecycle.next(from: state, on: event) == expected, "\(state) on \(event)")
        let applied = PaymentLifecycle.apply(event, to: state)
        if state.isTerminal {
          #expect(applied == .ignored)
        } else if let expected {
          #expect(applied == .moved(to: expected))
        } else {
          #expect(applied == .refused, "\(state) on \(event)")
        }
      }
    }
  }

  @Test func terminalStatesAreStickyAndLateEventsIgnored() {
    #expect(PaymentLifecycle.next(from: .success, on: .fail(.declined)) == nil)
    #expect(PaymentLifecycle.apply(.fail(.declined), to: .success) == .ignored)
    #expect(PaymentLifecycle.apply(.succeed, to: .failed) == .ignored)
    #expect(PaymentLifecycle.apply(.succeed, to: .created) == .refused)
    #expect(PaymentState.allCases.filter(\.isTerminal) == [.success, .failed, .cancelled, .error])
  }

  @Test func codesMatchGovUKPay() {
    #expect(PaymentFailure.declined.code == "P0010")
    #expect(PaymentFailure.timedOut.code == "P0020")
    #expect(PaymentFailure.cancelledByUser.code == "P0030")
    #expect(PaymentState.cancelled.code == "P0040")
    #expect(PaymentState.error.code == "P0050")
    #expect(PaymentState.success.code == nil)
  }

  @Test func expiryQueriesTheProviderBeforeExpiringAPaymentWithASession() {
    let expiry = PaymentExpiry()
    let created = Date(timeIntervalSince1970: 1_800_000_000)
    let late = created.addingTimeInterval(90 * 60)
    let early = created.addingTimeInterval(89 * 60)
    #expect(expiry.decide(state: .created, createdAt: created, now: late) == .expire)
    // An immediate success sends no "processing": a `started` payment may be paid too.
    #expect(expiry.decide(state: .started, createdAt: created, now: late) == .queryProviderFirst)
    #expect(expiry.decide(state: .submitted, createdAt: created, now: late) == .queryProviderFirst)
    #expect(expiry.decide(state: .started, createdAt: created, now: early) == .notYet)
    #expect(expiry.decide(state: .submitted, createdAt: created, now: early) == .notYet)
    #expect(expiry.decide(state: .success, createdAt: created, now: late) == .notYet)
    #expect(PaymentExpiry(window: 60).decide(state: .created, createdAt: created, now: created.addingTimeInterval(61)) == .expire)
  }

  @Test func fenRefusesNegativesAndOverflowAndFormatsAsYuan() throws {
    #expect(throws: ValidationError.self) { try Fen(-1) }
    #expect(throws: ValidationError.self) { try Fen(.max).adding(fen(1)) }
    #expect(throws: ValidationError.self) { try fen(1).subtracting(fen(2)) }
    #expect(try fen(5).adding(fen(7)) == fen(12))
    #expect(try fen(7).subtracting(fen(7)) == .zero)
    #expect(fen(1230).yuan == "12.30")
    #expect(fen(5).yuan == "0.05")
    #expect(fen(0).yuan == "0.00")
    #expect(fen(100_001).yuan == "1000.01")
    #expect(try Fen(.max).yuan == "92233720368547758.07")
    #expect(fen(3) < fen(4))
    let decoded = try JSONDecoder().decode([Fen].self, from: Data("[1230]".utf8))
    #expect(decoded == [fen(1230)])
    #expect(throws: (any Error).self) { try JSONDecoder().decode([Fen].self, from: Data("[-5]".utf8)) }
  }

  static let fees = [
    FeeItem(name: "工本费", amountFen: 1000, legalBasis: "价格〔2019〕1号"),
    FeeItem(name: "登记费", amountFen: 8000, legalBasis: "财税〔2016〕79号"),
  ]

  @Test func waiversAndReductionsNeedAReasonAndNeverGoNegative() throws {
    var order = try FeeOrder(fees: Self.fees)
    #expect(order.originalTotal == fen(9000))
    #expect(order.total == fen(9000))
    #expect(order.needsPayment)
    #expect(throws: ValidationError("reason", "is required")) {
      try order.waive(line: 0, caseworker: "李四", reason: "  ")
    }
    #expect(throws: ValidationError.self) { try order.reduce(line: 1, by: fen(8001), caseworker: "李四", reason: "低保") }
    #expect(throws: ValidationError.self) { try order.waive(line: 2, caseworker: "李四", reason: "低保") }
    try order.reduce(line: 1, by: fen(3000), caseworker: "李四", reason: "小微企业减半")
    #expect(order.total == fen(6000))
    try order.waive(line: 0, caseworker: "李四", reason: "低保户免收")
    #expect(order.total == fen(5000))
    #expect(order.lines[0].adjustment?.reason == "低保户免收")
    try order.waive(line: 1, caseworker: "李四", reason: "低保户免收")
    #expect(order.total == .zero)
    #expect(!order.needsPayment)
    #expect(order.originalTotal == fen(9000))
  }

  @Test func feeOrdersRefuseNegativeAndOverflowingFees() {
    #expect(throws: ValidationError.self) { try FeeOrder(fees: [FeeItem(name: "x", amountFen: -1, legalBasis: "")]) }
    #expect(throws: ValidationError.self) {
      try FeeOrder(fees: [FeeItem(name: "x", amountFen: .max, legalBasis: ""), FeeItem(name: "y", amountFen: 1, legalBasis: "")])
    }
    #expect((try? FeeOrder(fees: []))?.needsPayment == false)
  }

  @Test func refundsCheckTheRefundableAmountTheClientSaw() throws {
    // Pay's example on a 20.00 payment: 5 (avail 20) ok; retry 5 (avail 20) fails; 5 (avail 15) ok.
    try RefundRules.validate(amount: fen(500), refundableSeen: fen(2000), captured: fen(2000), refunded: .zero)
    #expect(throws: PreconditionFailed("the refundable amount is now 15.00, not 20.00: re-read and retry")) {
      try RefundRules.validate(amount: fen(500), refundableSeen: fen(2000), captured: fen(2000), refunded: fen(500))
    }
    try RefundRules.validate(amount: fen(500), refundableSeen: fen(1500), captured: fen(2000), refunded: fen(500))
    #expect(throws: PreconditionFailed.self) {
      try RefundRules.validate(amount: fen(1600), refundableSeen: fen(1500), captured: fen(2000), refunded: fen(500))
    }
    #expect(throws: ValidationError.self) {
      try RefundRules.validate(amount: .zero, refundableSeen: fen(2000), captured: fen(2000), refunded: .zero)
    }
    #expect(throws: PreconditionFailed.self) {
      try RefundRules.validate(amount: fen(1), refundableSeen: .zero, captured: fen(10), refunded: fen(11))
    }
  }

  @Test func partialRefundsCanSumExactlyToTheCapturedAmount() throws {
    let captured = fen(2000)
    var refunded = Fen.zero
    for part in [fen(700), fen(800), fen(500)] {
      let seen = try captured.subtracting(refunded)
      try RefundRules.validate(amount: part, refundableSeen: seen, captured: captured, refunded: refunded)
      refunded = try refunded.adding(part)
    }
    #expect(refunded == captured)
    #expect(throws: PreconditionFailed.self) {
      try RefundRules.validate(amount: fen(1), refundableSeen: .zero, captured: captured, refunded: refunded)
    }
  }

  @Test func refundStatesStick() {
    #expect(RefundState.submitted.applying(.success) == .success)
    #expect(RefundState.submitted.applying(.error) == .error)
    #expect(RefundState.success.applying(.error) == nil)
    #expect(RefundState.error.applying(.success) == nil)
    #expect(RefundState.success.applying(.submitted) == nil)
    #expect(RefundState.submitted.applying(.submitted) == nil)
    #expect(RefundState.allCases.filter(\.isTerminal) == [.success, .error])
  }

  @Test func ledgerConstructorsBalanceAndTheCheckCatchesViolations() {
    let capture = LedgerTransaction.capture(id: "t1", payment: "p1", amount: fen(2000), department: "GA")
    let refund = LedgerTransaction.refund(id: "t2", payment: "p1", amount: fen(500), department: "GA")
    #expect(capture.postings.reduce(0) { $0 + $1.amount } == 0)
    #expect(refund.postings.reduce(0) { $0 + $1.amount } == 0)
    #expect(capture.amount == 2000)
    #expect(refund.amount == 500)
    #expect(LedgerCheck.verify([capture, refund]).isEmpty)

    var broken = refund
    broken.id = "t3"
    broken.postings.append(LedgerPosting(.refundsPayable, amount: -1))
    #expect(LedgerCheck.verify([capture, broken]) == [.unbalanced(transaction: "t3", sum: -1)])

    let overflow = LedgerTransaction(
      id: "t4", paymentID: "p1", kind: .refund,
      postings: [LedgerPosting(.refundsPayable, amount: .max), LedgerPosting(.refundsPayable, amount: 1)])
    #expect(LedgerCheck.verify([overflow]).contains(.unbalanced(transaction: "t4", sum: nil)))

    let again = LedgerTransaction.capture(id: "t5", payment: "p1", amount: fen(2000), department: "GA")
    #expect(LedgerCheck.verify([capture, again]) == [.duplicateCapture(payment: "p1", count: 2)])

    let tooMuch = LedgerTransaction.refund(id: "t6", payment: "p1", amount: fen(1501), department: "GA")
    #expect(LedgerCheck.verify([capture, refund, tooMuch]) == [.overRefund(payment: "p1", captured: 2000, refunded: 2001)])
    let uncaptured = LedgerTransaction.refund(id: "t7", payment: "p2", amount: fen(1), department: "GA")
    #expect(LedgerCheck.verify([uncaptured]) == [.overRefund(payment: "p2", captured: 0, refunded: 1)])
  }

  @Test func fingerprintsAreCanonicalAndMismatchesNameTheFields() {
    let a = ["amount": "9000", "reference": "7K3M", "description": "登记费"]
    let b = ["description": "登记费", "reference": "7K3M", "amount": "9000"]
    #expect(IdempotencyFingerprint.of(a) == IdempotencyFingerprint.of(b))
    #expect(IdempotencyFingerprint.of(a).count == 64)
    #expect(IdempotencyFingerprint.of(["a": "b=c"]) != IdempotencyFingerprint.of(["a=b": "c"]))
    #expect(IdempotencyFingerprint.of(["a": "bc"]) != IdempotencyFingerprint.of(["ab": "c"]))
    #expect(IdempotencyFingerprint.mismatch(stored: a, request: b).isEmpty)
    var changed = a
    changed["amount"] = "9001"
    changed["reference"] = nil
    changed["return_url"] = "https://x"
    #expect(IdempotencyFingerprint.mismatch(stored: a, request: changed) == ["amount", "reference", "return_url"])
  }

  @Test func sandboxAccountsHaveDocumentedOutcomes() {
    #expect(SandboxAccounts.outcome(forAccount: "6222000000000001") == .success)
    #expect(SandboxAccounts.outcome(forAccount: "6222000000000002") == .declined)
    #expect(SandboxAccounts.outcome(forAccount: "6222000000000003") == .timeout)
    #expect(SandboxAccounts.outcome(forAccount: "6222000000000004") == .providerError)
    #expect(SandboxAccounts.outcome(forAccount: "6222000000000005") == .successAfterDelay(seconds: 3))
    #expect(SandboxAccounts.outcome(forAccount: " 6222000000000001 ") == .success)
    #expect(SandboxAccounts.outcome(forAccount: "6222000000000009") == .declined)
    #expect(SandboxAccounts.outcome(forAccount: "") == .declined)
  }

  @Test func sandboxCallbackSignaturesVerify() {
    let body = Array(#"{"payment":"p1","status":"success"}"#.utf8)
    let secret = "sandbox-secret"
    let t: Int64 = 1_800_000_000
    let now = Date(timeIntervalSince1970: TimeInterval(t + 100))
    let sig = SandboxCallbackSignature.sign(body: body, secret: secret, timestamp: t, nonce: "n-1")
    func verify(
      _ ts: String = "1800000000", _ nonce: String = "n-1", sig s: String? = nil, body b: [UInt8]? = nil,
      secret k: String = "sandbox-secret", now n: Date? = nil
    ) throws(SandboxCallbackSignature.Failure) {
      try SandboxCallbackSignature.verify(
        timestamp: ts, nonce: nonce, signature: s ?? sig, body: b ?? body, secret: k, now: n ?? now)
    }
    #expect(throws: Never.self) { try verify() }
    #expect(throws: Never.self) { try verify(sig: sig.uppercased()) }
    #expect(throws: SandboxCallbackSignature.Failure.badSignature) { try verify(body: body + [0x20]) }
    #expect(throws: SandboxCallbackSignature.Failure.badSignature) { try verify(secret: "other") }
    #expect(throws: SandboxCallbackSignature.Failure.badSignature) { try verify("1800000000", "n-2") }
    #expect(throws: SandboxCallbackSignature.Failure.stale(seconds: 301)) {
      try verify(now: Date(timeIntervalSince1970: TimeInterval(t + 301)))
    }
    #expect(throws: SandboxCallbackSignature.Failure.stale(seconds: -301)) {
      try verify(now: Date(timeIntervalSince1970: TimeInterval(t - 301)))
    }
    for hostile in ["", "abc", "9223372036854775807", "-9223372036854775808", "99999999999999999999", " 1800000000", "1.8e9"] {
      #expect(throws: SandboxCallbackSignature.Failure.malformed("timestamp")) { try verify(hostile) }
    }
    #expect(throws: SandboxCallbackSignature.Failure.malformed("nonce")) { try verify("1800000000", "") }
    #expect(throws: SandboxCallbackSignature.Failure.malformed("nonce")) { try verify("1800000000", "a\nb") }
    #expect(throws: SandboxCallbackSignature.Failure.malformed("signature")) { try verify(sig: "") }
    #expect(throws: SandboxCallbackSignature.Failure.malformed("signature")) { try verify(sig: String(sig.dropLast())) }
    #expect(throws: SandboxCallbackSignature.Failure.malformed("signature")) { try verify(sig: String(repeating: "z", count: 64)) }
    #expect(throws: SandboxCallbackSignature.Failure.malformed("clock")) { try verify(now: Date(timeIntervalSince1970: .infinity)) }
  }
}

/// Refunds applied only after `RefundRules.validate` accepts them never break the ledger.
@Suite struct PaymentRulePropertyTests {
  @Test func validatedRefundsNeverViolateTheLedger() async {
    await propertyCheck(
      input: Gen.int(in: 0...2).array(of: 1...60), Gen.int(in: 0...3).array(of: 60), Gen.int(in: 0...3000).array(of: 60),
      Gen.int(in: 0...1).array(of: 60)
    ) { ops, payments, amounts, stale in
      var ledger: [LedgerTransaction] = []
      var captured: [Int: Fen] = [:]
      var refunded: [Int: Fen] = [:]
      for (i, op) in ops.enumerated() {
        let p = payments[i], amount = fen(Int64(amounts[i]))
        if op == 0 {
          // Capture at most once per payment, as the payment state machine guarantees.
          guard captured[p] == nil, amount > .zero else { continue }
          captured[p] = amount
          ledger.append(.capture(id: "c\(i)", payment: "p\(p)", amount: amount, department: "D"))
        } else {
          let c = captured[p] ?? .zero, r = refunded[p] ?? .zero
          let truth = (try? c.subtracting(r)) ?? .zero
          // Half the time the client saw an older refundable amount.
          let seen = stale[i] == 1 ? ((try? truth.adding(fen(1))) ?? truth) : truth
          do {
            try RefundRules.validate(amount: amount, refundableSeen: seen, captured: c, refunded: r)
          } catch {
            continue
          }
          #expect(stale[i] == 0)
          refunded[p] = (try? r.adding(amount)) ?? r
          ledger.append(.refund(id: "r\(i)", payment: "p\(p)", amount: amount, department: "D"))
        }
      }
      #expect(LedgerCheck.verify(ledger).isEmpty)
    }
  }
}

// MARK: - Settling provider outcomes, receipts, reconciliation

private let receiptKey = try! Curve25519.Signing.PrivateKey(rawRepresentation: [UInt8](repeating: 11, count: 32))
private let receiptKeyID = SignedCertificate.keyID(of: receiptKey.publicKey)

private func receiptPayload(
  payer: String = "张三", items: [ReceiptPayload.Item] = [.init(name: "登记费", amount: fen(8000))], total: Fen = fen(8000),
  paidAt: Date = Date(timeIntervalSince1970: 1_800_000_000.75)
) -> ReceiptPayload {
  ReceiptPayload(
    number: "PJ2027-7K3M-9QWE-XY12", paymentID: "pay_01", caseID: "case_01", trackingCode: "GA-2027-000123", payerName: payer,
    departmentCode: "gongan", items: items, total: total, paidAt: paidAt, keyID: receiptKeyID)
}

@Suite struct PaymentSettlementTests {
  static let events: [PaymentEvent] = PaymentRuleTests.events

  @Test func settleMovesProviderOutcomesThroughTheImpliedSteps() {
    // A success reported while the payment shows started (or even created) implies submitted.
    #expect(PaymentLifecycle.settle(.succeed, from: .started) == .moved(to: .success))
    #expect(PaymentLifecycle.settle(.succeed, from: .created) == .moved(to: .success))
    #expect(PaymentLifecycle.settle(.succeed, from: .submitted) == .moved(to: .success))
    #expect(PaymentLifecycle.settle(.fail(.declined), from: .started) == .moved(to: .failed))
    #expect(PaymentLifecycle.settle(.fail(.declined), from: .created) == .moved(to: .failed))
    #expect(PaymentLifecycle.settle(.providerError, from: .created) == .moved(to: .error))
    #expect(PaymentLifecycle.settle(.providerError, from: .started) == .moved(to: .error))
    #expect(PaymentLifecycle.settle(.submit, from: .created) == .moved(to: .submitted))
    #expect(PaymentLifecycle.settle(.submit, from: .started) == .moved(to: .submitted))
    // A repeated submit is a no-op, not an impossible edge.
    #expect(PaymentLifecycle.settle(.submit, from: .submitted) == .ignored)
    // Finished payments stick.
    #expect(PaymentLifecycle.settle(.fail(.declined), from: .success) == .ignored)
    #expect(PaymentLifecycle.settle(.succeed, from: .failed) == .ignored)
    #expect(PaymentLifecycle.settle(.succeed, from: .error) == .ignored)
    #expect(PaymentLifecycle.settle(.submit, from: .cancelled) == .ignored)
    // Non-outcomes keep apply's answer, including its refusals.
    #expect(PaymentLifecycle.settle(.start, from: .started) == .refused)
    #expect(PaymentLifecycle.settle(.cancel, from: .submitted) == .refused)
    #expect(PaymentLifecycle.settle(.fail(.cancelledByUser), from: .submitted) == .refused)
    #expect(PaymentLifecycle.settle(.expire, from: .submitted) == .moved(to: .failed))
  }

  @Test func settleAgreesWithApplyWheneverApplyAllowsTheEvent() {
    let outcomes: Set<PaymentEvent> = [.succeed, .fail(.declined), .providerError, .submit]
    for state in PaymentState.allCases {
      for event in Self.events {
        let applied = PaymentLifecycle.apply(event, to: state)
        let settled = PaymentLifecycle.settle(event, from: state)
        if applied != .refused {
          #expect(settled == applied, "\(event) in \(state)")
        } else if outcomes.contains(event) {
          // An outcome in an unfinished state always lands somewhere reachable.
          #expect(settled != .refused, "\(event) in \(state)")
          if case .moved(let to) = settled { #expect(to == .submitted || to.isTerminal) }
        } else {
          #expect(settled == .refused, "\(event) in \(state)")
        }
      }
    }
  }

  @Test func receiptPayloadsRoundTripThroughCanonicalJSON() throws {
    let payload = receiptPayload(
      payer: "O'Brien \"张\"\\三\n\t\u{0}\u{7F}é",
      items: [.init(name: "工本费", amount: fen(1000)), .init(name: "登记费", amount: fen(0))], total: fen(1000))
    #expect(payload.paidAt == Date(timeIntervalSince1970: 1_800_000_000))
    let bytes = payload.canonicalJSON()
    #expect(ReceiptPayload(canonicalJSON: bytes) == payload)
    let text = String(decoding: bytes, as: UTF8.self)
    #expect(text.hasPrefix(#"{"case_id":"case_01","department_code":"gongan","format":"onewindow-receipt/1","items":[{"amount_fen":1000,"name":"工本费"}"#))
    #expect(text.hasSuffix(#""paid_at":1800000000,"payer_name":"O'Brien \"张\"\\三\u000a\u0009\u0000\#u{7F}é","payment_id":"pay_01","total_fen":1000,"tracking_code":"GA-2027-000123"}"#))
    // Anything that is not exactly the canonical form is refused.
    let spaced = Array(text.replacingOccurrences(of: #""total_fen":1000"#, with: #""total_fen": 1000"#).utf8)
    #expect(ReceiptPayload(canonicalJSON: spaced) == nil)
    #expect(ReceiptPayload(canonicalJSON: Array(text.replacingOccurrences(of: "onewindow-receipt/1", with: "onewindow-receipt/2").utf8)) == nil)
    #expect(ReceiptPayload(canonicalJSON: Array(text.replacingOccurrences(of: #""amount_fen":1000"#, with: #""amount_fen":-1"#).utf8)) == nil)
    #expect(ReceiptPayload(canonicalJSON: Array("{}".utf8)) == nil)
    #expect(ReceiptPayload(canonicalJSON: []) == nil)
  }

  @Test func receiptPayloadsRoundTripForGeneratedText() async {
    let text = Gen.unicodeScalar(in: "\u{0}"..."\u{24F}").map(Character.init).string(of: 0...12)
    let cjk = Gen.character(in: "\u{4E00}"..."\u{9FA5}").string(of: 0...6)
    await propertyCheck(input: text, cjk, Gen.int(in: 0...1_000_000).array(of: 0...4), Gen.int(in: 0...4_000_000_000)) {
      name, chinese, amounts, seconds in
      let items = amounts.map { ReceiptPayload.Item(name: chinese + name, amount: fen(Int64($0))) }
      let total = fen(Int64(amounts.reduce(0, +)))
      let payload = receiptPayload(payer: name + chinese, items: items, total: total, paidAt: Date(timeIntervalSince1970: Double(seconds)))
      #expect(ReceiptPayload(canonicalJSON: payload.canonicalJSON()) == payload)
      let signed = (try? SignedReceipt.sign(payload, with: receiptKey)) ?? ""
      #expect((try? SignedReceipt.verify(signed, keys: [receiptKeyID: receiptKey.publicKey])) == payload)
    }
  }

  @Test func signedReceiptsVerifyAndDetectTampering() throws {
    let keys = [receiptKeyID: receiptKey.publicKey]
    let payload = receiptPayload()
    let signed = try SignedReceipt.sign(payload, with: receiptKey)
    #expect(signed.hasPrefix("OWR1."))
    #expect(try SignedReceipt.verify(signed, keys: keys) == payload)
    #expect(try SignedReceipt.verify("  \(signed)\n", keys: keys) == payload)

    // An altered amount keeps the old signature: badSignature.
    let parts = signed.split(separator: ".").map(String.init)
    var altered = payload
    altered.total = fen(1)
    altered.items = [.init(name: "登记费", amount: fen(1))]
    let forged = "\(parts[0]).\(Base64URL.encode(altered.canonicalJSON())).\(parts[2])"
    #expect(throws: SignedCertificate.Failure.badSignature) { try SignedReceipt.verify(forged, keys: keys) }
    // Signed by a key the platform does not publish.
    let stranger = Curve25519.Signing.PrivateKey()
    #expect(throws: SignedCertificate.Failure.unknownKey(receiptKeyID)) {
      try SignedReceipt.verify(signed, keys: [SignedCertificate.keyID(of: stranger.publicKey): stranger.publicKey])
    }
    // The right key id with another key's signature.
    let impostor = try SignedReceipt.sign(payload, with: stranger)
    #expect(throws: SignedCertificate.Failure.badSignature) { try SignedReceipt.verify(impostor, keys: keys) }

    // Malformed blobs.
    let signature = parts[2]
    for blob in [
      "", "garbage", "OWR1", "OWR1..", "OWC1.\(parts[1]).\(signature)", "OWR1.\(parts[1])", "\(signed).extra",
      "OWR1.\(parts[1]).\(String(signature.dropLast(4)))", "OWR1.***.\(signature)",
      "OWR1.\(Base64URL.encode(Array("not json".utf8))).\(signature)",
    ] {
      #expect(throws: SignedCertificate.Failure.malformed, "\(blob)") { try SignedReceipt.verify(blob, keys: keys) }
    }
    // Correctly signed bytes that are not a canonical receipt are still malformed.
    let loose = Array(#"{"key_id":"\#(receiptKeyID)","total_fen":1}"#.utf8)
    let looseBlob = "OWR1.\(Base64URL.encode(loose)).\(Base64URL.encode(Array(try receiptKey.signature(for: loose))))"
    #expect(throws: SignedCertificate.Failure.malformed) { try SignedReceipt.verify(looseBlob, keys: keys) }

    let number = SignedReceipt.makeNumber(year: 2027)
    #expect(number.hasPrefix("PJ2027-") && number.count == "PJ2027-XXXX-XXXX-XXXX".count)
    #expect(number != SignedReceipt.makeNumber(year: 2027))
  }

  @Test func reconciliationMatchesOnKindAndReference() {
    func e(_ kind: SettlementEntry.Kind, _ reference: String, _ amount: Int64) -> SettlementEntry {
      SettlementEntry(kind: kind, reference: reference, amount: fen(amount))
    }
    let ours = [e(.capture, "p1", 100), e(.capture, "p2", 200), e(.refund, "r1", 50), e(.capture, "p4", 10), e(.capture, "p4", 5),
                e(.capture, "p5", 30), e(.capture, "x", 7)]
    let theirs = [e(.refund, "r1", 50), e(.capture, "p1", 100), e(.capture, "p2", 201), e(.capture, "p3", 70),
                  e(.capture, "p4", 15), e(.refund, "r9", 5), e(.refund, "x", 7)]
    let report = Reconciliation.compare(ours: ours, theirs: theirs)
    #expect(report.matched == 3)  // p1, r1 and p4 (10 + 5 against 15)
    #expect(report.mismatches == [
      ReconciliationMismatch(kind: .amountDiffers, entry: .capture, reference: "p2", ours: fen(200), theirs: fen(201)),
      ReconciliationMismatch(kind: .missingOnOurSide, entry: .capture, reference: "p3", ours: nil, theirs: fen(70)),
      ReconciliationMismatch(kind: .missingOnTheirs, entry: .capture, reference: "p5", ours: fen(30), theirs: nil),
      // The same reference as another kind is a different movement.
      ReconciliationMismatch(kind: .missingOnTheirs, entry: .capture, reference: "x", ours: fen(7), theirs: nil),
      ReconciliationMismatch(kind: .missingOnOurSide, entry: .refund, reference: "r9", ours: nil, theirs: fen(5)),
      ReconciliationMismatch(kind: .missingOnOurSide, entry: .refund, reference: "x", ours: nil, theirs: fen(7)),
    ])
    #expect(Reconciliation.compare(ours: [], theirs: []) == ReconciliationReport(matched: 0, mismatches: []))
    // Duplicates on their side are summed too: a double settlement shows as an amount difference.
    #expect(Reconciliation.compare(ours: [e(.capture, "p1", 100)], theirs: [e(.capture, "p1", 100), e(.capture, "p1", 100)]).mismatches
      == [ReconciliationMismatch(kind: .amountDiffers, entry: .capture, reference: "p1", ours: fen(100), theirs: fen(200))])
  }

  @Test func sandboxSettlementFilesRoundTripAndNameTheBadLine() throws {
    let lines = [
      SandboxSettlementFile.Line(
        entry: SettlementEntry(kind: .capture, reference: "pay_01", amount: fen(9000)), providerReference: "sbx_1", settledAt: 1_800_000_000_000),
      SandboxSettlementFile.Line(
        entry: SettlementEntry(kind: .refund, reference: "ref_01", amount: fen(3000)), providerReference: "", settledAt: 1_800_000_100_000),
    ]
    let text = SandboxSettlementFile.render(lines)
    #expect(text.hasPrefix(SandboxSettlementFile.header + "\n") && text.hasSuffix("\n"))
    #expect(try SandboxSettlementFile.parse(text) == lines)
    // CRLF line ends (Windows exports) parse the same.
    let crlf = text.replacingOccurrences(of: "\n", with: "\r\n")
    do { #expect(try SandboxSettlementFile.parse(crlf) == lines) } catch { Issue.record("CRLF file refused: \(error)") }
    #expect(try SandboxSettlementFile.parse(SandboxSettlementFile.header + "\n") == [])

    #expect(throws: ValidationError.self) { try SandboxSettlementFile.parse("") }
    #expect(throws: ValidationError.self) { try SandboxSettlementFile.parse("kind,reference\ncapture,p1,,1,1\n") }

    let header = SandboxSettlementFile.header
    func badLine(_ text: String) -> String? {
      do {
        _ = try SandboxSettlementFile.parse(text)
        return nil
      } catch {
        return error.reason
      }
    }
    let good = "capture,p1,sbx,100,1800000000000"
    for (bad, line) in [
      ("capture,p2,sbx,-5,1800000000000", 3), ("capture,p2,sbx,abc,1800000000000", 3), ("capture,,sbx,5,1800000000000", 3),
      ("settle,p2,sbx,5,1800000000000", 3), ("capture,p2,sbx,5", 3), ("capture,p2,sbx,5,1800000000000,extra", 3),
      ("capture,p2,sbx,5,soon", 3),
    ] {
      let reason = badLine("\(header)\n\(good)\n\(bad)\n")
      #expect(reason?.contains("line \(line) ") == true, "\(bad): \(reason ?? "accepted")")
    }
    // Line numbers are those of the file, blank lines included.
    let afterBlank = badLine("\(header)\n\(good)\n\ncapture,p2,sbx,x,1\n")
    #expect(afterBlank?.contains("line 4 ") == true, "\(afterBlank ?? "accepted")")
    let afterSpaces = badLine("\(header)\n   \n\(good)\ncapture,p2,sbx,x,1\n")
    #expect(afterSpaces?.contains("line 4 ") == true, "\(afterSpaces ?? "accepted")")
  }

  @Test func settlementDaysAreChinaStandardTimeDays() throws {
    let day = try #require(CivilDate(year: 2027, month: 3, day: 31))
    let next = try #require(CivilDate(year: 2027, month: 4, day: 1))
    // 2027-03-31T15:59:59Z is 23:59:59 in Beijing; one second later it is the next day.
    let lastSecond = try #require(ISO8601DateFormatter().date(from: "2027-03-31T15:59:59Z"))
    #expect(SettlementDay.of(lastSecond) == day)
    #expect(SettlementDay.of(lastSecond.addingTimeInterval(0.999)) == day)
    #expect(SettlementDay.of(lastSecond.addingTimeInterval(1)) == next)
    #expect(SettlementDay.of(try #require(ISO8601DateFormatter().date(from: "2027-03-30T16:00:00Z"))) == day)
    let (start, end) = SettlementDay.bounds(day)
    #expect(start == Int64(lastSecond.timeIntervalSince1970 + 1) * 1000 - 86_400_000)
    #expect(end == Int64(lastSecond.timeIntervalSince1970 + 1) * 1000)
    #expect(SettlementDay.of(Date(timeIntervalSince1970: Double(start) / 1000)) == day)
    #expect(SettlementDay.of(Date(timeIntervalSince1970: Double(end - 1) / 1000)) == day)
    #expect(SettlementDay.of(Date(timeIntervalSince1970: Double(end) / 1000)) == next)
    // Before 1970 the division floors.
    #expect(SettlementDay.of(Date(timeIntervalSince1970: -8 * 3600 - 1)) == CivilDate(year: 1969, month: 12, day: 31))
    #expect(SettlementDay.of(Date(timeIntervalSince1970: -8 * 3600)) == CivilDate(year: 1970, month: 1, day: 1))
  }

  @Test func ledgerAccountNamesRoundTrip() {
    let accounts: [LedgerAccount] = [
      .providerClearing, .refundsPayable, .feeRevenue(department: "gongan"), .feeRevenue(department: ""),
      .feeRevenue(department: "a:b"), .feeRevenue(department: "市场监管局"),
    ]
    for account in accounts { #expect(LedgerAccount(name: account.name) == account, "\(account.name)") }
    #expect(LedgerAccount.providerClearing.name == "provider_clearing")
    #expect(LedgerAccount.refundsPayable.name == "refunds_payable")
    #expect(LedgerAccount.feeRevenue(department: "gongan").name == "fee_revenue:gongan")
    for unknown in ["", "cash", "fee_revenue", "Provider_Clearing", " refunds_payable"] {
      #expect(LedgerAccount(name: unknown) == nil, "\(unknown)")
    }
  }
}
