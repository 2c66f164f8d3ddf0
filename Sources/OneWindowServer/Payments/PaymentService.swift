import Foundation
import GRPCCore
import Logging
import OneWindowAPI
import OneWindowCore
import OneWindowStore

/// 在线缴费: fee orders, payments through the provider's cashier, refunds, receipts and the
/// ledger checks. Decode → authorize (role, then ownership or department) → desk/store → encode.
struct PaymentService: Onewindow_V1_PaymentService.ServiceProtocol {
  let store: any Store
  let desk: PaymentDesk
  let issuer: IssuerKeys
  let settings: PaymentSettings
  let clock: any WallClock
  let logger: Logger

  static let orderScope = "order"
  static let paymentScope = "payment"

  // MARK: - Orders

  /// An order is the case's, whoever creates it; a replayed key returns it.
  func createOrder(
    request: ServerRequest<Onewindow_V1_CreateOrderRequest>, context: ServerContext
  ) async throws -> ServerResponse<Onewindow_V1_FeeOrder> {
    let p = try RequestContext.requirePrincipal()
    let key = try Self.idempotencyKey(request.message.idempotencyKey, request.metadata)
    // The applicant, or staff of the fee-collecting department (to waive fees of a case whose
    // applicant never opened the order).
    guard let record = try await store.cases.caseRecord(idOrCode: request.message.caseID),
          record.applicantID == p.accountID || p.role == .admin
            || (p.role == .caseworker && p.departmentCode == record.item.departmentCode)
    else { throw StoreError.notFound("case '\(request.message.caseID)'") }
    guard !record.item.fees.isEmpty, record.item.totalFeeFen > 0 else {
      throw PreconditionFailed("「\(record.item.name)」 charges no fee: there is nothing to pay")
    }
    guard ![.withdrawn, .rejected, .denied].contains(record.state) else {
      throw PreconditionFailed("case \(record.trackingCode) is \(record.state.rawValue): its fees are no longer payable")
    }
    let now = clock.now()
    let fees = try FeeOrder(fees: record.item.fees)
    let order = StoredOrder(
      id: ULID.make(at: now), caseID: record.id, applicantID: record.applicantID, payerName: record.applicantName,
      departmentCode: record.item.departmentCode, trackingCode: record.trackingCode, itemName: record.item.name, fees: fees,
      state: fees.needsPayment ? .open : .waived, version: 1, createdAt: now, updatedAt: now)
    let stored = try await store.payments.createOrder(
      order, claim: IdempotencyClaim(scope: Self.orderScope, ownerID: p.accountID, key: key, parameters: ["case_id": record.id]),
      audit: AuditEvent(p, action: "payment.order_create", targetType: "case", targetID: record.id, subjectID: record.applicantID),
      now: now)
    return ServerResponse(message: try await message(stored))
  }

  func getOrder(request: ServerRequest<Onewindow_V1_GetOrderRequest>, context: ServerContext) async throws -> ServerResponse<Onewindow_V1_FeeOrder> {
    let p = try RequestContext.requirePrincipal()
    let order: StoredOrder?
    switch request.message.selector {
    case .orderID(let id): order = try await store.payments.order(id: try Self.id(id, field: "order_id"))
    case .caseID(let id):
      let record = try await store.cases.caseRecord(idOrCode: id)
      order = try await record.asyncFlatMap { try await store.payments.order(caseID: $0.id) }
    case nil: throw ValidationError("selector", "give order_id or case_id")
    }
    guard let order, Self.canSee(order, p) else { throw StoreError.notFound("fee order") }
    return ServerResponse(message: try await message(order))
  }

