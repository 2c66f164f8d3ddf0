import Crypto
import _CryptoExtras
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Password rules and the slow KDF. Stored form: `pbkdf2-sha256$<rounds>$<salt b64>$<hash b64>`,
/// so the round count can be raised later and old hashes still verify.
public enum PasswordHashing {
  /// OWASP's minimum for PBKDF2-HMAC-SHA256 (and swift-crypto's floor for the checked API).
  public static let defaultRounds = 210_000
  static let prefix = "pbkdf2-sha256"

  /// 8–128 characters with at least one letter and one digit.
  public static func validateNewPassword(_ password: String, field: String = "password") throws(ValidationError) {
    let count = password.count
    guard count >= 8 else { throw ValidationError(field, "must be at least 8 characters") }
    guard count <= 128 else { throw ValidationError(field, "must be at most 128 characters") }
    guard password.contains(where: { $0.isLetter }), password.contains(where: { $0.isNumber }) else {
      throw ValidationError(field, "must contain at least one letter and one digit")
    }
  }

  /// Hashes with a fresh 16-byte salt. Deliberately slow (~0.1 s): call it off the event loops.
  public static func hash(_ password: String, rounds: Int = defaultRounds) throws -> String {
    var salt = [UInt8](repeating: 0, count: 16)
    var rng = SystemRandomNumberGenerator()
    for i in salt.indices { salt[i] = rng.next() }
    let key = try derive(password, salt: salt, rounds: rounds)
    return "\(prefix)$\(rounds)$\(Data(salt).base64EncodedString())$\(Data(key).base64EncodedString())"
  }

  /// Constant-time verification against a stored hash. A malformed stored value never verifies.
  public static func verify(_ password: String, against stored: String) -> Bool {
    let parts = stored.split(separator: "$", omittingEmptySubsequences: false)
    guard parts.count == 4, parts[0] == prefix, let rounds = Int(parts[1]), rounds >= defaultRounds,
          let salt = Data(base64Encoded: String(parts[2])), let expected = Data(base64Encoded: String(parts[3])),
          let actual = try? derive(password, salt: Array(salt), rounds: rounds)
    else { return false }
    return ConstantTime.equal(Array(expected), actual)
  }

  static func derive(_ password: String, salt: [UInt8], rounds: Int) throws -> [UInt8] {
    let key = try KDF.Insecure.PBKDF2.deriveKey(
      from: Array(password.utf8), salt: salt, using: .sha256, outputByteCount: 32, rounds: rounds)
    return key.withUnsafeBytes { Array($0) }
  }
}

public enum ConstantTime {
  /// Compares without an early exit, so timing does not reveal the matching prefix.
  public static func equal(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    var diff: UInt8 = 0
    for i in a.indices { diff |= a[i] ^ b[i] }
    return diff == 0
  }
}
