import Foundation
import Logging
import OneWindowCore
import OneWindowStore
import PostgresNIO

/// Payments on PostgreSQL, behaving as `SQLitePaymentStore`: every state change and its ledger
/// postings, receipt, order update, outbox event and audit entry commit in one transaction.
/// SQLite's single writer is replaced by explicit locks taken first in each transaction (see
/// each method); the partial unique indexes still back "one unfinished payment per order" and
/// "one capture per payment".
struct PostgresPaymentStore: PaymentStore {
  let pool: PostgresPool
  var logger: Logger { pool.logger }

  static let encoder: JSONEncoder = {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return encoder
  }()
  static let decoder = JSONDecoder()

  static func json<T: Encodable>(_ value: T) throws -> String { String(decoding: try encoder.encode(value), as: UTF8.self) }
  static func decode<T: Decodable>(_ type: T.Type, _ text: String) throws -> T { try decoder.decode(type, from: Data(text.utf8)) }
  static func stored(_ date: Date) -> Date { PGTime.date(PGTime.ms(date)) }

  static let unfinished = "('created', 'started', 'submitted')"

  // MARK: - Idempotency

  /// Serialises requests carrying one idempotency key, so the second waits for the first's claim
  /// and replays it instead of creating a second resource.
  static func lockClaim(_ claim: IdempotencyClaim, _ conn: PostgresConnection, _ logger: Logger) async throws {
    try await conn.advisoryLock("idempotency\u{1F}\(claim.scope)\u{1F}\(claim.ownerID)\u{1F}\(claim.key)", logger: logger)
  }

  /// The resource a claimed key already produced; nil when the key is new. The same key with
  /// other parameters throws `conflict` naming the parameters that differ.
  static func claimed(_ claim: IdempotencyClaim, _ conn: PostgresConnection, _ logger: Logger) async throws -> String? {
    guard let row = try await conn.rows(
      "SELECT fingerprint, parameters, resource_id FROM idempotency_keys WHERE scope = \(claim.scope) AND owner_id = \(claim.ownerID) AND key = \(claim.key)",
      logger: logger
    ).first else { return nil }
    if try row["fingerprint"].decode(String.self) == claim.fingerprint { return try row["resource_id"].decode(String.self) }
    let stored = (try? decode([String: String].self, try row["parameters"].decode(String.self))) ?? [:]
    let differing = IdempotencyFingerprint.mismatch(stored: stored, request: claim.parameters)
    throw StoreError.conflict(
      "idempotency key \(claim.key) was already used for a \(claim.scope) with different \(differing.joined(separator: ", ")): "
        + "use a new key for a different request")
  }

  static func record(
    _ claim: IdempotencyClaim, resource: String, now: Date, _ conn: PostgresConnection, _ logger: Logger
  ) async throws {
    try await conn.run(
      """
      INSERT INTO idempotency_keys (scope, owner_id, key, fingerprint, parameters, resource_id, created_at)
      VALUES (\(claim.scope), \(claim.ownerID), \(claim.key), \(claim.fingerprint), \(try json(claim.parameters)), \(resource), \(PGTime.ms(now)))
      """, logger: logger)
  }

  // MARK: - Orders

  static func order(_ row: PostgresRandomAccessRow) throws -> StoredOrder {
    StoredOrder(
      id: try row["id"].decode(String.self), caseID: try row["case_id"].decode(String.self),
      applicantID: try row["applicant_id"].decode(String.self), payerName: try row["payer_name"].decode(String.self),
      departmentCode: try row["department_code"].decode(String.self), trackingCode: try row["tracking_code"].decode(String.self),
      itemName: try row["item_name"].decode(String.self), fees: try decode(FeeOrder.self, try row["fees"].decode(String.self)),
      state: FeeOrderState(rawValue: try row["state"].decode(String.self)) ?? .open, version: try row["version"].decode(Int64.self),
      createdAt: PGTime.date(try row["created_at"].decode(Int64.self)),
      updatedAt: PGTime.date(try row["updated_at"].decode(Int64.self)))
  }

  static func order(id: String, lock: Bool = false, _ conn: PostgresConnection, _ logger: Logger) async throws -> StoredOrder? {
    let query: PostgresQuery = lock
      ? "SELECT * FROM payment_orders WHERE id = \(id) FOR UPDATE" : "SELECT * FROM payment_orders WHERE id = \(id)"
    return try await conn.rows(query, logger: logger).first.map(order)
  }