  func listOrders(
    request: ServerRequest<Onewindow_V1_ListOrdersRequest>, context: ServerContext
  ) async throws -> ServerResponse<Onewindow_V1_ListOrdersResponse> {
    let p = try RequestContext.requirePrincipal()
    let r = request.message
    let limit = try Paging.pageSize(r.pageSize, default: 50, max: 200)
    var after: (Date, String)?
    if !r.pageToken.isEmpty {
      let body = try Paging.token(r.pageToken, prefix: "orders")
      let parts = body.split(separator: "/", maxSplits: 1)
      guard parts.count == 2, let ms = Int64(parts[0]) else { throw Paging.badToken }
      after = (Date(timeIntervalSince1970: Double(ms) / 1000), String(parts[1]))
    }
    let state: FeeOrderState? = switch r.state {
    case .unspecified: nil
    case .open: .open
    case .paid: .paid
    case .waived: .waived
    case .UNRECOGNIZED: throw ValidationError("state", "is not a known order state")
    }
    let orders: [StoredOrder]
    switch p.role {
    case .citizen, .enterprise:
      orders = try await store.payments.orders(applicantID: p.accountID, department: nil, state: state, limit: limit + 1, after: after)
    case .caseworker:
      guard let department = p.departmentCode else { throw PermissionDenied("a caseworker without a department sees no orders") }
      orders = try await store.payments.orders(applicantID: nil, department: department, state: state, limit: limit + 1, after: after)
    case .admin:
      orders = try await store.payments.orders(applicantID: nil, department: nil, state: state, limit: limit + 1, after: after)
    }
    var response = Onewindow_V1_ListOrdersResponse()
    for order in orders.prefix(limit) { response.orders.append(try await message(order, withPayments: false)) }
    if orders.count > limit, let last = orders.prefix(limit).last {
      response.nextPageToken = Paging.makeToken("orders", "\(Int64((last.createdAt.timeIntervalSince1970 * 1000).rounded()))/\(last.id)")
    }
    return ServerResponse(message: response)
  }

  func adjustFee(request: ServerRequest<Onewindow_V1_AdjustFeeRequest>, context: ServerContext) async throws -> ServerResponse<Onewindow_V1_FeeOrder> {
    let p = try RequestContext.require([.caseworker])
    let r = request.message
    guard var order = try await store.payments.order(id: try Self.id(r.orderID, field: "order_id")), Self.canSee(order, p) else {
      throw StoreError.notFound("fee order '\(r.orderID)'")
    }
    let line = Int(r.line)
    let action: String
    switch r.adjustment {
    case .waive(true):
      try order.fees.waive(line: line, caseworker: p.accountID, reason: r.reason)
      action = "payment.fee_waive"
    case .reduceByFen(let amount):
      try order.fees.reduce(line: line, by: try Fen(amount, field: "reduce_by_fen"), caseworker: p.accountID, reason: r.reason)
      action = "payment.fee_reduce"
    case .waive(false), nil:
      throw ValidationError("adjustment", "give waive: true or reduce_by_fen")
    }
    let stored = try await store.payments.adjust(
      order, expectedVersion: r.expectedVersion == 0 ? order.version : r.expectedVersion,
      audit: AuditEvent(p, action: action, targetType: "fee_order", targetID: order.id, subjectID: order.applicantID, reason: r.reason),
      now: clock.now())
    return ServerResponse(message: try await message(stored))
  }

  // MARK: - Payments

  func createPayment(
    request: ServerRequest<Onewindow_V1_CreatePaymentRequest>, context: ServerContext
  ) async throws -> ServerResponse<Onewindow_V1_Payment> {
    let p = try RequestContext.require([.citizen, .enterprise])
    let r = request.message
    let key = try Self.idempotencyKey(r.idempotencyKey, request.metadata)
    let orderID = try Self.id(r.orderID, field: "order_id")
    let amount = try Fen(r.amountFen, field: "amount_fen")
    let claim = IdempotencyClaim(
      scope: Self.paymentScope, ownerID: p.accountID, key: key,
      parameters: ["order_id": orderID, "amount_fen": String(amount.value)])
    guard let order = try await store.payments.order(id: orderID), order.applicantID == p.accountID else {
      throw StoreError.notFound("fee order '\(orderID)'")
    }
    let now = clock.now()
    let new = StoredPayment(
      id: "pay_" + ULID.make(at: now), orderID: order.id, caseID: order.caseID, applicantID: order.applicantID,
      departmentCode: order.departmentCode, amount: amount, state: .created, provider: desk.provider.name, createdAt: now,
      updatedAt: now, expiresAt: now.addingTimeInterval(settings.expiryWindow))
    let (payment, created) = try await store.payments.createPayment(
      new, claim: claim,
      audit: AuditEvent(p, action: "payment.create", targetType: "fee_order", targetID: order.id, subjectID: p.accountID,
                        reason: amount.yuan),
      now: now)
    // A replay of a payment whose provider session was never opened (a crash in between)
    // opens it now; the provider returns the same session for the same payment id.
    guard created || (payment.state == .created && payment.providerReference.isEmpty) else {
      return ServerResponse(message: Self.message(payment))
    }
    let session = try await desk.provider.open(ProviderPaymentRequest(
      paymentID: payment.id, amount: payment.amount, description: "\(order.itemName) \(order.trackingCode)",
      expiresAt: payment.expiresAt))
    let started = try await store.payments.startPayment(
      id: payment.id, providerReference: session.reference, cashierURL: session.cashierURL, now: clock.now())
    return ServerResponse(message: Self.message(started))
  }

