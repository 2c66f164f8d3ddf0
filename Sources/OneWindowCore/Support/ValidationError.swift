/// A request that breaks a documented input rule. Carries the offending field so the edge can
/// answer `INVALID_ARGUMENT` with a message a person can act on ("phone: must be 11 digits").
public struct ValidationError: Error, Equatable, Sendable, CustomStringConvertible {
  public var field: String
  public var reason: String

  public init(_ field: String, _ reason: String) {
    self.field = field
    self.reason = reason
  }

  public var description: String { "\(field): \(reason)" }
}

/// Small helpers for the length rules stated in the proto comments. Lengths are counted in
/// Unicode characters, so a 50-character Chinese name is 50, not 150.
public enum Check {
  /// Rejects empty (after trimming) and over-long text. Returns the trimmed value.
  @discardableResult
  public static func text(
    _ value: String, field: String, min: Int = 1, max: Int
  ) throws(ValidationError) -> String {
    let trimmed = value.trimmingWhitespace()
    if trimmed.isEmpty && min > 0 { throw ValidationError(field, "is required") }
    let count = trimmed.count
    if count < min { throw ValidationError(field, "must be at least \(min) characters") }
    if count > max { throw ValidationError(field, "must be at most \(max) characters (got \(count))") }
    if trimmed.unicodeScalars.contains(where: { $0.properties.generalCategory == .control && $0 != "\n" && $0 != "\t" }) {
      throw ValidationError(field, "must not contain control characters")
    }
    return trimmed
  }

  /// Optional text: empty is allowed, otherwise the same rules as `text`.
  @discardableResult
  public static func optionalText(_ value: String, field: String, max: Int) throws(ValidationError) -> String {
    try text(value, field: field, min: 0, max: max)
  }

  public static func range<T: BinaryInteger>(
    _ value: T, field: String, _ range: ClosedRange<T>
  ) throws(ValidationError) {
    guard range.contains(value) else {
      throw ValidationError(field, "must be between \(range.lowerBound) and \(range.upperBound) (got \(value))")
    }
  }

  public static func count<C: Collection>(_ c: C, field: String, max: Int, min: Int = 0) throws(ValidationError) {
    if c.count < min { throw ValidationError(field, "needs at least \(min) entries") }
    if c.count > max { throw ValidationError(field, "allows at most \(max) entries (got \(c.count))") }
  }
}

extension String {
  /// Trims spaces, tabs and newlines (including the ideographic space U+3000) at both ends.
  public func trimmingWhitespace() -> String {
    let scalars = unicodeScalars
    guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }) else { return "" }
    guard let last = scalars.lastIndex(where: { !$0.properties.isWhitespace }) else { return "" }
    return String(scalars[first...last])
  }
}
