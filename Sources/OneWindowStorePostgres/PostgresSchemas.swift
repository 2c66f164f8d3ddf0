import Foundation
import Logging
import PostgresNIO

/// Creating and dropping a schema, so several deployments (or test runs) can share one
/// database, each in its own `search_path=` schema.
public enum PostgresSchemas {
  public static func create(_ schema: String, settings: PostgresSettings, logger: Logger) async throws {
    try await withDatabase(settings: settings, logger: logger) { database in
      _ = try await database.write { conn in
        try await conn.run(PostgresQuery(unsafeSQL: "CREATE SCHEMA IF NOT EXISTS \(try identifier(schema))"), logger: logger)
      }
    }
  }

  public static func drop(_ schema: String, settings: PostgresSettings, logger: Logger) async throws {
    try await withDatabase(settings: settings, logger: logger) { database in
      _ = try await database.write { conn in
        try await conn.run(PostgresQuery(unsafeSQL: "DROP SCHEMA IF EXISTS \(try identifier(schema)) CASCADE"), logger: logger)
      }
    }
  }

  static func identifier(_ name: String) throws -> String {
    guard name.range(of: #"^[a-z_][a-z0-9_]{0,62}$"#, options: .regularExpression) != nil else {
      throw PostgresSettings.InvalidURL(description: "schema name \(name) must be a lower-case SQL identifier")
    }
    return name
  }

  static func withDatabase(
    settings: PostgresSettings, logger: Logger, _ body: (PostgresPool) async throws -> Void
  ) async throws {
    var plain = settings
    plain.schema = nil
    plain.maximumConnections = 1
    let database = try PostgresPool(settings: plain, logger: logger)
    do {
      try await body(database)
      await database.close()
    } catch {
      await database.close()
      throw error
    }
  }
}
