#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Crypto

/// What the sandbox payment provider does for an account number, so integrators can exercise
/// every branch (including a provider that never answers) without real money.
public enum SandboxOutcome: Sendable, Equatable {
  case success
  case declined
  /// The provider never answers: the payment stays `submitted` until expiry queries it.
  case timeout
  case providerError
  /// Succeeds, but only after a delay, to exercise polling and late callbacks.
  case successAfterDelay(seconds: Int)
}

/// The documented sandbox test accounts. Anything else is declined, so a typo never "pays".
public enum SandboxAccounts {
  public static let success = "6222000000000001"
  public static let declined = "6222000000000002"
  public static let timeout = "6222000000000003"
  public static let providerError = "6222000000000004"
  public static let delayedSuccess = "6222000000000005"
  public static let delaySeconds = 3

  public static func outcome(forAccount account: String) -> SandboxOutcome {
    switch account.trimmingWhitespace() {
    case success: .success
    case declined: .declined
    case timeout: .timeout
    case providerError: .providerError
    case delayedSuccess: .successAfterDelay(seconds: delaySeconds)
    default: .declined
    }
  }
}

/// Signatures on sandbox provider callbacks: hex HMAC-SHA256(secret, "<timestamp>\n<nonce>\n<body>"),
/// sent as separate timestamp, nonce and signature headers. The nonce lets a receiver reject
/// replays within the tolerance window; the timestamp bounds that window.
public enum SandboxCallbackSignature {
  public static let defaultTolerance: TimeInterval = 300
  static let maxNonceLength = 128

  public enum Failure: Error, Equatable, Sendable, CustomStringConvertible {
    case malformed(String)
    case stale(seconds: Int64)
    case badSignature

    public var description: String {
      switch self {
      case .malformed(let what): "malformed callback signature headers: \(what)"
      case .stale(let s): "the callback is \(s) s away from now: too old or from the future (replay?)"
      case .badSignature: "the signature does not match the body with this secret"
      }
    }
  }

  public static func sign(body: [UInt8], secret: String, timestamp: Int64, nonce: String) -> String {
    let key = SymmetricKey(data: Array(secret.utf8))
    let message = Array("\(timestamp)\n\(nonce)\n".utf8) + body
    return Hex.encode(Array(HMAC<SHA256>.authenticationCode(for: message, using: key)))
  }

  /// Checks the headers as received (strings, untrusted); throws rather than trapping on any input.
  public static func verify(
    timestamp: String, nonce: String, signature: String, body: [UInt8], secret: String,
    now: Date, tolerance: TimeInterval = defaultTolerance
  ) throws(Failure) {
    // Any real timestamp is far inside ±2⁴⁰ s; larger ones would overflow the subtraction.
    guard let t = Int64(timestamp), (-(1 << 40)...(1 << 40)).contains(t) else { throw .malformed("timestamp") }
    guard !nonce.isEmpty, nonce.utf8.count <= maxNonceLength,
      !nonce.unicodeScalars.contains(where: { $0.properties.generalCategory == .control })
    else { throw .malformed("nonce") }
    let given = Array(signature.lowercased().utf8)
    guard given.count == 64, given.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }) else {
      throw .malformed("signature")
    }
    let seconds = now.timeIntervalSince1970
    guard seconds.isFinite, abs(seconds) < Double(1 << 50) else { throw .malformed("clock") }
    let skew = Int64(seconds.rounded()) - t
    guard Double(abs(skew)) <= tolerance else { throw .stale(seconds: skew) }
    let expected = Array(sign(body: body, secret: secret, timestamp: t, nonce: nonce).utf8)
    guard WebhookSignature.constantTimeEqual(given, expected) else { throw .badSignature }
  }
}
