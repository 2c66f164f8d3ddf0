import OneWindowStore
import Foundation
import GRDB
import OneWindowCore

/// Payments in SQLite (migrations `v5-payments`, `v6-payment-checks`). Every state change and
/// its ledger postings, receipt, order update, outbox event and audit entry commit in one
/// transaction; the partial unique indexes make "one unfinished payment per order" and "one
/// capture per payment" hold even against a bug in the code above them.
struct SQLitePaymentStore: PaymentStore {
  let pool: DatabasePool

  static let encoder: JSONEncoder = {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return encoder
  }()
  static let decoder = JSONDecoder()

  static func json<T: Encodable>(_ value: T) throws -> String { String(decoding: try encoder.encode(value), as: UTF8.self) }
  static func decode<T: Decodable>(_ type: T.Type, _ text: String) throws -> T { try decoder.decode(type, from: Data(text.utf8)) }
  static func stored(_ date: Date) -> Date { SQLTime.date(SQLTime.ms(date)) }

  static let unfinished = "('created', 'started', 'submitted')"

  // MARK: - Idempotency

  /// The resource a claimed key already produced; nil when the key is new. The same key with
  /// other parameters throws `conflict` naming the parameters that differ.
  static func claimed(_ claim: IdempotencyClaim, _ db: Database) throws -> String? {
    guard let row = try Row.fetchOne(
      db.cachedStatement(sql: "SELECT fingerprint, parameters, resource_id FROM idempotency_keys WHERE scope = ? AND owner_id = ? AND key = ?"),
      arguments: [claim.scope, claim.ownerID, claim.key])
    else { return nil }
    if (row["fingerprint"] as String) == claim.fingerprint { return row["resource_id"] }
    let stored = (try? decode([String: String].self, row["parameters"])) ?? [:]
    let differing = IdempotencyFingerprint.mismatch(stored: stored, request: claim.parameters)
    throw StoreError.conflict(
      "idempotency key \(claim.key) was already used for a \(claim.scope) with different \(differing.joined(separator: ", ")): "
        + "use a new key for a different request")
  }

  static func record(_ claim: IdempotencyClaim, resource: String, now: Date, _ db: Database) throws {
    try db.cachedStatement(
      sql: """
        INSERT INTO idempotency_keys (scope, owner_id, key, fingerprint, parameters, resource_id, created_at)
        VALUES (?, ?, ?, ?, ?, ?, ?)
        """
    ).execute(arguments: [
      claim.scope, claim.ownerID, claim.key, claim.fingerprint, try json(claim.parameters), resource, SQLTime.ms(now),
    ])
  }

  // MARK: - Orders

  static func order(_ row: Row) throws -> StoredOrder {
    StoredOrder(
      id: row["id"], caseID: row["case_id"], applicantID: row["applicant_id"], payerName: row["payer_name"],
      departmentCode: row["department_code"], trackingCode: row["tracking_code"], itemName: row["item_name"],
      fees: try decode(FeeOrder.self, row["fees"]), state: FeeOrderState(rawValue: row["state"]) ?? .open,
      version: row["version"], createdAt: SQLTime.date(row["created_at"] as Int64),
      updatedAt: SQLTime.date(row["updated_at"] as Int64))
  }

  static func order(id: String, _ db: Database) throws -> StoredOrder? {
    try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM payment_orders WHERE id = ?"), arguments: [id]).map(order)
  }

  func createOrder(_ order: StoredOrder, claim: IdempotencyClaim, audit: AuditEvent, now: Date) async throws -> StoredOrder {
    try await pool.write { db in
      if let existing = try Self.claimed(claim, db) {
        guard let stored = try Self.order(id: existing, db) else { throw StoreError.notFound("order \(existing)") }
        return stored
      }
      if let other = try String.fetchOne(db.cachedStatement(sql: "SELECT id FROM payment_orders WHERE case_id = ?"), arguments: [order.caseID]) {
        throw StoreError.conflict("case \(order.caseID) already has fee order \(other): get it with GetOrder")
      }
      try db.cachedStatement(sql: """
          INSERT INTO payment_orders (id, case_id, applicant_id, payer_name, department_code, tracking_code, item_name, fees,
            total, state, version, created_at, updated_at)
          VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
          """).execute(arguments: [
          order.id, order.caseID, order.applicantID, order.payerName, order.departmentCode, order.trackingCode, order.itemName,
          try Self.json(order.fees), order.fees.total.value, order.state.rawValue, order.version, SQLTime.ms(order.createdAt),
          SQLTime.ms(order.updatedAt),
        ])
      try Self.record(claim, resource: order.id, now: now, db)
      try SQLiteAudit.append(audit, now: now, db)
      guard let stored = try Self.order(id: order.id, db) else { throw StoreError.notFound("order \(order.id)") }
      return stored
    }
  }

