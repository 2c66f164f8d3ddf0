import Foundation
import OneWindowCore

/// Payments: the expiry window, how often unfinished payments and refunds are checked with the
/// provider, and the sandbox provider's behaviour.
public struct PaymentSettings: Sendable {
  /// Unpaid payments expire after this (GOV.UK Pay: 90 minutes).
  public var expiryWindow: TimeInterval = PaymentExpiry.defaultWindow
  /// How often the payment job runs (expiry, repair of stuck payments and refunds, automatic
  /// refunds of withdrawn cases, pruning of idempotency keys).
  public var jobInterval: Duration = .seconds(30)
  /// The repair pass asks the provider about an unfinished payment whose cashier was opened
  /// once it has not been checked for this long (the first pass after a start asks about all).
  public var stuckAfter: TimeInterval = 60
  /// `GetPayment` of an unfinished payment not changed or checked for this long asks the
  /// provider — at most once per payment per interval, however many ask at once.
  public var readCheckAfter: TimeInterval = 5
  /// Idempotency keys are kept at least this long (24 h minimum, as promised to clients).
  public var idempotencyRetention: TimeInterval = 48 * 3600
  /// Sandbox only: extra wait before each callback (tests widen the crash window with it).
  public var sandboxCallbackDelay: Duration = .zero

  public init() {}
}
