import OneWindowStore
import Foundation
import GRDB
import OneWindowCore

final class SQLiteMaterialStore: MaterialStore {
  let pool: DatabasePool
  init(pool: DatabasePool) { self.pool = pool }

  func save(_ m: StoredMaterial) async throws {
    try await pool.write { db in
      try db.execute(
        sql: """
          INSERT INTO materials (id, owner_id, file_name, content_type, size, sha256, uploaded_at) VALUES (?, ?, ?, ?, ?, ?, ?)
          """,
        arguments: [m.id, m.ownerID, m.fileName, m.contentType, m.size, m.sha256, SQLTime.ms(m.uploadedAt)])
    }
  }

  func material(id: String) async throws -> StoredMaterial? {
    try await pool.read { db in
      try Row.fetchOne(db, sql: "SELECT * FROM materials WHERE id = ?", arguments: [id]).map { row in
        StoredMaterial(
          id: row["id"], ownerID: row["owner_id"], fileName: row["file_name"], contentType: row["content_type"],
          size: row["size"], sha256: row["sha256"], uploadedAt: SQLTime.date(row["uploaded_at"] as Int64))
      }
    }
  }

  func cases(containing materialID: String) async throws -> [CaseRecord] {
    try await pool.read { db in
      try SQLiteCaseStore.records(
        db, sql: "id IN (SELECT case_id FROM case_materials WHERE material_id = ?)", [materialID])
    }
  }

  func owns(ownerID: String, sha256: String) async throws -> Bool {
    try await pool.read { db in
      try Bool.fetchOne(
        db, sql: "SELECT EXISTS (SELECT 1 FROM materials WHERE owner_id = ? AND sha256 = ?)", arguments: [ownerID, sha256]) ?? false
    }
  }
}

final class SQLiteCertificateStore: CertificateStore {
  let pool: DatabasePool
  init(pool: DatabasePool) { self.pool = pool }

  static func insert(_ c: StoredCertificate, _ db: Database) throws {
    try db.execute(
      sql: """
        INSERT INTO certificates (number, holder_id, case_id, issuer_department, type, issued_day, expires_day, signed, key_id,
          created_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        """,
      arguments: [
        c.payload.number, c.holderID, c.caseID, c.payload.issuerDepartmentCode, c.payload.type, c.payload.issuedOn.dayNumber,
        c.payload.expiresOn?.dayNumber, c.signed, c.payload.keyID, SQLTime.ms(c.createdAt),
      ])
  }

  static func certificate(_ row: Row) throws -> StoredCertificate {
    let signed: String = row["signed"]
    let parts = signed.split(separator: ".")
    guard parts.count == 3, let bytes = Base64URL.decode(String(parts[1])),
          let payload = CertificatePayload(canonicalJSON: bytes)
    else { throw StoreError.failedPrecondition("stored certificate \(row["number"] as String) is unreadable") }
    return StoredCertificate(
      payload: payload, signed: signed, holderID: row["holder_id"], caseID: row["case_id"],
      revokedAt: SQLTime.date(row["revoked_at"] as Int64?), revocationReason: row["revocation_reason"],
      createdAt: SQLTime.date(row["created_at"] as Int64))
  }

  func certificate(number: String) async throws -> StoredCertificate? {
    try await pool.read { db in
      try Row.fetchOne(db, sql: "SELECT * FROM certificates WHERE number = ?", arguments: [number]).map(Self.certificate)
    }
  }

  func certificates(holderID: String) async throws -> [StoredCertificate] {
    try await pool.read { db in
      try Row.fetchAll(
        db, sql: "SELECT * FROM certificates WHERE holder_id = ? ORDER BY created_at DESC, number", arguments: [holderID]
      ).map(Self.certificate)
    }
  }

