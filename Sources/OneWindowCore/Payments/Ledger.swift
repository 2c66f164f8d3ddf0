#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Accounts of the payments ledger. Amounts are signed: positive is a debit, negative a credit,
/// so a balanced transaction sums to zero.
public enum LedgerAccount: Sendable, Hashable, Codable {
  /// Money held by the payment provider, not yet settled to the treasury account.
  case providerClearing
  /// Non-tax revenue of a department (the fee owner).
  case feeRevenue(department: String)
  /// Money owed back to citizens for accepted refunds.
  case refundsPayable

  /// The stored name: `provider_clearing`, `fee_revenue:<department>`, `refunds_payable`.
  public var name: String {
    switch self {
    case .providerClearing: "provider_clearing"
    case .feeRevenue(let department): "fee_revenue:\(department)"
    case .refundsPayable: "refunds_payable"
    }
  }

  public init?(name: String) {
    switch name {
    case "provider_clearing": self = .providerClearing
    case "refunds_payable": self = .refundsPayable
    default:
      guard name.hasPrefix("fee_revenue:") else { return nil }
      self = .feeRevenue(department: String(name.dropFirst("fee_revenue:".count)))
    }
  }
}

public struct LedgerPosting: Sendable, Equatable, Codable {
  public var account: LedgerAccount
  /// Signed fen: debit > 0, credit < 0.
  public var amount: Int64

  public init(_ account: LedgerAccount, amount: Int64) {
    self.account = account
    self.amount = amount
  }
}

/// One ledger transaction. Build them with `capture` and `refund`, which always balance; the
/// memberwise initialiser exists for loading stored rows, which `LedgerCheck` re-verifies.
public struct LedgerTransaction: Sendable, Equatable, Codable {
  public enum Kind: String, Sendable, Codable { case capture, refund }

  public var id: String
  public var paymentID: String
  public var kind: Kind
  public var postings: [LedgerPosting]

  public init(id: String, paymentID: String, kind: Kind, postings: [LedgerPosting]) {
    self.id = id; self.paymentID = paymentID; self.kind = kind; self.postings = postings
  }

  /// The money moved: the sum of the debits.
  public var amount: Int64 {
    postings.reduce(Int64(0)) { sum, p in p.amount > 0 ? sum.addingReportingOverflow(p.amount).partialValue : sum }
  }

  /// A captured payment: the provider holds the money, recognised as the department's fee revenue.
  public static func capture(id: String, payment: String, amount: Fen, department: String) -> LedgerTransaction {
    LedgerTransaction(id: id, paymentID: payment, kind: .capture, postings: [
      LedgerPosting(.providerClearing, amount: amount.value),
      LedgerPosting(.feeRevenue(department: department), amount: -amount.value),
    ])
  }

  /// An accepted refund: the department's revenue is reversed into a payable to the citizen.
  public static func refund(id: String, payment: String, amount: Fen, department: String) -> LedgerTransaction {
    LedgerTransaction(id: id, paymentID: payment, kind: .refund, postings: [
      LedgerPosting(.feeRevenue(department: department), amount: amount.value),
      LedgerPosting(.refundsPayable, amount: -amount.value),
    ])
  }
}

public enum LedgerViolation: Sendable, Equatable, CustomStringConvertible {
  /// The postings do not sum to zero (or their sum overflows, reported as nil).
  case unbalanced(transaction: String, sum: Int64?)
  case duplicateCapture(payment: String, count: Int)
  case overRefund(payment: String, captured: Int64, refunded: Int64)

  public var description: String {
    switch self {
    case .unbalanced(let t, let sum): "transaction \(t) does not balance (sum \(sum.map(String.init) ?? "overflows"))"
    case .duplicateCapture(let p, let n): "payment \(p) is captured \(n) times"
    case .overRefund(let p, let c, let r): "payment \(p) refunded \(r) fen of \(c) captured"
    }
  }
}

/// Invariants of the ledger, checked over stored transactions (reconciliation, tests).
public enum LedgerCheck {
  public static func verify(_ transactions: [LedgerTransaction]) -> [LedgerViolation] {
    var violations: [LedgerViolation] = []
    var captures: [String: Int] = [:]
    var captured: [String: Int64] = [:]
    var refunded: [String: Int64] = [:]
    var order: [String] = []
    for t in transactions {
      var sum: Int64? = 0
      for p in t.postings {
        guard let s = sum else { break }
        let (next, overflow) = s.addingReportingOverflow(p.amount)
        sum = overflow ? nil : next
      }
      if sum != 0 { violations.append(.unbalanced(transaction: t.id, sum: sum)) }
      if captures[t.paymentID] == nil && refunded[t.paymentID] == nil { order.append(t.paymentID) }
      switch t.kind {
      case .capture:
        captures[t.paymentID, default: 0] += 1
        captured[t.paymentID] = (captured[t.paymentID] ?? 0).addingReportingOverflow(t.amount).partialValue
      case .refund:
        refunded[t.paymentID] = (refunded[t.paymentID] ?? 0).addingReportingOverflow(t.amount).partialValue
      }
    }
    for payment in order {
      if let n = captures[payment], n > 1 { violations.append(.duplicateCapture(payment: payment, count: n)) }
      let c = captured[payment] ?? 0, r = refunded[payment] ?? 0
      if r > c { violations.append(.overRefund(payment: payment, captured: c, refunded: r)) }
    }
    return violations
  }
}
