import Foundation
import OneWindowCore

/// A payment provider (WeChat Pay, Alipay, UnionPay, the sandbox). Services only talk to this
/// protocol: an adapter maps its provider's API, signature scheme and settlement format onto it,
/// so adding one never touches the payment service, the callbacks or the jobs.
public protocol PaymentProvider: Sendable {
  /// The provider's name in stored payments and in the callback path `/callbacks/<name>`.
  var name: String { get }

  /// Opens a payment at the provider (WeChat's 统一下单). Called again for the same payment id
  /// after a crash, it must return the same session.
  func open(_ request: ProviderPaymentRequest) async throws -> ProviderSession

  /// The provider's current view of a payment: the authority for every success and for expiry.
  func status(reference: String) async throws -> ProviderPaymentStatus

  /// Closes an unpaid payment (WeChat's 关闭订单) and returns its status afterwards: a payment
  /// the payer already authorised cannot be closed and reports what it is.
  func close(reference: String) async throws -> ProviderPaymentStatus

  /// Refunds part of a settled payment; the refund id makes retries safe at the provider.
  func refund(_ request: ProviderRefundRequest) async throws -> ProviderRefundStatus
  func refundStatus(refundID: String) async throws -> ProviderRefundStatus

  /// What the provider settled on a business day (its reconciliation file, parsed).
  func settlement(day: CivilDate) async throws -> [SettlementEntry]

  /// Authenticates and parses a callback (each provider signs its own way). Throws
  /// `CallbackRejection` before looking at the content when the signature or time is wrong.
  func verifyCallback(headers: [String: String], body: [UInt8], now: Date) throws(CallbackRejection) -> ProviderCallback
}

public struct ProviderPaymentRequest: Sendable {
  public var paymentID: String
  public var amount: Fen
  public var description: String
  public var expiresAt: Date
}

public struct ProviderSession: Sendable, Equatable {
  public var reference: String
  /// Where the payer pays.
  public var cashierURL: String
}

public enum ProviderPaymentStatus: Sendable, Equatable {
  /// Not paid yet; `authorised` once the payer has submitted (our `submitted`).
  case pending(authorised: Bool)
  case success
  case failed(PaymentFailure)
  case error
  /// Closed unpaid (cancelled or expired at the provider).
  case closed
  /// The provider has no such payment.
  case unknown

  /// The lifecycle event this status stands for; nil when it changes nothing.
  public var event: PaymentEvent? {
    switch self {
    case .pending(let authorised): authorised ? .submit : nil
    case .success: .succeed
    case .failed(let failure): .fail(failure)
    case .error: .providerError
    case .closed, .unknown: nil
    }
  }
}

public struct ProviderRefundRequest: Sendable {
  public var refundID: String
  public var paymentID: String
  public var reference: String
  public var amount: Fen
}

public enum ProviderRefundStatus: Sendable, Equatable {
  case pending
  case success
  case error
  case unknown
}

/// A provider's asynchronous notice about a payment, after its signature was checked.
public struct ProviderCallback: Sendable, Equatable {
  /// Unique per notice: a repeated id is a replay and changes nothing.
  public var notificationID: String
  /// Our payment id as the provider echoes it.
  public var paymentID: String
  public var reference: String
  public var status: ProviderPaymentStatus
}

/// Why a callback is refused before anything is read from it (HTTP 401/400).
public struct CallbackRejection: Error, Sendable, CustomStringConvertible {
  public var status: Int
  public var description: String
  public init(status: Int, _ description: String) { self.status = status; self.description = description }
}
