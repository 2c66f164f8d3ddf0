import Foundation
import Logging
import Metrics
import OneWindowCore
import OneWindowStore

/// The one place payments change state, shared by the RPCs, the provider callbacks and the
/// background jobs: it asks the provider, builds the receipt and hands one `PaymentChange` to
/// the store, which applies it through `PaymentLifecycle` in a single transaction.
final class PaymentDesk: Sendable {
  let store: any Store
  let provider: any PaymentProvider
  let issuer: IssuerKeys
  let settings: PaymentSettings
  let clock: any WallClock
  let logger: Logger
  /// Called after a change that queued a notification event.
  let eventsQueued: @Sendable () -> Void

  init(
    store: any Store, provider: any PaymentProvider, issuer: IssuerKeys, settings: PaymentSettings, clock: any WallClock,
    logger: Logger, eventsQueued: @escaping @Sendable () -> Void
  ) {
    self.store = store
    self.provider = provider
    self.issuer = issuer
    self.settings = settings
    self.clock = clock
    self.logger = logger
    self.eventsQueued = eventsQueued
  }

  // MARK: - Applying provider outcomes

  /// Applies what the provider says about `payment`. A success always comes with its signed
  /// receipt, written in the same transaction as the capture.
  @discardableResult
  func apply(
    _ status: ProviderPaymentStatus, to payment: StoredPayment, notification: (provider: String, id: String)? = nil
  ) async throws -> PaymentChangeResult? {
    guard let event = status.event else {
      // Nothing to apply; a callback carrying no change is still recorded so a replay is a no-op.
      guard let notification else { return nil }
      return try await store.payments.apply(
        PaymentChange(paymentID: payment.id, event: nil, notification: notification), now: clock.now())
    }
    let now = clock.now()
    var receipt: StoredReceipt?
    if event == .succeed, !payment.state.isTerminal {
      receipt = try await makeReceipt(for: payment, paidAt: now)
    }
    let result = try await store.payments.apply(
      PaymentChange(paymentID: payment.id, event: event, notification: notification, receipt: receipt), now: now)
    if case .applied(let stored, .moved(let to)) = result {
      Counter(label: "onewindow_payment_transitions_total", dimensions: [("to", to.rawValue)]).increment()
      if to.isTerminal { eventsQueued() }
      logger.info("payment state changed", metadata: ["payment": "\(stored.id)", "state": "\(to.rawValue)", "code": "\(stored.code)"])
    } else if case .applied(let stored, .refused) = result {
      logger.warning("provider status does not fit the payment's state", metadata: [
        "payment": "\(stored.id)", "state": "\(stored.state.rawValue)", "provider_status": "\(status)",
      ])
    }
    return result
  }

  /// Handles an authenticated provider callback: a success is believed only after the provider
  /// confirms it when queried (a forged or mistaken success never captures money).
  func handle(_ callback: ProviderCallback) async throws -> PaymentChangeResult? {
    guard let payment = try await store.payments.payment(provider: provider.name, reference: callback.reference),
          payment.id == callback.paymentID
    else { return nil }
    var status = callback.status
    if status == .success {
      status = try await provider.status(reference: payment.providerReference)
      if status != .success {
        logger.warning("callback reported success but the provider does not confirm it", metadata: [
          "payment": "\(payment.id)", "provider_status": "\(status)",
        ])
      }
    }
    return try await apply(status, to: payment, notification: (provider.name, callback.notificationID))
  }

  private func makeReceipt(for payment: StoredPayment, paidAt: Date) async throws -> StoredReceipt? {
    guard let order = try await store.payments.order(id: payment.orderID) else { return nil }
    let items = order.fees.lines.filter { $0.due > .zero }.map { ReceiptPayload.Item(name: $0.name, amount: $0.due) }
    let year = SettlementDay.of(paidAt).components.year
    let payload = ReceiptPayload(
      number: SignedReceipt.makeNumber(year: year), paymentID: payment.id, caseID: order.caseID,
      trackingCode: order.trackingCode, payerName: order.payerName, departmentCode: order.departmentCode, items: items,
      total: payment.amount, paidAt: paidAt, keyID: issuer.keyID)
    return StoredReceipt(payload: payload, signed: try SignedReceipt.sign(payload, with: issuer.signingKey), applicantID: order.applicantID)
  }

  // MARK: - Refunds

