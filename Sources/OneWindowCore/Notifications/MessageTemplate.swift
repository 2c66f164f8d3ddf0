/// A message template (GOV.UK Notify style): a title and a body with `((placeholder))`
/// personalisation. Versioned: editing a template makes a new version, and a message records
/// the version it was rendered from.
public struct MessageTemplate: Sendable, Equatable, Codable {
  /// 2–64 characters of `a-z`, `0-9`, `-`, `_`, `.` (e.g. `case.correction_required`).
  public var name: String
  public var version: Int
  public var title: String
  public var body: String
  /// Every placeholder the title and body use, sorted.
  public var placeholders: [String]

  public static let maxTitleLength = 100
  public static let maxBodyLength = 2000

  /// Validates the name and text and collects the placeholders; an unclosed `((` or a malformed
  /// placeholder name is INVALID_ARGUMENT.
  public init(name: String, version: Int, title: String, body: String) throws(ValidationError) {
    let trimmed = name.trimmingWhitespace()
    guard (2...64).contains(trimmed.utf8.count), trimmed.utf8.allSatisfy(Self.isNameByte) else {
      throw ValidationError("name", "must be 2–64 characters of a-z, 0-9, '-', '_' or '.'")
    }
    try Check.range(version, field: "version", 1...1_000_000)
    self.name = trimmed
    self.version = version
    self.title = try Check.text(title, field: "title", max: Self.maxTitleLength)
    self.body = try Check.text(body, field: "body", max: Self.maxBodyLength)
    let names = try Self.segments(self.title, field: "title").compactMap(\.placeholder)
      + Self.segments(self.body, field: "body").compactMap(\.placeholder)
    placeholders = Array(Set(names)).sorted()
  }

  /// The title and body with every placeholder replaced. A placeholder without a value, or a
  /// value for no placeholder, is INVALID_ARGUMENT naming all of them (so a caller fixes the
  /// request once, not one field at a time).
  public func render(_ values: [String: String]) throws(ValidationError) -> (title: String, body: String) {
    let missing = placeholders.filter { values[$0] == nil }
    let unknown = values.keys.filter { !placeholders.contains($0) }.sorted()
    var problems: [String] = []
    if !missing.isEmpty { problems.append("missing \(missing.map { "((\($0)))" }.joined(separator: ", "))") }
    if !unknown.isEmpty { problems.append("no placeholder \(unknown.joined(separator: ", "))") }
    if !problems.isEmpty {
      throw ValidationError("personalisation", "\(problems.joined(separator: "; ")) in template \(name)")
    }
    for (key, value) in values.sorted(by: { $0.key < $1.key }) {
      try Check.optionalText(value, field: "personalisation.\(key)", max: 500)
    }
    func fill(_ text: String, _ field: String) throws(ValidationError) -> String {
      try Self.segments(text, field: field).map { $0.placeholder.map { values[$0] ?? "" } ?? $0.literal }.joined()
    }
    return (try fill(title, "title"), try fill(body, "body"))
  }

  struct Segment {
    var literal: String
    var placeholder: String?
  }

  /// Splits text into literal runs and `((name))` placeholders.
  static func segments(_ text: String, field: String) throws(ValidationError) -> [Segment] {
    var out: [Segment] = []
    var rest = Substring(text)
    while let open = rest.firstRange(of: "((") {
      out.append(Segment(literal: String(rest[..<open.lowerBound])))
      let after = rest[open.upperBound...]
      guard let close = after.firstRange(of: "))") else {
        throw ValidationError(field, "has an unclosed '((': write placeholders as ((name))")
      }
      let name = String(after[..<close.lowerBound])
      guard (1...64).contains(name.utf8.count), name.utf8.allSatisfy(isPlaceholderByte) else {
        throw ValidationError(field, "placeholder ((\(name))) must be 1–64 characters of a-z, 0-9 or '_'")
      }
      out.append(Segment(literal: "", placeholder: name))
      rest = after[close.upperBound...]
    }
    out.append(Segment(literal: String(rest)))
    return out
  }

  static func isNameByte(_ b: UInt8) -> Bool {
    (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39) || b == 0x2D || b == 0x5F || b == 0x2E
  }

  static func isPlaceholderByte(_ b: UInt8) -> Bool {
    (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39) || b == 0x5F
  }
}
