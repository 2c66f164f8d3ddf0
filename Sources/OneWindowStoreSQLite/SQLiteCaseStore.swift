import OneWindowStore
import Foundation
import GRDB
import OneWindowCore

/// Cases in SQLite. Every write runs inside the sync store's write transaction, so the case
/// row, its status history, the outbox event, the audit entry and the applicant's `cases` sync
/// record commit together (and the sync feed sees the change in order).
final class SQLiteCaseStore: CaseStore {
  let pool: DatabasePool
  let sync: SQLiteSyncStore

  init(pool: DatabasePool, sync: SQLiteSyncStore) {
    self.pool = pool
    self.sync = sync
  }

  static let columns = "id, body, applicant_id"

  func submit(_ submission: CaseSubmission, now: Date, calendar: WorkingCalendar) async throws -> CaseRecord {
    let record = submission.record
    return try await sync.write(now: now) { db, state -> CaseRecord in
      if let existing = try Self.record(db, sql: "applicant_id = ? AND idempotency_key = ?", [record.applicantID, submission.idempotencyKey]) {
        return existing
      }
      if let other = try Self.record(db, sql: "applicant_id = ? AND draft_id = ?", [record.applicantID, record.draftID]) {
        throw StoreError.failedPrecondition(
          "draft \(record.draftID) was already submitted as case \(other.trackingCode) (with another idempotency key)")
      }
      guard let draft = try SQLiteSyncStore.record(db, collection: SyncCollections.caseDrafts.name, id: record.draftID),
            !draft.state.deleted, draft.ownerID == record.applicantID
      else { throw StoreError.notFound("draft '\(record.draftID)'") }
      guard draft.state.version == submission.draftVersion else {
        throw StoreError.failedPrecondition("the draft changed while it was being submitted; submit again")
      }
      // The queue sorts and filters by due_day: a new case pending acceptance is due by its
      // correction-notice deadline from the start (NULL would mean "paused").
      let due = record.clock.nextDeadline(in: record.state, asOf: CivilDate(now), calendar)
      try Self.insert(record, idempotencyKey: submission.idempotencyKey, dueDay: due?.dayNumber, db)
      try Self.appendHistory(record, from: 0, db)
      try Self.linkMaterials(record, db)
      try Self.emitEvents(record, from: 0, now: now, db)
      try SQLiteAudit.append(submission.audit, now: now, db)
      try Self.publish(record, today: CivilDate(now), calendar: calendar, &state, db)
      try state.delete(collection: SyncCollections.caseDrafts.name, id: record.draftID, db)
      return record
    }
  }

  func draft(id: String, applicantID: String) async throws -> (fields: [String: SyncValue], version: Int64)? {
    try await pool.read { db in
      guard let record = try SQLiteSyncStore.record(db, collection: SyncCollections.caseDrafts.name, id: id),
            !record.state.deleted, record.ownerID == applicantID
      else { return nil }
      return (record.state.values, record.state.version)
    }
  }

  func caseRecord(applicantID: String, idempotencyKey: String) async throws -> CaseRecord? {
    try await pool.read { db in try Self.record(db, sql: "applicant_id = ? AND idempotency_key = ?", [applicantID, idempotencyKey]) }
  }

  func caseRecord(applicantID: String, draftID: String) async throws -> CaseRecord? {
    try await pool.read { db in try Self.record(db, sql: "applicant_id = ? AND draft_id = ?", [applicantID, draftID]) }
  }

  func caseRecord(id: String) async throws -> CaseRecord? {
    try await pool.read { db in try Self.record(db, sql: "id = ?", [id]) }
  }

  func caseRecord(trackingCode: String) async throws -> CaseRecord? {
    try await pool.read { db in try Self.record(db, sql: "tracking_code = ?", [trackingCode]) }
  }

  func trackingCheck(trackingCode: String) async throws -> CaseTrackingCheck? {
    try await pool.read { db in
      // From the covering index alone (v7-case-phone-check): the planner would pick the unique index on
      // tracking_code and then read the row, past its body, to reach phone_check.
      let statement = try db.cachedStatement(
        sql: "SELECT id, phone_check FROM cases INDEXED BY cases_tracking_check WHERE tracking_code = ?")
      return try Row.fetchOne(statement, arguments: [trackingCode]).map { CaseTrackingCheck(caseID: $0["id"], phoneCheck: $0["phone_check"]) }
    }
  }