  /// An unfinished payment is brought up to date with the provider first (`PaymentDesk.current`).
  func getPayment(request: ServerRequest<Onewindow_V1_GetPaymentRequest>, context: ServerContext) async throws -> ServerResponse<Onewindow_V1_Payment> {
    let p = try RequestContext.requirePrincipal()
    let payment = try await visiblePayment(request.message.paymentID, p)
    return ServerResponse(message: Self.message(try await desk.current(payment)))
  }

  func cancelPayment(
    request: ServerRequest<Onewindow_V1_CancelPaymentRequest>, context: ServerContext
  ) async throws -> ServerResponse<Onewindow_V1_Payment> {
    let p = try RequestContext.require([.citizen, .enterprise])
    let payment = try await visiblePayment(request.message.paymentID, p)
    guard payment.applicantID == p.accountID else { throw PermissionDenied("only the payer can cancel a payment") }
    guard !payment.state.isTerminal else { return ServerResponse(message: Self.message(payment)) }
    guard payment.state != .submitted else {
      throw PreconditionFailed("payment \(payment.id) was authorised at the provider: wait for its outcome")
    }
    // Close it at the provider first; if the payer paid in the meantime, that outcome wins.
    let status = payment.providerReference.isEmpty ? .closed : try await desk.provider.close(reference: payment.providerReference)
    if let event = status.event {
      let result = try await desk.apply(status, to: payment)
      guard event == .submit else { return ServerResponse(message: Self.message(result?.payment ?? payment)) }
      throw PreconditionFailed("payment \(payment.id) was authorised at the provider: wait for its outcome")
    }
    let result = try await store.payments.apply(
      PaymentChange(
        paymentID: payment.id, event: .fail(.cancelledByUser),
        audit: AuditEvent(p, action: "payment.cancel", targetType: "payment", targetID: payment.id, subjectID: p.accountID)),
      now: clock.now())
    desk.eventsQueued()
    return ServerResponse(message: Self.message(result.payment))
  }

  func refund(request: ServerRequest<Onewindow_V1_RefundRequest>, context: ServerContext) async throws -> ServerResponse<Onewindow_V1_RefundInfo> {
    let p = try RequestContext.require([.caseworker, .admin])
    let r = request.message
    let payment = try await visiblePayment(r.paymentID, p)
    let amount = try Fen(r.amountFen, field: "amount_fen")
    let seen = try Fen(r.refundableSeenFen, field: "refundable_seen_fen")
    let reason = try Check.text(r.reason, field: "reason", max: 500)
    let refund = try await desk.refund(payment, amount: amount, refundableSeen: seen, reason: reason, actor: p, automatic: false)
    return ServerResponse(message: Self.message(refund))
  }

  // MARK: - Receipts

  func getReceipt(request: ServerRequest<Onewindow_V1_GetReceiptRequest>, context: ServerContext) async throws -> ServerResponse<Onewindow_V1_Receipt> {
    let p = try RequestContext.requirePrincipal()
    let receipt: StoredReceipt?
    switch request.message.selector {
    case .number(let n): receipt = try await store.payments.receipt(number: try Self.id(n.trimmingWhitespace(), field: "number"))
    case .paymentID(let id): receipt = try await store.payments.receipt(paymentID: try Self.id(id, field: "payment_id"))
    case nil: throw ValidationError("selector", "give number or payment_id")
    }
    guard let receipt else { throw StoreError.notFound("receipt") }
    if receipt.applicantID != p.accountID {
      guard let order = try await store.payments.order(caseID: receipt.payload.caseID), Self.canSee(order, p) else {
        throw StoreError.notFound("receipt")
      }
    }
    return ServerResponse(message: Self.message(receipt.payload, signed: receipt.signed))
  }

