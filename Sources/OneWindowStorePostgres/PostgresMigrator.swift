import Foundation
import Logging
import PostgresNIO

/// Applies `PostgresMigrations` under a transaction-scoped advisory lock, so several processes
/// starting at once migrate once: the first applies, the others wait and then find nothing left.
/// Before the first migration it checks what the schema needs from the cluster and refuses,
/// naming the fix, instead of creating a database search cannot work on.
enum PostgresMigrator {
  /// The advisory lock's name: one per schema, so deployments sharing a database in separate
  /// schemas migrate independently.
  static func lockName(schema: String?) -> String { "onewindow-migrate:" + (schema ?? "public") }

  struct Refused: Error, CustomStringConvertible {
    let description: String
  }

  static func migrate(_ database: PostgresPool) async throws {
    let logger = database.logger
    try await database.write { conn in
      try await conn.run("SELECT pg_advisory_xact_lock(hashtextextended(\(lockName(schema: database.schema)), 0))", logger: logger)
      // A deployment's own schema (`search_path=` in the URL) is created on first start.
      if let schema = database.schema {
        try await conn.run(PostgresQuery(unsafeSQL: "CREATE SCHEMA IF NOT EXISTS \(try PostgresSchemas.identifier(schema))"), logger: logger)
      }
      try await conn.run(PostgresQuery(unsafeSQL: PostgresMigrations.bootstrap), logger: logger)
      let applied = Set(try await conn.all("SELECT id FROM schema_migrations", as: String.self, logger: logger))
      let pending = PostgresMigrations.all.filter { !applied.contains($0.id) }
      guard !pending.isEmpty else { return }
      try await checkCluster(conn, logger: logger)
      for migration in pending {
        logger.notice("applying migration", metadata: ["migration": "\(migration.id)"])
        try await conn.run(PostgresQuery(unsafeSQL: SQLScript.oneRoundTrip(migration.sql)), logger: logger)
        let now = Int64((Date().timeIntervalSince1970 * 1000).rounded())
        try await conn.run("INSERT INTO schema_migrations (id, applied_at) VALUES (\(migration.id), \(now))", logger: logger)
      }
    }
  }

  /// Applied migration ids in the order they were defined (which is the order they ran).
  static func applied(_ database: PostgresPool) async throws -> [String] {
    let ids = Set(try await database.read { conn in
      try await conn.all("SELECT id FROM schema_migrations", as: String.self, logger: database.logger)
    })
    return PostgresMigrations.all.map(\.id).filter { ids.contains($0) }
  }

  /// pg_trgm must be installed (creating an extension needs privileges the application role
  /// should not have), and the database's character type must classify Chinese characters as
  /// letters, or pg_trgm silently drops them and 身份证 finds nothing.
  static func checkCluster(_ conn: PostgresConnection, logger: Logger) async throws {
    let extensions = try await conn.all("SELECT extname FROM pg_extension WHERE extname = 'pg_trgm'", as: String.self, logger: logger)
    guard !extensions.isEmpty else {
      throw Refused(description: """
        the database has no pg_trgm extension, which catalog search needs; as a superuser run \
        CREATE EXTENSION pg_trgm; in this database (Debian/Ubuntu: it ships with the postgresql package), then migrate again
        """)
    }
    let ctype = try await conn.all(
      "SELECT datctype FROM pg_database WHERE datname = current_database()", as: String.self, logger: logger
    ).first ?? "?"
    let trigrams = try await conn.all("SELECT show_trgm('身份证')::text", as: String.self, logger: logger).first ?? "{}"
    guard trigrams != "{}" else {
      throw Refused(description: """
        the database's LC_CTYPE is \(ctype), under which pg_trgm drops Chinese characters and catalog search would find \
        nothing; create the database with a UTF-8 character type, e.g. \
        CREATE DATABASE onewindow TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8'; then migrate again
        """)
    }
  }
}

/// Splits a migration script into statements (the extended protocol takes one at a time): on
/// semicolons outside quotes, dollar-quoted bodies and comments.
enum SQLScript {
  /// The script as one `DO` block that `EXECUTE`s each statement, so a migration costs one round
  /// trip instead of one per statement (a start on a loaded machine would otherwise wait on
  /// dozens of round trips while holding the migration lock).
  static func oneRoundTrip(_ script: String) -> String {
    let body = statements(script).enumerated().map { index, statement in
      "EXECUTE $ow_\(index)$\(statement)$ow_\(index)$;"
    }
    return "DO $ow_migration$ BEGIN\n" + body.joined(separator: "\n") + "\nEND $ow_migration$"
  }

  static func statements(_ script: String) -> [String] {
    var out: [String] = []
    var current = ""
    var chars = Array(script)[...]
    while let c = chars.popFirst() {
      switch c {
      case "'":
        current.append(c)
        while let d = chars.popFirst() {
          current.append(d)
          if d == "'" { if chars.first == "'" { current.append(chars.removeFirst()) } else { break } }
        }
      case "-" where chars.first == "-":
        while let d = chars.popFirst(), d != "\n" {}
        current.append("\n")
      case "$":
        // A dollar quote: $tag$ … $tag$ (the tag may be empty).
        let tagChars = chars.prefix { $0 == "_" || $0.isLetter || $0.isNumber }
        guard chars.dropFirst(tagChars.count).first == "$" else { current.append(c); continue }
        let delimiter = "$" + String(tagChars) + "$"
        chars = chars.dropFirst(tagChars.count + 1)
        current += delimiter
        var body = ""
        while let d = chars.popFirst() {
          body.append(d)
          if body.hasSuffix(delimiter) { break }
        }
        current += body
      case ";":
        let statement = current.trimmingCharacters(in: .whitespacesAndNewlines)
        if !statement.isEmpty { out.append(statement) }
        current = ""
      default:
        current.append(c)
      }
    }
    let last = current.trimmingCharacters(in: .whitespacesAndNewlines)
    if !last.isEmpty { out.append(last) }
    return out
  }
}
