#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The external state of a 政务缴费 payment (after GOV.UK Pay's `ExternalChargeState`): a small,
/// stable enum clients can rely on, whatever richer internal graph a provider adapter keeps.
/// `success`, `failed`, `cancelled` and `error` are finished and stick.
public enum PaymentState: String, Sendable, Codable, CaseIterable {
  case created
  /// The citizen is on the cashier page.
  case started
  /// Authorisation is in flight and its outcome unknown: must be reconciled with the provider.
  case submitted
  case success
  case failed
  case cancelled
  case error

  public var isTerminal: Bool {
    switch self {
    case .success, .failed, .cancelled, .error: true
    case .created, .started, .submitted: false
    }
  }

  /// The public error code of a finished, unpaid state that carries no `PaymentFailure`
  /// (Pay's P0040 "cancelled by the service", P0050 "provider returned an error").
  public var code: String? {
    switch self {
    case .cancelled: "P0040"
    case .error: "P0050"
    default: nil
    }
  }
}

/// Why a payment is `failed`; each reason has its own public code, as in GOV.UK Pay.
public enum PaymentFailure: String, Sendable, Codable, CaseIterable {
  case declined
  case timedOut = "timedout"
  case cancelledByUser = "cancelled"

  public var code: String {
    switch self {
    case .declined: "P0010"
    case .timedOut: "P0020"
    case .cancelledByUser: "P0030"
    }
  }
}

/// Named events on the edges of the payment graph, so every transition says what happened.
public enum PaymentEvent: Sendable, Hashable {
  case start
  case submit
  case succeed
  case fail(PaymentFailure)
  /// Cancelled by the service (a caseworker or the system), not the citizen.
  case cancel
  case providerError
  /// The expiry window passed (see `PaymentExpiry`); the same as `fail(.timedOut)`.
  case expire
}

/// What applying an event did. Late events on finished payments are normal (provider retries,
/// racing callbacks) and are `ignored`; an event that can never happen in the current state is
/// `refused` so the caller can log it as a bug or an attack.
public enum PaymentTransition: Sendable, Equatable {
  case moved(to: PaymentState)
  case ignored
  case refused
}

/// The single transition table for payments.
public enum PaymentLifecycle {
  /// The state after `event` in `state`; nil when the edge does not exist. Finished states have
  /// no outgoing edges: a correction is a separate audited action, never an event.
  public static func next(from state: PaymentState, on event: PaymentEvent) -> PaymentState? {
    switch (state, event) {
    case (.created, .start): .started
    case (.created, .cancel): .cancelled
    case (.created, .fail(.cancelledByUser)), (.created, .fail(.timedOut)), (.created, .expire): .failed

    case (.started, .submit): .submitted
    case (.started, .cancel): .cancelled
    case (.started, .fail(.cancelledByUser)), (.started, .fail(.timedOut)), (.started, .expire): .failed
    case (.started, .providerError): .error

    // Mid-authorisation the citizen can no longer cancel; the provider decides. Expiry here is
    // only allowed after querying the provider (`PaymentExpiry`).
    case (.submitted, .succeed): .success
    case (.submitted, .fail(.declined)), (.submitted, .fail(.timedOut)), (.submitted, .expire): .failed
    case (.submitted, .providerError): .error

    default: nil
    }
  }

  /// Applies an event as reported by the provider. A provider's outcome implies the steps
  /// before it (the payer opened the cashier and authorised), so a success reported while the
  /// payment still shows `started` moves through `submitted`; anything else is `apply`.
  public static func settle(_ event: PaymentEvent, from state: PaymentState) -> PaymentTransition {
    let isOutcome: Bool = switch event {
    case .succeed, .fail(.declined), .providerError, .submit: true
    default: false
    }
    guard isOutcome, !state.isTerminal else { return apply(event, to: state) }
    var through = state
    if through == .created { through = .started }
    if through == .started && event != .submit { through = .submitted }
    if through == .submitted && event == .submit { return state == .submitted ? .ignored : .moved(to: .submitted) }
    guard let to = next(from: through, on: event) else { return .refused }
    return .moved(to: to)
  }

  /// The code a payment carries after `event` moved it `to` a state: the failure's own code, a
  /// timeout for an expiry, else the state's code (empty while nothing went wrong).
  public static func code(after event: PaymentEvent, movedTo to: PaymentState) -> String {
    switch event {
    case .fail(let failure): failure.code
    case .expire: PaymentFailure.timedOut.code
    default: to.code ?? ""
    }
  }

  /// `next`, but telling a late event on a finished payment (ignored) from an impossible one.
  public static func apply(_ event: PaymentEvent, to state: PaymentState) -> PaymentTransition {
    if state.isTerminal { return .ignored }
    guard let to = next(from: state, on: event) else { return .refused }
    return .moved(to: to)
  }
}

/// Expiry of unpaid payments (Pay: `CHARGE_EXPIRY_WINDOW_SECONDS` = 5400 s). A payment whose
/// cashier was opened (`started` or `submitted`) may already have been paid at the provider —
/// an immediate success sends no "processing" first, so a lost callback leaves it `started` —
/// so it is never expired blind: the provider is queried first and its answer wins.
public struct PaymentExpiry: Sendable, Equatable {
  public static let defaultWindow: TimeInterval = 90 * 60
  public var window: TimeInterval

  public init(window: TimeInterval = PaymentExpiry.defaultWindow) { self.window = window }

  public enum Decision: Sendable, Equatable {
    /// Apply `PaymentEvent.expire` (→ failed, P0020): no provider session was opened.
    case expire
    /// Ask the provider for the real outcome before doing anything.
    case queryProviderFirst
    /// Not past the window yet, or already finished (finished payments never expire).
    case notYet
  }

  public func decide(state: PaymentState, createdAt: Date, now: Date) -> Decision {
    guard !state.isTerminal, now.timeIntervalSince(createdAt) >= window else { return .notYet }
    return state == .created ? .expire : .queryProviderFirst
  }
}
