import Foundation
import Logging
import OneWindowCore
import OneWindowStore
import PostgresNIO

// MARK: - Audit

/// Appends to the hash chain inside the caller's write transaction. Every PostgreSQL store
/// that audits a write calls this in that write's transaction, as SQLite's stores call
/// `SQLiteAudit.append`.
enum PostgresAudit {
  /// Appends `event` to the chain. The head row's lock serializes appenders until commit (each
  /// entry's seq and prev_hash come from the head); call it last in a transaction, after the
  /// write's own row locks, so audited writes queue on it only briefly.
  static func append(_ conn: PostgresConnection, _ event: AuditEvent, now: Date, logger: Logger) async throws {
    // One statement locks the head and reads it: after waiting for another appender, the UPDATE
    // sees that appender's committed head (READ COMMITTED re-reads a row it had to wait for).
    guard let head = try await conn.all(
      "UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash", as: (Int64, String).self, logger: logger
    ).first
    else { throw StoreError.failedPrecondition("audit_head is missing; the database was not migrated") }
    let (sequence, previous) = head
    let at = PGTime.ms(now)
    let hash = AuditChain.hash(
      sequence: sequence, atMillis: at, actorID: event.actorID, actorRole: event.actorRole,
      actorDepartment: event.actorDepartment, action: event.action, targetType: event.targetType, targetID: event.targetID,
      subjectID: event.subjectID, reason: event.reason, clientAddress: event.clientAddress, previousHash: previous)
    try await conn.run(
      """
      WITH head AS (UPDATE audit_head SET hash = \(hash) WHERE id = 1)
      INSERT INTO audit_log (seq, at, actor_id, actor_role, actor_department, action, target_type, target_id, subject_id,
        reason, client_address, prev_hash, hash)
      VALUES (\(sequence), \(at), \(event.actorID), \(event.actorRole), \(event.actorDepartment), \(event.action),
        \(event.targetType), \(event.targetID), \(event.subjectID), \(event.reason), \(event.clientAddress), \(previous), \(hash))
      """, logger: logger)
  }

  static let columns =
    "seq, at, actor_id, actor_role, actor_department, action, target_type, target_id, subject_id, reason, client_address, prev_hash, hash"

  static func entry(_ row: PostgresRandomAccessRow) throws -> AuditEntry {
    AuditEntry(
      sequence: try row["seq"].decode(Int64.self), at: PGTime.date(try row["at"].decode(Int64.self)),
      actorID: try row["actor_id"].decode(String?.self), actorRole: try row["actor_role"].decode(String.self),
      actorDepartment: try row["actor_department"].decode(String?.self), action: try row["action"].decode(String.self),
      targetType: try row["target_type"].decode(String.self), targetID: try row["target_id"].decode(String.self),
      subjectID: try row["subject_id"].decode(String?.self), reason: try row["reason"].decode(String.self),
      clientAddress: try row["client_address"].decode(String?.self),
      previousHash: try row["prev_hash"].decode(String.self), hash: try row["hash"].decode(String.self))
  }
}

/// The audit log on PostgreSQL.
struct PostgresAuditStore: AuditStore {
  let pool: PostgresPool
  var logger: Logger { pool.logger }

  func append(_ event: AuditEvent, now: Date) async throws {
    try await pool.write { conn in try await PostgresAudit.append(conn, event, now: now, logger: logger) }
  }

  func entries(after sequence: Int64, limit: Int) async throws -> [AuditEntry] {
    try await pool.read { conn in
      try await conn.rows(
        PostgresQuery(
          unsafeSQL: "SELECT \(PostgresAudit.columns) FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2",
          binds: { var b = PostgresBindings(); b.append(sequence); b.append(Int64(limit)); return b }()),
        logger: logger
      ).map(PostgresAudit.entry)
    }
  }

  func entries(targetID: String?, subjectID: String?, beforeSequence: Int64?, limit: Int) async throws -> [AuditEntry] {
    try await pool.read { conn in
      var binds = PostgresBindings()
      binds.append(beforeSequence ?? Int64.max)
      var conditions = ["seq < $1"]
      if let targetID { binds.append(targetID); conditions.append("target_id = $\(binds.count)") }
      if let subjectID { binds.append(subjectID); conditions.append("subject_id = $\(binds.count)") }
      binds.append(Int64(limit))
      let sql = """
        SELECT \(PostgresAudit.columns) FROM audit_log WHERE \(conditions.joined(separator: " AND "))
        ORDER BY seq DESC LIMIT $\(binds.count)
        """
      return try await conn.rows(PostgresQuery(unsafeSQL: sql, binds: binds), logger: logger).map(PostgresAudit.entry)
    }
  }
}

// MARK: - Materials

