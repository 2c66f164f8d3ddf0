import Foundation
import Logging
import OneWindowCore
import OneWindowStore
import PostgresNIO

/// Cases in PostgreSQL. Every write runs inside the sync store's write transaction (which holds
/// the sync counter row lock first), so the case row, its status history, the outbox event, the
/// audit entry and the applicant's `cases` sync record commit together, and the sync feed sees
/// the change in order. Lock order: sync counter row, then the case row, then a certificate
/// row, then the audit head.
final class PostgresCaseStore: CaseStore {
  let pool: PostgresPool
  let sync: PostgresSyncStore

  init(pool: PostgresPool, sync: PostgresSyncStore) {
    self.pool = pool
    self.sync = sync
  }

  var logger: Logger { pool.logger }

  func submit(_ submission: CaseSubmission, now: Date, calendar: WorkingCalendar) async throws -> CaseRecord {
    let record = submission.record
    return try await sync.write(now: now) { conn, state -> CaseRecord in
      let logger = state.logger
      // The sync counter row lock held by `write` serializes submits, so the idempotency and
      // draft checks below cannot race another submit of the same key or draft.
      // One statement for both: a case with this idempotency key (the answer again), or another
      // case from this draft (refused).
      let earlier = try await conn.all(
        """
        SELECT id, idempotency_key, tracking_code FROM cases
        WHERE applicant_id = \(record.applicantID) AND (idempotency_key = \(submission.idempotencyKey) OR draft_id = \(record.draftID))
        """, as: (String, String, String).self, logger: logger)
      if let same = earlier.first(where: { $0.1 == submission.idempotencyKey }),
        let existing = try await Self.record(conn, "id = $1", Self.binds(same.0), logger: logger)
      {
        return existing
      }
      if let other = earlier.first {
        throw StoreError.failedPrecondition(
          "draft \(record.draftID) was already submitted as case \(other.2) (with another idempotency key)")
      }
      // The draft and the applicant's new `cases` record in one read.
      try await state.prefetch(
        [.init(collection: SyncCollections.caseDrafts.name, id: record.draftID), .init(collection: SyncCollections.cases.name, id: record.id)],
        conn)
      guard let draft = try await state.record(collection: SyncCollections.caseDrafts.name, id: record.draftID, conn),
        !draft.state.deleted, draft.ownerID == record.applicantID
      else { throw StoreError.notFound("draft '\(record.draftID)'") }
      guard draft.state.version == submission.draftVersion else {
        throw StoreError.failedPrecondition("the draft changed while it was being submitted; submit again")
      }
      // The queue sorts and filters by due_day: a new case pending acceptance is due by its
      // correction-notice deadline from the start (NULL would mean "paused").
      let due = record.clock.nextDeadline(in: record.state, asOf: CivilDate(now), calendar)
      try await Self.insert(record, idempotencyKey: submission.idempotencyKey, dueDay: due?.dayNumber, conn, logger: logger)
      try await Self.appendHistory(record, from: 0, conn, logger: logger)
      try await Self.linkMaterials(record, conn, logger: logger)
      try await Self.emitEvents(record, from: 0, now: now, conn, logger: logger)
      try await PostgresAudit.append(conn, submission.audit, now: now, logger: logger)
      try await Self.publish(record, today: CivilDate(now), calendar: calendar, &state, conn)
      try await state.delete(collection: SyncCollections.caseDrafts.name, id: record.draftID, conn)
      return record
    }
  }

  func draft(id: String, applicantID: String) async throws -> (fields: [String: SyncValue], version: Int64)? {
    let found = try await PostgresSyncStore.record(pool, collection: SyncCollections.caseDrafts.name, id: id)
    guard let record = found, !record.state.deleted, record.ownerID == applicantID else { return nil }
    return (record.state.values, record.state.version)
  }

  func caseRecord(applicantID: String, idempotencyKey: String) async throws -> CaseRecord? {
    try await Self.records(pool, "applicant_id = $1 AND idempotency_key = $2", Self.binds(applicantID, idempotencyKey)).first
  }