  func createOrder(_ order: StoredOrder, claim: IdempotencyClaim, audit: AuditEvent, now: Date) async throws -> StoredOrder {
    try await pool.write { conn in
      try await Self.lockClaim(claim, conn, logger)
      if let existing = try await Self.claimed(claim, conn, logger) {
        guard let stored = try await Self.order(id: existing, conn, logger) else { throw StoreError.notFound("order \(existing)") }
        return stored
      }
      // Two orders for one case under different keys: the second waits and sees the first
      // (the case's conflict message, not a unique violation). Taken after the key's lock.
      try await conn.advisoryLock("payment_order_case\u{1F}\(order.caseID)", logger: logger)
      if let other = try await conn.all(
        "SELECT id FROM payment_orders WHERE case_id = \(order.caseID)", as: String.self, logger: logger
      ).first {
        throw StoreError.conflict("case \(order.caseID) already has fee order \(other): get it with GetOrder")
      }
      try await conn.run(
        """
        INSERT INTO payment_orders (id, case_id, applicant_id, payer_name, department_code, tracking_code, item_name, fees,
          total, state, version, created_at, updated_at)
        VALUES (\(order.id), \(order.caseID), \(order.applicantID), \(order.payerName), \(order.departmentCode),
          \(order.trackingCode), \(order.itemName), \(try Self.json(order.fees)), \(order.fees.total.value),
          \(order.state.rawValue), \(order.version), \(PGTime.ms(order.createdAt)), \(PGTime.ms(order.updatedAt)))
        """, logger: logger)
      try await Self.record(claim, resource: order.id, now: now, conn, logger)
      guard let stored = try await Self.order(id: order.id, conn, logger) else { throw StoreError.notFound("order \(order.id)") }
      // Last: the audit head lock is held to commit, so nothing else waits behind it.
      try await PostgresAudit.append(conn, audit, now: now, logger: logger)
      return stored
    }
  }

  func order(id: String) async throws -> StoredOrder? {
    try await pool.read { conn in try await Self.order(id: id, conn, logger) }
  }

  func order(caseID: String) async throws -> StoredOrder? {
    try await pool.read { conn in
      try await conn.rows("SELECT * FROM payment_orders WHERE case_id = \(caseID)", logger: logger).first.map(Self.order)
    }
  }

  func orders(applicantID: String?, department: String?, state: FeeOrderState?, limit: Int, after: (Date, String)?)
    async throws -> [StoredOrder]
  {
    var conditions: [String] = []
    var binds = PostgresBindings()
    func next() -> String { "$\(binds.count)" }
    if let applicantID { binds.append(applicantID); conditions.append("applicant_id = \(next())") }
    if let department { binds.append(department); conditions.append("department_code = \(next())") }
    if let state { binds.append(state.rawValue); conditions.append("state = \(next())") }
    if let (at, id) = after {
      binds.append(PGTime.ms(at))
      let atBind = next()
      binds.append(id)
      conditions.append("(created_at < \(atBind) OR (created_at = \(atBind) AND id < \(next())))")
    }
    let whereClause = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
    binds.append(limit)
    let query = PostgresQuery(
      unsafeSQL: "SELECT * FROM payment_orders \(whereClause) ORDER BY created_at DESC, id DESC LIMIT \(next())", binds: binds)
    return try await pool.read { conn in try await conn.rows(query, logger: logger).map(Self.order) }
  }

  func adjust(_ order: StoredOrder, expectedVersion: Int64, audit: AuditEvent, now: Date) async throws -> StoredOrder {
    try await pool.write { conn in
      // The order row first: a concurrent adjust, createPayment or capture waits, so the version,
      // state and "no unfinished payment" checks hold until commit.
      guard let current = try await Self.order(id: order.id, lock: true, conn, logger) else {
        throw StoreError.notFound("order \(order.id)")
      }
      guard current.version == expectedVersion else { throw StoreError.versionConflict(current: current.version) }
      guard current.state == .open else {
        throw StoreError.failedPrecondition("order \(order.id) is \(current.state.rawValue): its fees can no longer change")
      }
      if let live = try await conn.all(
        PostgresQuery(unsafeSQL: "SELECT id FROM payments WHERE order_id = $1 AND state IN \(Self.unfinished) LIMIT 1", binds: Self.binds(order.id)),
        as: String.self, logger: logger
      ).first {
        throw StoreError.failedPrecondition(
          "payment \(live) of order \(order.id) is unfinished: wait for it to finish or expire before changing the fees")
      }
      let state: FeeOrderState = order.fees.needsPayment ? .open : .waived
      try await conn.run(
        """
        UPDATE payment_orders SET fees = \(try Self.json(order.fees)), total = \(order.fees.total.value), state = \(state.rawValue),
          version = version + 1, updated_at = \(PGTime.ms(now)) WHERE id = \(order.id)
        """, logger: logger)
      try await PostgresAudit.append(conn, audit, now: now, logger: logger)
      guard let stored = try await Self.order(id: order.id, conn, logger) else { throw StoreError.notFound("order \(order.id)") }
      return stored
    }
  }

