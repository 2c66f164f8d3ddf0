#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The stored identity of a request made under an `Idempotency-Key`. Same key and same
/// fingerprint: replay the stored answer; same key and a different fingerprint: 409
/// `IDEMPOTENCY_KEY_USED`, naming the parameters that differ so the client can find its bug.
public enum IdempotencyFingerprint {
  /// SHA-256 hex over the parameters sorted by name. Names and values are length-prefixed so no
  /// two different parameter sets share an encoding ("a"="b=c" vs "a=b"="c").
  public static func of(_ parameters: [String: String]) -> String {
    var bytes: [UInt8] = []
    for (name, value) in parameters.sorted(by: { Array($0.key.utf8).lexicographicallyPrecedes(Array($1.key.utf8)) }) {
      bytes += Array("\(name.utf8.count):".utf8) + Array(name.utf8)
      bytes += Array("\(value.utf8.count):".utf8) + Array(value.utf8)
    }
    return Hex.sha256(bytes)
  }

  /// Names of parameters present in only one of the two, or with different values, sorted.
  public static func mismatch(stored: [String: String], request: [String: String]) -> [String] {
    Set(stored.keys).union(request.keys).filter { stored[$0] != request[$0] }.sorted()
  }
}
