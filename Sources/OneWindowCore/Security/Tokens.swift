import Crypto
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Opaque bearer credentials. The client gets `prefix + 43 base64url characters` (256 random
/// bits); the server keeps only the SHA-256, so a leaked database yields no usable token.
public enum OpaqueToken {
  public static let accessPrefix = "owa_"
  public static let refreshPrefix = "owr_"
  public static let accessLifetime: TimeInterval = 15 * 60
  public static let refreshLifetime: TimeInterval = 30 * 24 * 3600

  public static func generate(prefix: String) -> String {
    var bytes = [UInt8](repeating: 0, count: 32)
    var rng = SystemRandomNumberGenerator()
    for i in bytes.indices { bytes[i] = rng.next() }
    return prefix + Base64URL.encode(bytes)
  }

  /// The stored form of a token: lowercase hex SHA-256.
  public static func hash(_ token: String) -> String {
    Hex.encode(Array(SHA256.hash(data: Array(token.utf8))))
  }

  /// Cheap shape check before any lookup: right prefix, right length, base64url alphabet.
  public static func isWellFormed(_ token: String, prefix: String) -> Bool {
    guard token.hasPrefix(prefix) else { return false }
    let body = token.utf8.dropFirst(prefix.utf8.count)
    return body.count == 43 && body.allSatisfy(Base64URL.isAlphabet)
  }
}

/// A fresh session's credentials: the clear tokens go to the client once, the hashes to storage.
public struct IssuedTokens: Sendable {
  public var accessToken: String
  public var accessExpiresAt: Date
  public var refreshToken: String
  public var refreshExpiresAt: Date

  public var accessHash: String { OpaqueToken.hash(accessToken) }
  public var refreshHash: String { OpaqueToken.hash(refreshToken) }

  public static func issue(now: Date) -> IssuedTokens {
    IssuedTokens(
      accessToken: OpaqueToken.generate(prefix: OpaqueToken.accessPrefix),
      accessExpiresAt: now.addingTimeInterval(OpaqueToken.accessLifetime),
      refreshToken: OpaqueToken.generate(prefix: OpaqueToken.refreshPrefix),
      refreshExpiresAt: now.addingTimeInterval(OpaqueToken.refreshLifetime))
  }
}

public enum Base64URL {
  public static func encode(_ bytes: [UInt8]) -> String {
    Data(bytes).base64EncodedString()
      .replacing("+", with: "-").replacing("/", with: "_").replacing("=", with: "")
  }

  public static func decode(_ text: String) -> [UInt8]? {
    guard text.utf8.allSatisfy(isAlphabet) else { return nil }
    var s = text.replacing("-", with: "+").replacing("_", with: "/")
    while s.utf8.count % 4 != 0 { s += "=" }
    guard let bytes = Data(base64Encoded: s).map(Array.init) else { return nil }
    // Only the canonical spelling: unused low bits of the last character must be zero, so one
    // value has exactly one encoding (signed certificates are compared as strings).
    return encode(bytes) == text ? bytes : nil
  }

  public static func isAlphabet(_ b: UInt8) -> Bool {
    (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39) || b == 0x2D || b == 0x5F
  }
}

public enum Hex {
  public static func encode(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var out = [UInt8]()
    out.reserveCapacity(bytes.count * 2)
    for b in bytes {
      out.append(digits[Int(b >> 4)])
      out.append(digits[Int(b & 0x0F)])
    }
    return String(decoding: out, as: UTF8.self)
  }

  /// Lowercase hex of the SHA-256 of `bytes`.
  public static func sha256(_ bytes: [UInt8]) -> String {
    encode(Array(SHA256.hash(data: bytes)))
  }

  /// Bytes of lowercase or uppercase hex, or nil when malformed.
  public static func decode(_ text: String) -> [UInt8]? {
    let chars = Array(text.utf8)
    guard chars.count % 2 == 0 else { return nil }
    func value(_ c: UInt8) -> UInt8? {
      switch c {
      case 0x30...0x39: c - 0x30
      case 0x61...0x66: c - 0x61 + 10
      case 0x41...0x46: c - 0x41 + 10
      default: nil
      }
    }
    var out = [UInt8]()
    out.reserveCapacity(chars.count / 2)
    var i = 0
    while i < chars.count {
      guard let hi = value(chars[i]), let lo = value(chars[i + 1]) else { return nil }
      out.append(hi << 4 | lo)
      i += 2
    }
    return out
  }
}