  static func binds(_ values: String...) -> PostgresBindings {
    var binds = PostgresBindings()
    for value in values { binds.append(value) }
    return binds
  }

  // MARK: - Payments

  static func payment(_ row: PostgresRandomAccessRow) throws -> StoredPayment {
    StoredPayment(
      id: try row["id"].decode(String.self), orderID: try row["order_id"].decode(String.self),
      caseID: try row["case_id"].decode(String.self), applicantID: try row["applicant_id"].decode(String.self),
      departmentCode: try row["department_code"].decode(String.self),
      amount: (try? Fen(try row["amount"].decode(Int64.self))) ?? .zero,
      state: PaymentState(rawValue: try row["state"].decode(String.self)) ?? .error, code: try row["code"].decode(String.self),
      provider: try row["provider"].decode(String.self), providerReference: try row["provider_reference"].decode(String.self),
      cashierURL: try row["cashier_url"].decode(String.self), receiptNumber: try row["receipt_number"].decode(String?.self),
      createdAt: PGTime.date(try row["created_at"].decode(Int64.self)),
      updatedAt: PGTime.date(try row["updated_at"].decode(Int64.self)),
      expiresAt: PGTime.date(try row["expires_at"].decode(Int64.self)),
      checkedAt: PGTime.date(try row["provider_checked_at"].decode(Int64.self)) as Date)
  }

  static func refund(_ row: PostgresRandomAccessRow) throws -> StoredRefund {
    StoredRefund(
      id: try row["id"].decode(String.self), paymentID: try row["payment_id"].decode(String.self),
      amount: (try? Fen(try row["amount"].decode(Int64.self))) ?? .zero,
      state: RefundState(rawValue: try row["state"].decode(String.self)) ?? .error, reason: try row["reason"].decode(String.self),
      requestedBy: try row["requested_by"].decode(String?.self), automatic: try row["automatic"].decode(Int64.self) != 0,
      createdAt: PGTime.date(try row["created_at"].decode(Int64.self)),
      updatedAt: PGTime.date(try row["updated_at"].decode(Int64.self)))
  }

  /// The payments `query` selects (in its order), with their refunds oldest first.
  static func payments(_ query: PostgresQuery, _ conn: PostgresConnection, _ logger: Logger) async throws -> [StoredPayment] {
    var payments = try await conn.rows(query, logger: logger).map(payment)
    guard !payments.isEmpty else { return payments }
    let ids = payments.map(\.id)
    var refunds: [String: [StoredRefund]] = [:]
    for row in try await conn.rows(
      "SELECT * FROM payment_refunds WHERE payment_id = ANY(\(ids)) ORDER BY created_at, id", logger: logger)
    {
      let refund = try refund(row)
      refunds[refund.paymentID, default: []].append(refund)
    }
    for i in payments.indices { payments[i].refunds = refunds[payments[i].id] ?? [] }
    return payments
  }

  static func payment(id: String, lock: Bool = false, _ conn: PostgresConnection, _ logger: Logger) async throws
    -> StoredPayment?
  {
    let query: PostgresQuery = lock ? "SELECT * FROM payments WHERE id = \(id) FOR UPDATE" : "SELECT * FROM payments WHERE id = \(id)"
    return try await payments(query, conn, logger).first
  }

