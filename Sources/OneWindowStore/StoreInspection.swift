import Foundation

/// A value passed to or read from raw SQL through `StoreInspection`.
public enum SQLValue: Sendable, Equatable, Hashable {
  case null
  case int(Int64)
  case text(String)
  case bytes([UInt8])

  public var int: Int64? { if case .int(let v) = self { v } else { nil } }
  public var text: String? { if case .text(let v) = self { v } else { nil } }
}

extension SQLValue: ExpressibleByIntegerLiteral, ExpressibleByStringLiteral {
  public init(integerLiteral value: Int64) { self = .int(value) }
  public init(stringLiteral value: String) { self = .text(value) }
}

/// Raw SQL under the store protocols, for tests and operators' checks that must look at what is
/// stored (a hash instead of a secret, a row count, a tampered audit row). Both engines implement
/// it, so one test body runs on each. Statements use `$1…$n` placeholders and the SQL both
/// engines share; never used by the server's request paths.
public protocol StoreInspection: Sendable {
  /// Runs one statement in its own transaction.
  func execute(_ sql: String, _ arguments: [SQLValue]) async throws
  /// Rows as column name → value; integers come back as `.int`, text as `.text`.
  func rows(_ sql: String, _ arguments: [SQLValue]) async throws -> [[String: SQLValue]]
  /// The engine's table names, sorted (schema checks).
  func tableNames() async throws -> [String]
}

extension StoreInspection {
  public func execute(_ sql: String, _ arguments: SQLValue...) async throws { try await execute(sql, arguments) }

  /// The first column of every row, as text.
  public func strings(_ sql: String, _ arguments: SQLValue...) async throws -> [String] {
    try await rows(sql, arguments).compactMap { row in row.count == 1 ? row.values.first?.text : nil }
  }

  /// The first column of the first row, as an integer.
  public func int(_ sql: String, _ arguments: SQLValue...) async throws -> Int64? {
    try await rows(sql, arguments).first.flatMap { row in row.count == 1 ? row.values.first?.int : nil }
  }

  public func count(_ table: String, where condition: String = "TRUE", _ arguments: SQLValue...) async throws -> Int {
    Int(try await rows("SELECT COUNT(*) AS n FROM \(table) WHERE \(condition)", arguments).first?["n"]?.int ?? -1)
  }
}