  func order(id: String) async throws -> StoredOrder? {
    try await pool.read { db in try Self.order(id: id, db) }
  }

  func order(caseID: String) async throws -> StoredOrder? {
    try await pool.read { db in
      try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM payment_orders WHERE case_id = ?"), arguments: [caseID]).map(Self.order)
    }
  }

  func orders(applicantID: String?, department: String?, state: FeeOrderState?, limit: Int, after: (Date, String)?)
    async throws -> [StoredOrder]
  {
    var conditions: [String] = []
    var arguments: [(any DatabaseValueConvertible)?] = []
    if let applicantID { conditions.append("applicant_id = ?"); arguments.append(applicantID) }
    if let department { conditions.append("department_code = ?"); arguments.append(department) }
    if let state { conditions.append("state = ?"); arguments.append(state.rawValue) }
    if let (at, id) = after {
      conditions.append("(created_at < ? OR (created_at = ? AND id < ?))")
      arguments += [SQLTime.ms(at), SQLTime.ms(at), id]
    }
    let whereClause = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
    let query = "SELECT * FROM payment_orders \(whereClause) ORDER BY created_at DESC, id DESC LIMIT ?"
    arguments.append(limit)
    let bound = StatementArguments(arguments)
    return try await pool.read { db in try Row.fetchAll(db.cachedStatement(sql: query), arguments: bound).map(Self.order) }
  }

  func adjust(_ order: StoredOrder, expectedVersion: Int64, audit: AuditEvent, now: Date) async throws -> StoredOrder {
    try await pool.write { db in
      guard let current = try Self.order(id: order.id, db) else { throw StoreError.notFound("order \(order.id)") }
      guard current.version == expectedVersion else { throw StoreError.versionConflict(current: current.version) }
      guard current.state == .open else {
        throw StoreError.failedPrecondition("order \(order.id) is \(current.state.rawValue): its fees can no longer change")
      }
      if let live = try String.fetchOne(db.cachedStatement(sql: "SELECT id FROM payments WHERE order_id = ? AND state IN \(Self.unfinished)"), arguments: [order.id])
      {
        throw StoreError.failedPrecondition(
          "payment \(live) of order \(order.id) is unfinished: wait for it to finish or expire before changing the fees")
      }
      let state: FeeOrderState = order.fees.needsPayment ? .open : .waived
      try db.cachedStatement(sql: "UPDATE payment_orders SET fees = ?, total = ?, state = ?, version = version + 1, updated_at = ? WHERE id = ?").execute(arguments: [try Self.json(order.fees), order.fees.total.value, state.rawValue, SQLTime.ms(now), order.id])
      try SQLiteAudit.append(audit, now: now, db)
      guard let stored = try Self.order(id: order.id, db) else { throw StoreError.notFound("order \(order.id)") }
      return stored
    }
  }

  // MARK: - Payments

  static func payment(_ row: Row) -> StoredPayment {
    StoredPayment(
      id: row["id"], orderID: row["order_id"], caseID: row["case_id"], applicantID: row["applicant_id"],
      departmentCode: row["department_code"], amount: (try? Fen(row["amount"] as Int64)) ?? .zero,
      state: PaymentState(rawValue: row["state"]) ?? .error, code: row["code"], provider: row["provider"],
      providerReference: row["provider_reference"], cashierURL: row["cashier_url"], receiptNumber: row["receipt_number"],
      createdAt: SQLTime.date(row["created_at"] as Int64), updatedAt: SQLTime.date(row["updated_at"] as Int64),
      expiresAt: SQLTime.date(row["expires_at"] as Int64), checkedAt: SQLTime.date(row["provider_checked_at"] as Int64) as Date)
  }