/// Uploaded materials' metadata on PostgreSQL (content stays in the data directory).
struct PostgresMaterialStore: MaterialStore {
  let pool: PostgresPool
  var logger: Logger { pool.logger }

  func save(_ m: StoredMaterial) async throws {
    try await pool.write { conn in
      try await conn.run(
        """
        INSERT INTO materials (id, owner_id, file_name, content_type, size, sha256, uploaded_at)
        VALUES (\(m.id), \(m.ownerID), \(m.fileName), \(m.contentType), \(m.size), \(m.sha256), \(PGTime.ms(m.uploadedAt)))
        """, logger: logger)
    }
  }

  func material(id: String) async throws -> StoredMaterial? {
    try await pool.rows(
      "SELECT id, owner_id, file_name, content_type, size, sha256, uploaded_at FROM materials WHERE id = \(id)"
    ).first.map { row in
      StoredMaterial(
        id: try row["id"].decode(String.self), ownerID: try row["owner_id"].decode(String.self),
        fileName: try row["file_name"].decode(String.self), contentType: try row["content_type"].decode(String.self),
        size: try row["size"].decode(Int64.self), sha256: try row["sha256"].decode(String.self),
        uploadedAt: PGTime.date(try row["uploaded_at"].decode(Int64.self)))
    }
  }

  func cases(containing materialID: String) async throws -> [CaseRecord] {
    try await pool.read { conn in
      var binds = PostgresBindings()
      binds.append(materialID)
      return try await PostgresCaseStore.records(
        conn, "id IN (SELECT case_id FROM case_materials WHERE material_id = $1)", binds, logger: logger)
    }
  }

  func owns(ownerID: String, sha256: String) async throws -> Bool {
    try await pool.read { conn in
      try await conn.run("SELECT 1 FROM materials WHERE owner_id = \(ownerID) AND sha256 = \(sha256) LIMIT 1", logger: logger) > 0
    }
  }
}

// MARK: - Certificates

/// Issued certificates on PostgreSQL (issued by case transitions; revoked here).
struct PostgresCertificateStore: CertificateStore {
  let pool: PostgresPool
  var logger: Logger { pool.logger }

  static let columns = """
    number, holder_id, case_id, issuer_department, type, issued_day, expires_day, signed, key_id, revoked_at,
    revocation_reason, created_at
    """

  static func certificate(_ row: PostgresRandomAccessRow) throws -> StoredCertificate {
    let signed = try row["signed"].decode(String.self)
    let parts = signed.split(separator: ".")
    guard parts.count == 3, let bytes = Base64URL.decode(String(parts[1])),
          let payload = CertificatePayload(canonicalJSON: bytes)
    else { throw StoreError.failedPrecondition("stored certificate \(try row["number"].decode(String.self)) is unreadable") }
    return StoredCertificate(
      payload: payload, signed: signed, holderID: try row["holder_id"].decode(String.self),
      caseID: try row["case_id"].decode(String.self), revokedAt: PGTime.date(try row["revoked_at"].decode(Int64?.self)),
      revocationReason: try row["revocation_reason"].decode(String.self),
      createdAt: PGTime.date(try row["created_at"].decode(Int64.self)))
  }

  static func load(_ conn: PostgresConnection, number: String, lock: Bool, logger: Logger) async throws -> StoredCertificate? {
    var binds = PostgresBindings()
    binds.append(number)
    let sql = "SELECT \(columns) FROM certificates WHERE number = $1" + (lock ? " FOR UPDATE" : "")
    return try await conn.rows(PostgresQuery(unsafeSQL: sql, binds: binds), logger: logger).first.map(certificate)
  }

  func certificate(number: String) async throws -> StoredCertificate? {
    try await pool.read { conn in try await Self.load(conn, number: number, lock: false, logger: logger) }
  }

  func certificates(holderID: String) async throws -> [StoredCertificate] {
    try await pool.read { conn in
      var binds = PostgresBindings()
      binds.append(holderID)
      let sql = "SELECT \(Self.columns) FROM certificates WHERE holder_id = $1 ORDER BY created_at DESC, number"
      return try await conn.rows(PostgresQuery(unsafeSQL: sql, binds: binds), logger: logger).map(Self.certificate)
    }
  }

  func revoke(number: String, reason: String, audit: AuditEvent, now: Date) async throws -> StoredCertificate {
    try await pool.write { conn in
      // Row lock: two concurrent revocations must not both pass the "already revoked" check.
      guard let current = try await Self.load(conn, number: number, lock: true, logger: logger) else {
        throw StoreError.notFound("certificate '\(number)'")
      }
      if current.revokedAt != nil { throw StoreError.failedPrecondition("certificate \(number) is already revoked") }
      try await conn.run(
        "UPDATE certificates SET revoked_at = \(PGTime.ms(now)), revocation_reason = \(reason) WHERE number = \(number)",
        logger: logger)
      guard let updated = try await Self.load(conn, number: number, lock: false, logger: logger) else {
        throw StoreError.notFound("certificate '\(number)'")
      }
      // Last: the audit head lock is held to commit, so nothing else waits behind it.
      try await PostgresAudit.append(conn, audit, now: now, logger: logger)
      return updated
    }
  }
}

