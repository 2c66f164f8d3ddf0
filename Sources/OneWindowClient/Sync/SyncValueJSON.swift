import Foundation
import OneWindowCore

/// A JSON text form of `SyncValue` for people and scripts (command-line input and output,
/// debugging). It is exact and round-trips every value: integers are written without a
/// decimal point and doubles always with one (or an exponent), so `1` and `1.0` stay distinct;
/// kinds JSON lacks are tagged objects — `{"$bytes": "<base64>"}`, `{"$timestamp": <millis>}`,
/// `{"$double": "nan" | "inf" | "-inf"}` — and a map with a key starting with `$` is wrapped
/// as `{"$map": {...}}` so it cannot be mistaken for a tag.
extension SyncValue {
  public var jsonText: String {
    var out = ""
    SyncValueJSON.write(self, to: &out)
    return out
  }

  /// Parses the JSON text form. Throws for malformed JSON, an integer outside 64 bits, or
  /// nesting deeper than the sync limit.
  public init(jsonText: String) throws(ValidationError) {
    var parser = SyncValueJSON.Parser(bytes: Array(jsonText.utf8))
    self = try SyncValueJSON.value(of: try parser.document())
  }
}

enum SyncValueJSON {
  static let tags: Set<String> = ["$bytes", "$timestamp", "$double", "$map"]

  /// Parsed JSON before tags are read: tags are interpreted top-down, so the map inside
  /// `{"$map": …}` is taken literally even when it looks like a tag itself.
  indirect enum Node {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([Node])
    case object([String: Node])
  }

  static func value(of node: Node) throws(ValidationError) -> SyncValue {
    switch node {
    case .null: return .null
    case .bool(let b): return .bool(b)
    case .int(let i): return .int(i)
    case .double(let d): return .double(d)
    case .string(let s): return .string(s)
    case .array(let items):
      var values: [SyncValue] = []
      for item in items { values.append(try value(of: item)) }
      return .list(values)
    case .object(let entries):
      guard entries.count == 1, let (tag, inner) = entries.first, tags.contains(tag) else { return try map(entries) }
      switch (tag, inner) {
      case ("$bytes", .string(let text)):
        guard let data = Data(base64Encoded: text) else { throw ValidationError("json", "$bytes is not base64") }
        return .bytes(Array(data))
      case ("$timestamp", .int(let millis)): return .timestamp(millis)
      case ("$double", .string("nan")): return .double(.nan)
      case ("$double", .string("inf")): return .double(.infinity)
      case ("$double", .string("-inf")): return .double(-.infinity)
      case ("$map", .object(let literal)): return try map(literal)
      default: throw ValidationError("json", "\(tag) has the wrong kind of value")
      }
    }
  }

  static func map(_ entries: [String: Node]) throws(ValidationError) -> SyncValue {
    var values: [String: SyncValue] = [:]
    for (key, node) in entries { values[key] = try value(of: node) }
    return .map(values)
  }

