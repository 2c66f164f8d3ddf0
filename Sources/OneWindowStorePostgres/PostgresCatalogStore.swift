import Foundation
import Logging
import OneWindowCore
import OneWindowStore
import PostgresNIO

/// Departments and the service catalog on PostgreSQL; behaves as `SQLiteCatalogStore`. Search
/// runs on `catalog_items.search_body` (the text SQLite indexes in catalog_fts.body) with pg_trgm.
struct PostgresCatalogStore: CatalogStore {
  let pool: PostgresPool
  var logger: Logger { pool.logger }

  static let itemColumns = "id, code, status, version, spec_json, created_at, updated_at, published_at"

  static func item(from row: PostgresRandomAccessRow) throws -> ServiceItem {
    let json = try row["spec_json"].decode(String.self)
    let spec = try JSONDecoder().decode(ServiceItemSpec.self, from: Data(json.utf8))
    guard let status = ItemStatus(rawValue: try row["status"].decode(String.self)) else {
      throw StoreError.failedPrecondition("item \(spec.code) has an unknown status")
    }
    return ServiceItem(
      spec: spec, status: status, version: try row["version"].decode(Int64.self),
      createdAt: PGTime.date(try row["created_at"].decode(Int64.self)),
      updatedAt: PGTime.date(try row["updated_at"].decode(Int64.self)),
      publishedAt: PGTime.date(try row["published_at"].decode(Int64?.self)))
  }