  static func refund(_ row: Row) -> StoredRefund {
    StoredRefund(
      id: row["id"], paymentID: row["payment_id"], amount: (try? Fen(row["amount"] as Int64)) ?? .zero,
      state: RefundState(rawValue: row["state"]) ?? .error, reason: row["reason"], requestedBy: row["requested_by"],
      automatic: row["automatic"], createdAt: SQLTime.date(row["created_at"] as Int64),
      updatedAt: SQLTime.date(row["updated_at"] as Int64))
  }

  /// Payments matching `condition`, with their refunds.
  static func payments(_ db: Database, where condition: String, _ arguments: StatementArguments) throws -> [StoredPayment] {
    var payments = try Row.fetchAll(db.cachedStatement(sql: "SELECT * FROM payments WHERE \(condition)"), arguments: arguments).map(payment)
    for i in payments.indices {
      payments[i].refunds = try Row.fetchAll(
        db.cachedStatement(sql: "SELECT * FROM payment_refunds WHERE payment_id = ? ORDER BY created_at, id"),
        arguments: [payments[i].id]
      ).map(refund)
    }
    return payments
  }

  static func payment(id: String, _ db: Database) throws -> StoredPayment? {
    try payments(db, where: "id = ?", [id]).first
  }

  func createPayment(_ payment: StoredPayment, claim: IdempotencyClaim, audit: AuditEvent, now: Date) async throws
    -> (payment: StoredPayment, created: Bool)
  {
    try await pool.write { db in
      if let existing = try Self.claimed(claim, db) {
        guard let stored = try Self.payment(id: existing, db) else { throw StoreError.notFound("payment \(existing)") }
        return (stored, false)
      }
      guard let order = try Self.order(id: payment.orderID, db) else { throw StoreError.notFound("order \(payment.orderID)") }
      guard order.state == .open else {
        throw StoreError.failedPrecondition("order \(order.id) is \(order.state.rawValue): nothing is due")
      }
      guard order.fees.total == payment.amount else {
        throw StoreError.failedPrecondition(
          "order \(order.id) is due \(order.fees.total.yuan) yuan (\(order.fees.total.value) fen), not "
            + "\(payment.amount.yuan): its fees changed; show the payer the new amount")
      }
      if let live = try String.fetchOne(db.cachedStatement(sql: "SELECT id FROM payments WHERE order_id = ? AND state IN \(Self.unfinished)"), arguments: [order.id])
      {
        throw StoreError.failedPrecondition(
          "payment \(live) of order \(order.id) is unfinished: pay it at its cashier, cancel it, or wait for it to expire")
      }
      try db.cachedStatement(sql: """
          INSERT INTO payments (id, order_id, case_id, applicant_id, department_code, amount, state, code, provider,
            provider_reference, cashier_url, receipt_number, created_at, updated_at, expires_at, provider_checked_at)
          VALUES (?, ?, ?, ?, ?, ?, ?, '', ?, '', '', NULL, ?, ?, ?, ?)
          """).execute(arguments: [
          payment.id, order.id, order.caseID, order.applicantID, order.departmentCode, payment.amount.value,
          PaymentState.created.rawValue, payment.provider, SQLTime.ms(now), SQLTime.ms(now), SQLTime.ms(payment.expiresAt),
          SQLTime.ms(now),
        ])
      try Self.record(claim, resource: payment.id, now: now, db)
      try SQLiteAudit.append(audit, now: now, db)
      guard let stored = try Self.payment(id: payment.id, db) else { throw StoreError.notFound("payment \(payment.id)") }
      return (stored, true)
    }
  }

  func startPayment(id: String, providerReference: String, cashierURL: String, now: Date) async throws -> StoredPayment {
    try await pool.write { db in
      guard var payment = try Self.payment(id: id, db) else { throw StoreError.notFound("payment \(id)") }
      guard case .moved(let to) = PaymentLifecycle.apply(.start, to: payment.state) else { return payment }
      try db.cachedStatement(sql: "UPDATE payments SET state = ?, provider_reference = ?, cashier_url = ?, updated_at = ?, provider_checked_at = ? WHERE id = ?").execute(arguments: [to.rawValue, providerReference, cashierURL, SQLTime.ms(now), SQLTime.ms(now), id])
      payment.state = to
      payment.providerReference = providerReference
      payment.cashierURL = cashierURL
      payment.updatedAt = Self.stored(now)
      payment.checkedAt = Self.stored(now)
      return payment
    }
  }

