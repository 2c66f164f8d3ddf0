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

  @Test func expiryQueriesTheProviderBeforeExpiringASubmittedPayment() {
    let expiry = PaymentExpiry()
    let created = Date(timeIntervalSince1970: 1_800_000_000)
    let late = created.addingTimeInterval(90 * 60)
    let early = created.addingTimeInterval(89 * 60)
    #expect(expiry.decide(state: .created, createdAt: created, now: late) == .expire)
    #expect(expiry.decide(state: .started, createdAt: created, now: late) == .expire)
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