  func caseRecord(applicantID: String, draftID: String) async throws -> CaseRecord? {
    try await Self.records(pool, "applicant_id = $1 AND draft_id = $2", Self.binds(applicantID, draftID)).first
  }

  func caseRecord(id: String) async throws -> CaseRecord? {
    try await Self.records(pool, "id = $1", Self.binds(id)).first
  }

  func caseRecord(trackingCode: String) async throws -> CaseRecord? {
    try await Self.records(pool, "tracking_code = $1", Self.binds(trackingCode)).first
  }

  func trackingCheck(trackingCode: String) async throws -> CaseTrackingCheck? {
    // From the covering index cases_tracking_check (tracking_code, id, phone_check), never the body.
    try await pool.all("SELECT id, phone_check FROM cases WHERE tracking_code = \(trackingCode)", as: (String, String).self)
      .first.map { CaseTrackingCheck(caseID: $0.0, phoneCheck: $0.1) }
  }

  func cases(applicantID: String, limit: Int, after: (Date, String)?) async throws -> [CaseRecord] {
    try await pool.read { conn in
      var binds = PostgresBindings()
      binds.append(applicantID)
      if let (at, id) = after {
        binds.append(PGTime.ms(at))
        binds.append(id)
        binds.append(Int64(limit))
        return try await Self.records(
          conn,
          "applicant_id = $1 AND (submitted_at < $2 OR (submitted_at = $2 AND id < $3)) ORDER BY submitted_at DESC, id DESC LIMIT $4",
          binds, logger: self.logger)
      }
      binds.append(Int64(limit))
      return try await Self.records(conn, "applicant_id = $1 ORDER BY submitted_at DESC, id DESC LIMIT $2", binds, logger: self.logger)
    }
  }

  func update(_ updated: CaseRecord, expectedVersion: Int64, effects: CaseEffects, now: Date) async throws -> CaseRecord {
    try await sync.write(now: now) { conn, state -> CaseRecord in
      let logger = state.logger
      // The case row lock: a concurrent transition (or rating) of the same case waits, so the
      // version check and the history count below see its commit; exactly one of two
      // transitions from the same version wins.
      guard let current = try await conn.all(
        "SELECT version FROM cases WHERE id = \(updated.id) FOR UPDATE", as: Int64.self, logger: logger
      ).first
      else { throw StoreError.notFound("case '\(updated.id)'") }
      guard current == expectedVersion else { throw StoreError.versionConflict(current: current) }
      // A new statement after the lock (so it sees the commit it waited for): the stored history
      // rows, and whether a rating made since the caller read the case (rating does not bump
      // the version) is recorded.
      let (count, rated) = try await conn.all(
        """
        SELECT (SELECT COUNT(*) FROM case_status_history WHERE case_id = \(updated.id)),
          EXISTS (SELECT 1 FROM evaluations WHERE case_id = \(updated.id))
        """, as: (Int64, Bool).self, logger: logger
      ).first ?? (Int64(0), false)
      let stored = Int(count)
      var updated = updated
      updated.evaluated = updated.evaluated || rated
      let due = updated.clock.nextDeadline(in: updated.state, asOf: effects.today, effects.calendar).map { Int64($0.dayNumber) }
      let received = updated.clock.receivedOn.map { Int64($0.dayNumber) }
      try await conn.run(
        """
        UPDATE cases SET state = \(updated.state.rawValue), version = \(updated.version),
          handling_department = \(updated.handlingDepartment), due_day = \(due), received_day = \(received),
          body = \(try CaseRowCoding.body(updated)), updated_at = \(PGTime.ms(now))
        WHERE id = \(updated.id)
        """, logger: logger)
      if let old = effects.revokedCertificate {
        // The revoked certificate's row before the audit head: the certificate store revokes
        // with that same order (certificate row, then audit), so the two cannot deadlock.
        try await conn.run("SELECT 1 FROM certificates WHERE number = \(old) FOR UPDATE", logger: logger)
      }
      try await Self.appendHistory(updated, from: stored, conn, logger: logger)
      try await Self.linkMaterials(updated, conn, logger: logger)
      try await Self.emitEvents(updated, from: stored, now: now, conn, logger: logger)
      try await PostgresAudit.append(conn, effects.audit, now: now, logger: logger)
      if let certificate = effects.certificate {
        try await Self.insertCertificate(certificate, conn, logger: logger)
        var issued = effects.audit
        issued.action = "certificate.issue"
        issued.targetType = "certificate"
        issued.targetID = certificate.payload.number
        try await PostgresAudit.append(conn, issued, now: now, logger: logger)
      }
      if let old = effects.revokedCertificate {
        let reason = "case reopened: \(effects.audit.reason)"
        let revokedRows = try await conn.run(
          """
          UPDATE certificates SET revoked_at = \(PGTime.ms(now)), revocation_reason = \(reason)
          WHERE number = \(old) AND revoked_at IS NULL RETURNING 1
          """, logger: logger)
        if revokedRows > 0 {
          var revoked = effects.audit
          revoked.action = "certificate.revoke"
          revoked.targetType = "certificate"
          revoked.targetID = old
          revoked.reason = reason
          try await PostgresAudit.append(conn, revoked, now: now, logger: logger)
        }
      }
      try await Self.publish(updated, today: effects.today, calendar: effects.calendar, &state, conn)
      return updated
    }
  }