  func payment(id: String) async throws -> StoredPayment? {
    try await pool.read { db in try Self.payment(id: id, db) }
  }

  func payment(provider: String, reference: String) async throws -> StoredPayment? {
    try await pool.read { db in
      try Self.payments(db, where: "provider = ? AND provider_reference = ?", [provider, reference]).first
    }
  }

  func payments(orderID: String) async throws -> [StoredPayment] {
    try await pool.read { db in
      try Self.payments(db, where: "order_id = ? ORDER BY created_at DESC, id DESC", [orderID])
    }
  }

  func apply(_ change: PaymentChange, now: Date) async throws -> PaymentChangeResult {
    try await pool.write { db in
      guard var payment = try Self.payment(id: change.paymentID, db) else {
        throw StoreError.notFound("payment \(change.paymentID)")
      }
      if let notification = change.notification {
        let seen = try Bool.fetchOne(db.cachedStatement(sql: "SELECT EXISTS (SELECT 1 FROM provider_notifications WHERE provider = ? AND notification_id = ?)"),
          arguments: [notification.provider, notification.id]) ?? false
        if seen { return .duplicateNotification(payment) }
        try db.cachedStatement(sql: "INSERT INTO provider_notifications (provider, notification_id, payment_id, received_at) VALUES (?, ?, ?, ?)").execute(arguments: [notification.provider, notification.id, payment.id, SQLTime.ms(now)])
      }
      guard let event = change.event else { return .applied(payment, transition: .ignored) }
      let transition = PaymentLifecycle.settle(event, from: payment.state)
      guard case .moved(let to) = transition else { return .applied(payment, transition: transition) }
      payment.state = to
      payment.code = PaymentLifecycle.code(after: event, movedTo: to)
      payment.updatedAt = Self.stored(now)
      var receiptNumber: String?
      if to == .success {
        guard let order = try Self.order(id: payment.orderID, db) else { throw StoreError.notFound("order \(payment.orderID)") }
        try Self.post(
          LedgerTransaction.capture(
            id: "cap_\(payment.id)", payment: payment.id, amount: payment.amount, department: payment.departmentCode),
          now: now, db)
        try db.cachedStatement(sql: "UPDATE payment_orders SET state = ?, version = version + 1, updated_at = ? WHERE id = ?").execute(arguments: [FeeOrderState.paid.rawValue, SQLTime.ms(now), order.id])
        if let receipt = change.receipt {
          try db.cachedStatement(sql: "INSERT INTO payment_receipts (number, payment_id, applicant_id, signed, created_at) VALUES (?, ?, ?, ?, ?)").execute(arguments: [receipt.payload.number, payment.id, receipt.applicantID, receipt.signed, SQLTime.ms(now)])
          receiptNumber = receipt.payload.number
        }
        payment.receiptNumber = receiptNumber
        try Self.emit(
          "payment.succeeded", payment: payment, order: order, extra: ["receipt_number": receiptNumber ?? ""], now: now, db)
      } else if to.isTerminal, let order = try Self.order(id: payment.orderID, db) {
        try Self.emit("payment.failed", payment: payment, order: order, extra: [:], now: now, db)
      }
      try db.cachedStatement(sql: "UPDATE payments SET state = ?, code = ?, receipt_number = ?, updated_at = ? WHERE id = ?").execute(arguments: [to.rawValue, payment.code, receiptNumber, SQLTime.ms(now), payment.id])
      if let audit = change.audit { try SQLiteAudit.append(audit, now: now, db) }
      return .applied(payment, transition: transition)
    }
  }

  func unfinishedPayments(createdBefore before: Date, limit: Int) async throws -> [StoredPayment] {
    try await pool.read { db in
      try Self.payments(
        db, where: "state IN \(Self.unfinished) AND created_at < ? ORDER BY created_at LIMIT ?", [SQLTime.ms(before), limit])
    }
  }

