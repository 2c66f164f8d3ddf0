#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Refund checks after GOV.UK Pay: the client sends the amount it believes is still refundable
/// and the server compares it with the reloaded payment (optimistic concurrency). A retried or
/// racing refund therefore fails with 412 instead of refunding twice.
public enum RefundRules {
  public static func validate(amount: Fen, refundableSeen: Fen, captured: Fen, refunded: Fen) throws {
    guard amount > .zero else { throw ValidationError("amount", "must be more than 0") }
    guard refunded <= captured else {
      throw PreconditionFailed("the payment has refunded \(refunded.yuan) of \(captured.yuan) captured: the ledger needs attention")
    }
    let refundable = try captured.subtracting(refunded)
    guard refundableSeen == refundable else {
      throw PreconditionFailed("the refundable amount is now \(refundable.yuan), not \(refundableSeen.yuan): re-read and retry")
    }
    guard amount <= refundable else {
      throw PreconditionFailed("the refund of \(amount.yuan) is more than the \(refundable.yuan) still refundable")
    }
  }
}

/// A refund's external status (Pay: `submitted → success | error`); finished states stick.
public enum RefundState: String, Sendable, Codable, CaseIterable {
  case submitted
  case success
  case error

  public var isTerminal: Bool { self != .submitted }

  /// The status after an update to `next`; nil when not allowed (finished refunds never change).
  public func applying(_ next: RefundState) -> RefundState? {
    switch (self, next) {
    case (.submitted, .success), (.submitted, .error): next
    default: nil
    }
  }
}
