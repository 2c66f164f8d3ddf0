import Foundation
import Logging
import Metrics
import OneWindowCore
import OneWindowStore
import Synchronization

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
  /// The provider checks `GetPayment` started in the last `readCheckAfter`, by payment id.
  private let readChecks = Mutex<[String: (at: Date, task: Task<StoredPayment, any Error>)]>([:])

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

  // MARK: - Asking the provider

  /// Asks the provider about an unfinished payment whose cashier was opened and applies its
  /// answer as the lost callback would have: an outcome, or "the payer authorised" (a lost
  /// "processing"). Still open, closed or unknown changes nothing here (expiry deals with it).
  /// The check is recorded first, so a provider failing on one payment does not keep the
  /// repair pass from the others.
  @discardableResult
  func check(_ payment: StoredPayment) async throws -> StoredPayment {
    try await store.payments.recordProviderCheck(paymentID: payment.id, at: clock.now())
    let status = try await provider.status(reference: payment.providerReference)
    switch status {
    case .pending(authorised: true) where payment.state == .started: break
    case .pending, .closed, .unknown: return payment
    case .success, .failed, .error: break
    }
    return try await apply(status, to: payment)?.payment ?? payment
  }

  private enum ReadCheck {
    case fresh
    case lead(Task<StoredPayment, any Error>)
    case join(Task<StoredPayment, any Error>)
  }

  /// What `GetPayment` shows: the stored payment or, when it is unfinished and neither changed
  /// nor checked for `readCheckAfter`, the provider's answer — a payer back from the cashier
  /// sees the truth even if the callback was lost. One check per payment per interval: callers
  /// arriving meanwhile wait for it and read its result (50 polling clients, one query). If the
  /// provider fails, the stored payment is shown.
  func current(_ payment: StoredPayment) async throws -> StoredPayment {
    guard payment.state == .started || payment.state == .submitted, !payment.providerReference.isEmpty else { return payment }
    let now = clock.now()
    let interval = settings.readCheckAfter
    let step = readChecks.withLock { checks -> ReadCheck in
      if let recent = checks[payment.id], now.timeIntervalSince(recent.at) < interval { return .join(recent.task) }
      guard now.timeIntervalSince(max(payment.updatedAt, payment.checkedAt)) >= interval else { return .fresh }
      checks = checks.filter { now.timeIntervalSince($0.value.at) < interval }
      // Not the caller's task: a caller giving up must not cancel the check the others wait for.
      let task = Task { try await self.check(payment) }
      checks[payment.id] = (now, task)
      return .lead(task)
    }
    switch step {
    case .fresh:
      return payment
    case .lead(let task):
      do { return try await task.value } catch {
        logger.warning("provider check on read failed; showing the stored payment", metadata: [
          "payment": "\(payment.id)", "error": "\(String(reflecting: type(of: error)))",
        ])
        return payment
      }
    case .join(let task):
      // The leader logs a failure; whatever it changed is in the store now.
      _ = try? await task.value
      return try await store.payments.payment(id: payment.id) ?? payment
    }
  }

  // MARK: - Background passes

  /// Expires unfinished payments past their window, then repairs the ones whose outcome we
  /// missed — a lost callback, or the provider took the money while the server was down —
  /// from the provider's answer: every payment whose cashier was opened (`started` too: an
  /// immediate success sends no "processing" first) and that was not checked for `stuckAfter`,
  /// least recently checked first, so a backlog cannot starve any payment. `stuckAfter` nil
  /// checks them all (the first pass after a start).
  @discardableResult
  func expireAndRepair(stuckAfter: TimeInterval?) async throws -> Int {
    let now = clock.now()
    let expiry = PaymentExpiry(window: settings.expiryWindow)
    var changed = 0
    var expired = Set<String>()
    for payment in try await store.payments.unfinishedPayments(createdBefore: now.addingTimeInterval(-settings.expiryWindow), limit: 500) {
      let decision = expiry.decide(state: payment.state, createdAt: payment.createdAt, now: now)
      guard decision != .notYet else { continue }
      expired.insert(payment.id)
      do {
        if try await expire(payment, askFirst: decision == .queryProviderFirst, now: now) { changed += 1 }
      } catch {
        logger.warning("payment expiry failed; retrying on the next pass", metadata: [
          "payment": "\(payment.id)", "error": "\(String(reflecting: type(of: error)))",
        ])
      }
    }
    let checkedBy = stuckAfter.map { now.addingTimeInterval(-$0) } ?? now
    for payment in try await store.payments.paymentsToCheck(checkedBy: checkedBy, limit: 500) where !expired.contains(payment.id) {
      do {
        if try await check(payment).state != payment.state { changed += 1 }
      } catch {
        logger.warning("payment repair failed; retrying on the next pass", metadata: [
          "payment": "\(payment.id)", "error": "\(String(reflecting: type(of: error)))",
        ])
      }
    }
    return changed
  }

  /// Expires a payment past its window unless the provider says otherwise. One with a session
  /// is asked about first: money the provider took is captured (never closed at the provider),
  /// a decline or error is recorded, and an authorised `started` one becomes `submitted` (the
  /// next pass asks again). Only a session still unpaid is closed — so a payer still on the
  /// cashier cannot pay it — and if the payer paid in that instant, the close reports it.
  private func expire(_ payment: StoredPayment, askFirst: Bool, now: Date) async throws -> Bool {
    var status = ProviderPaymentStatus.closed
    if askFirst, !payment.providerReference.isEmpty {
      try await store.payments.recordProviderCheck(paymentID: payment.id, at: now)
      status = try await provider.status(reference: payment.providerReference)
      if status == .pending(authorised: false) { status = try await provider.close(reference: payment.providerReference) }
    }
    switch status {
    case .success, .failed, .error:
      return try await apply(status, to: payment) != nil
    case .pending(authorised: true) where payment.state == .started:
      return try await apply(status, to: payment) != nil
    case .pending, .closed, .unknown:
      _ = try await store.payments.apply(PaymentChange(paymentID: payment.id, event: .expire), now: now)
      eventsQueued()
      return true
    }
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