  func revoke(number: String, reason: String, audit: AuditEvent, now: Date) async throws -> StoredCertificate {
    try await pool.write { db in
      guard let row = try Row.fetchOne(db, sql: "SELECT * FROM certificates WHERE number = ?", arguments: [number]) else {
        throw StoreError.notFound("certificate '\(number)'")
      }
      if (row["revoked_at"] as Int64?) != nil {
        throw StoreError.failedPrecondition("certificate \(number) is already revoked")
      }
      try db.execute(
        sql: "UPDATE certificates SET revoked_at = ?, revocation_reason = ? WHERE number = ?",
        arguments: [SQLTime.ms(now), reason, number])
      try SQLiteAudit.append(audit, now: now, db)
      guard let updated = try Row.fetchOne(db, sql: "SELECT * FROM certificates WHERE number = ?", arguments: [number]) else {
        throw StoreError.notFound("certificate '\(number)'")
      }
      return try Self.certificate(updated)
    }
  }
}

final class SQLiteEvaluationStore: EvaluationStore {
  let pool: DatabasePool
  init(pool: DatabasePool) { self.pool = pool }

  func rate(_ e: Evaluation, audit: AuditEvent, now: Date) async throws -> Evaluation {
    try await pool.write { db in
      guard let body = try String.fetchOne(db, sql: "SELECT body FROM cases WHERE id = ?", arguments: [e.caseID]) else {
        throw StoreError.notFound("case '\(e.caseID)'")
      }
      if try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM evaluations WHERE case_id = ?)", arguments: [e.caseID]) ?? false {
        throw StoreError.failedPrecondition("this case was already rated: one evaluation per case (一事一评)")
      }
      try Self.write(e, insert: true, now: now, db)
      // The case remembers it was rated (not a transition: its version stays).
      var record = try CaseRowCoding.decoder.decode(CaseRecord.self, from: Data(body.utf8))
      record.evaluated = true
      try db.execute(sql: "UPDATE cases SET body = ? WHERE id = ?", arguments: [try CaseRowCoding.body(record), e.caseID])
      try SQLiteAudit.append(audit, now: now, db)
      return e
    }
  }

  func evaluation(caseID: String) async throws -> Evaluation? {
    try await pool.read { db in
      try String.fetchOne(db, sql: "SELECT body FROM evaluations WHERE case_id = ?", arguments: [caseID])
        .map(CaseRowCoding.decodeEvaluation)
    }
  }

  func update(_ e: Evaluation, expectedVersion: Int64, audit: AuditEvent, now: Date) async throws -> Evaluation {
    try await pool.write { db in
      guard let current = try Int64.fetchOne(db, sql: "SELECT version FROM evaluations WHERE case_id = ?", arguments: [e.caseID]) else {
        throw StoreError.notFound("evaluation of case '\(e.caseID)'")
      }
      guard current == expectedVersion else { throw StoreError.versionConflict(current: current) }
      try Self.write(e, insert: false, now: now, db)
      try SQLiteAudit.append(audit, now: now, db)
      return e
    }
  }

  static func write(_ e: Evaluation, insert: Bool, now: Date, _ db: Database) throws {
    let body = try CaseRowCoding.encode(e)
    if insert {
      try db.execute(
        sql: """
          INSERT INTO evaluations (case_id, department_code, item_code, applicant_id, level, status, version, body, created_at)
          VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
          """,
        arguments: [
          e.caseID, e.departmentCode, e.itemCode, e.applicantID, e.level, e.status.rawValue, e.version, body, SQLTime.ms(now),
        ])
    } else {
      try db.execute(
        sql: "UPDATE evaluations SET status = ?, version = ?, body = ? WHERE case_id = ?",
        arguments: [e.status.rawValue, e.version, body, e.caseID])
    }
  }

  func rectifications(department: String?, pendingOnly: Bool) async throws -> [Evaluation] {
    try await pool.read { db in
      var sql = "SELECT body FROM evaluations WHERE level <= \(EvaluationRules.badLevel)"
      var arguments: [any DatabaseValueConvertible] = []
      if let department { sql += " AND department_code = ?"; arguments.append(department) }
      if pendingOnly { sql += " AND status IN ('rectifying', 'appealed')" }
      return try String.fetchAll(db, sql: sql + " ORDER BY created_at, case_id", arguments: StatementArguments(arguments))
        .map(CaseRowCoding.decodeEvaluation)
    }
  }

  func all() async throws -> [Evaluation] {
    try await pool.read { db in
      try String.fetchAll(db, sql: "SELECT body FROM evaluations ORDER BY created_at").map(CaseRowCoding.decodeEvaluation)
    }
  }
}