  static func encode(_ spec: ServiceItemSpec) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return String(decoding: try encoder.encode(spec), as: UTF8.self)
  }

  func departments() async throws -> [Department] {
    try await pool.read { conn in
      try await conn.all("SELECT code, name FROM departments ORDER BY code", as: (String, String).self, logger: logger)
        .map { Department(code: $0.0, name: $0.1) }
    }
  }

  func upsertDepartment(_ department: Department, now: Date, audit: AuditEvent?) async throws -> Department {
    try await pool.write { conn in
      try await Self.upsert(conn, department, now: now, logger: logger)
      if let audit { try await PostgresAudit.append(conn, audit, now: now, logger: logger) }
    }
    return department
  }

  static func upsert(_ conn: PostgresConnection, _ d: Department, now: Date, logger: Logger) async throws {
    try await conn.run(
      """
      INSERT INTO departments (code, name, created_at, updated_at) VALUES (\(d.code), \(d.name), \(PGTime.ms(now)), \(PGTime.ms(now)))
      ON CONFLICT (code) DO UPDATE SET name = excluded.name, updated_at = excluded.updated_at
      """, logger: logger)
  }

  func createItem(_ spec: ServiceItemSpec, now: Date, audit: AuditEvent?) async throws -> ServiceItem {
    try await pool.write { conn in
      guard try await Self.insert(conn, spec, publish: false, ifAbsent: false, now: now, logger: logger) else {
        throw StoreError.alreadyExists(field: "spec.code")
      }
      if let audit { try await PostgresAudit.append(conn, audit, now: now, logger: logger) }
      return ServiceItem(spec: spec, status: .draft, version: 1, createdAt: now, updatedAt: now, publishedAt: nil)
    }
  }

  /// Inserts a new item at version 1; false when `ifAbsent` and the code is taken (the import
  /// leaves existing items alone, even one a concurrent import is inserting).
  static func insert(
    _ conn: PostgresConnection, _ spec: ServiceItemSpec, publish: Bool, ifAbsent: Bool, now: Date, logger: Logger
  ) async throws -> Bool {
    let status = (publish ? ItemStatus.published : .draft).rawValue
    let publishedAt: Int64? = publish ? PGTime.ms(now) : nil
    var query: PostgresQuery = """
      INSERT INTO catalog_items (code, name, department_code, category, status, version, spec_json,
        created_at, updated_at, published_at, search_body)
      VALUES (\(spec.code), \(spec.name), \(spec.departmentCode), \(spec.category.rawValue), \(status), 1,
        \(try encode(spec)), \(PGTime.ms(now)), \(PGTime.ms(now)), \(publishedAt), \(spec.searchableBody))
      """
    if ifAbsent { query.sql += " ON CONFLICT (code) DO NOTHING" }
    query.sql += " RETURNING 1"
    do {
      return try await conn.run(query, logger: logger) == 1
    } catch let error where error.postgres?.isUniqueViolation == true {
      throw StoreError.alreadyExists(field: "spec.code")
    } catch let error where error.postgres?.isForeignKeyViolation == true {
      throw StoreError.notFound("department '\(spec.departmentCode)'")
    }
  }

  func updateItem(_ spec: ServiceItemSpec, expectedVersion: Int64, now: Date, audit: AuditEvent?) async throws -> ServiceItem {
    try await pool.write { conn in
      let (id, current) = try await Self.lock(conn, code: spec.code, logger: logger)
      guard current.version == expectedVersion else { throw StoreError.versionConflict(current: current.version) }
      do {
        try await conn.run(
          """
          UPDATE catalog_items SET name = \(spec.name), department_code = \(spec.departmentCode),
            category = \(spec.category.rawValue), spec_json = \(try Self.encode(spec)), version = version + 1,
            updated_at = \(PGTime.ms(now)), search_body = \(spec.searchableBody)
          WHERE id = \(id) AND version = \(expectedVersion)
          """, logger: logger)
      } catch let error where error.postgres?.isForeignKeyViolation == true {
        // SQLite reports its foreign-key failure untranslated; here the department is named.
        throw StoreError.notFound("department '\(spec.departmentCode)'")
      }
      var updated = current
      updated.spec = spec
      updated.version += 1
      updated.updatedAt = now
      if let audit { try await PostgresAudit.append(conn, audit, now: now, logger: logger) }
      return updated
    }
  }

  func setItemStatus(code: String, to status: ItemStatus, expectedVersion: Int64?, now: Date, audit: AuditEvent?) async throws -> ServiceItem {
    try await pool.write { conn in
      let (id, current) = try await Self.lock(conn, code: code, logger: logger)
      if let expectedVersion, current.version != expectedVersion {
        throw StoreError.versionConflict(current: current.version)
      }
      switch (current.status, status) {
      case (.draft, .published), (.withdrawn, .published), (.published, .withdrawn): break
      case (_, .draft): throw StoreError.failedPrecondition("an item cannot return to draft")
      default:
        throw StoreError.failedPrecondition("item \(code) is already \(current.status.rawValue)")
      }
      let publishedAt = status == .published ? now : current.publishedAt
      // search_body always holds the guide's text; searches only see published items, as
      // catalog_fts held only those.
      try await conn.run(
        """
        UPDATE catalog_items SET status = \(status.rawValue), version = version + 1, updated_at = \(PGTime.ms(now)),
          published_at = \(publishedAt.map(PGTime.ms)), search_body = \(current.spec.searchableBody)
        WHERE id = \(id)
        """, logger: logger)
      var updated = current
      updated.status = status
      updated.version += 1
      updated.updatedAt = now
      updated.publishedAt = publishedAt
      if let audit { try await PostgresAudit.append(conn, audit, now: now, logger: logger) }
      return updated
    }
  }

  /// Loads an item for a change, locking its row: the version check and the write must see the
  /// same version (two editors at one version: one wins, the other gets `versionConflict`).
  static func lock(_ conn: PostgresConnection, code: String, logger: Logger) async throws -> (Int64, ServiceItem) {
    let query = PostgresQuery(
      unsafeSQL: "SELECT \(itemColumns) FROM catalog_items WHERE code = $1 FOR UPDATE",
      binds: { var b = PostgresBindings(); b.append(code); return b }())
    guard let row = try await conn.rows(query, logger: logger).first else { throw StoreError.notFound("item '\(code)'") }
    return (try row["id"].decode(Int64.self), try item(from: row))
  }

  func item(code: String) async throws -> ServiceItem? {
    try await pool.rows("SELECT \(unescaped: Self.itemColumns) FROM catalog_items WHERE code = \(code)").first.map(Self.item(from:))
  }

  func items(statuses: Set<ItemStatus>) async throws -> [ServiceItem] {
    guard !statuses.isEmpty else { return [] }
    let list = statuses.map(\.rawValue)
    return try await pool.read { conn in
      let query = PostgresQuery(
        unsafeSQL: "SELECT \(Self.itemColumns) FROM catalog_items WHERE status = ANY($1) ORDER BY code",
        binds: { var b = PostgresBindings(); b.append(list); return b }())
      return try await conn.rows(query, logger: logger).map(Self.item(from:))
    }
  }

  /// Every term must occur in the name or the guide text. Terms of 3+ characters use ILIKE
  /// (case-insensitive, as FTS5's trigram tokenizer; the pg_trgm GIN indexes serve it); shorter
  /// ones are exact substring tests, as SQLite's instr(). Ranking: items whose name holds every
  /// term first (the same rule SQLite applies before bm25), then by trigram similarity of the
  /// name to the query, then by code.
  func search(_ query: SearchQuery, limit: Int, offset: Int) async throws -> [String] {
    var binds = PostgresBindings()
    func bind(_ value: String) -> String {
      binds.append(value)
      return "$\(binds.count)"
    }
    var conditions = ["status = 'published'"]
    var inName: [String] = []
    for term in query.terms {
      let pattern = bind("%" + Self.escapeLike(term) + "%")
      conditions.append("(name ILIKE \(pattern) ESCAPE '\\' OR search_body ILIKE \(pattern) ESCAPE '\\')")
      inName.append("name ILIKE \(pattern) ESCAPE '\\'")
    }
    for term in query.substrings {
      let value = bind(term)
      conditions.append("(strpos(name, \(value)) > 0 OR strpos(search_body, \(value)) > 0)")
      inName.append("strpos(name, \(value)) > 0")
    }
    let whole = bind((query.terms + query.substrings).joined(separator: " "))
    binds.append(Int64(limit))
    let limitMark = "$\(binds.count)"
    binds.append(Int64(offset))
    let offsetMark = "$\(binds.count)"
    // Name matches first, the closest names (trigram similarity) first among them; the rest by
    // code. similarity() is computed only for name matches: it is the statement's main cost.
    let nameMatch = inName.isEmpty ? "TRUE" : inName.joined(separator: " AND ")
    let sql = """
      SELECT code FROM catalog_items
      WHERE \(conditions.joined(separator: " AND "))
      ORDER BY (\(nameMatch)) DESC, CASE WHEN \(nameMatch) THEN similarity(name, \(whole)) ELSE 0 END DESC, code
      LIMIT \(limitMark) OFFSET \(offsetMark)
      """
    let statement = PostgresQuery(unsafeSQL: sql, binds: binds)
    return try await pool.all(statement, as: String.self)
  }

  /// Escapes LIKE's wildcards and its escape character, so a term matches literally.
  static func escapeLike(_ term: String) -> String {
    var out = ""
    for character in term {
      if character == "\\" || character == "%" || character == "_" { out.append("\\") }
      out.append(character)
    }
    return out
  }

  func importBundle(departments: [Department], items: [ServiceItemSpec], publish: Bool, now: Date) async throws -> Int {
    try await pool.write { conn in
      for d in departments { try await Self.upsert(conn, d, now: now, logger: logger) }
      var created = 0
      for spec in items {
        if try await Self.insert(conn, spec, publish: publish, ifAbsent: true, now: now, logger: logger) { created += 1 }
      }
      return created
    }
  }
}
