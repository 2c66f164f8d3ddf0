#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Identifiers for server-created rows: 26-character ULIDs (48-bit millisecond time + 80 random
/// bits, Crockford base32). Sortable by creation time, unguessable, safe in URLs and logs.
public enum ULID {
  static let alphabet = Array("0123456789ABCDEFGHJKMNPQRSTVWXYZ".utf8)

  public static func make(at date: Date = Date()) -> String {
    var rng = SystemRandomNumberGenerator()
    return make(at: date, using: &rng)
  }

  public static func make<R: RandomNumberGenerator>(at date: Date, using rng: inout R) -> String {
    let millis = UInt64(max(0, date.timeIntervalSince1970 * 1000)) & 0xFFFF_FFFF_FFFF
    var out = [UInt8](repeating: 0, count: 26)
    var time = millis
    for i in stride(from: 9, through: 0, by: -1) {
      out[i] = alphabet[Int(time & 31)]
      time >>= 5
    }
    var high = rng.next() & 0xFF_FFFF_FFFF  // 40 bits
    var low = rng.next() & 0xFF_FFFF_FFFF   // 40 bits
    for i in stride(from: 25, through: 18, by: -1) {
      out[i] = alphabet[Int(low & 31)]
      low >>= 5
    }
    for i in stride(from: 17, through: 10, by: -1) {
      out[i] = alphabet[Int(high & 31)]
      high >>= 5
    }
    return String(decoding: out, as: UTF8.self)
  }

  /// Whether `text` has the shape of a ULID (used to reject malformed ids before any lookup).
  public static func isValid(_ text: String) -> Bool {
    let bytes = Array(text.utf8)
    guard bytes.count == 26, bytes[0] <= UInt8(ascii: "7") else { return false }
    return bytes.allSatisfy { alphabet.contains($0) }
  }
}