  func createPayment(_ payment: StoredPayment, claim: IdempotencyClaim, audit: AuditEvent, now: Date) async throws
    -> (payment: StoredPayment, created: Bool)
  {
    try await pool.write { conn in
      try await Self.lockClaim(claim, conn, logger)
      if let existing = try await Self.claimed(claim, conn, logger) {
        guard let stored = try await Self.payment(id: existing, conn, logger) else { throw StoreError.notFound("payment \(existing)") }
        return (stored, false)
      }
      // The order row: two payments of one order under different keys cannot both pass the
      // "no unfinished payment" check, and an adjust cannot change the due amount meanwhile.
      guard let order = try await Self.order(id: payment.orderID, lock: true, conn, logger) else {
        throw StoreError.notFound("order \(payment.orderID)")
      }
      guard order.state == .open else {
        throw StoreError.failedPrecondition("order \(order.id) is \(order.state.rawValue): nothing is due")
      }
      guard order.fees.total == payment.amount else {
        throw StoreError.failedPrecondition(
          "order \(order.id) is due \(order.fees.total.yuan) yuan (\(order.fees.total.value) fen), not "
            + "\(payment.amount.yuan): its fees changed; show the payer the new amount")
      }
      if let live = try await conn.all(
        PostgresQuery(unsafeSQL: "SELECT id FROM payments WHERE order_id = $1 AND state IN \(Self.unfinished) LIMIT 1", binds: Self.binds(order.id)),
        as: String.self, logger: logger
      ).first {
        throw StoreError.failedPrecondition(
          "payment \(live) of order \(order.id) is unfinished: pay it at its cashier, cancel it, or wait for it to expire")
      }
      try await conn.run(
        """
        INSERT INTO payments (id, order_id, case_id, applicant_id, department_code, amount, state, code, provider,
          provider_reference, cashier_url, receipt_number, created_at, updated_at, expires_at, provider_checked_at)
        VALUES (\(payment.id), \(order.id), \(order.caseID), \(order.applicantID), \(order.departmentCode), \(payment.amount.value),
          \(PaymentState.created.rawValue), '', \(payment.provider), '', '', NULL, \(PGTime.ms(now)), \(PGTime.ms(now)),
          \(PGTime.ms(payment.expiresAt)), \(PGTime.ms(now)))
        """, logger: logger)
      try await Self.record(claim, resource: payment.id, now: now, conn, logger)
      guard let stored = try await Self.payment(id: payment.id, conn, logger) else { throw StoreError.notFound("payment \(payment.id)") }
      // Last: the audit head lock is held to commit, so nothing else waits behind it.
      try await PostgresAudit.append(conn, audit, now: now, logger: logger)
      return (stored, true)
    }
  }

  func startPayment(id: String, providerReference: String, cashierURL: String, now: Date) async throws -> StoredPayment {
    try await pool.write { conn in
      // The payment row: a concurrent start or event sees this one's state, not the one before.
      guard var payment = try await Self.payment(id: id, lock: true, conn, logger) else { throw StoreError.notFound("payment \(id)") }
      guard case .moved(let to) = PaymentLifecycle.apply(.start, to: payment.state) else { return payment }
      try await conn.run(
        """
        UPDATE payments SET state = \(to.rawValue), provider_reference = \(providerReference), cashier_url = \(cashierURL),
          updated_at = \(PGTime.ms(now)), provider_checked_at = \(PGTime.ms(now)) WHERE id = \(id)
        """, logger: logger)
      payment.state = to
      payment.providerReference = providerReference
      payment.cashierURL = cashierURL
      payment.updatedAt = Self.stored(now)
      payment.checkedAt = Self.stored(now)
      return payment
    }
  }

  func payment(id: String) async throws -> StoredPayment? {
    try await pool.read { conn in try await Self.payment(id: id, conn, logger) }
  }

  func payment(provider: String, reference: String) async throws -> StoredPayment? {
    try await pool.read { conn in
      try await Self.payments(
        "SELECT * FROM payments WHERE provider = \(provider) AND provider_reference = \(reference)", conn, logger
      ).first
    }
  }

  func payments(orderID: String) async throws -> [StoredPayment] {
    try await pool.read { conn in
      try await Self.payments("SELECT * FROM payments WHERE order_id = \(orderID) ORDER BY created_at DESC, id DESC", conn, logger)
    }
  }

