import OneWindowStore
import Foundation
import GRDB
import OneWindowCore

struct SQLiteCatalogStore: CatalogStore {
  let pool: DatabasePool

  static let itemColumns = "id, code, status, version, spec_json, created_at, updated_at, published_at"

  static func item(from row: Row) throws -> ServiceItem {
    let json: String = row["spec_json"]
    let spec = try JSONDecoder().decode(ServiceItemSpec.self, from: Data(json.utf8))
    guard let status = ItemStatus(rawValue: row["status"]) else {
      throw StoreError.failedPrecondition("item \(spec.code) has an unknown status")
    }
    return ServiceItem(
      spec: spec, status: status, version: row["version"],
      createdAt: SQLTime.date(row["created_at"] as Int64), updatedAt: SQLTime.date(row["updated_at"] as Int64),
      publishedAt: SQLTime.date(row["published_at"] as Int64?))
  }

  static func encode(_ spec: ServiceItemSpec) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return String(decoding: try encoder.encode(spec), as: UTF8.self)
  }

  func departments() async throws -> [Department] {
    try await pool.read { db in
      try Row.fetchAll(db, sql: "SELECT code, name FROM departments ORDER BY code").map {
        Department(code: $0["code"], name: $0["name"])
      }
    }
  }

  func upsertDepartment(_ department: Department, now: Date, audit: AuditEvent?) async throws -> Department {
    try await pool.write { db in
      try Self.upsert(db, department, now: now)
      if let audit { try SQLiteAudit.append(audit, now: now, db) }
    }
    return department
  }

  static func upsert(_ db: Database, _ d: Department, now: Date) throws {
    try db.execute(
      sql: """
        INSERT INTO departments (code, name, created_at, updated_at) VALUES (?, ?, ?, ?)
        ON CONFLICT (code) DO UPDATE SET name = excluded.name, updated_at = excluded.updated_at
        """,
      arguments: [d.code, d.name, SQLTime.ms(now), SQLTime.ms(now)])
  }

  func createItem(_ spec: ServiceItemSpec, now: Date, audit: AuditEvent?) async throws -> ServiceItem {
    try await pool.write { db in
      let item = try Self.insert(db, spec, publish: false, now: now)
      if let audit { try SQLiteAudit.append(audit, now: now, db) }
      return item
    }
  }

  static func insert(_ db: Database, _ spec: ServiceItemSpec, publish: Bool, now: Date) throws -> ServiceItem {
    do {
      try db.execute(
        sql: """
          INSERT INTO catalog_items (code, name, department_code, category, status, version, spec_json,
            created_at, updated_at, published_at)
          VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?, ?)
          """,
        arguments: [
          spec.code, spec.name, spec.departmentCode, spec.category.rawValue,
          (publish ? ItemStatus.published : .draft).rawValue, try encode(spec),
          SQLTime.ms(now), SQLTime.ms(now), publish ? SQLTime.ms(now) : nil,
        ])
    } catch let error as DatabaseError where error.uniqueViolationColumn != nil {
      throw StoreError.alreadyExists(field: "spec.code")
    } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_FOREIGNKEY {
      throw StoreError.notFound("department '\(spec.departmentCode)'")
    }
    if publish { try index(db, id: db.lastInsertedRowID, spec: spec) }
    return ServiceItem(spec: spec, status: publish ? .published : .draft, version: 1, createdAt: now, updatedAt: now, publishedAt: publish ? now : nil)
  }

  func updateItem(_ spec: ServiceItemSpec, expectedVersion: Int64, now: Date, audit: AuditEvent?) async throws -> ServiceItem {
    try await pool.write { db in
      let (id, current) = try Self.load(db, code: spec.code)
      guard current.version == expectedVersion else { throw StoreError.versionConflict(current: current.version) }
      try db.execute(
        sql: """
          UPDATE catalog_items SET name = ?, department_code = ?, category = ?, spec_json = ?, version = version + 1,
            updated_at = ?
          WHERE id = ? AND version = ?
          """,
        arguments: [spec.name, spec.departmentCode, spec.category.rawValue, try Self.encode(spec), SQLTime.ms(now), id, expectedVersion])
      if current.status == .published { try Self.index(db, id: id, spec: spec) }
      var updated = current
      updated.spec = spec
      updated.version += 1
      updated.updatedAt = now
      if let audit { try SQLiteAudit.append(audit, now: now, db) }
      return updated
    }
  }

  func setItemStatus(code: String, to status: ItemStatus, expectedVersion: Int64?, now: Date, audit: AuditEvent?) async throws -> ServiceItem {
    try await pool.write { db in
      let (id, current) = try Self.load(db, code: code)
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
      try db.execute(
        sql: "UPDATE catalog_items SET status = ?, version = version + 1, updated_at = ?, published_at = ? WHERE id = ?",
        arguments: [status.rawValue, SQLTime.ms(now), publishedAt.map(SQLTime.ms), id])
      if status == .published {
        try Self.index(db, id: id, spec: current.spec)
      } else {
        try db.execute(sql: "DELETE FROM catalog_fts WHERE rowid = ?", arguments: [id])
      }
      var updated = current
      updated.status = status
      updated.version += 1
      updated.updatedAt = now
      updated.publishedAt = publishedAt
      if let audit { try SQLiteAudit.append(audit, now: now, db) }
      return updated
    }
  }

  static func load(_ db: Database, code: String) throws -> (Int64, ServiceItem) {
    guard let row = try Row.fetchOne(db, sql: "SELECT \(itemColumns) FROM catalog_items WHERE code = ?", arguments: [code]) else {
      throw StoreError.notFound("item '\(code)'")
    }
    return (row["id"], try item(from: row))
  }

  /// (Re)writes the item's full-text row.
  static func index(_ db: Database, id: Int64, spec: ServiceItemSpec) throws {
    try db.execute(sql: "DELETE FROM catalog_fts WHERE rowid = ?", arguments: [id])
    try db.execute(
      sql: "INSERT INTO catalog_fts (rowid, name, body) VALUES (?, ?, ?)",
      arguments: [id, spec.name, spec.searchableBody])
  }

  func item(code: String) async throws -> ServiceItem? {
    try await pool.read { db in
      try Row.fetchOne(db.cachedStatement(sql: "SELECT \(Self.itemColumns) FROM catalog_items WHERE code = ?"), arguments: [code])
        .map(Self.item(from:))
    }
  }

  func items(statuses: Set<ItemStatus>) async throws -> [ServiceItem] {
    guard !statuses.isEmpty else { return [] }
    let list = statuses.map(\.rawValue)
    return try await pool.read { db in
      let marks = databaseQuestionMarks(count: list.count)
      return try Row.fetchAll(
        db, sql: "SELECT \(Self.itemColumns) FROM catalog_items WHERE status IN (\(marks)) ORDER BY code",
        arguments: StatementArguments(list)
      ).map(Self.item(from:))
    }
  }

  func search(_ query: SearchQuery, limit: Int, offset: Int) async throws -> [String] {
    try await pool.read { db in
      var arguments: [(any DatabaseValueConvertible)?] = []
      var conditions = ["i.status = 'published'"]
      // Short terms are plain substring tests. instr() compares bytes, which is exact for
      // Chinese and several times cheaper than LIKE (PostgreSQL: strpos()).
      for term in query.substrings {
        conditions.append("(instr(f.name, ?) > 0 OR instr(f.body, ?) > 0)")
        arguments += [term, term]
      }
      // Items whose name holds every term rank first on both engines (bm25 alone can put an
      // item with many body hits above one with the term in its name). Long terms are tested as
      // FTS5 matches them, ignoring ASCII case (LIKE); short ones as instr() above.
      var inName = query.terms.map { _ in "f.name LIKE ? ESCAPE '\\'" }
      var nameArguments: [(any DatabaseValueConvertible)?] = query.terms.map { "%" + FTS5.escapeLike($0) + "%" }
      for term in query.substrings {
        inName.append("instr(f.name, ?) > 0")
        nameArguments.append(term)
      }
      let nameFirst = inName.isEmpty ? "" : "NOT (\(inName.joined(separator: " AND "))), "
      let sql: String
      if let match = FTS5.match(query.terms) {
        // bm25 weights: a hit in the name counts ten times a hit in the body. Lower is better.
        sql = """
          SELECT i.code FROM catalog_fts f JOIN catalog_items i ON i.id = f.rowid
          WHERE catalog_fts MATCH ? AND \(conditions.joined(separator: " AND "))
          ORDER BY \(nameFirst)bm25(catalog_fts, 10.0, 1.0), i.code LIMIT ? OFFSET ?
          """
        arguments.insert(match, at: 0)
      } else {
        // Without an index to rank by: name matches first, then by code.
        sql = """
          SELECT i.code FROM catalog_fts f JOIN catalog_items i ON i.id = f.rowid
          WHERE \(conditions.joined(separator: " AND "))
          ORDER BY \(nameFirst)i.code LIMIT ? OFFSET ?
          """
      }
      arguments += nameArguments
      arguments += [limit, offset]
      // The SQL has one shape per number of long and short terms, so the statement cache stays small.
      return try String.fetchAll(db.cachedStatement(sql: sql), arguments: StatementArguments(arguments))
    }
  }

  func importBundle(departments: [Department], items: [ServiceItemSpec], publish: Bool, now: Date) async throws -> Int {
    try await pool.write { db in
      for d in departments { try Self.upsert(db, d, now: now) }
      var created = 0
      for spec in items {
        let exists = try Bool.fetchOne(db, sql: "SELECT 1 FROM catalog_items WHERE code = ?", arguments: [spec.code]) ?? false
        if exists { continue }
        _ = try Self.insert(db, spec, publish: publish, now: now)
        created += 1
      }
      return created
    }
  }
}

/// SQLite FTS5 syntax for the catalog search (trigram tokenizer).
enum FTS5 {
  /// A MATCH expression requiring every term as a quoted phrase, or nil for no terms. Terms
  /// hold no quote (`SearchQuery` splits on them), so input cannot break out of a phrase.
  static func match(_ terms: [String]) -> String? {
    terms.isEmpty ? nil : terms.map { "\"\($0.replacingOccurrences(of: "\"", with: ""))\"" }.joined(separator: " AND ")
  }

  /// Escapes LIKE's wildcards and its escape character (backslash), so a term matches literally.
  static func escapeLike(_ term: String) -> String {
    var out = ""
    for character in term {
      if character == "\\" || character == "%" || character == "_" { out.append("\\") }
      out.append(character)
    }
    return out
  }
}