  func queue(department: String, today: CivilDate, dueSoonBy: CivilDate, filter: QueueSelection, limit: Int, offset: Int)
    async throws -> CaseQueuePage
  {
    let waiting = Self.awaitingDepartment.map { "'\($0.rawValue)'" }.joined(separator: ", ")
    let base = "handling_department = $1 AND state IN (\(waiting))"
    return try await pool.read { conn in
      var binds = PostgresBindings()
      binds.append(department)
      var condition = base
      switch filter {
      case .all: break
      case .overdue: binds.append(Int64(today.dayNumber)); condition += " AND due_day < $2"
      case .dueSoon: binds.append(Int64(dueSoonBy.dayNumber)); condition += " AND due_day <= $2"
      }
      binds.append(Int64(limit))
      binds.append(Int64(offset))
      let n = binds.count
      // Paused cases (no due day) last; then earliest deadline, then oldest submission.
      // A queue page lists cases; it does not need their histories.
      let cases = try await Self.records(
        conn, "\(condition) ORDER BY due_day IS NULL, due_day, submitted_at, id LIMIT $\(n - 1) OFFSET $\(n)", binds,
        withHistory: false, logger: self.logger)
      let overdue = try await Self.count(conn, "\(base) AND due_day < $2", department, Int64(today.dayNumber), logger: self.logger)
      let dueSoon = try await Self.count(conn, "\(base) AND due_day <= $2", department, Int64(dueSoonBy.dayNumber), logger: self.logger)
      return CaseQueuePage(cases: cases, overdue: overdue, dueSoon: dueSoon)
    }
  }

  /// States in which the handling department has something to do.
  static let awaitingDepartment: [CaseState] = [
    .pendingAcceptance, .accepted, .underReview, .suspended, .approved, .denied, .completed, .resultDelivering,
  ]

  func pendingAcceptance(receivedOnOrBefore day: CivilDate) async throws -> [CaseRecord] {
    try await pool.read { conn in
      var binds = PostgresBindings()
      binds.append(CaseState.pendingAcceptance.rawValue)
      binds.append(Int64(day.dayNumber))
      return try await Self.records(conn, "state = $1 AND received_day <= $2 ORDER BY received_day, id", binds, logger: self.logger)
    }
  }

  func casesDue(from: CivilDate, until: CivilDate, limit: Int) async throws -> [CaseRecord] {
    let waiting = Self.awaitingDepartment.map { "'\($0.rawValue)'" }.joined(separator: ", ")
    return try await pool.read { conn in
      var binds = PostgresBindings()
      binds.append(Int64(from.dayNumber))
      binds.append(Int64(until.dayNumber))
      binds.append(Int64(limit))
      return try await Self.records(
        conn, "state IN (\(waiting)) AND due_day >= $1 AND due_day <= $2 ORDER BY due_day, id LIMIT $3", binds,
        withHistory: false, logger: self.logger)
    }
  }