  func apply(_ change: PaymentChange, now: Date) async throws -> PaymentChangeResult {
    try await pool.write { conn in
      // The payment row first: concurrent events for one payment apply one after another, each
      // to the state the previous left (exactly one capture, one receipt, one event).
      guard var payment = try await Self.payment(id: change.paymentID, lock: true, conn, logger) else {
        throw StoreError.notFound("payment \(change.paymentID)")
      }
      if let notification = change.notification {
        // ON CONFLICT waits for a concurrent insert of the same notification and then skips it.
        let inserted = try await conn.run(
          """
          INSERT INTO provider_notifications (provider, notification_id, payment_id, received_at)
          VALUES (\(notification.provider), \(notification.id), \(payment.id), \(PGTime.ms(now)))
          ON CONFLICT DO NOTHING RETURNING 1
          """, logger: logger)
        if inserted == 0 { return .duplicateNotification(payment) }
      }
      guard let event = change.event else { return .applied(payment, transition: .ignored) }
      let transition = PaymentLifecycle.settle(event, from: payment.state)
      guard case .moved(let to) = transition else { return .applied(payment, transition: transition) }
      payment.state = to
      payment.code = PaymentLifecycle.code(after: event, movedTo: to)
      payment.updatedAt = Self.stored(now)
      var receiptNumber: String?
      if to == .success {
        // Lock order: payment, then its order (createPayment and adjust take only the order).
        guard let order = try await Self.order(id: payment.orderID, lock: true, conn, logger) else {
          throw StoreError.notFound("order \(payment.orderID)")
        }
        try await Self.post(
          LedgerTransaction.capture(
            id: "cap_\(payment.id)", payment: payment.id, amount: payment.amount, department: payment.departmentCode),
          now: now, conn, logger)
        try await conn.run(
          """
          UPDATE payment_orders SET state = \(FeeOrderState.paid.rawValue), version = version + 1, updated_at = \(PGTime.ms(now))
          WHERE id = \(order.id)
          """, logger: logger)
        if let receipt = change.receipt {
          try await conn.run(
            """
            INSERT INTO payment_receipts (number, payment_id, applicant_id, signed, created_at)
            VALUES (\(receipt.payload.number), \(payment.id), \(receipt.applicantID), \(receipt.signed), \(PGTime.ms(now)))
            """, logger: logger)
          receiptNumber = receipt.payload.number
        }
        payment.receiptNumber = receiptNumber
        try await Self.emit(
          "payment.succeeded", payment: payment, order: order, extra: ["receipt_number": receiptNumber ?? ""], now: now, conn, logger)
      } else if to.isTerminal, let order = try await Self.order(id: payment.orderID, conn, logger) {
        try await Self.emit("payment.failed", payment: payment, order: order, extra: [:], now: now, conn, logger)
      }
      try await conn.run(
        """
        UPDATE payments SET state = \(to.rawValue), code = \(payment.code), receipt_number = \(receiptNumber), updated_at = \(PGTime.ms(now))
        WHERE id = \(payment.id)
        """, logger: logger)
      if let audit = change.audit { try await PostgresAudit.append(conn, audit, now: now, logger: logger) }
      return .applied(payment, transition: transition)
    }
  }

  func unfinishedPayments(createdBefore before: Date, limit: Int) async throws -> [StoredPayment] {
    try await pool.read { conn in
      var binds = PostgresBindings()
      binds.append(PGTime.ms(before))
      binds.append(limit)
      return try await Self.payments(
        PostgresQuery(
          unsafeSQL: "SELECT * FROM payments WHERE state IN \(Self.unfinished) AND created_at < $1 ORDER BY created_at LIMIT $2",
          binds: binds),
        conn, logger)
    }
  }

  func paymentsToCheck(checkedBy: Date, limit: Int) async throws -> [StoredPayment] {
    try await pool.read { conn in
      // `payments_to_check` (v6) serves this: the same state list, ordered by the check time.
      try await Self.payments(
        """
        SELECT * FROM payments
        WHERE state IN ('started', 'submitted') AND provider_reference <> '' AND provider_checked_at <= \(PGTime.ms(checkedBy))
        ORDER BY provider_checked_at, id LIMIT \(limit)
        """, conn, logger)
    }
  }

  func recordProviderCheck(paymentID: String, at: Date) async throws {
    try await pool.write { conn in
      try await conn.run("UPDATE payments SET provider_checked_at = \(PGTime.ms(at)) WHERE id = \(paymentID)", logger: logger)
    }
  }

  // MARK: - Refunds

  static func refund(id: String, lock: Bool = false, _ conn: PostgresConnection, _ logger: Logger) async throws -> StoredRefund? {
    let query: PostgresQuery = lock
      ? "SELECT * FROM payment_refunds WHERE id = \(id) FOR UPDATE" : "SELECT * FROM payment_refunds WHERE id = \(id)"
    return try await conn.rows(query, logger: logger).first.map(refund)
  }