  func verifyReceipt(
    request: ServerRequest<Onewindow_V1_VerifyReceiptRequest>, context: ServerContext
  ) async throws -> ServerResponse<Onewindow_V1_VerifyReceiptResponse> {
    let blob = request.message.signed
    guard !blob.isEmpty, blob.utf8.count <= 16 * 1024 else { throw ValidationError("signed", "give the OWR1.… text of a receipt (at most 16 KiB)") }
    var response = Onewindow_V1_VerifyReceiptResponse()
    do {
      let payload = try SignedReceipt.verify(blob, keys: issuer.published)
      response.valid = true
      response.receipt = Self.message(payload, signed: blob.trimmingWhitespace())
    } catch {
      response.valid = false
      response.problem = switch error {
      case .malformed: "not a OneWindow signed receipt (expected OWR1.<payload>.<signature>)"
      default: error.description.replacingOccurrences(of: "certificate", with: "receipt")
      }
    }
    return ServerResponse(message: response)
  }

  // MARK: - Ledger

  func reconcile(
    request: ServerRequest<Onewindow_V1_ReconcileRequest>, context: ServerContext
  ) async throws -> ServerResponse<Onewindow_V1_ReconcileResponse> {
    let p = try RequestContext.require([.admin])
    guard let day = CivilDate(request.message.date) else { throw ValidationError("date", "must be YYYY-MM-DD") }
    let outcome = try await PaymentReconciler(store: store.payments, provider: desk.provider).reconcile(day: day)
    try await store.audit.append(
      AuditEvent(p, action: "payment.reconcile", targetType: "settlement_day", targetID: day.description,
                 reason: "\(outcome.report.mismatches.count) mismatches"),
      now: clock.now())
    return ServerResponse(message: outcome.message(day: day))
  }

  func checkLedger(
    request: ServerRequest<Onewindow_V1_CheckLedgerRequest>, context: ServerContext
  ) async throws -> ServerResponse<Onewindow_V1_CheckLedgerResponse> {
    _ = try RequestContext.require([.admin])
    let result = try await PaymentReconciler(store: store.payments, provider: desk.provider).checkLedger()
    return ServerResponse(message: .with {
      $0.transactions = Int32(clamping: result.transactions)
      $0.violations = result.violations.map(\.description)
      $0.balances = result.balances
    })
  }

  // MARK: - Helpers

  /// Applicants see their own orders; caseworkers their department's; administrators all.
  static func canSee(_ order: StoredOrder, _ p: Principal) -> Bool {
    switch p.role {
    case .citizen, .enterprise: order.applicantID == p.accountID
    case .caseworker: p.departmentCode == order.departmentCode
    case .admin: true
    }
  }

  func visiblePayment(_ raw: String, _ p: Principal) async throws -> StoredPayment {
    let id = try Self.id(raw, field: "payment_id")
    guard let payment = try await store.payments.payment(id: id) else { throw StoreError.notFound("payment '\(id)'") }
    let visible: Bool = switch p.role {
    case .citizen, .enterprise: payment.applicantID == p.accountID
    case .caseworker: p.departmentCode == payment.departmentCode
    case .admin: true
    }
    guard visible else { throw StoreError.notFound("payment '\(id)'") }
    return payment
  }

  /// The key from the request field or, failing that, the `idempotency-key` metadata.
  static func idempotencyKey(_ field: String, _ metadata: Metadata) throws(ValidationError) -> String {
    var raw = field
    if raw.isEmpty, let header = metadata[stringValues: "idempotency-key"].first(where: { _ in true }) { raw = header }
    guard (1...64).contains(raw.count), raw.unicodeScalars.allSatisfy({ $0.isASCII && $0.properties.generalCategory != .control })
    else {
      throw ValidationError(
        "idempotency_key", "is required (field or idempotency-key metadata): 1–64 printable ASCII characters, the same on every retry")
    }
    return raw
  }

