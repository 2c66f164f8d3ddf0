/// A mainland resident ID number (居民身份证号码, GB 11643-1999): 6-digit region code, 8-digit birth
/// date, 3-digit sequence, and a check character computed with ISO 7064 MOD 11-2.
public struct ResidentIDNumber: Hashable, Sendable, CustomStringConvertible {
  public let value: String

  static let weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
  static let checkCharacters = Array("10X98765432")

  /// Validates and normalises (a lowercase trailing `x` becomes `X`).
  public init(_ raw: String) throws(ValidationError) {
    let text = raw.trimmingWhitespace().uppercased()
    let chars = Array(text)
    guard chars.count == 18 else {
      throw ValidationError("id_number", "must be 18 characters (got \(chars.count))")
    }
    guard chars[0..<17].allSatisfy({ $0.isASCII && $0.isNumber }) else {
      throw ValidationError("id_number", "the first 17 characters must be digits")
    }
    guard chars[0] != "0" else { throw ValidationError("id_number", "region code is invalid") }
    let year = Int(String(chars[6..<10])) ?? 0
    let month = Int(String(chars[10..<12])) ?? 0
    let day = Int(String(chars[12..<14])) ?? 0
    guard (1900...2099).contains(year), (1...12).contains(month),
          (1...Self.daysIn(month: month, year: year)).contains(day)
    else { throw ValidationError("id_number", "birth date is invalid") }
    guard let expected = Self.checkCharacter(forFirst17: String(chars[0..<17])), chars[17] == expected else {
      throw ValidationError("id_number", "check character does not match (mistyped number?)")
    }
    value = text
  }

  /// The ISO 7064 MOD 11-2 check character for 17 digits, or nil if they are not 17 digits.
  public static func checkCharacter(forFirst17 digits: String) -> Character? {
    let values = digits.compactMap { $0.wholeNumberValue }
    guard values.count == 17, digits.count == 17 else { return nil }
    let sum = zip(values, weights).reduce(0) { $0 + $1.0 * $1.1 }
    return checkCharacters[sum % 11]
  }

  static func daysIn(month: Int, year: Int) -> Int {
    switch month {
    case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
    case 4, 6, 9, 11: return 30
    default: return 31
    }
  }

  /// Masked form for display and logs: first 4 and last 4 characters.
  public var masked: String { Redact.idNumber(value) }
  public var description: String { masked }
}

/// A unified social credit code (统一社会信用代码, GB 32100-2015): 18 characters from a 31-symbol
/// alphabet (no I, O, Z, S, V), the last being a MOD 31 check character.
public struct CreditCode: Hashable, Sendable, CustomStringConvertible {
  public let value: String

  static let alphabet = Array("0123456789ABCDEFGHJKLMNPQRTUWXY")
  static let weights = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28]

  public init(_ raw: String) throws(ValidationError) {
    let text = raw.trimmingWhitespace().uppercased()
    let chars = Array(text)
    guard chars.count == 18 else {
      throw ValidationError("credit_code", "must be 18 characters (got \(chars.count))")
    }
    guard chars.allSatisfy({ Self.alphabet.contains($0) }) else {
      throw ValidationError("credit_code", "may contain only digits and the letters ABCDEFGHJKLMNPQRTUWXY")
    }
    guard let expected = Self.checkCharacter(forFirst17: String(chars[0..<17])), expected == chars[17] else {
      throw ValidationError("credit_code", "check character does not match (mistyped code?)")
    }
    value = text
  }

  /// The GB 32100 check character for the first 17 characters, or nil if they are not valid.
  public static func checkCharacter(forFirst17 text: String) -> Character? {
    let chars = Array(text)
    guard chars.count == 17 else { return nil }
    var sum = 0
    for (char, weight) in zip(chars, weights) {
      guard let v = alphabet.firstIndex(of: char) else { return nil }
      sum += v * weight
    }
    let check = (31 - sum % 31) % 31
    return alphabet[check]
  }

  public var description: String { value }
}

/// A mainland mobile number: 11 digits starting with 1 and a second digit 3–9.
public struct PhoneNumber: Hashable, Sendable, CustomStringConvertible {
  public let value: String

  public init(_ raw: String, field: String = "phone") throws(ValidationError) {
    var text = raw.trimmingWhitespace().filter { $0 != " " && $0 != "-" }
    if text.hasPrefix("+86") { text.removeFirst(3) }
    let chars = Array(text)
    guard chars.count == 11, chars.allSatisfy({ $0.isASCII && $0.isNumber }),
          chars[0] == "1", ("3"..."9").contains(chars[1])
    else { throw ValidationError(field, "must be an 11-digit mainland mobile number starting with 1") }
    value = text
  }

  public var masked: String { Redact.phone(value) }
  public var description: String { masked }
}

/// Masking for anything shown to other parties or written to logs.
public enum Redact {
  /// `13812345678` → `138****5678`.
  public static func phone(_ phone: String) -> String {
    let c = Array(phone)
    guard c.count >= 7 else { return String(repeating: "*", count: c.count) }
    return String(c.prefix(3)) + String(repeating: "*", count: c.count - 7) + String(c.suffix(4))
  }

  /// `11010519491231002X` → `1101**********002X`.
  public static func idNumber(_ id: String) -> String {
    let c = Array(id)
    guard c.count >= 8 else { return String(repeating: "*", count: c.count) }
    return String(c.prefix(4)) + String(repeating: "*", count: c.count - 8) + String(c.suffix(4))
  }
}
