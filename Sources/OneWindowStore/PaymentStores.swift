import Foundation
import OneWindowCore

// MARK: - Payments

/// A case's fee order as stored: who owes, for which case, and the frozen fee lines.
public struct StoredOrder: Sendable, Equatable {
  public var id: String
  public var caseID: String
  public var applicantID: String
  public var payerName: String
  public var departmentCode: String
  public var trackingCode: String
  public var itemName: String
  public var fees: FeeOrder
  public var state: FeeOrderState
  public var version: Int64
  public var createdAt: Date
  public var updatedAt: Date

  public init(
    id: String, caseID: String, applicantID: String, payerName: String, departmentCode: String, trackingCode: String,
    itemName: String, fees: FeeOrder, state: FeeOrderState, version: Int64, createdAt: Date, updatedAt: Date
  ) {
    self.id = id; self.caseID = caseID; self.applicantID = applicantID; self.payerName = payerName
    self.departmentCode = departmentCode; self.trackingCode = trackingCode; self.itemName = itemName; self.fees = fees
    self.state = state; self.version = version; self.createdAt = createdAt; self.updatedAt = updatedAt
  }
}

public struct StoredRefund: Sendable, Equatable {
  public var id: String
  public var paymentID: String
  public var amount: Fen
  public var state: RefundState
  public var reason: String
  /// Nil for an automatic refund.
  public var requestedBy: String?
  public var automatic: Bool
  public var createdAt: Date
  public var updatedAt: Date

  public init(
    id: String, paymentID: String, amount: Fen, state: RefundState, reason: String, requestedBy: String?, automatic: Bool,
    createdAt: Date, updatedAt: Date
  ) {
    self.id = id; self.paymentID = paymentID; self.amount = amount; self.state = state; self.reason = reason
    self.requestedBy = requestedBy; self.automatic = automatic; self.createdAt = createdAt; self.updatedAt = updatedAt
  }
}

public struct StoredPayment: Sendable, Equatable {
  public var id: String
  public var orderID: String
  public var caseID: String
  public var applicantID: String
  public var departmentCode: String
  public var amount: Fen
  public var state: PaymentState
  /// P00x0 of a finished unpaid payment, else empty.
  public var code: String
  public var provider: String
  public var providerReference: String
  public var cashierURL: String
  public var receiptNumber: String?
  public var createdAt: Date
  public var updatedAt: Date
  public var expiresAt: Date
  /// When the provider was last asked about it (opening its session counts; its creation until
  /// then). The repair pass works through unfinished payments least recently checked first.
  public var checkedAt: Date
  /// Filled when read: oldest first.
  public var refunds: [StoredRefund]

  public init(
    id: String, orderID: String, caseID: String, applicantID: String, departmentCode: String, amount: Fen, state: PaymentState,
    code: String = "", provider: String, providerReference: String = "", cashierURL: String = "", receiptNumber: String? = nil,
    createdAt: Date, updatedAt: Date, expiresAt: Date, checkedAt: Date? = nil, refunds: [StoredRefund] = []
  ) {
    self.id = id; self.orderID = orderID; self.caseID = caseID; self.applicantID = applicantID
    self.departmentCode = departmentCode; self.amount = amount; self.state = state; self.code = code; self.provider = provider
    self.providerReference = providerReference; self.cashierURL = cashierURL; self.receiptNumber = receiptNumber
    self.createdAt = createdAt; self.updatedAt = updatedAt; self.expiresAt = expiresAt; self.checkedAt = checkedAt ?? createdAt
    self.refunds = refunds
  }

  /// Refunds that completed.
  public var refunded: Fen { sum(refunds.filter { $0.state == .success }) }
  /// Refunds that completed or are still with the provider: both count against what is left.
  public var refundedOrPending: Fen { sum(refunds.filter { $0.state != .error }) }
  /// Captured minus completed and pending refunds; zero unless the payment succeeded.
  public var refundable: Fen {
    guard state == .success else { return .zero }
    return (try? amount.subtracting(refundedOrPending)) ?? .zero
  }

  private func sum(_ refunds: [StoredRefund]) -> Fen {
    refunds.reduce(Fen.zero) { total, r in (try? total.adding(r.amount)) ?? total }
  }
}

public struct StoredReceipt: Sendable, Equatable {
  public var payload: ReceiptPayload
  public var signed: String
  public var applicantID: String

  public init(payload: ReceiptPayload, signed: String, applicantID: String) {
    self.payload = payload; self.signed = signed; self.applicantID = applicantID
  }
}

/// An idempotency key as claimed by one request: the stored fingerprint of its parameters
/// decides between "replay the original" and "this key was used for something else".
public struct IdempotencyClaim: Sendable {
  /// What the key creates ("order", "payment"): keys of different scopes never collide.
  public var scope: String
  public var ownerID: String
  public var key: String
  public var parameters: [String: String]

  public init(scope: String, ownerID: String, key: String, parameters: [String: String]) {
    self.scope = scope; self.ownerID = ownerID; self.key = key; self.parameters = parameters
  }

  public var fingerprint: String { IdempotencyFingerprint.of(parameters) }
}