// MARK: - Evaluations

/// Service evaluations (好差评) on PostgreSQL.
struct PostgresEvaluationStore: EvaluationStore {
  let pool: PostgresPool
  var logger: Logger { pool.logger }

  func rate(_ e: Evaluation, audit: AuditEvent, now: Date) async throws -> Evaluation {
    try await pool.write { conn in
      // Case row lock: two concurrent ratings of one case must not both pass the one-rating
      // check, and the case body rewrite must not lose a concurrent change to it.
      guard let body = try await conn.all(
        "SELECT body FROM cases WHERE id = \(e.caseID) FOR UPDATE", as: String.self, logger: logger
      ).first
      else { throw StoreError.notFound("case '\(e.caseID)'") }
      if try await conn.run("SELECT 1 FROM evaluations WHERE case_id = \(e.caseID)", logger: logger) > 0 {
        throw StoreError.failedPrecondition("this case was already rated: one evaluation per case (一事一评)")
      }
      try await Self.write(e, insert: true, now: now, conn, logger: logger)
      // The case remembers it was rated (not a transition: its version stays).
      var record = try CaseRowCoding.decoder.decode(CaseRecord.self, from: Data(body.utf8))
      record.evaluated = true
      try await conn.run(
        "UPDATE cases SET body = \(try CaseRowCoding.body(record)) WHERE id = \(e.caseID)", logger: logger)
      try await PostgresAudit.append(conn, audit, now: now, logger: logger)
      return e
    }
  }

  func evaluation(caseID: String) async throws -> Evaluation? {
    try await pool.read { conn in
      try await conn.all("SELECT body FROM evaluations WHERE case_id = \(caseID)", as: String.self, logger: logger)
        .first.map(CaseRowCoding.decodeEvaluation)
    }
  }

  func update(_ e: Evaluation, expectedVersion: Int64, audit: AuditEvent, now: Date) async throws -> Evaluation {
    try await pool.write { conn in
      // Row lock: the version check and the write must see the same version.
      guard let current = try await conn.all(
        "SELECT version FROM evaluations WHERE case_id = \(e.caseID) FOR UPDATE", as: Int64.self, logger: logger
      ).first
      else { throw StoreError.notFound("evaluation of case '\(e.caseID)'") }
      guard current == expectedVersion else { throw StoreError.versionConflict(current: current) }
      try await Self.write(e, insert: false, now: now, conn, logger: logger)
      try await PostgresAudit.append(conn, audit, now: now, logger: logger)
      return e
    }
  }

  static func write(_ e: Evaluation, insert: Bool, now: Date, _ conn: PostgresConnection, logger: Logger) async throws {
    let body = try CaseRowCoding.encode(e)
    if insert {
      try await conn.run(
        """
        INSERT INTO evaluations (case_id, department_code, item_code, applicant_id, level, status, version, body, created_at)
        VALUES (\(e.caseID), \(e.departmentCode), \(e.itemCode), \(e.applicantID), \(Int64(e.level)), \(e.status.rawValue),
          \(e.version), \(body), \(PGTime.ms(now)))
        """, logger: logger)
    } else {
      try await conn.run(
        "UPDATE evaluations SET status = \(e.status.rawValue), version = \(e.version), body = \(body) WHERE case_id = \(e.caseID)",
        logger: logger)
    }
  }

  func rectifications(department: String?, pendingOnly: Bool) async throws -> [Evaluation] {
    try await pool.read { conn in
      var binds = PostgresBindings()
      binds.append(Int64(EvaluationRules.badLevel))
      var sql = "SELECT body FROM evaluations WHERE level <= $1"
      if let department { binds.append(department); sql += " AND department_code = $2" }
      if pendingOnly { sql += " AND status IN ('rectifying', 'appealed')" }
      return try await conn.all(
        PostgresQuery(unsafeSQL: sql + " ORDER BY created_at, case_id", binds: binds), as: String.self, logger: logger
      ).map(CaseRowCoding.decodeEvaluation)
    }
  }

  func all() async throws -> [Evaluation] {
    try await pool.read { conn in
      try await conn.all("SELECT body FROM evaluations ORDER BY created_at", as: String.self, logger: logger)
        .map(CaseRowCoding.decodeEvaluation)
    }
  }
}