  func paymentsToCheck(checkedBy: Date, limit: Int) async throws -> [StoredPayment] {
    try await pool.read { db in
      // `payments_to_check` (v6) serves this: the same state list, ordered by the check time.
      try Self.payments(
        db,
        where: """
          state IN ('started', 'submitted') AND provider_reference <> '' AND provider_checked_at <= ?
          ORDER BY provider_checked_at, id LIMIT ?
          """,
        [SQLTime.ms(checkedBy), limit])
    }
  }

  func recordProviderCheck(paymentID: String, at: Date) async throws {
    try await pool.write { db in
      try db.cachedStatement(sql: "UPDATE payments SET provider_checked_at = ? WHERE id = ?")
        .execute(arguments: [SQLTime.ms(at), paymentID])
    }
  }

  // MARK: - Refunds

  func createRefund(_ refund: StoredRefund, refundableSeen: Fen?, audit: AuditEvent, now: Date) async throws -> StoredRefund {
    try await pool.write { db in
      guard let payment = try Self.payment(id: refund.paymentID, db) else { throw StoreError.notFound("payment \(refund.paymentID)") }
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
      try db.cachedStatement(sql: """
          INSERT INTO payment_refunds (id, payment_id, amount, state, reason, requested_by, automatic, created_at, updated_at)
          VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
          """).execute(arguments: [
          refund.id, refund.paymentID, refund.amount.value, RefundState.submitted.rawValue, refund.reason, refund.requestedBy,
          refund.automatic, SQLTime.ms(now), SQLTime.ms(now),
        ])
      try SQLiteAudit.append(audit, now: now, db)
      guard let stored = try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM payment_refunds WHERE id = ?"), arguments: [refund.id])
      else { throw StoreError.notFound("refund \(refund.id)") }
      return Self.refund(stored)
    }
  }