  // MARK: - Rows


  static func insert(_ r: CaseRecord, idempotencyKey: String, dueDay: Int?, _ conn: PostgresConnection, logger: Logger) async throws {
    let due = dueDay.map(Int64.init)
    let received = r.clock.receivedOn.map { Int64($0.dayNumber) }
    try await conn.run(
      """
      INSERT INTO cases (id, tracking_code, applicant_id, draft_id, idempotency_key, item_code, state, version,
        handling_department, due_day, received_day, body, submitted_at, updated_at, phone_check)
      VALUES (\(r.id), \(r.trackingCode), \(r.applicantID), \(r.draftID), \(idempotencyKey), \(r.item.code), \(r.state.rawValue),
        \(r.version), \(r.handlingDepartment), \(due), \(received), \(try CaseRowCoding.body(r)), \(PGTime.ms(r.submittedAt)),
        \(PGTime.ms(r.updatedAt)), \(r.phoneCheck))
      """, logger: logger)
  }

  static func appendHistory(_ r: CaseRecord, from stored: Int, _ conn: PostgresConnection, logger: Logger) async throws {
    let entries = Array(r.history.enumerated().dropFirst(stored))
    guard !entries.isEmpty else { return }
    try await conn.run(
      """
      INSERT INTO case_status_history (case_id, seq, at, body)
      SELECT \(r.id), s, a, b FROM unnest(\(entries.map { Int64($0.offset + 1) })::int8[],
        \(entries.map { PGTime.ms($0.element.at) })::int8[], \(try entries.map { try CaseRowCoding.encode($0.element) })::text[]) AS t(s, a, b)
      """, logger: logger)
  }

  /// Records which uploaded materials belong to the case (download authorization).
  static func linkMaterials(_ r: CaseRecord, _ conn: PostgresConnection, logger: Logger) async throws {
    let ids = Array(Set(r.materials.compactMap(\.materialID) + r.history.flatMap(\.attachmentIDs))).sorted()
    guard !ids.isEmpty else { return }
    try await conn.run(
      """
      INSERT INTO case_materials (case_id, material_id) SELECT \(r.id), m FROM unnest(\(ids)::text[]) AS t(m)
      ON CONFLICT DO NOTHING
      """, logger: logger)
  }

  /// One `case.transition` outbox event per new status row.
  static func emitEvents(_ r: CaseRecord, from stored: Int, now: Date, _ conn: PostgresConnection, logger: Logger) async throws {
    var payloads: [String] = []
    for entry in r.history.dropFirst(stored) {
      let payload: [String: String] = [
        "case_id": r.id, "tracking_code": r.trackingCode, "applicant_id": r.applicantID, "item_code": r.item.code,
        "event": entry.event.rawValue, "state": entry.state.rawValue, "department": r.handlingDepartment,
        "missing_items": entry.missingItems.joined(separator: "\n"), "item_name": r.item.name, "reason": entry.reason,
        "certificate_number": r.certificateNumber ?? "", "at": String(PGTime.ms(entry.at)),
      ]
      payloads.append(try CaseRowCoding.encode(payload))
    }
    guard !payloads.isEmpty else { return }
    // WITH ORDINALITY keeps the events' ids in history order.
    try await conn.run(
      """
      INSERT INTO event_outbox (topic, aggregate_id, payload, created_at)
      SELECT 'case.transition', \(r.id), p, \(PGTime.ms(now)) FROM unnest(\(payloads)::text[]) WITH ORDINALITY AS t(p, n) ORDER BY n
      """, logger: logger)
  }