  static func id(_ raw: String, field: String) throws(ValidationError) -> String {
    guard (1...64).contains(raw.utf8.count) else { throw ValidationError(field, "is required") }
    return raw
  }

  func message(_ order: StoredOrder, withPayments: Bool = true) async throws -> Onewindow_V1_FeeOrder {
    var m = Self.message(order)
    if withPayments { m.payments = try await store.payments.payments(orderID: order.id).map(Self.message) }
    return m
  }

  static func message(_ o: StoredOrder) -> Onewindow_V1_FeeOrder {
    .with {
      $0.id = o.id
      $0.caseID = o.caseID
      $0.trackingCode = o.trackingCode
      $0.applicantID = o.applicantID
      $0.departmentCode = o.departmentCode
      $0.itemName = o.itemName
      $0.lines = o.fees.lines.enumerated().map { i, line in
        .with {
          $0.index = Int32(i)
          $0.name = line.name
          $0.legalBasis = line.legalBasis
          $0.originalFen = line.original.value
          $0.dueFen = line.due.value
          if let a = line.adjustment {
            $0.adjustment = .with {
              switch a.kind {
              case .waiver: $0.kind = "waiver"
              case .reduction(let by):
                $0.kind = "reduction"
                $0.reducedByFen = by.value
              }
              $0.caseworkerID = a.caseworker
              $0.reason = a.reason
            }
          }
        }
      }
      $0.originalTotalFen = o.fees.originalTotal.value
      $0.totalFen = o.fees.total.value
      $0.state = switch o.state {
      case .open: .open
      case .paid: .paid
      case .waived: .waived
      }
      $0.version = o.version
      $0.createdAt = .init(o.createdAt)
      $0.updatedAt = .init(o.updatedAt)
    }
  }

  static func message(_ p: StoredPayment) -> Onewindow_V1_Payment {
    .with {
      $0.id = p.id
      $0.orderID = p.orderID
      $0.caseID = p.caseID
      $0.amountFen = p.amount.value
      $0.state = switch p.state {
      case .created: .created
      case .started: .started
      case .submitted: .submitted
      case .success: .success
      case .failed: .failed
      case .cancelled: .cancelled
      case .error: .error
      }
      $0.code = p.code
      $0.provider = p.provider
      $0.providerReference = p.providerReference
      $0.cashierURL = p.cashierURL
      $0.createdAt = .init(p.createdAt)
      $0.updatedAt = .init(p.updatedAt)
      $0.expiresAt = .init(p.expiresAt)
      $0.refundedFen = p.refunded.value
      $0.refundableFen = p.refundable.value
      $0.refunds = p.refunds.map(message)
      $0.receiptNumber = p.receiptNumber ?? ""
    }
  }

  static func message(_ r: StoredRefund) -> Onewindow_V1_RefundInfo {
    .with {
      $0.id = r.id
      $0.paymentID = r.paymentID
      $0.amountFen = r.amount.value
      $0.state = switch r.state {
      case .submitted: .submitted
      case .success: .success
      case .error: .error
      }
      $0.reason = r.reason
      $0.requestedBy = r.requestedBy ?? ""
      $0.automatic = r.automatic
      $0.createdAt = .init(r.createdAt)
      $0.updatedAt = .init(r.updatedAt)
    }
  }

  static func message(_ r: ReceiptPayload, signed: String) -> Onewindow_V1_Receipt {
    .with {
      $0.number = r.number
      $0.paymentID = r.paymentID
      $0.caseID = r.caseID
      $0.trackingCode = r.trackingCode
      $0.payerName = r.payerName
      $0.departmentCode = r.departmentCode
      $0.items = r.items.map { item in .with { $0.name = item.name; $0.amountFen = item.amount.value } }
      $0.totalFen = r.total.value
      $0.paidAt = .init(r.paidAt)
      $0.keyID = r.keyID
      $0.signed = signed
    }
  }
}

extension Optional {
  fileprivate func asyncFlatMap<U>(_ transform: (Wrapped) async throws -> U?) async rethrows -> U? {
    guard let value = self else { return nil }
    return try await transform(value)
  }
}