  func cases(applicantID: String, limit: Int, after: (Date, String)?) async throws -> [CaseRecord] {
    try await pool.read { db in
      if let (at, id) = after {
        return try Self.records(
          db,
          sql: "applicant_id = ? AND (submitted_at < ? OR (submitted_at = ? AND id < ?)) ORDER BY submitted_at DESC, id DESC LIMIT ?",
          [applicantID, SQLTime.ms(at), SQLTime.ms(at), id, limit])
      }
      return try Self.records(db, sql: "applicant_id = ? ORDER BY submitted_at DESC, id DESC LIMIT ?", [applicantID, limit])
    }
  }

  func update(_ updated: CaseRecord, expectedVersion: Int64, effects: CaseEffects, now: Date) async throws -> CaseRecord {
    try await sync.write(now: now) { db, state -> CaseRecord in
      guard let current = try Int64.fetchOne(db, sql: "SELECT version FROM cases WHERE id = ?", arguments: [updated.id]) else {
        throw StoreError.notFound("case '\(updated.id)'")
      }
      guard current == expectedVersion else { throw StoreError.versionConflict(current: current) }
      let stored = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM case_status_history WHERE case_id = ?", arguments: [updated.id]) ?? 0
      // A rating made since the caller read the case (rating does not bump the version) stays recorded.
      var updated = updated
      updated.evaluated = try updated.evaluated
        || (Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM evaluations WHERE case_id = ?)", arguments: [updated.id]) ?? false)
      try db.execute(
        sql: """
          UPDATE cases SET state = ?, version = ?, handling_department = ?, due_day = ?, received_day = ?, body = ?, updated_at = ?
          WHERE id = ?
          """,
        arguments: [
          updated.state.rawValue, updated.version, updated.handlingDepartment,
          updated.clock.nextDeadline(in: updated.state, asOf: effects.today, effects.calendar)?.dayNumber,
          updated.clock.receivedOn?.dayNumber, try CaseRowCoding.body(updated), SQLTime.ms(now), updated.id,
        ])
      try Self.appendHistory(updated, from: stored, db)
      try Self.linkMaterials(updated, db)
      try Self.emitEvents(updated, from: stored, now: now, db)
      try SQLiteAudit.append(effects.audit, now: now, db)
      if let certificate = effects.certificate {
        try SQLiteCertificateStore.insert(certificate, db)
        var issued = effects.audit
        issued.action = "certificate.issue"
        issued.targetType = "certificate"
        issued.targetID = certificate.payload.number
        try SQLiteAudit.append(issued, now: now, db)
      }
      if let old = effects.revokedCertificate {
        let reason = "case reopened: \(effects.audit.reason)"
        try db.execute(
          sql: "UPDATE certificates SET revoked_at = ?, revocation_reason = ? WHERE number = ? AND revoked_at IS NULL",
          arguments: [SQLTime.ms(now), reason, old])
        if db.changesCount > 0 {
          var revoked = effects.audit
          revoked.action = "certificate.revoke"
          revoked.targetType = "certificate"
          revoked.targetID = old
          revoked.reason = reason
          try SQLiteAudit.append(revoked, now: now, db)
        }
      }
      try Self.publish(updated, today: effects.today, calendar: effects.calendar, &state, db)
      return updated
    }
  }

  func queue(department: String, today: CivilDate, dueSoonBy: CivilDate, filter: QueueSelection, limit: Int, offset: Int)
    async throws -> CaseQueuePage
  {
    let waiting = Self.awaitingDepartment.map { "'\($0.rawValue)'" }.joined(separator: ", ")
    let base = "handling_department = ? AND state IN (\(waiting))"
    return try await pool.read { db in
      let condition: String
      var arguments: [any DatabaseValueConvertible] = [department]
      switch filter {
      case .all: condition = base
      case .overdue: condition = base + " AND due_day < ?"; arguments.append(today.dayNumber)
      case .dueSoon: condition = base + " AND due_day <= ?"; arguments.append(dueSoonBy.dayNumber)
      }
      // Paused cases (no due day) last; then earliest deadline, then oldest submission.
      // A queue page lists cases; it does not need their histories.
      let cases = try Self.records(
        db, sql: "\(condition) ORDER BY due_day IS NULL, due_day, submitted_at, id LIMIT ? OFFSET ?",
        StatementArguments(arguments + [limit, offset]), withHistory: false)
      let overdue = try Int.fetchOne(
        db, sql: "SELECT COUNT(*) FROM cases WHERE \(base) AND due_day < ?", arguments: [department, today.dayNumber]) ?? 0
      let dueSoon = try Int.fetchOne(
        db, sql: "SELECT COUNT(*) FROM cases WHERE \(base) AND due_day <= ?", arguments: [department, dueSoonBy.dayNumber]) ?? 0
      return CaseQueuePage(cases: cases, overdue: overdue, dueSoon: dueSoon)
    }
  }

