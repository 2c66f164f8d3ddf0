import Foundation
import Testing
@testable import OneWindowCore
@testable import OneWindowStore
import OneWindowTestSupport

/// Concurrent calls on one payment, order or case: the invariants SQLite gets from its single
/// writer must hold on PostgreSQL through the store's row and advisory locks. (One idempotency
/// key racing itself is covered by `PaymentStoreTests.concurrentCreate…WithOneKey…`.)
@Suite struct PaymentRaceTests {
  static let callers = 16

  @Test(arguments: TestEngine.enabled) func concurrentSuccessEventsCaptureOnce(engine: TestEngine) async throws {
    try await withTemporaryStore(engine) { store in
      let s = store.payments
      let order = try await R.openOrder(store, "c1")
      let payment = try await R.createdPayment(store, order)
      // Each caller reports the success under its own notification and receipt number.
      let results = try await withThrowingTaskGroup(of: PaymentChangeResult.self) { group in
        for i in 0..<Self.callers {
          let change = PaymentChange(
            paymentID: payment.id, event: .succeed, notification: (R.provider, "n-\(i)"),
            receipt: R.receipt("RN-\(i)", for: payment), audit: R.audit)
          group.addTask { try await s.apply(change, now: R.at(1)) }
        }
        return try await group.reduce(into: []) { $0.append($1) }
      }
      let moved = results.filter { if case .applied(_, .moved(to: .success)) = $0 { true } else { false } }
      #expect(moved.count == 1)
      #expect(results.allSatisfy { $0.payment.state == .success })
      let ledger = try await s.ledger()
      #expect(ledger.map(\.id) == ["cap_\(payment.id)"])
      #expect(LedgerCheck.verify(ledger).isEmpty)
      #expect(try await R.count(store, "payment_receipts") == 1)
      #expect(try await R.count(store, "event_outbox", where: "topic = 'payment.event'") == 1)
      #expect(try await R.count(store, "provider_notifications") == Self.callers)
      let stored = try #require(try await s.payment(id: payment.id))
      #expect(stored.receiptNumber == moved.first?.payment.receiptNumber)
      #expect(try await s.order(id: order.id)?.state == .paid)
    }
  }

  @Test(arguments: TestEngine.enabled) func oneNotificationRacingItselfAppliesOnce(engine: TestEngine) async throws {
    try await withTemporaryStore(engine) { store in
      let s = store.payments
      let order = try await R.openOrder(store, "c1")
      let payment = try await R.createdPayment(store, order)
      let change = PaymentChange(paymentID: payment.id, event: .succeed, notification: (R.provider, "n-1"), receipt: R.receipt("RN-1", for: payment))
      let results = try await withThrowingTaskGroup(of: PaymentChangeResult.self) { group in
        for _ in 0..<Self.callers { group.addTask { try await s.apply(change, now: R.at(1)) } }
        return try await group.reduce(into: []) { $0.append($1) }
      }
      let duplicates = results.filter { if case .duplicateNotification = $0 { true } else { false } }
      #expect(duplicates.count == Self.callers - 1)
      #expect(try await s.ledger().count == 1)
      #expect(try await R.count(store, "provider_notifications") == 1)
      #expect(try await R.count(store, "event_outbox", where: "topic = 'payment.event'") == 1)
    }
  }