/// A change of a payment's state, with what it carries when it succeeds.
public struct PaymentChange: Sendable {
  public var paymentID: String
  /// Nil only records `notification` (a callback that changes nothing, so its replay is a no-op).
  public var event: PaymentEvent?
  /// The provider callback this change comes from: recorded in the same transaction, and a
  /// notification id already recorded makes the change a no-op (replay protection).
  public var notification: (provider: String, id: String)?
  /// Written only if the change moves the payment to `success`.
  public var receipt: StoredReceipt?
  public var audit: AuditEvent?

  public init(
    paymentID: String, event: PaymentEvent?, notification: (provider: String, id: String)? = nil, receipt: StoredReceipt? = nil,
    audit: AuditEvent? = nil
  ) {
    self.paymentID = paymentID; self.event = event; self.notification = notification; self.receipt = receipt; self.audit = audit
  }
}

public enum PaymentChangeResult: Sendable, Equatable {
  /// The change was applied (`transition` says whether it moved the state).
  case applied(StoredPayment, transition: PaymentTransition)
  /// The provider notification was seen before: nothing was written.
  case duplicateNotification(StoredPayment)

  public var payment: StoredPayment {
    switch self {
    case .applied(let p, _), .duplicateNotification(let p): p
    }
  }
}

public protocol PaymentStore: Sendable {
  /// Stores a new order with its idempotency key and audit entry. A replayed key returns the
  /// stored order; the key used with other parameters, or another order of the same case, is
  /// `StoreError.conflict`.
  func createOrder(_ order: StoredOrder, claim: IdempotencyClaim, audit: AuditEvent, now: Date) async throws -> StoredOrder
  func order(id: String) async throws -> StoredOrder?
  func order(caseID: String) async throws -> StoredOrder?
  /// Newest first, after the (created_at, id) of the previous page; nil filters match all.
  func orders(applicantID: String?, department: String?, state: FeeOrderState?, limit: Int, after: (Date, String)?)
    async throws -> [StoredOrder]
  /// Saves waived or reduced fees if the order is still at `expectedVersion` (else
  /// `versionConflict`), still open and has no unfinished payment (else `failedPrecondition`).
  func adjust(_ order: StoredOrder, expectedVersion: Int64, audit: AuditEvent, now: Date) async throws -> StoredOrder

  /// Stores a new payment (state `created`) with its idempotency key. A replayed key returns
  /// the stored payment with `created` false. `failedPrecondition` when the order is not open,
  /// its due amount is not the payment's, or it has an unfinished payment.
  func createPayment(_ payment: StoredPayment, claim: IdempotencyClaim, audit: AuditEvent, now: Date) async throws
    -> (payment: StoredPayment, created: Bool)
  /// Records the provider's session for a `created` payment and moves it to `started` (its
  /// `checkedAt` becomes `now`).
  func startPayment(id: String, providerReference: String, cashierURL: String, now: Date) async throws -> StoredPayment
  func payment(id: String) async throws -> StoredPayment?
  func payment(provider: String, reference: String) async throws -> StoredPayment?
  /// The order's payments, newest first.
  func payments(orderID: String) async throws -> [StoredPayment]
  /// Applies `change` through `PaymentLifecycle` in one transaction. Moving to `success` also
  /// writes the capture to the ledger, marks the order paid, stores the receipt and queues the
  /// `payment.succeeded` event; moving to an unpaid end queues `payment.failed`.
  func apply(_ change: PaymentChange, now: Date) async throws -> PaymentChangeResult
  /// Unfinished payments created before `before` (expiry), oldest first.
  func unfinishedPayments(createdBefore before: Date, limit: Int) async throws -> [StoredPayment]
  /// Unfinished payments whose cashier was opened (`started`, `submitted`) and that were last
  /// checked with the provider at or before `checkedBy`, least recently checked first (repair:
  /// a backlog larger than `limit` is worked through over several passes, none starves).
  func paymentsToCheck(checkedBy: Date, limit: Int) async throws -> [StoredPayment]
  /// Records that the provider was asked about the payment at `at` (its `checkedAt`).
  func recordProviderCheck(paymentID: String, at: Date) async throws

  /// Stores a `submitted` refund after checking it in the same transaction against the
  /// payment's refundable amount (`RefundRules`; `refundableSeen` nil for automatic refunds).
  func createRefund(_ refund: StoredRefund, refundableSeen: Fen?, audit: AuditEvent, now: Date) async throws -> StoredRefund
  /// Finishes a `submitted` refund; `success` writes the refund to the ledger and queues
  /// `refund.succeeded`. A finished refund is returned unchanged.
  func finishRefund(id: String, state: RefundState, now: Date) async throws -> StoredRefund
  /// Refunds still with the provider, oldest first.
  func pendingRefunds(limit: Int) async throws -> [StoredRefund]
  /// Successful payments of withdrawn cases with money left and no automatic refund yet (one
  /// that ended in `error` does not count, so it is tried again).
  func paymentsOfWithdrawnCases(limit: Int) async throws -> [StoredPayment]

  func receipt(number: String) async throws -> StoredReceipt?
  func receipt(paymentID: String) async throws -> StoredReceipt?

  /// Every ledger transaction, in posting order (for `LedgerCheck`).
  func ledger() async throws -> [LedgerTransaction]
  /// The ledger's movements posted in [from, to), as settlement entries.
  func ledgerEntries(from: Date, to: Date) async throws -> [SettlementEntry]
  /// Deletes idempotency keys older than `before`; returns how many.
  func pruneIdempotencyKeys(before: Date) async throws -> Int
}