  /// States in which the handling department has something to do.
  static let awaitingDepartment: [CaseState] = [.pendingAcceptance, .accepted, .underReview, .suspended, .approved, .denied, .completed, .resultDelivering]

  func pendingAcceptance(receivedOnOrBefore day: CivilDate) async throws -> [CaseRecord] {
    try await pool.read { db in
      try Self.records(
        db, sql: "state = ? AND received_day <= ? ORDER BY received_day, id", [CaseState.pendingAcceptance.rawValue, day.dayNumber])
    }
  }

  func casesDue(from: CivilDate, until: CivilDate, limit: Int) async throws -> [CaseRecord] {
    let waiting = Self.awaitingDepartment.map { "'\($0.rawValue)'" }.joined(separator: ", ")
    return try await pool.read { db in
      try Self.records(
        db, sql: "state IN (\(waiting)) AND due_day >= ? AND due_day <= ? ORDER BY due_day, id LIMIT ?",
        [from.dayNumber, until.dayNumber, limit],
        withHistory: false)
    }
  }

  // MARK: - Rows


  static func insert(_ r: CaseRecord, idempotencyKey: String, dueDay: Int?, _ db: Database) throws {
    try db.execute(
      sql: """
        INSERT INTO cases (id, tracking_code, applicant_id, draft_id, idempotency_key, item_code, state, version,
          handling_department, due_day, received_day, body, submitted_at, updated_at, phone_check)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        """,
      arguments: [
        r.id, r.trackingCode, r.applicantID, r.draftID, idempotencyKey, r.item.code, r.state.rawValue, r.version,
        r.handlingDepartment, dueDay, r.clock.receivedOn?.dayNumber, try CaseRowCoding.body(r), SQLTime.ms(r.submittedAt),
        SQLTime.ms(r.updatedAt), r.phoneCheck,
      ])
  }

  static func appendHistory(_ r: CaseRecord, from stored: Int, _ db: Database) throws {
    for (i, entry) in r.history.enumerated().dropFirst(stored) {
      try db.execute(
        sql: "INSERT INTO case_status_history (case_id, seq, at, body) VALUES (?, ?, ?, ?)",
        arguments: [r.id, i + 1, SQLTime.ms(entry.at), try CaseRowCoding.encode(entry)])
    }
  }

  /// Records which uploaded materials belong to the case (download authorization).
  static func linkMaterials(_ r: CaseRecord, _ db: Database) throws {
    let ids = r.materials.compactMap(\.materialID) + r.history.flatMap(\.attachmentIDs)
    for id in Set(ids) {
      try db.execute(sql: "INSERT OR IGNORE INTO case_materials (case_id, material_id) VALUES (?, ?)", arguments: [r.id, id])
    }
  }

  /// One `case.transition` outbox event per new status row.
  static func emitEvents(_ r: CaseRecord, from stored: Int, now: Date, _ db: Database) throws {
    for entry in r.history.dropFirst(stored) {
      let payload: [String: String] = [
        "case_id": r.id, "tracking_code": r.trackingCode, "applicant_id": r.applicantID, "item_code": r.item.code,
        "event": entry.event.rawValue, "state": entry.state.rawValue, "department": r.handlingDepartment,
        "missing_items": entry.missingItems.joined(separator: "\n"), "item_name": r.item.name, "reason": entry.reason,
        "certificate_number": r.certificateNumber ?? "", "at": String(SQLTime.ms(entry.at)),
      ]
      try db.execute(
        sql: "INSERT INTO event_outbox (topic, aggregate_id, payload, created_at) VALUES ('case.transition', ?, ?, ?)",
        arguments: [r.id, try CaseRowCoding.encode(payload), SQLTime.ms(now)])
    }
  }

  /// The applicant's `cases` sync record.
  static func publish(_ r: CaseRecord, today: CivilDate, calendar: WorkingCalendar, _ state: inout SQLiteSyncStore.WriteState, _ db: Database) throws {
    let due = r.clock.nextDeadline(in: r.state, asOf: today, calendar)
    let values: [String: SyncValue] = [
      "tracking_code": .string(r.trackingCode), "item_code": .string(r.item.code), "item_name": .string(r.item.name),
      "state": .string(r.state.rawValue), "version": .int(r.version), "current_step": .int(Int64(r.currentStep)),
      "next_due": .string(due?.description ?? ""), "updated_at": .timestamp(SQLTime.ms(r.updatedAt)),
    ]
    try state.upsert(
      collection: SyncCollections.cases.name, id: r.id, ownerID: r.applicantID, audience: AudienceLabel.account(r.applicantID),
      values: values, db)
  }

