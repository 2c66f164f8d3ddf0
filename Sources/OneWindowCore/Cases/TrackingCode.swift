/// The one code an applicant follows a case by (全程一码): 16 random Crockford base32 characters
/// (80 bits: one case's code says nothing about another's) and an ISO 7064 MOD 37-2 check
/// character (0–9, A–Z or `*`), which catches every single mistyped character and every swap of
/// two neighbours (37 is prime). Written in groups of four: `7K3M-9QXT-2B8N-4WZP-3`.
public enum TrackingCode {
  static let randomAlphabet = Array("0123456789ABCDEFGHJKMNPQRSTVWXYZ".utf8)
  static let checkAlphabet = Array("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ*".utf8)
  public static let randomLength = 16

  /// A new code from `random` (pass a system generator in production, a seeded one in tests).
  public static func make<R: RandomNumberGenerator>(using random: inout R) -> String {
    let body = (0..<randomLength).map { _ in randomAlphabet[Int.random(in: 0..<randomAlphabet.count, using: &random)] }
    return format(body + [checkCharacter(body)])
  }

  public static func make() -> String {
    var system = SystemRandomNumberGenerator()
    return make(using: &system)
  }

  /// The canonical form of a code as typed (case, spaces and dashes ignored), or a
  /// ValidationError for a malformed or mistyped code.
  public static func normalize(_ text: String, field: String = "tracking_code") throws(ValidationError) -> String {
    let bytes = Array(text.uppercased().utf8).filter { $0 != UInt8(ascii: "-") && $0 != UInt8(ascii: " ") }
    guard bytes.count == randomLength + 1, bytes.dropLast().allSatisfy(randomAlphabet.contains),
          let check = bytes.last, checkAlphabet.contains(check)
    else { throw ValidationError(field, "must be 17 characters like 7K3M-9QXT-2B8N-4WZP-3") }
    guard checkCharacter(Array(bytes.dropLast())) == check else {
      throw ValidationError(field, "has a wrong check character: look for a mistyped character")
    }
    return format(bytes)
  }

  /// ISO 7064 MOD 37-2 (pure system) over the characters' values 0–35.
  static func checkCharacter(_ body: [UInt8]) -> UInt8 {
    var p = 0
    for byte in body {
      let value = checkAlphabet.firstIndex(of: byte) ?? 0
      p = ((p + value) * 2) % 37
    }
    return checkAlphabet[(38 - p) % 37]
  }

  static func format(_ bytes: [UInt8]) -> String {
    var out: [UInt8] = []
    for (i, byte) in bytes.enumerated() {
      if i > 0 && i % 4 == 0 { out.append(UInt8(ascii: "-")) }
      out.append(byte)
    }
    return String(decoding: out, as: UTF8.self)
  }
}
