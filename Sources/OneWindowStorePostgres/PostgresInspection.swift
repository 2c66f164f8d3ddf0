import Foundation
import OneWindowStore
import PostgresNIO

/// `StoreInspection` on PostgreSQL.
struct PostgresInspection: StoreInspection {
  let database: PostgresPool

  func execute(_ sql: String, _ arguments: [SQLValue]) async throws {
    _ = try await database.write { conn in try await conn.run(Self.query(sql, arguments), logger: database.logger) }
  }

  func rows(_ sql: String, _ arguments: [SQLValue]) async throws -> [[String: SQLValue]] {
    try await database.read { conn in
      var out: [[String: SQLValue]] = []
      for try await row in try await conn.query(Self.query(sql, arguments), logger: database.logger) {
        var values: [String: SQLValue] = [:]
        for cell in row {
          values[cell.columnName] = try Self.value(cell)
        }
        out.append(values)
      }
      return out
    }
  }

  func tableNames() async throws -> [String] {
    try await database.read { conn in
      try await conn.all(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename",
        as: String.self, logger: database.logger)
    }
  }

  static func query(_ sql: String, _ arguments: [SQLValue]) -> PostgresQuery {
    var binds = PostgresBindings(capacity: arguments.count)
    for argument in arguments {
      switch argument {
      case .null: binds.appendNull()
      case .int(let v): binds.append(v)
      case .text(let v): binds.append(v)
      case .bytes(let v): binds.append(ByteBuffer(bytes: v))
      }
    }
    return PostgresQuery(unsafeSQL: sql, binds: binds)
  }

  static func value(_ cell: PostgresCell) throws -> SQLValue {
    guard cell.bytes != nil else { return .null }
    switch cell.dataType {
    case .int2, .int4, .int8: return .int(try cell.decode(Int64.self))
    case .bool: return .int(try cell.decode(Bool.self) ? 1 : 0)
    case .bytea: return .bytes(Array(buffer: try cell.decode(ByteBuffer.self)))
    case .float4, .float8, .numeric: return .int(Int64(try cell.decode(Double.self)))
    default: return .text(try cell.decode(String.self))
    }
  }
}