  func createRefund(_ refund: StoredRefund, refundableSeen: Fen?, audit: AuditEvent, now: Date) async throws -> StoredRefund {
    try await pool.write { conn in
      // The payment row: concurrent refunds of one payment are checked one after another
      // against what the previous left refundable, so together they never exceed the capture.
      guard let payment = try await Self.payment(id: refund.paymentID, lock: true, conn, logger) else {
        throw StoreError.notFound("payment \(refund.paymentID)")
      }
      guard payment.state == .success else {
        throw StoreError.failedPrecondition("payment \(payment.id) is \(payment.state.rawValue): only a successful payment can be refunded")
      }
      do {
        try RefundRules.validate(
          amount: refund.amount, refundableSeen: refundableSeen ?? payment.refundable, captured: payment.amount,
          refunded: payment.refundedOrPending)
      } catch let e as PreconditionFailed {
        throw StoreError.failedPrecondition(e.message)
      }
      try await conn.run(
        """
        INSERT INTO payment_refunds (id, payment_id, amount, state, reason, requested_by, automatic, created_at, updated_at)
        VALUES (\(refund.id), \(refund.paymentID), \(refund.amount.value), \(RefundState.submitted.rawValue), \(refund.reason),
          \(refund.requestedBy), \(Int64(refund.automatic ? 1 : 0)), \(PGTime.ms(now)), \(PGTime.ms(now)))
        """, logger: logger)
      try await PostgresAudit.append(conn, audit, now: now, logger: logger)
      guard let stored = try await Self.refund(id: refund.id, conn, logger) else { throw StoreError.notFound("refund \(refund.id)") }
      return stored
    }
  }

  func finishRefund(id: String, state: RefundState, now: Date) async throws -> StoredRefund {
    try await pool.write { conn in
      // The refund row: two finishes of one refund cannot both post it; the second sees it finished.
      guard var refund = try await Self.refund(id: id, lock: true, conn, logger) else { throw StoreError.notFound("refund \(id)") }
      guard let next = refund.state.applying(state) else { return refund }
      guard let payment = try await Self.payment(id: refund.paymentID, conn, logger),
            let order = try await Self.order(id: payment.orderID, conn, logger)
      else { throw StoreError.notFound("payment \(refund.paymentID)") }
      try await conn.run(
        "UPDATE payment_refunds SET state = \(next.rawValue), updated_at = \(PGTime.ms(now)) WHERE id = \(id)", logger: logger)
      refund.state = next
      refund.updatedAt = Self.stored(now)
      if next == .success {
        try await Self.post(
          LedgerTransaction.refund(id: refund.id, payment: payment.id, amount: refund.amount, department: payment.departmentCode),
          now: now, conn, logger)
        try await Self.emit(
          "refund.succeeded", payment: payment, order: order,
          extra: ["refund_id": refund.id, "refund_fen": String(refund.amount.value)], now: now, conn, logger)
      }
      return refund
    }
  }

  func pendingRefunds(limit: Int) async throws -> [StoredRefund] {
    try await pool.read { conn in
      try await conn.rows(
        "SELECT * FROM payment_refunds WHERE state = 'submitted' ORDER BY created_at LIMIT \(limit)", logger: logger
      ).map(Self.refund)
    }
  }

  func paymentsOfWithdrawnCases(limit: Int) async throws -> [StoredPayment] {
    try await pool.read { conn in
      try await Self.payments(
        """
        SELECT * FROM payments
        WHERE state = 'success' AND case_id IN (SELECT id FROM cases WHERE state = 'withdrawn')
          AND NOT EXISTS (SELECT 1 FROM payment_refunds r WHERE r.payment_id = payments.id AND r.automatic = 1 AND r.state <> 'error')
          AND amount > (SELECT COALESCE(SUM(r.amount), 0) FROM payment_refunds r
            WHERE r.payment_id = payments.id AND r.state <> 'error')
        ORDER BY created_at LIMIT \(limit)
        """, conn, logger)
    }
  }

  // MARK: - Receipts

  static func receipt(_ row: PostgresRandomAccessRow) throws -> StoredReceipt? {
    let signed = try row["signed"].decode(String.self)
    let parts = signed.split(separator: ".")
    guard parts.count == 3, let bytes = Base64URL.decode(String(parts[1])), let payload = ReceiptPayload(canonicalJSON: bytes)
    else { return nil }
    return StoredReceipt(payload: payload, signed: signed, applicantID: try row["applicant_id"].decode(String.self))
  }