  static func write(_ value: SyncValue, to out: inout String) {
    switch value {
    case .null: out += "null"
    case .bool(let b): out += b ? "true" : "false"
    case .int(let i): out += String(i)
    case .double(let d):
      if d.isNaN {
        out += #"{"$double":"nan"}"#
      } else if d.isInfinite {
        out += d < 0 ? #"{"$double":"-inf"}"# : #"{"$double":"inf"}"#
      } else {
        let text = String(d)  // shortest round-trip form, e.g. "1.0", "1e-05", "-0.0"
        out += text.contains(where: { $0 == "." || $0 == "e" }) ? text : text + ".0"
      }
    case .string(let s): writeString(s, to: &out)
    case .bytes(let b): out += #"{"$bytes":""# + Data(b).base64EncodedString() + #""}"#
    case .timestamp(let t): out += #"{"$timestamp":"# + String(t) + "}"
    case .list(let items):
      out += "["
      for (i, item) in items.enumerated() {
        if i > 0 { out += "," }
        write(item, to: &out)
      }
      out += "]"
    case .map(let entries):
      let wrap = entries.keys.contains { $0.hasPrefix("$") }
      if wrap { out += #"{"$map":"# }
      out += "{"
      for (i, key) in entries.keys.sorted().enumerated() {
        if i > 0 { out += "," }
        writeString(key, to: &out)
        out += ":"
        write(entries[key] ?? .null, to: &out)
      }
      out += "}"
      if wrap { out += "}" }
    }
  }

  static func writeString(_ s: String, to out: inout String) {
    out += "\""
    for scalar in s.unicodeScalars {
      switch scalar {
      case "\"": out += "\\\""
      case "\\": out += "\\\\"
      case "\n": out += "\\n"
      case "\r": out += "\\r"
      case "\t": out += "\\t"
      case _ where scalar.value < 0x20 || scalar.value == 0x7F:
        let hex = String(scalar.value, radix: 16)
        out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
      default: out.unicodeScalars.append(scalar)
      }
    }
    out += "\""
  }

  /// A strict JSON reader (RFC 8259) that keeps integers and doubles apart.
  struct Parser {
    let bytes: [UInt8]
    var offset = 0

    init(bytes: [UInt8]) { self.bytes = bytes }

    func fail(_ reason: String) -> ValidationError { ValidationError("json", "\(reason) at byte \(offset)") }

    mutating func document() throws(ValidationError) -> Node {
      let value = try self.value(depth: 0)
      skipSpace()
      guard offset == bytes.count else { throw fail("unexpected text after the value") }
      return value
    }

    mutating func skipSpace() {
      while offset < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[offset]) { offset += 1 }
    }

    mutating func value(depth: Int) throws(ValidationError) -> Node {
      guard depth <= SyncLimits.maxDepth + 1 else { throw fail("nesting deeper than \(SyncLimits.maxDepth) levels") }
      skipSpace()
      guard offset < bytes.count else { throw fail("a value is missing") }
      switch bytes[offset] {
      case UInt8(ascii: "n"): try literal("null"); return .null
      case UInt8(ascii: "t"): try literal("true"); return .bool(true)
      case UInt8(ascii: "f"): try literal("false"); return .bool(false)
      case UInt8(ascii: "\""): return .string(try string())
      case UInt8(ascii: "["): return try array(depth: depth)
      case UInt8(ascii: "{"): return try object(depth: depth)
      default: return try number()
      }
    }

    mutating func literal(_ word: String) throws(ValidationError) {
      let w = Array(word.utf8)
      guard bytes.count - offset >= w.count, Array(bytes[offset..<offset + w.count]) == w else { throw fail("invalid literal") }
      offset += w.count
    }

    mutating func array(depth: Int) throws(ValidationError) -> Node {
      offset += 1
      var items: [Node] = []
      skipSpace()
      if offset < bytes.count, bytes[offset] == UInt8(ascii: "]") {
        offset += 1
        return .array(items)
      }
      while true {
        items.append(try value(depth: depth + 1))
        skipSpace()
        guard offset < bytes.count else { throw fail("unterminated array") }
        let c = bytes[offset]
        offset += 1
        if c == UInt8(ascii: "]") { return .array(items) }
        guard c == UInt8(ascii: ",") else { throw fail("expected ',' or ']'") }
      }
    }

    mutating func object(depth: Int) throws(ValidationError) -> Node {
      offset += 1
      var entries: [String: Node] = [:]
      skipSpace()
      if offset < bytes.count, bytes[offset] == UInt8(ascii: "}") {
        offset += 1
        return .object(entries)
      }
      while true {
        skipSpace()
        guard offset < bytes.count, bytes[offset] == UInt8(ascii: "\"") else { throw fail("expected a key") }
        let key = try string()
        skipSpace()
        guard offset < bytes.count, bytes[offset] == UInt8(ascii: ":") else { throw fail("expected ':'") }
        offset += 1
        guard entries[key] == nil else { throw fail("duplicate key \"\(key)\"") }
        entries[key] = try value(depth: depth + 1)
        skipSpace()
        guard offset < bytes.count else { throw fail("unterminated object") }
        let c = bytes[offset]
        offset += 1
        if c == UInt8(ascii: "}") { break }
        guard c == UInt8(ascii: ",") else { throw fail("expected ',' or '}'") }
      }
      return .object(entries)
    }

    mutating func number() throws(ValidationError) -> Node {
      let start = offset
      var isDouble = false
      if offset < bytes.count, bytes[offset] == UInt8(ascii: "-") { offset += 1 }
      let digitsStart = offset
      while offset < bytes.count, isDigit(bytes[offset]) { offset += 1 }
      let intDigits = offset - digitsStart
      guard intDigits > 0 else { throw fail("invalid value") }
      guard intDigits == 1 || bytes[digitsStart] != UInt8(ascii: "0") else { throw fail("leading zero in a number") }
      if offset < bytes.count, bytes[offset] == UInt8(ascii: ".") {
        isDouble = true
        offset += 1
        let fraction = offset
        while offset < bytes.count, isDigit(bytes[offset]) { offset += 1 }
        guard offset > fraction else { throw fail("digits expected after '.'") }
      }
      if offset < bytes.count, bytes[offset] == UInt8(ascii: "e") || bytes[offset] == UInt8(ascii: "E") {
        isDouble = true
        offset += 1
        if offset < bytes.count, bytes[offset] == UInt8(ascii: "+") || bytes[offset] == UInt8(ascii: "-") { offset += 1 }
        let exponent = offset
        while offset < bytes.count, isDigit(bytes[offset]) { offset += 1 }
        guard offset > exponent else { throw fail("digits expected in the exponent") }
      }
      let text = String(decoding: bytes[start..<offset], as: UTF8.self)
      if isDouble {
        guard let d = Double(text), d.isFinite else { throw fail("number out of range") }
        return .double(d)
      }
      guard let i = Int64(text) else { throw fail("integer outside 64 bits") }
      return .int(i)
    }

    func isDigit(_ b: UInt8) -> Bool { b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") }

    mutating func string() throws(ValidationError) -> String {
      offset += 1  // opening quote
      var scalars = String.UnicodeScalarView()
      var run = offset  // start of the current unescaped run
      func flush(_ end: Int) -> Bool {
        guard run < end else { return true }
        guard let text = String(validating: bytes[run..<end], as: UTF8.self) else { return false }
        scalars.append(contentsOf: text.unicodeScalars)
        return true
      }
      while offset < bytes.count {
        let b = bytes[offset]
        if b == UInt8(ascii: "\"") {
          guard flush(offset) else { throw fail("invalid UTF-8 in a string") }
          offset += 1
          return String(scalars)
        }
        guard b >= 0x20 else { throw fail("control character in a string") }
        if b != UInt8(ascii: "\\") {
          offset += 1
          continue
        }
        guard flush(offset) else { throw fail("invalid UTF-8 in a string") }
        offset += 1
        guard offset < bytes.count else { break }
        let e = bytes[offset]
        offset += 1
        switch e {
        case UInt8(ascii: "\""): scalars.append("\"")
        case UInt8(ascii: "\\"): scalars.append("\\")
        case UInt8(ascii: "/"): scalars.append("/")
        case UInt8(ascii: "b"): scalars.append("\u{08}")
        case UInt8(ascii: "f"): scalars.append("\u{0C}")
        case UInt8(ascii: "n"): scalars.append("\n")
        case UInt8(ascii: "r"): scalars.append("\r")
        case UInt8(ascii: "t"): scalars.append("\t")
        case UInt8(ascii: "u"):
          var code = try hex4()
          if (0xD800...0xDBFF).contains(code) {
            guard bytes.count - offset >= 6, bytes[offset] == UInt8(ascii: "\\"), bytes[offset + 1] == UInt8(ascii: "u") else {
              throw fail("unpaired surrogate")
            }
            offset += 2
            let low = try hex4()
            guard (0xDC00...0xDFFF).contains(low) else { throw fail("unpaired surrogate") }
            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
          }
          guard let scalar = Unicode.Scalar(code) else { throw fail("invalid \\u escape") }
          scalars.append(scalar)
        default: throw fail("invalid escape")
        }
        run = offset
      }
      throw fail("unterminated string")
    }

    mutating func hex4() throws(ValidationError) -> UInt32 {
      guard bytes.count - offset >= 4, bytes[offset..<offset + 4].allSatisfy({ $0.isHexDigit }),
            let v = UInt32(String(decoding: bytes[offset..<offset + 4], as: UTF8.self), radix: 16)
      else { throw fail("invalid \\u escape") }
      offset += 4
      return v
    }
  }
}

extension UInt8 {
  fileprivate var isHexDigit: Bool {
    (0x30...0x39).contains(self) || (0x41...0x46).contains(self) || (0x61...0x66).contains(self)
  }
}
