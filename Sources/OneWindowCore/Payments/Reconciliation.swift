#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// One money movement as either side records it: ours from the ledger, theirs from the
/// provider's settlement file. `reference` is our payment or refund id, which every provider
/// echoes back (WeChat's `out_trade_no`, Alipay's `out_biz_no`).
public struct SettlementEntry: Sendable, Equatable, Hashable {
  public enum Kind: String, Sendable, Codable { case capture, refund }

  public var kind: Kind
  public var reference: String
  public var amount: Fen

  public init(kind: Kind, reference: String, amount: Fen) {
    self.kind = kind; self.reference = reference; self.amount = amount
  }
}

public struct ReconciliationMismatch: Sendable, Equatable {
  public enum Kind: String, Sendable {
    /// The provider settled money the ledger does not know about (e.g. a lost callback).
    case missingOnOurSide = "missing_on_our_side"
    /// The ledger has a movement the provider did not settle.
    case missingOnTheirs = "missing_on_theirs"
    case amountDiffers = "amount_differs"
  }

  public var kind: Kind
  public var entry: SettlementEntry.Kind
  public var reference: String
  public var ours: Fen?
  public var theirs: Fen?
}

public struct ReconciliationReport: Sendable, Equatable {
  public var matched: Int
  public var mismatches: [ReconciliationMismatch]
}

/// The daily three-way check of a payment platform: every ledger movement of the day against
/// the provider's settlement lines, matched on (kind, reference).
public enum Reconciliation {
  public static func compare(ours: [SettlementEntry], theirs: [SettlementEntry]) -> ReconciliationReport {
    struct Key: Hashable { var kind: SettlementEntry.Kind; var reference: String }
    func totals(_ entries: [SettlementEntry]) -> [Key: Int64] {
      entries.reduce(into: [:]) { sums, e in
        sums[Key(kind: e.kind, reference: e.reference), default: 0] &+= e.amount.value
      }
    }
    let a = totals(ours), b = totals(theirs)
    var matched = 0
    var mismatches: [ReconciliationMismatch] = []
    for key in Set(a.keys).union(b.keys).sorted(by: { ($0.kind.rawValue, $0.reference) < ($1.kind.rawValue, $1.reference) }) {
      let mine = a[key].flatMap { try? Fen($0) }, other = b[key].flatMap { try? Fen($0) }
      switch (a[key], b[key]) {
      case (let x?, let y?) where x == y: matched += 1
      case (_?, _?): mismatches.append(.init(kind: .amountDiffers, entry: key.kind, reference: key.reference, ours: mine, theirs: other))
      case (nil, _?): mismatches.append(.init(kind: .missingOnOurSide, entry: key.kind, reference: key.reference, ours: nil, theirs: other))
      case (_?, nil): mismatches.append(.init(kind: .missingOnTheirs, entry: key.kind, reference: key.reference, ours: mine, theirs: nil))
      case (nil, nil): break
      }
    }
    return ReconciliationReport(matched: matched, mismatches: mismatches)
  }
}

/// The settlement file format of the sandbox provider (CSV, one header line):
/// `kind,reference,provider_reference,amount_fen,settled_at`. Real providers' formats are
/// parsed by their adapters into `SettlementEntry`.
public enum SandboxSettlementFile {
  public static let header = "kind,reference,provider_reference,amount_fen,settled_at"

  public struct Line: Sendable, Equatable {
    public var entry: SettlementEntry
    public var providerReference: String
    public var settledAt: Int64
    public init(entry: SettlementEntry, providerReference: String, settledAt: Int64) {
      self.entry = entry; self.providerReference = providerReference; self.settledAt = settledAt
    }
  }

  public static func render(_ lines: [Line]) -> String {
    ([header] + lines.map {
      "\($0.entry.kind.rawValue),\($0.entry.reference),\($0.providerReference),\($0.entry.amount.value),\($0.settledAt)"
    }).joined(separator: "\n") + "\n"
  }

  /// Parses a file, naming the first bad line (1-based) rather than skipping it: a silently
  /// dropped line would make reconciliation report a false "missing on theirs".
  public static func parse(_ text: String) throws(ValidationError) -> [Line] {
    // Numbered as in the file, blank lines included; CRLF ends a line like LF ("\r\n" is one
    // Character, so splitting on "\n" alone would leave a CRLF file as a single line).
    let lines = text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated()
      .map { (number: $0.offset + 1, text: String($0.element).trimmingWhitespace()) }
      .filter { !$0.text.isEmpty }
    guard lines.first?.text == header else { throw ValidationError("settlement file", "does not start with \(header)") }
    var out: [Line] = []
    for line in lines.dropFirst() {
      let f = line.text.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
      guard f.count == 5, let kind = SettlementEntry.Kind(rawValue: f[0]), !f[1].isEmpty,
            let amount = Int64(f[3]), let fen = try? Fen(amount), let at = Int64(f[4])
      else {
        throw ValidationError("settlement file", "line \(line.number) is not kind,reference,provider_reference,amount_fen,settled_at")
      }
      out.append(Line(entry: SettlementEntry(kind: kind, reference: f[1], amount: fen), providerReference: f[2], settledAt: at))
    }
    return out
  }
}

/// The provider's business day: China Standard Time (UTC+8, no daylight saving).
public enum SettlementDay {
  public static let offsetSeconds: Int64 = 8 * 3600

  public static func of(_ date: Date) -> CivilDate {
    CivilDate(dayNumber: Int((Int64(date.timeIntervalSince1970.rounded(.down)) + offsetSeconds).floorDiv(86_400)))
  }

  /// [start, end) of `day` in Unix milliseconds.
  public static func bounds(_ day: CivilDate) -> (start: Int64, end: Int64) {
    let start = Int64(day.dayNumber) * 86_400 - offsetSeconds
    return (start * 1000, (start + 86_400) * 1000)
  }
}

extension Int64 {
  fileprivate func floorDiv(_ d: Int64) -> Int64 {
    let q = self / d
    return (self % d != 0 && (self < 0) != (d < 0)) ? q - 1 : q
  }
}