  func receipt(number: String) async throws -> StoredReceipt? {
    try await pool.read { conn in
      try await conn.rows("SELECT * FROM payment_receipts WHERE number = \(number)", logger: logger).first.flatMap(Self.receipt)
    }
  }

  func receipt(paymentID: String) async throws -> StoredReceipt? {
    try await pool.rows("SELECT * FROM payment_receipts WHERE payment_id = \(paymentID)").first.flatMap(Self.receipt)
  }

  // MARK: - Ledger

  static func post(_ transaction: LedgerTransaction, now: Date, _ conn: PostgresConnection, _ logger: Logger) async throws {
    for posting in transaction.postings {
      try await conn.run(
        """
        INSERT INTO ledger_postings (transaction_id, payment_id, kind, account, amount, created_at)
        VALUES (\(transaction.id), \(transaction.paymentID), \(transaction.kind.rawValue), \(posting.account.name),
          \(posting.amount), \(PGTime.ms(now)))
        """, logger: logger)
    }
  }

  func ledger() async throws -> [LedgerTransaction] {
    try await pool.read { conn in
      var transactions: [LedgerTransaction] = []
      var index: [String: Int] = [:]
      let rows = try await conn.query(
        "SELECT transaction_id, payment_id, kind, account, amount FROM ledger_postings ORDER BY id", logger: logger)
      for try await (id, paymentID, kind, name, amount) in rows.decode((String, String, String, String, Int64).self) {
        guard let account = LedgerAccount(name: name) else {
          throw StoreError.failedPrecondition("ledger transaction \(id) posts to an unknown account '\(name)': the ledger needs attention")
        }
        let posting = LedgerPosting(account, amount: amount)
        if let i = index[id] {
          transactions[i].postings.append(posting)
        } else {
          index[id] = transactions.count
          transactions.append(LedgerTransaction(
            id: id, paymentID: paymentID, kind: LedgerTransaction.Kind(rawValue: kind) ?? .capture, postings: [posting]))
        }
      }
      return transactions
    }
  }

  func ledgerEntries(from: Date, to: Date) async throws -> [SettlementEntry] {
    try await pool.read { conn in
      try await conn.all(
        """
        SELECT transaction_id, payment_id, kind, SUM(CASE WHEN amount > 0 THEN amount ELSE 0 END)::BIGINT AS moved
        FROM ledger_postings WHERE created_at >= \(PGTime.ms(from)) AND created_at < \(PGTime.ms(to))
        GROUP BY transaction_id, payment_id, kind ORDER BY MIN(id)
        """, as: (String, String, String, Int64).self, logger: logger
      ).compactMap { transactionID, paymentID, kind, moved in
        guard let kind = SettlementEntry.Kind(rawValue: kind), let amount = try? Fen(moved) else { return nil }
        return SettlementEntry(kind: kind, reference: kind == .capture ? paymentID : transactionID, amount: amount)
      }
    }
  }

  func pruneIdempotencyKeys(before: Date) async throws -> Int {
    try await pool.write { conn in
      try await conn.run("DELETE FROM idempotency_keys WHERE created_at < \(PGTime.ms(before)) RETURNING 1", logger: logger)
    }
  }

  // MARK: - Events

  /// A `payment.event` outbox row for the notifier (the applicant's message and webhooks).
  static func emit(
    _ type: String, payment: StoredPayment, order: StoredOrder, extra: [String: String], now: Date, _ conn: PostgresConnection,
    _ logger: Logger
  ) async throws {
    var payload: [String: String] = [
      "type": type, "payment_id": payment.id, "order_id": order.id, "case_id": order.caseID,
      "tracking_code": order.trackingCode, "item_name": order.itemName, "applicant_id": order.applicantID,
      "department": order.departmentCode, "amount_fen": String(payment.amount.value), "state": payment.state.rawValue,
      "code": payment.code, "at": String(PGTime.ms(now)),
    ]
    payload.merge(extra) { $1 }
    try await conn.run(
      """
      INSERT INTO event_outbox (topic, aggregate_id, payload, created_at)
      VALUES ('payment.event', \(payment.id), \(try json(payload)), \(PGTime.ms(now)))
      """, logger: logger)
  }
}
