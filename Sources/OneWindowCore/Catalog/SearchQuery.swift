/// Turns what a person typed into a full-text query for SQLite FTS5 with the trigram tokenizer.
///
/// The trigram tokenizer indexes every 3-character window, so any term of 3+ characters is a
/// substring match (`身份证` finds `居民身份证换领`). Terms of 1–2 characters cannot be matched by
/// the index; they become plain substring filters instead. All terms must match (AND).
public struct SearchQuery: Sendable, Equatable {
  /// FTS5 MATCH expression, or nil when no term is long enough for the index.
  public var match: String?
  /// Terms that must appear as substrings (for terms shorter than 3 characters).
  public var substrings: [String]

  public static let maxLength = 64

  public init(match: String?, substrings: [String]) {
    self.match = match
    self.substrings = substrings
  }

  public static func parse(_ raw: String) throws(ValidationError) -> SearchQuery {
    let text = try Check.text(raw, field: "query", max: maxLength)
    // Split on whitespace (ASCII and ideographic) and common punctuation; drop quotes so user
    // input can never break out of an FTS5 string literal.
    let separators: Set<Character> = [" ", "\t", "\n", "\u{3000}", ",", "，", "、", ";", "；", "\""]
    let terms = text.split(whereSeparator: { separators.contains($0) }).map(String.init)
    var seen = Set<String>()
    let unique = terms.filter { seen.insert($0).inserted }
    let long = unique.filter { $0.count >= 3 }
    let short = unique.filter { $0.count < 3 }
    guard !unique.isEmpty else { throw ValidationError("query", "is required") }
    let match = long.isEmpty ? nil : long.map { "\"\($0)\"" }.joined(separator: " AND ")
    return SearchQuery(match: match, substrings: short)
  }
}
