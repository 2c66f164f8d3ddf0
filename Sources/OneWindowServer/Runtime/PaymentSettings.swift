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
  /// A `submitted` payment unchanged this long is checked with the provider.
  public var stuckAfter: TimeInterval = 60
  /// Idempotency keys are kept at least this long (24 h minimum, as promised to clients).
  public var idempotencyRetention: TimeInterval = 48 * 3600
  /// Sandbox only: extra wait before each callback (tests widen the crash window with it).
  public var sandboxCallbackDelay: Duration = .zero

  public init() {}
}