  func finishRefund(id: String, state: RefundState, now: Date) async throws -> StoredRefund {
    try await pool.write { db in
      guard let row = try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM payment_refunds WHERE id = ?"), arguments: [id]) else {
        throw StoreError.notFound("refund \(id)")
      }
      var refund = Self.refund(row)
      guard let next = refund.state.applying(state) else { return refund }
      guard let payment = try Self.payment(id: refund.paymentID, db),
            let order = try Self.order(id: payment.orderID, db)
      else { throw StoreError.notFound("payment \(refund.paymentID)") }
      try db.cachedStatement(sql: "UPDATE payment_refunds SET state = ?, updated_at = ? WHERE id = ?").execute(arguments: [next.rawValue, SQLTime.ms(now), id])
      refund.state = next
      refund.updatedAt = Self.stored(now)
      if next == .success {
        try Self.post(
          LedgerTransaction.refund(id: refund.id, payment: payment.id, amount: refund.amount, department: payment.departmentCode),
          now: now, db)
        try Self.emit(
          "refund.succeeded", payment: payment, order: order,
          extra: ["refund_id": refund.id, "refund_fen": String(refund.amount.value)], now: now, db)
      }
      return refund
    }
  }

  func pendingRefunds(limit: Int) async throws -> [StoredRefund] {
    try await pool.read { db in
      try Row.fetchAll(db.cachedStatement(sql: "SELECT * FROM payment_refunds WHERE state = 'submitted' ORDER BY created_at LIMIT ?"), arguments: [limit]
      ).map(Self.refund)
    }
  }

  func paymentsOfWithdrawnCases(limit: Int) async throws -> [StoredPayment] {
    try await pool.read { db in
      try Self.payments(
        db,
        where: """
          state = 'success' AND case_id IN (SELECT id FROM cases WHERE state = 'withdrawn')
            AND NOT EXISTS (SELECT 1 FROM payment_refunds r WHERE r.payment_id = payments.id AND r.automatic = 1 AND r.state <> 'error')
            AND amount > (SELECT COALESCE(SUM(r.amount), 0) FROM payment_refunds r
              WHERE r.payment_id = payments.id AND r.state <> 'error')
          ORDER BY created_at LIMIT ?
          """,
        [limit])
    }
  }

  // MARK: - Receipts

  static func receipt(_ row: Row) throws -> StoredReceipt? {
    let signed: String = row["signed"]
    let parts = signed.split(separator: ".")
    guard parts.count == 3, let bytes = Base64URL.decode(String(parts[1])), let payload = ReceiptPayload(canonicalJSON: bytes)
    else { return nil }
    return StoredReceipt(payload: payload, signed: signed, applicantID: row["applicant_id"])
  }

  func receipt(number: String) async throws -> StoredReceipt? {
    try await pool.read { db in
      try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM payment_receipts WHERE number = ?"), arguments: [number]).flatMap(Self.receipt)
    }
  }

  func receipt(paymentID: String) async throws -> StoredReceipt? {
    try await pool.read { db in
      try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM payment_receipts WHERE payment_id = ?"), arguments: [paymentID]).flatMap(Self.receipt)
    }
  }

  // MARK: - Ledger

  static func post(_ transaction: LedgerTransaction, now: Date, _ db: Database) throws {
    for posting in transaction.postings {
      try db.cachedStatement(
        sql: """
          INSERT INTO ledger_postings (transaction_id, payment_id, kind, account, amount, created_at) VALUES (?, ?, ?, ?, ?, ?)
          """
      ).execute(arguments: [
        transaction.id, transaction.paymentID, transaction.kind.rawValue, posting.account.name, posting.amount, SQLTime.ms(now),
      ])
    }
  }

  func ledger() async throws -> [LedgerTransaction] {
    try await pool.read { db in
      var transactions: [LedgerTransaction] = []
      var index: [String: Int] = [:]
      let rows = try Row.fetchCursor(db.cachedStatement(sql: "SELECT transaction_id, payment_id, kind, account, amount FROM ledger_postings ORDER BY id"))
      while let row = try rows.next() {
        let id: String = row["transaction_id"]
        let name: String = row["account"]
        guard let account = LedgerAccount(name: name) else {
          throw StoreError.failedPrecondition("ledger transaction \(id) posts to an unknown account '\(name)': the ledger needs attention")
        }
        let posting = LedgerPosting(account, amount: row["amount"])
        if let i = index[id] {
          transactions[i].postings.append(posting)
        } else {
          index[id] = transactions.count
          transactions.append(LedgerTransaction(
            id: id, paymentID: row["payment_id"], kind: LedgerTransaction.Kind(rawValue: row["kind"]) ?? .capture,
            postings: [posting]))
        }
      }
      return transactions
    }
  }

  func ledgerEntries(from: Date, to: Date) async throws -> [SettlementEntry] {
    try await pool.read { db in
      try Row.fetchAll(
        db,
        sql: """
          SELECT transaction_id, payment_id, kind, SUM(CASE WHEN amount > 0 THEN amount ELSE 0 END) AS moved
          FROM ledger_postings WHERE created_at >= ? AND created_at < ?
          GROUP BY transaction_id, payment_id, kind ORDER BY MIN(id)
          """,
        arguments: [SQLTime.ms(from), SQLTime.ms(to)]
      ).compactMap { row in
        guard let kind = SettlementEntry.Kind(rawValue: row["kind"]), let amount = try? Fen(row["moved"] as Int64) else { return nil }
        let reference: String = kind == .capture ? row["payment_id"] : row["transaction_id"]
        return SettlementEntry(kind: kind, reference: reference, amount: amount)
      }
    }
  }

  func pruneIdempotencyKeys(before: Date) async throws -> Int {
    try await pool.write { db in
      try db.cachedStatement(sql: "DELETE FROM idempotency_keys WHERE created_at < ?").execute(arguments: [SQLTime.ms(before)])
      return db.changesCount
    }
  }

  // MARK: - Events

  /// A `payment.event` outbox row for the notifier (the applicant's message and webhooks).
  static func emit(
    _ type: String, payment: StoredPayment, order: StoredOrder, extra: [String: String], now: Date, _ db: Database
  ) throws {
    var payload: [String: String] = [
      "type": type, "payment_id": payment.id, "order_id": order.id, "case_id": order.caseID,
      "tracking_code": order.trackingCode, "item_name": order.itemName, "applicant_id": order.applicantID,
      "department": order.departmentCode, "amount_fen": String(payment.amount.value), "state": payment.state.rawValue,
      "code": payment.code, "at": String(SQLTime.ms(now)),
    ]
    payload.merge(extra) { $1 }
    try db.cachedStatement(
      sql: "INSERT INTO event_outbox (topic, aggregate_id, payload, created_at) VALUES ('payment.event', ?, ?, ?)"
    ).execute(arguments: [payment.id, try json(payload), SQLTime.ms(now)])
  }
}
