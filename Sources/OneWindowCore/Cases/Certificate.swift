#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Crypto

/// What an item issues on approval (电子证照): its type, validity and which form fields appear
/// on it. Items without a template issue no certificate.
public struct CertificateTemplate: Sendable, Equatable, Codable {
  /// E.g. "食品经营许可证".
  public var type: String
  /// 0: no expiry.
  public var validityYears: Int
  /// Form field names copied onto the certificate.
  public var fields: [String]

  public init(type: String, validityYears: Int, fields: [String]) {
    self.type = type
    self.validityYears = validityYears
    self.fields = fields
  }
}

/// The signed content of an electronic certificate. Its canonical encoding is what Ed25519
/// signs (see `canonicalJSON`); docs/cases.md specifies it for third parties.
public struct CertificatePayload: Sendable, Equatable {
  public static let format = "onewindow-cert/1"

  public var number: String
  public var type: String
  public var holderName: String
  /// The holder's ID or credit code, masked (the certificate is shown to third parties).
  public var holderIDMasked: String
  public var issuerDepartmentCode: String
  public var issuerDepartmentName: String
  public var issuedOn: CivilDate
  public var expiresOn: CivilDate?
  public var fields: [String: String]
  public var trackingCode: String
  public var keyID: String

  public init(
    number: String, type: String, holderName: String, holderIDMasked: String, issuerDepartmentCode: String,
    issuerDepartmentName: String, issuedOn: CivilDate, expiresOn: CivilDate?, fields: [String: String],
    trackingCode: String, keyID: String
  ) {
    self.number = number; self.type = type; self.holderName = holderName; self.holderIDMasked = holderIDMasked
    self.issuerDepartmentCode = issuerDepartmentCode; self.issuerDepartmentName = issuerDepartmentName
    self.issuedOn = issuedOn; self.expiresOn = expiresOn; self.fields = fields; self.trackingCode = trackingCode
    self.keyID = keyID
  }

  /// JSON with object keys sorted by their UTF-8 bytes, no whitespace, strings escaped only
  /// where JSON requires (`"`, `\`, and U+0000–U+001F as `\u00XX`), an absent expiry omitted.
  public func canonicalJSON() -> [UInt8] {
    var top: [(String, CanonicalJSON.Value)] = [
      ("format", .string(Self.format)), ("number", .string(number)), ("type", .string(type)),
      ("holder_name", .string(holderName)), ("holder_id", .string(holderIDMasked)),
      ("issuer_department_code", .string(issuerDepartmentCode)), ("issuer_department_name", .string(issuerDepartmentName)),
      ("issued_on", .string(issuedOn.description)), ("tracking_code", .string(trackingCode)), ("key_id", .string(keyID)),
      ("fields", .object(fields.map { ($0.key, .string($0.value)) })),
    ]
    if let expiresOn { top.append(("expires_on", .string(expiresOn.description))) }
    var out: [UInt8] = []
    CanonicalJSON.Value.object(top).write(to: &out)
    return out
  }

  /// Parses a canonical payload; nil when it is not one (the signature check comes first, so
  /// this only sees bytes the issuer signed).
  public init?(canonicalJSON bytes: [UInt8]) {
    guard let w = try? JSONDecoder().decode(Wire.self, from: Data(bytes)), w.format == Self.format,
          let issued = CivilDate(w.issued_on)
    else { return nil }
    let expires = w.expires_on.flatMap(CivilDate.init)
    if w.expires_on != nil && expires == nil { return nil }
    self.init(
      number: w.number, type: w.type, holderName: w.holder_name, holderIDMasked: w.holder_id,
      issuerDepartmentCode: w.issuer_department_code, issuerDepartmentName: w.issuer_department_name, issuedOn: issued,
      expiresOn: expires, fields: w.fields, trackingCode: w.tracking_code, keyID: w.key_id)
    // Only the canonical encoding is accepted: re-encoding must give the same bytes.
    guard canonicalJSON() == bytes else { return nil }
  }

  private struct Wire: Decodable {
    var format, number, type, holder_name, holder_id, issuer_department_code, issuer_department_name: String
    var issued_on, tracking_code, key_id: String
    var expires_on: String?
    var fields: [String: String]
  }

}

/// The signed form shared by certificates (`OWC1`) and receipts (`OWR1`):
/// `<prefix>.<base64url canonical JSON>.<base64url Ed25519 signature>`, signed by the issuer key
/// the payload's `key_id` names.
enum SignedDocument {
  static func sign(_ bytes: [UInt8], prefix: String, with key: Curve25519.Signing.PrivateKey) throws -> String {
    let signature = try key.signature(for: bytes)
    return "\(prefix).\(Base64URL.encode(bytes)).\(Base64URL.encode(Array(signature)))"
  }