  @Test(arguments: TestEngine.enabled) func concurrentRefundsNeverExceedTheCapture(engine: TestEngine) async throws {
    try await withTemporaryStore(engine) { store in
      let s = store.payments
      let paid = try await R.paidPayment(store, "c1", amounts: [8000])
      let eighth = R.fen(1000)
      // Each caller asks for 1/8 against the refundable amount at the time it runs: 8 fit.
      let outcomes = try await withThrowingTaskGroup(of: StoredRefund?.self) { group in
        for i in 0..<Self.callers {
          let refund = R.refund("r-\(i)", payment: paid.id, amount: eighth)
          group.addTask {
            do { return try await s.createRefund(refund, refundableSeen: nil, audit: R.audit, now: R.at(2)) } catch let e as StoreError {
              guard case .failedPrecondition = e else { throw e }
              return nil
            }
          }
        }
        return try await group.reduce(into: []) { $0.append($1) }
      }
      let created = outcomes.compactMap { $0 }
      #expect(created.count == 8)
      #expect(try await R.count(store, "payment_refunds") == 8)
      #expect(try await s.payment(id: paid.id)?.refundable == .zero)

      // Every refund finished by two callers at once: each is posted once.
      try await withThrowingTaskGroup(of: StoredRefund.self) { group in
        for refund in created {
          for _ in 0..<2 { group.addTask { try await s.finishRefund(id: refund.id, state: .success, now: R.at(3)) } }
        }
        for try await finished in group { #expect(finished.state == .success) }
      }
      let ledger = try await s.ledger()
      #expect(ledger.count == 1 + 8)
      #expect(LedgerCheck.verify(ledger).isEmpty)
      let refunded = ledger.filter { $0.kind == .refund }.count
      #expect(refunded == 8)
      #expect(try await s.payment(id: paid.id)?.refunded == paid.amount)
      #expect(try await R.count(store, "event_outbox", where: "payload LIKE '%refund.succeeded%'") == 8)
    }
  }

  @Test(arguments: TestEngine.enabled) func concurrentPaymentsOfOneOrderUnderDifferentKeysMakeOne(engine: TestEngine) async throws {
    try await withTemporaryStore(engine) { store in
      let s = store.payments
      let order = try await R.openOrder(store, "c1")
      let outcomes = try await withThrowingTaskGroup(of: String?.self) { group in
        for i in 0..<Self.callers {
          let payment = R.payment("p-\(i)", order: order)
          let claim = R.paymentClaim("key-\(i)", orderID: order.id, amount: order.fees.total)
          group.addTask {
            do { return try await s.createPayment(payment, claim: claim, audit: R.audit, now: t0).payment.id } catch let e as StoreError {
              guard case .failedPrecondition(let message) = e else { throw e }
              return message
            }
          }
        }
        return try await group.reduce(into: []) { $0.append($1) }
      }
      let payments = try await s.payments(orderID: order.id)
      #expect(payments.count == 1)
      let winner = try #require(payments.first?.id)
      #expect(outcomes.filter { $0 == winner }.count == 1)
      // The others are told which payment is unfinished.
      #expect(outcomes.filter { $0?.contains("payment \(winner) of order") == true }.count == Self.callers - 1)
      // The order's key and the winning payment's.
      #expect(try await R.count(store, "idempotency_keys") == 2)
    }
  }

  @Test(arguments: TestEngine.enabled) func concurrentOrdersOfOneCaseUnderDifferentKeysMakeOne(engine: TestEngine) async throws {
    try await withTemporaryStore(engine) { store in
      let s = store.payments
      try await R.seedCase(store, "c1")
      let outcomes = try await withThrowingTaskGroup(of: String.self) { group in
        for i in 0..<Self.callers {
          let order = try R.order("o-\(i)", caseID: "c1")
          let claim = R.orderClaim("key-\(i)", caseID: "c1")
          group.addTask {
            do { return try await s.createOrder(order, claim: claim, audit: R.audit, now: t0).id } catch let e as StoreError {
              guard case .conflict(let message) = e else { throw e }
              return message
            }
          }
        }
        return try await group.reduce(into: []) { $0.append($1) }
      }
      let winner = try #require(try await s.order(caseID: "c1")?.id)
      #expect(outcomes.filter { $0 == winner }.count == 1)
      #expect(outcomes.filter { $0.contains("already has fee order \(winner)") }.count == Self.callers - 1)
      #expect(try await R.count(store, "payment_orders") == 1)
      #expect(try await R.count(store, "audit_log") == 1)
    }
  }

  @Test(arguments: TestEngine.enabled) func concurrentAdjustsAtOneVersionApplyOnce(engine: TestEngine) async throws {
    try await withTemporaryStore(engine) { store in
      let s = store.payments
      let order = try await R.openOrder(store, "c1")
      let outcomes = try await withThrowingTaskGroup(of: Int64?.self) { group in
        for i in 0..<Self.callers {
          var reduced = order
          reduced.fees = try R.fees([1000 + Int64(i)])
          group.addTask {
            do { return try await s.adjust(reduced, expectedVersion: order.version, audit: R.audit, now: R.at(1)).version } catch let e as StoreError {
              guard case .versionConflict(let current) = e else { throw e }
              #expect(current == order.version + 1)
              return nil
            }
          }
        }
        return try await group.reduce(into: []) { $0.append($1) }
      }
      #expect(outcomes.compactMap { $0 } == [order.version + 1])
      #expect(try await s.order(id: order.id)?.version == order.version + 1)
    }
  }

  // MARK: - The sandbox provider's books

  @Test(arguments: TestEngine.enabled) func sandboxBookOpensOneSessionAndNeverOverRefunds(engine: TestEngine) async throws {
    let database = try await TestDatabase.create(engine)
    let opened = try await database.open()
    do {
      let book = opened.sandboxBook
      let amount = R.fen(8000)
      let sessions = try await withThrowingTaskGroup(of: SandboxBookEntry.self) { group in
        for _ in 0..<Self.callers { group.addTask { try await book.open(paymentID: "p1", amount: amount, now: t0) } }
        return try await group.reduce(into: []) { $0.append($1) }
      }
      #expect(Set(sessions.map(\.reference)).count == 1)
      let reference = try #require(sessions.first?.reference)
      let authorised = try await withThrowingTaskGroup(of: Bool.self) { group in
        for i in 0..<Self.callers {
          group.addTask {
            try await book.authorise(reference: reference, account: "acct-\(i)", outcome: .success, decideAt: t0, now: t0)?.authorised ?? false
          }
        }
        return try await group.reduce(into: []) { $0.append($1) }
      }
      #expect(authorised.filter { $0 }.count == 1)
      // 16 refunds of 1/8 each (and each id twice): 8 succeed, never more than was paid.
      let refunds = try await withThrowingTaskGroup(of: SandboxRefundEntry.self) { group in
        for i in 0..<Self.callers {
          for _ in 0..<2 {
            group.addTask { try await book.refund(refundID: "r-\(i)", reference: reference, amount: R.fen(1000), now: t0) }
          }
        }
        return try await group.reduce(into: []) { $0.append($1) }
      }
      var byID: [String: Set<SandboxBookStatus>] = [:]
      for refund in refunds { byID[refund.refundID, default: []].insert(refund.status) }
      #expect(byID.values.allSatisfy { $0.count == 1 })
      #expect(byID.values.filter { $0 == [.success] }.count == 8)
      let settled = try await book.settlement(from: t0, to: t0.addingTimeInterval(1))
      #expect(settled.filter { $0.entry.kind == .refund }.reduce(0) { $0 + $1.entry.amount.value } == amount.value)
      #expect(settled.filter { $0.entry.kind == .capture }.count == 1)
    } catch {
      try? await opened.close()
      await database.drop()
      throw error
    }
    try await opened.close()
    await database.drop()
  }
}

// MARK: - Fixtures

/// Fixtures as in `PaymentStoreTests` (accounts and cases inserted by raw SQL).
private enum R {
  static let applicant = "acct-payer"
  static let provider = "sandbox"
  static let audit = AuditEvent(
    actorID: applicant, actorRole: "citizen", actorDepartment: nil, action: "payment.test", targetType: "payment", targetID: "x")

