#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A caseworker's decision to charge less than the catalogued fee for one line. The reason is
/// mandatory because waivers are audited (who, why, under which rule).
public struct FeeAdjustment: Sendable, Equatable, Codable {
  public enum Kind: Sendable, Equatable, Codable {
    case waiver
    case reduction(Fen)
  }

  public var kind: Kind
  public var caseworker: String
  public var reason: String
}

/// One line of a fee order: a frozen copy of a catalogue `FeeItem`, so later catalogue edits
/// never change what a citizen was asked to pay.
public struct FeeOrderLine: Sendable, Equatable, Codable {
  public var name: String
  public var legalBasis: String
  public var original: Fen
  public var adjustment: FeeAdjustment?

  /// What is still due on this line; never negative and never more than `original`.
  public var due: Fen {
    switch adjustment?.kind {
    case nil: original
    case .waiver: .zero
    case .reduction(let amount): (try? original.subtracting(amount)) ?? .zero
    }
  }
}

/// The fees owed for one case, built from the service item's fees at submission time.
public struct FeeOrder: Sendable, Equatable, Codable {
  public private(set) var lines: [FeeOrderLine]
  public let originalTotal: Fen

  public init(fees: [FeeItem]) throws(ValidationError) {
    var lines: [FeeOrderLine] = []
    var total = Fen.zero
    for (i, fee) in fees.enumerated() {
      let amount = try Fen(fee.amountFen, field: "fees[\(i)].amount_fen")
      total = try total.adding(amount, field: "fees")
      lines.append(FeeOrderLine(name: fee.name, legalBasis: fee.legalBasis, original: amount, adjustment: nil))
    }
    self.lines = lines
    self.originalTotal = total
  }

  /// Waives line `index` entirely.
  public mutating func waive(line index: Int, caseworker: String, reason: String) throws(ValidationError) {
    try adjust(index, FeeAdjustment(kind: .waiver, caseworker: caseworker, reason: reason))
  }

  /// Reduces line `index` by `amount`; reducing by more than the line is refused rather than
  /// clamped, because it means the caseworker misread the fee.
  public mutating func reduce(line index: Int, by amount: Fen, caseworker: String, reason: String) throws(ValidationError) {
    guard lines.indices.contains(index) else { throw ValidationError("line", "no fee line \(index)") }
    guard amount <= lines[index].original else {
      throw ValidationError("reduction", "\(amount.yuan) is more than the line's \(lines[index].original.yuan)")
    }
    try adjust(index, FeeAdjustment(kind: .reduction(amount), caseworker: caseworker, reason: reason))
  }

  private mutating func adjust(_ index: Int, _ adjustment: FeeAdjustment) throws(ValidationError) {
    guard lines.indices.contains(index) else { throw ValidationError("line", "no fee line \(index)") }
    var adjustment = adjustment
    adjustment.caseworker = try Check.text(adjustment.caseworker, field: "caseworker", max: 64)
    adjustment.reason = try Check.text(adjustment.reason, field: "reason", max: 500)
    lines[index].adjustment = adjustment
  }

  /// The adjusted total. Each line's `due` is at most its original and the originals' sum was
  /// checked at construction, so this sum cannot overflow or go negative.
  public var total: Fen {
    lines.reduce(Fen.zero) { sum, line in (try? sum.adding(line.due)) ?? sum }
  }

  /// A fully waived (or free) order is settled without a payment.
  public var needsPayment: Bool { total > .zero }
}

/// Whether a case's fees are settled. `paid` and `waived` both let the case complete.
public enum FeeOrderState: String, Sendable, Codable, CaseIterable {
  case open
  case paid
  case waived

  public var isSettled: Bool { self != .open }
}