  /// The payload bytes, once the signature checks out with the key they name.
  static func open(
    _ blob: String, prefix: String, keys: [String: Curve25519.Signing.PublicKey]
  ) throws(SignedCertificate.Failure) -> [UInt8] {
    let parts = blob.trimmingWhitespace().split(separator: ".", omittingEmptySubsequences: false)
    guard parts.count == 3, parts[0] == prefix, let bytes = Base64URL.decode(String(parts[1])),
          let signature = Base64URL.decode(String(parts[2])), signature.count == 64
    else { throw .malformed }
    // The key id is read before the signature is checked only to pick the key.
    guard let keyID = (try? JSONDecoder().decode(KeyOnly.self, from: Data(bytes)))?.key_id else { throw .malformed }
    guard let key = keys[keyID] else { throw .unknownKey(keyID) }
    guard key.isValidSignature(signature, for: bytes) else { throw .badSignature }
    return bytes
  }

  private struct KeyOnly: Decodable { var key_id: String }
}

/// The minimal canonical JSON writer signed documents need (certificates, receipts): strings,
/// integers, arrays and objects with sorted keys, no whitespace.
enum CanonicalJSON {
  indirect enum Value {
    case string(String)
    case integer(Int64)
    case array([Value])
    case object([(String, Value)])

    func write(to out: inout [UInt8]) {
      switch self {
      case .string(let s): Self.writeString(s, to: &out)
      case .integer(let n): out += Array(String(n).utf8)
      case .array(let values):
        out.append(UInt8(ascii: "["))
        for (i, value) in values.enumerated() {
          if i > 0 { out.append(UInt8(ascii: ",")) }
          value.write(to: &out)
        }
        out.append(UInt8(ascii: "]"))
      case .object(let members):
        out.append(UInt8(ascii: "{"))
        for (i, member) in members.sorted(by: { Array($0.0.utf8).lexicographicallyPrecedes(Array($1.0.utf8)) }).enumerated() {
          if i > 0 { out.append(UInt8(ascii: ",")) }
          Self.writeString(member.0, to: &out)
          out.append(UInt8(ascii: ":"))
          member.1.write(to: &out)
        }
        out.append(UInt8(ascii: "}"))
      }
    }

    static func writeString(_ s: String, to out: inout [UInt8]) {
      let hex = Array("0123456789abcdef".utf8)
      out.append(UInt8(ascii: "\""))
      for byte in s.utf8 {
        switch byte {
        case UInt8(ascii: "\""): out += Array("\\\"".utf8)
        case UInt8(ascii: "\\"): out += Array("\\\\".utf8)
        case 0x00...0x1F: out += Array("\\u00".utf8) + [hex[Int(byte >> 4)], hex[Int(byte & 0x0F)]]
        default: out.append(byte)
        }
      }
      out.append(UInt8(ascii: "\""))
    }
  }
}

/// The portable signed form of a certificate: `OWC1.<base64url payload>.<base64url signature>`,
/// where the signature is Ed25519 over the payload's canonical JSON bytes by the key named in
/// the payload's `key_id`.
public enum SignedCertificate {
  public static let prefix = "OWC1"

  /// The key id: the first 16 hex characters of the SHA-256 of the raw 32-byte public key.
  public static func keyID(of publicKey: Curve25519.Signing.PublicKey) -> String {
    String(Hex.sha256(Array(publicKey.rawRepresentation)).prefix(16))
  }

  public static func sign(_ payload: CertificatePayload, with key: Curve25519.Signing.PrivateKey) throws -> String {
    try SignedDocument.sign(payload.canonicalJSON(), prefix: prefix, with: key)
  }

  public enum Failure: Error, Equatable, Sendable, CustomStringConvertible {
    case malformed
    case unknownKey(String)
    case badSignature

    public var description: String {
      switch self {
      case .malformed: "not a OneWindow signed certificate (expected OWC1.<payload>.<signature>)"
      case .unknownKey(let id): "signed with key \(id), which is not an issuer key of this platform"
      case .badSignature: "the signature does not match the content: the certificate was altered or forged"
      }
    }
  }

  /// Checks the signature with the issuer key the payload names and returns the payload.
  public static func verify(_ blob: String, keys: [String: Curve25519.Signing.PublicKey]) throws(Failure) -> CertificatePayload {
    let bytes = try SignedDocument.open(blob, prefix: prefix, keys: keys)
    guard let payload = CertificatePayload(canonicalJSON: bytes) else { throw .malformed }
    return payload
  }

  /// A new certificate number: `OW` + year + 12 random Crockford characters, e.g. `OW2026-7K3M-9QXT-2B8N`.
  public static func makeNumber(year: Int) -> String {
    let alphabet = Array("0123456789ABCDEFGHJKMNPQRSTVWXYZ")
    var rng = SystemRandomNumberGenerator()
    let chars = (0..<12).map { _ in alphabet[Int.random(in: 0..<alphabet.count, using: &rng)] }
    return "OW\(year)-\(String(chars[0..<4]))-\(String(chars[4..<8]))-\(String(chars[8..<12]))"
  }

  /// The expiry for a certificate issued on `day` valid for `years` (the day before the
  /// anniversary; for Feb 29 in a year without one the anniversary is Mar 1, so the
  /// certificate runs through Feb 28).
  public static func expiry(issuedOn day: CivilDate, years: Int) -> CivilDate? {
    guard years > 0 else { return nil }
    let (y, m, d) = day.components
    let anniversary = CivilDate(year: y + years, month: m, day: d) ?? CivilDate(year: y + years, month: m + 1, day: 1)
    return anniversary?.adding(days: -1)
  }
}
