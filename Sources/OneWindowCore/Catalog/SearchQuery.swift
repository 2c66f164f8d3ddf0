/// What a person typed into the catalog search, split into terms every store engine can match:
/// all terms must appear (AND) as substrings of an item's name or guide.
///
/// Terms of 3+ characters go to the engine's trigram index (`身份证` finds `居民身份证换领`); terms of
/// 1–2 characters are too short for any trigram index and are plain substring filters. How a term
/// becomes a query is the store's business (an FTS5 phrase, a pg_trgm condition); quotes are
/// separators here, so no term carries one.
public struct SearchQuery: Sendable, Equatable {
  /// Terms of 3 or more characters, for the trigram index.
  public var terms: [String]
  /// Terms that must appear as substrings (for terms shorter than 3 characters).
  public var substrings: [String]

  public static let maxLength = 64
  /// Shortest term a trigram index can match.
  public static let minIndexedLength = 3

  public init(terms: [String], substrings: [String]) {
    self.terms = terms
    self.substrings = substrings
  }

  public static func parse(_ raw: String) throws(ValidationError) -> SearchQuery {
    let text = try Check.text(raw, field: "query", max: maxLength)
    // Split on whitespace (ASCII and ideographic) and common punctuation, quotes included.
    let separators: Set<Character> = [" ", "\t", "\n", "\u{3000}", ",", "，", "、", ";", "；", "\""]
    let split = text.split(whereSeparator: { separators.contains($0) }).map(String.init)
    var seen = Set<String>()
    let unique = split.filter { seen.insert($0).inserted }
    guard !unique.isEmpty else { throw ValidationError("query", "is required") }
    return SearchQuery(
      terms: unique.filter { $0.count >= minIndexedLength }, substrings: unique.filter { $0.count < minIndexedLength })
  }
}