  /// Records a refund, asks the provider for it, and finishes it with the provider's answer.
  /// A crash between the steps leaves a `submitted` refund that `repairRefunds` finishes.
  func refund(
    _ payment: StoredPayment, amount: Fen, refundableSeen: Fen?, reason: String, actor: Principal?, automatic: Bool
  ) async throws -> StoredRefund {
    let now = clock.now()
    let refund = StoredRefund(
      id: "rfd_" + ULID.make(at: now), paymentID: payment.id, amount: amount, state: .submitted, reason: reason,
      requestedBy: actor?.accountID, automatic: automatic, createdAt: now, updatedAt: now)
    let audit = actor.map { AuditEvent($0, action: "payment.refund", targetType: "payment", targetID: payment.id, subjectID: payment.applicantID, reason: "\(amount.yuan): \(reason)") }
      ?? AuditEvent(
        actorID: nil, actorRole: "system", actorDepartment: nil, action: "payment.refund", targetType: "payment",
        targetID: payment.id, subjectID: payment.applicantID, reason: "\(amount.yuan): \(reason)")
    let stored = try await store.payments.createRefund(refund, refundableSeen: refundableSeen, audit: audit, now: now)
    return try await finish(stored, payment: payment)
  }

  private func finish(_ refund: StoredRefund, payment: StoredPayment) async throws -> StoredRefund {
    let answer = try await provider.refund(ProviderRefundRequest(
      refundID: refund.id, paymentID: payment.id, reference: payment.providerReference, amount: refund.amount))
    let state: RefundState
    switch answer {
    case .success: state = .success
    case .error: state = .error
    case .pending, .unknown: return refund
    }
    let finished = try await store.payments.finishRefund(id: refund.id, state: state, now: clock.now())
    Counter(label: "onewindow_refunds_total", dimensions: [("state", finished.state.rawValue)]).increment()
    if finished.state == .success { eventsQueued() }
    return finished
  }

  // MARK: - Background passes

  /// Expires unfinished payments past their window (querying the provider first for those the
  /// payer authorised) and repairs payments stuck in `submitted` — e.g. the server crashed after
  /// the provider took the money — from the provider's answer. `stuckAfter` nil checks every
  /// submitted payment (the first pass after a start).
  @discardableResult
  func expireAndRepair(stuckAfter: TimeInterval?) async throws -> Int {
    let now = clock.now()
    let expiry = PaymentExpiry(window: settings.expiryWindow)
    var changed = 0
    let candidates = try await store.payments.unfinishedPayments(createdBefore: now, limit: 500)
    for payment in candidates {
      let decision = expiry.decide(state: payment.state, createdAt: payment.createdAt, now: now)
      let stuck = payment.state == .submitted && now.timeIntervalSince(payment.updatedAt) >= (stuckAfter ?? 0)
      do {
        switch decision {
        case .expire:
          // Close it at the provider first: a payer still on the cashier must not pay a
          // payment we are about to expire. If they already did, their answer wins.
          let status = payment.providerReference.isEmpty ? .closed : try await provider.close(reference: payment.providerReference)
          if status.event != nil {
            // Paid, refused — or authorised after all (a lost callback): then it is `submitted`
            // now, and the next pass queries the provider before expiring it.
            if try await apply(status, to: payment) != nil { changed += 1 }
          } else {
            _ = try await store.payments.apply(PaymentChange(paymentID: payment.id, event: .expire), now: now)
            eventsQueued()
            changed += 1
          }
        case .queryProviderFirst:
          let status = try await provider.status(reference: payment.providerReference)
          switch status {
          case .pending, .closed, .unknown:
            _ = try await store.payments.apply(PaymentChange(paymentID: payment.id, event: .expire), now: now)
            eventsQueued()
          default:
            try await apply(status, to: payment)
          }
          changed += 1
        case .notYet:
          guard stuck, !payment.providerReference.isEmpty else { continue }
          let status = try await provider.status(reference: payment.providerReference)
          if case .pending = status { continue }
          if try await apply(status, to: payment) != nil { changed += 1 }
        }
      } catch {
        logger.warning("payment expiry/repair failed; retrying on the next pass", metadata: [
          "payment": "\(payment.id)", "error": "\(String(reflecting: type(of: error)))",
        ])
      }
    }
    return changed
  }

  /// Finishes refunds left `submitted` (asks the provider again) and refunds the payments of
  /// withdrawn cases in full.
  @discardableResult
  func repairRefunds() async throws -> Int {
    var done = 0
    for refund in try await store.payments.pendingRefunds(limit: 200) {
      guard let payment = try await store.payments.payment(id: refund.paymentID) else { continue }
      do {
        if try await finish(refund, payment: payment).state != .submitted { done += 1 }
      } catch {
        logger.warning("refund repair failed", metadata: ["refund": "\(refund.id)", "error": "\(String(reflecting: type(of: error)))"])
      }
    }
    for payment in try await store.payments.paymentsOfWithdrawnCases(limit: 200) where payment.refundable > .zero {
      do {
        _ = try await refund(
          payment, amount: payment.refundable, refundableSeen: nil, reason: "申请已撤回，自动退款", actor: nil, automatic: true)
        done += 1
      } catch {
        logger.warning("automatic refund failed", metadata: ["payment": "\(payment.id)", "error": "\(String(reflecting: type(of: error)))"])
      }
    }
    return done
  }
}
