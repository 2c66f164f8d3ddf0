import Crypto
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The content of an electronic receipt (电子票据) for a successful payment. Signed with the
/// platform's issuer key exactly like e-certificates, so anyone holding the published keys can
/// check a receipt offline and an altered amount or payer is detected.
public struct ReceiptPayload: Sendable, Equatable {
  public static let format = "onewindow-receipt/1"

  public struct Item: Sendable, Equatable {
    public var name: String
    public var amount: Fen
    public init(name: String, amount: Fen) { self.name = name; self.amount = amount }
  }

  public var number: String
  public var paymentID: String
  public var caseID: String
  public var trackingCode: String
  public var payerName: String
  public var departmentCode: String
  /// The lines actually charged (waived lines are left out; reduced ones show what was paid).
  public var items: [Item]
  public var total: Fen
  /// Whole seconds, UTC.
  public var paidAt: Date
  public var keyID: String

  public init(
    number: String, paymentID: String, caseID: String, trackingCode: String, payerName: String, departmentCode: String,
    items: [Item], total: Fen, paidAt: Date, keyID: String
  ) {
    self.number = number; self.paymentID = paymentID; self.caseID = caseID; self.trackingCode = trackingCode
    self.payerName = payerName; self.departmentCode = departmentCode; self.items = items; self.total = total
    self.paidAt = Date(timeIntervalSince1970: paidAt.timeIntervalSince1970.rounded(.down)); self.keyID = keyID
  }

  /// Canonical JSON (sorted keys, no whitespace); amounts are integer fen.
  public func canonicalJSON() -> [UInt8] {
    let top: [(String, CanonicalJSON.Value)] = [
      ("format", .string(Self.format)), ("number", .string(number)), ("payment_id", .string(paymentID)),
      ("case_id", .string(caseID)), ("tracking_code", .string(trackingCode)), ("payer_name", .string(payerName)),
      ("department_code", .string(departmentCode)),
      ("items", .array(items.map { .object([("name", .string($0.name)), ("amount_fen", .integer($0.amount.value))]) })),
      ("total_fen", .integer(total.value)), ("paid_at", .integer(Int64(paidAt.timeIntervalSince1970))),
      ("key_id", .string(keyID)),
    ]
    var out: [UInt8] = []
    CanonicalJSON.Value.object(top).write(to: &out)
    return out
  }

  /// Parses a canonical payload; nil when it is not one.
  public init?(canonicalJSON bytes: [UInt8]) {
    guard let w = try? JSONDecoder().decode(Wire.self, from: Data(bytes)), w.format == Self.format,
          let total = try? Fen(w.total_fen)
    else { return nil }
    var items: [Item] = []
    for item in w.items {
      guard let amount = try? Fen(item.amount_fen) else { return nil }
      items.append(Item(name: item.name, amount: amount))
    }
    self.init(
      number: w.number, paymentID: w.payment_id, caseID: w.case_id, trackingCode: w.tracking_code, payerName: w.payer_name,
      departmentCode: w.department_code, items: items, total: total,
      paidAt: Date(timeIntervalSince1970: TimeInterval(w.paid_at)), keyID: w.key_id)
    guard canonicalJSON() == bytes else { return nil }
  }

  private struct Wire: Decodable {
    struct WireItem: Decodable { var name: String; var amount_fen: Int64 }
    var format, number, payment_id, case_id, tracking_code, payer_name, department_code, key_id: String
    var items: [WireItem]
    var total_fen: Int64
    var paid_at: Int64
  }
}

/// `OWR1.<base64url payload>.<base64url Ed25519 signature>`, verified like `SignedCertificate`.
public enum SignedReceipt {
  public static let prefix = "OWR1"

  public static func sign(_ payload: ReceiptPayload, with key: Curve25519.Signing.PrivateKey) throws -> String {
    try SignedDocument.sign(payload.canonicalJSON(), prefix: prefix, with: key)
  }

  public static func verify(_ blob: String, keys: [String: Curve25519.Signing.PublicKey]) throws(SignedCertificate.Failure) -> ReceiptPayload {
    let bytes = try SignedDocument.open(blob, prefix: prefix, keys: keys)
    guard let payload = ReceiptPayload(canonicalJSON: bytes) else { throw .malformed }
    return payload
  }

  /// A new receipt number: `PJ` + year + 12 random Crockford characters.
  public static func makeNumber(year: Int) -> String {
    let alphabet = Array("0123456789ABCDEFGHJKMNPQRSTVWXYZ")
    var rng = SystemRandomNumberGenerator()
    let chars = (0..<12).map { _ in alphabet[Int.random(in: 0..<alphabet.count, using: &rng)] }
    return "PJ\(year)-\(String(chars[0..<4]))-\(String(chars[4..<8]))-\(String(chars[8..<12]))"
  }
}