  static func record(_ db: Database, sql condition: String, _ arguments: StatementArguments) throws -> CaseRecord? {
    try records(db, sql: condition + " LIMIT 1", arguments).first
  }

  /// `withHistory` false leaves `history` empty: only for read-only listings, never for a record
  /// that goes back to `update` (which appends the history rows beyond those stored).
  static func records(
    _ db: Database, sql condition: String, _ arguments: StatementArguments, withHistory: Bool = true
  ) throws -> [CaseRecord] {
    // Cached statements: the conditions come from a fixed set of call sites, and compiling SQL
    // (with GRDB's authorizer) costs more than running these lookups.
    let rows = try Row.fetchAll(db.cachedStatement(sql: "SELECT \(columns) FROM cases WHERE \(condition)"), arguments: arguments)
    let history = try db.cachedStatement(sql: "SELECT body FROM case_status_history WHERE case_id = ? ORDER BY seq")
    return try rows.map { row in
      var record = try CaseRowCoding.decoder.decode(CaseRecord.self, from: Data((row["body"] as String).utf8))
      guard withHistory else { return record }
      record.history = try String.fetchAll(history, arguments: [record.id])
        .map { try CaseRowCoding.decoder.decode(CaseStatusEntry.self, from: Data($0.utf8)) }
      return record
    }
  }

}

// MARK: - Audit

/// Appends to the hash chain inside the caller's transaction (the single writer makes the
/// read of the last hash and the insert atomic).
enum SQLiteAudit {
  static func append(_ event: AuditEvent, now: Date, _ db: Database) throws {
    let last = try Row.fetchOne(db.cachedStatement(sql: "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"))
    let sequence = (last?["seq"] as Int64? ?? 0) + 1
    let previous = last?["hash"] as String? ?? AuditChain.genesis
    let at = SQLTime.ms(now)
    let hash = AuditChain.hash(
      sequence: sequence, atMillis: at, actorID: event.actorID, actorRole: event.actorRole,
      actorDepartment: event.actorDepartment, action: event.action, targetType: event.targetType, targetID: event.targetID,
      subjectID: event.subjectID, reason: event.reason, clientAddress: event.clientAddress, previousHash: previous)
    try db.cachedStatement(
      sql: """
        INSERT INTO audit_log (seq, at, actor_id, actor_role, actor_department, action, target_type, target_id, subject_id,
          reason, client_address, prev_hash, hash)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        """
    ).execute(arguments: [
      sequence, at, event.actorID, event.actorRole, event.actorDepartment, event.action, event.targetType, event.targetID,
      event.subjectID, event.reason, event.clientAddress, previous, hash,
    ])
  }

  static func entry(_ row: Row) -> AuditEntry {
    AuditEntry(
      sequence: row["seq"], at: SQLTime.date(row["at"] as Int64), actorID: row["actor_id"], actorRole: row["actor_role"],
      actorDepartment: row["actor_department"], action: row["action"], targetType: row["target_type"],
      targetID: row["target_id"], subjectID: row["subject_id"], reason: row["reason"], clientAddress: row["client_address"],
      previousHash: row["prev_hash"], hash: row["hash"])
  }
}

final class SQLiteAuditStore: AuditStore {
  let pool: DatabasePool
  init(pool: DatabasePool) { self.pool = pool }

  func append(_ event: AuditEvent, now: Date) async throws {
    try await pool.write { db in try SQLiteAudit.append(event, now: now, db) }
  }

  func entries(after sequence: Int64, limit: Int) async throws -> [AuditEntry] {
    try await pool.read { db in
      try Row.fetchAll(db, sql: "SELECT * FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?", arguments: [sequence, limit])
        .map(SQLiteAudit.entry)
    }
  }

  func entries(targetID: String?, subjectID: String?, beforeSequence: Int64?, limit: Int) async throws -> [AuditEntry] {
    try await pool.read { db in
      var conditions = ["seq < ?"]
      var arguments: [any DatabaseValueConvertible] = [beforeSequence ?? Int64.max]
      if let targetID { conditions.append("target_id = ?"); arguments.append(targetID) }
      if let subjectID { conditions.append("subject_id = ?"); arguments.append(subjectID) }
      return try Row.fetchAll(
        db, sql: "SELECT * FROM audit_log WHERE \(conditions.joined(separator: " AND ")) ORDER BY seq DESC LIMIT ?",
        arguments: StatementArguments(arguments + [limit])
      ).map(SQLiteAudit.entry)
    }
  }
}
