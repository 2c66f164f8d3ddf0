#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Crypto

/// Signatures on webhook requests to third-party platforms, Stripe-style: the header
/// `OneWindow-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`. Receivers
/// recompute the HMAC over the raw body and reject timestamps more than 300 s away from their
/// clock (replays). During a secret rotation the header carries one `v1` per active secret.
public enum WebhookSignature {
  public static let headerName = "OneWindow-Signature"
  public static let defaultTolerance: TimeInterval = 300

  public static func sign(body: [UInt8], secrets: [String], timestamp: Int64) -> String {
    var parts = ["t=\(timestamp)"]
    for secret in secrets { parts.append("v1=\(hmac(body: body, secret: secret, timestamp: timestamp))") }
    return parts.joined(separator: ",")
  }

  static func hmac(body: [UInt8], secret: String, timestamp: Int64) -> String {
    let key = SymmetricKey(data: Array(secret.utf8))
    let message = Array("\(timestamp).".utf8) + body
    return Hex.encode(Array(HMAC<SHA256>.authenticationCode(for: message, using: key)))
  }

  public enum Failure: Error, Equatable, Sendable, CustomStringConvertible {
    case malformedHeader
    case timestampOutOfTolerance(seconds: Int64)
    case noMatchingSignature

    public var description: String {
      switch self {
      case .malformedHeader: "the signature header is not t=<seconds>,v1=<hex>"
      case .timestampOutOfTolerance(let s): "the signature is \(s) s away from now: too old or from the future (replay?)"
      case .noMatchingSignature: "no v1 signature matches the body with this secret"
      }
    }
  }

  /// What a receiver does: parse the header, check the timestamp, compare in constant time.
  public static func verify(
    header: String, body: [UInt8], secret: String, now: Date, tolerance: TimeInterval = defaultTolerance
  ) throws(Failure) {
    var timestamp: Int64?
    var signatures: [String] = []
    for item in header.split(separator: ",") {
      let pair = item.split(separator: "=", maxSplits: 1).map { String($0).trimmingWhitespace() }
      guard pair.count == 2 else { throw .malformedHeader }
      switch pair[0] {
      case "t": timestamp = Int64(pair[1])
      case "v1": signatures.append(pair[1].lowercased())
      default: continue  // other schemes are ignored, as Stripe's receivers do
      }
    }
    // Any real timestamp is far inside ±2⁴⁰ s; larger ones would overflow the subtraction.
    guard let timestamp, (-(1 << 40)...(1 << 40)).contains(timestamp), !signatures.isEmpty else { throw .malformedHeader }
    let skew = Int64(now.timeIntervalSince1970.rounded()) - timestamp
    guard Double(abs(skew)) <= tolerance else { throw .timestampOutOfTolerance(seconds: skew) }
    let expected = Array(hmac(body: body, secret: secret, timestamp: timestamp).utf8)
    guard signatures.contains(where: { constantTimeEqual(Array($0.utf8), expected) }) else { throw .noMatchingSignature }
  }

  static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    var difference: UInt8 = 0
    for i in a.indices { difference |= a[i] ^ b[i] }
    return difference == 0
  }
}
