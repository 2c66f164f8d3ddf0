import Foundation
import GRDB
import OneWindowStore

/// `StoreInspection` on SQLite: `$n` placeholders become SQLite's `?n`.
struct SQLiteInspection: StoreInspection {
  let pool: DatabasePool

  func execute(_ sql: String, _ arguments: [SQLValue]) async throws {
    try await pool.write { db in try db.execute(sql: Self.sqlite(sql), arguments: Self.arguments(arguments)) }
  }

  func rows(_ sql: String, _ arguments: [SQLValue]) async throws -> [[String: SQLValue]] {
    try await pool.read { db in
      try Row.fetchAll(db, sql: Self.sqlite(sql), arguments: Self.arguments(arguments)).map { row in
        var out: [String: SQLValue] = [:]
        for (column, value) in row {
          switch value.storage {
          case .null: out[column] = .null
          case .int64(let v): out[column] = .int(v)
          case .double(let v): out[column] = .int(Int64(v))
          case .string(let v): out[column] = .text(v)
          case .blob(let v): out[column] = .bytes([UInt8](v))
          }
        }
        return out
      }
    }
  }

  func tableNames() async throws -> [String] {
    try await pool.read { db in
      try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
    }
  }

  static func sqlite(_ sql: String) -> String {
    sql.replacing(/\$(\d+)/) { "?" + $0.output.1 }
  }

  static func arguments(_ values: [SQLValue]) -> StatementArguments {
    StatementArguments(values.map { value -> (any DatabaseValueConvertible)? in
      switch value {
      case .null: nil
      case .int(let v): v
      case .text(let v): v
      case .bytes(let v): Data(v)
      }
    })
  }
}
