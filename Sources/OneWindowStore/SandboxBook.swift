import Foundation
import OneWindowCore

/// The sandbox payment provider's own books: the provider is another party, so its records live
/// apart from OneWindow's (they survive a crash of OneWindow and never share its transactions).
/// The embedded default keeps them in their own SQLite file (`SandboxProviderBook`).
public protocol SandboxBook: Sendable {
  /// Opens a cashier session for `paymentID`; opening it again returns the existing session.
  func open(paymentID: String, amount: Fen, now: Date) async throws -> SandboxBookEntry
  /// The entry, with an authorised payment whose decision time has passed decided first.
  func entry(reference: String, now: Date) async throws -> SandboxBookEntry?
  /// The payer submits an account number at the cashier. Only an open session can be paid;
  /// returns the entry and whether this call authorised it (false: it was not open).
  func authorise(reference: String, account: String, outcome: SandboxBookStatus?, decideAt: Date?, now: Date) async throws
    -> (entry: SandboxBookEntry, authorised: Bool)?
  /// Closes an open session (cancel or expiry); an authorised or finished one is left as is.
  func close(reference: String) async throws -> SandboxBookEntry?
  /// Refunds part of a settled payment, never more than was paid minus earlier refunds; a
  /// repeated refund id returns the original.
  func refund(refundID: String, reference: String, amount: Fen, now: Date) async throws -> SandboxRefundEntry
  func refund(id: String) async throws -> SandboxRefundEntry?
  /// What the provider settled in [from, to): captures by payment id, refunds by refund id.
  func settlement(from: Date, to: Date) async throws -> [SandboxSettlementFile.Line]
  /// Releases the books' resources (the process is done with them).
  func shutDown() throws
}

public enum SandboxBookStatus: String, Sendable {
  /// Cashier open, nothing authorised yet.
  case open
  /// The payer authorised; the outcome is decided at `decideAt`, or never (the timeout account).
  case authorised
  case success
  case declined
  case error
  /// Closed unpaid (cancelled or expired).
  case closed
}

public struct SandboxBookEntry: Sendable, Equatable {
  public var reference: String
  public var paymentID: String
  public var amount: Fen
  public var status: SandboxBookStatus
  public var account: String
  /// When an authorised payment's outcome is due; nil: never (timeout account).
  public var decideAt: Date?
  public var outcome: SandboxBookStatus?
  public var settledAt: Date?

  public init(reference: String, paymentID: String, amount: Fen, status: SandboxBookStatus, account: String, decideAt: Date?, outcome: SandboxBookStatus?, settledAt: Date?) {
    self.reference = reference
    self.paymentID = paymentID
    self.amount = amount
    self.status = status
    self.account = account
    self.decideAt = decideAt
    self.outcome = outcome
    self.settledAt = settledAt
  }
}

public struct SandboxRefundEntry: Sendable, Equatable {
  public var refundID: String
  public var reference: String
  public var amount: Fen
  public var status: SandboxBookStatus
  public var settledAt: Date?

  public init(refundID: String, reference: String, amount: Fen, status: SandboxBookStatus, settledAt: Date?) {
    self.refundID = refundID
    self.reference = reference
    self.amount = amount
    self.status = status
    self.settledAt = settledAt
  }
}