  static func fen(_ v: Int64) -> Fen {
    do { return try Fen(v) } catch { preconditionFailure("fixture amount \(v) is valid") }
  }

  static func at(_ seconds: TimeInterval) -> Date { t0.addingTimeInterval(seconds) }

  static func seedCase(_ store: any Store, _ caseID: String) async throws {
    try await store.inspection.execute(
      """
      INSERT INTO accounts (id, role, display_name, trust_level, created_at, updated_at)
      VALUES ($1, 'citizen', '张三', 1, 0, 0) ON CONFLICT DO NOTHING
      """, .text(applicant))
    try await store.inspection.execute(
      """
      INSERT INTO cases (id, tracking_code, applicant_id, draft_id, idempotency_key, item_code, state, version,
        handling_department, body, submitted_at, updated_at)
      VALUES ($1, $2, $3, $4, $5, 'ITEM-1', 'accepted', 1, 'gongan', '{}', 0, 0)
      """, .text(caseID), .text("T-\(caseID)"), .text(applicant), .text("d-\(caseID)"), .text("k-\(caseID)"))
  }

  static func fees(_ amounts: [Int64]) throws -> FeeOrder {
    try FeeOrder(fees: amounts.enumerated().map { FeeItem(name: "费用\($0.offset)", amountFen: $0.element, legalBasis: "依据") })
  }