  /// A certificate issued by a transition, in the transition's transaction.
  static func insertCertificate(_ c: StoredCertificate, _ conn: PostgresConnection, logger: Logger) async throws {
    let expires = c.payload.expiresOn.map { Int64($0.dayNumber) }
    try await conn.run(
      """
      INSERT INTO certificates (number, holder_id, case_id, issuer_department, type, issued_day, expires_day, signed, key_id,
        created_at)
      VALUES (\(c.payload.number), \(c.holderID), \(c.caseID), \(c.payload.issuerDepartmentCode), \(c.payload.type),
        \(Int64(c.payload.issuedOn.dayNumber)), \(expires), \(c.signed), \(c.payload.keyID), \(PGTime.ms(c.createdAt)))
      """, logger: logger)
  }

  /// The applicant's `cases` sync record.
  static func publish(
    _ r: CaseRecord, today: CivilDate, calendar: WorkingCalendar, _ state: inout PostgresSyncStore.WriteState,
    _ conn: PostgresConnection
  ) async throws {
    let due = r.clock.nextDeadline(in: r.state, asOf: today, calendar)
    let values: [String: SyncValue] = [
      "tracking_code": .string(r.trackingCode), "item_code": .string(r.item.code), "item_name": .string(r.item.name),
      "state": .string(r.state.rawValue), "version": .int(r.version), "current_step": .int(Int64(r.currentStep)),
      "next_due": .string(due?.description ?? ""), "updated_at": .timestamp(PGTime.ms(r.updatedAt)),
    ]
    try await state.upsert(
      collection: SyncCollections.cases.name, id: r.id, ownerID: r.applicantID, audience: AudienceLabel.account(r.applicantID),
      values: values, conn)
  }

  static func binds(_ values: String...) -> PostgresBindings {
    var binds = PostgresBindings(capacity: values.count)
    for value in values { binds.append(value) }
    return binds
  }

  static func count(_ conn: PostgresConnection, _ condition: String, _ department: String, _ day: Int64, logger: Logger)
    async throws -> Int
  {
    var binds = PostgresBindings()
    binds.append(department)
    binds.append(day)
    let rows = try await conn.all(
      PostgresQuery(unsafeSQL: "SELECT COUNT(*) FROM cases WHERE \(condition)", binds: binds), as: Int64.self, logger: logger)
    return Int(rows.first ?? 0)
  }

  static func record(_ conn: PostgresConnection, _ condition: String, _ binds: PostgresBindings, logger: Logger) async throws
    -> CaseRecord?
  {
    try await records(conn, condition + " LIMIT 1", binds, logger: logger).first
  }

  /// Cases matching `condition` (SQL after WHERE, with `$n` placeholders for `binds`), each with
  /// its status history in the same statement (one JSON array per case, in history order).
  /// `withHistory` false leaves `history` empty: only for read-only listings, never for a record
  /// that goes back to `update` (which appends the history rows beyond those stored).
  static func records(
    _ conn: PostgresConnection, _ condition: String, _ binds: PostgresBindings, withHistory: Bool = true, logger: Logger
  ) async throws -> [CaseRecord] {
    try decode(try await conn.rows(query(condition, binds, withHistory: withHistory), logger: logger))
  }

  /// `records` as one statement outside a transaction (a statement is its own snapshot).
  static func records(_ pool: PostgresPool, _ condition: String, _ binds: PostgresBindings) async throws -> [CaseRecord] {
    try decode(try await pool.rows(query(condition, binds, withHistory: true)))
  }

  static func query(_ condition: String, _ binds: PostgresBindings, withHistory: Bool) -> PostgresQuery {
    let history =
      withHistory
      ? "(SELECT json_agg(h.body::json ORDER BY h.seq) FROM case_status_history h WHERE h.case_id = cases.id)::text" : "NULL::text"
    return PostgresQuery(unsafeSQL: "SELECT id, body, \(history) AS history FROM cases WHERE \(condition)", binds: binds)
  }

  static func decode(_ rows: [PostgresRandomAccessRow]) throws -> [CaseRecord] {
    try rows.map { row in
      var record = try CaseRowCoding.decoder.decode(CaseRecord.self, from: Data(try row["body"].decode(String.self).utf8))
      if let history = try row["history"].decode(String?.self) {
        record.history = try CaseRowCoding.decoder.decode([CaseStatusEntry].self, from: Data(history.utf8))
      }
      return record
    }
  }
}