  static func order(_ id: String, caseID: String, amounts: [Int64] = [1000, 8000]) throws -> StoredOrder {
    StoredOrder(
      id: id, caseID: caseID, applicantID: applicant, payerName: "张三", departmentCode: "gongan", trackingCode: "T-\(caseID)",
      itemName: "登记", fees: try fees(amounts), state: .open, version: 1, createdAt: t0, updatedAt: t0)
  }

  static func orderClaim(_ key: String, caseID: String) -> IdempotencyClaim {
    IdempotencyClaim(scope: "order", ownerID: applicant, key: key, parameters: ["case_id": caseID])
  }

  static func payment(_ id: String, order: StoredOrder) -> StoredPayment {
    StoredPayment(
      id: id, orderID: order.id, caseID: order.caseID, applicantID: order.applicantID, departmentCode: order.departmentCode,
      amount: order.fees.total, state: .created, provider: provider, createdAt: t0, updatedAt: t0,
      expiresAt: t0.addingTimeInterval(PaymentExpiry.defaultWindow))
  }

  static func paymentClaim(_ key: String, orderID: String, amount: Fen) -> IdempotencyClaim {
    IdempotencyClaim(
      scope: "payment", ownerID: applicant, key: key, parameters: ["order_id": orderID, "amount_fen": String(amount.value)])
  }

  static func openOrder(_ store: any Store, _ caseID: String, amounts: [Int64] = [1000, 8000]) async throws -> StoredOrder {
    try await seedCase(store, caseID)
    return try await store.payments.createOrder(
      try order("o-\(caseID)", caseID: caseID, amounts: amounts), claim: orderClaim("ok-\(caseID)", caseID: caseID), audit: audit,
      now: t0)
  }

  static func createdPayment(_ store: any Store, _ order: StoredOrder) async throws -> StoredPayment {
    let id = "p-\(order.caseID)"
    return try await store.payments.createPayment(
      payment(id, order: order), claim: paymentClaim("pk-\(id)", orderID: order.id, amount: order.fees.total), audit: audit, now: t0
    ).payment
  }

  static func paidPayment(_ store: any Store, _ caseID: String, amounts: [Int64]) async throws -> StoredPayment {
    let order = try await openOrder(store, caseID, amounts: amounts)
    let created = try await createdPayment(store, order)
    return try await store.payments.apply(PaymentChange(paymentID: created.id, event: .succeed), now: t0).payment
  }

  static func refund(_ id: String, payment: String, amount: Fen) -> StoredRefund {
    StoredRefund(
      id: id, paymentID: payment, amount: amount, state: .submitted, reason: "多收", requestedBy: "cw-1", automatic: false,
      createdAt: t0, updatedAt: t0)
  }

  /// A receipt whose signed form parses (the store does not verify the signature).
  static func receipt(_ number: String, for payment: StoredPayment) -> StoredReceipt {
    let payload = ReceiptPayload(
      number: number, paymentID: payment.id, caseID: payment.caseID, trackingCode: "T-\(payment.caseID)", payerName: "张三",
      departmentCode: payment.departmentCode, items: [.init(name: "登记费", amount: payment.amount)], total: payment.amount,
      paidAt: t0, keyID: "test-key")
    return StoredReceipt(
      payload: payload, signed: "\(SignedReceipt.prefix).\(Base64URL.encode(payload.canonicalJSON())).c2lnbmF0dXJl",
      applicantID: applicant)
  }

  static func count(_ store: any Store, _ table: String, where condition: String = "TRUE") async throws -> Int {
    try await store.inspection.count(table, where: condition)
  }
}
