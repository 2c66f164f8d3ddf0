import OneWindowStore
import Foundation
import GRDB
import OneWindowCore

/// System events (the outbox), webhook endpoints and outbound deliveries.
extension SQLiteNotificationStore {
  // MARK: - System events

  func pendingEvents(topic: String, limit: Int) async throws -> [OutboxEvent] {
    try await pool.read { db in
      try Row.fetchAll(
        db,
        sql: """
          SELECT id, topic, aggregate_id, payload, created_at FROM event_outbox
          WHERE published_at IS NULL AND topic = ? ORDER BY id LIMIT ?
          """,
        arguments: [topic, limit]
      ).map { row in
        OutboxEvent(
          id: row["id"], topic: row["topic"], aggregateID: row["aggregate_id"],
          payload: try Self.decode([String: String].self, row["payload"]), createdAt: SQLTime.date(row["created_at"] as Int64))
      }
    }
  }

  func consumeEvents(
    ids: [Int64], publications: [NewPublication], webhookEvents: [WebhookEvent], now: Date, limits: InboxLimits
  ) async throws -> [PublishOutcome] {
    try await pool.write { db in
      var outcomes: [PublishOutcome] = []
      for publication in publications {
        var outcome: PublishOutcome?
        do {
          // A publication that cannot be sent (its account or topic is unknown, its segment
          // too large) is skipped alone: failing the whole batch would retry it forever and
          // block every later event.
          try db.inSavepoint {
            outcome = try Self.publish(publication, now: now, limits: limits, db)
            return .commit
          }
        } catch is StoreError {
          continue
        } catch is ValidationError {
          continue
        }
        if let outcome, !outcome.replayed { outcomes.append(outcome) }
      }
      for event in webhookEvents { try Self.queueWebhook(event, now: now, db) }
      let ids = Array(Set(ids)).sorted()
      for chunk in stride(from: 0, to: ids.count, by: 500).map({ Array(ids[$0..<min($0 + 500, ids.count)]) }) {
        try db.execute(
          sql: """
            UPDATE event_outbox SET published_at = ?
            WHERE published_at IS NULL AND id IN (\(databaseQuestionMarks(count: chunk.count)))
            """,
          arguments: StatementArguments([SQLTime.ms(now)] + chunk.map { $0 as any DatabaseValueConvertible }))
      }
      return outcomes
    }
  }

  /// One delivery per enabled endpoint subscribed to the event's type (once per event and
  /// endpoint: a queued event is not queued again).
  static func queueWebhook(_ event: WebhookEvent, now: Date, _ db: Database) throws {
    let at = SQLTime.ms(now)
    for row in try Row.fetchAll(db.cachedStatement(sql: "SELECT id, event_types FROM webhook_endpoints WHERE enabled = 1")) {
      let types = try decode([String].self, row["event_types"])
      guard types.contains(event.type) else { continue }
      try db.cachedStatement(
        sql: """
          INSERT INTO deliveries (id, channel, target, event_type, event_id, body, status, attempt_count, next_attempt_at,
            replay_of, created_at, updated_at)
          VALUES (?, 'webhook', ?, ?, ?, ?, 'created', 0, ?, NULL, ?, ?) ON CONFLICT DO NOTHING
          """
      ).execute(arguments: ["dlv_" + ULID.make(at: now), row["id"] as String, event.type, event.id, Data(event.body), at, at, at])
    }
  }

  // MARK: - Webhook endpoints

  static let endpointColumns = "id, url, event_types, enabled, description, sealed_secret, created_at"

  static func endpoint(from row: Row) throws -> WebhookEndpoint {
    WebhookEndpoint(
      id: row["id"], url: row["url"], eventTypes: try decode([String].self, row["event_types"]), enabled: row["enabled"],
      description: row["description"], createdAt: SQLTime.date(row["created_at"] as Int64),
      sealedSecret: Array(row["sealed_secret"] as Data))
  }

  func addWebhook(_ endpoint: WebhookEndpoint, audit: AuditEvent?) async throws -> WebhookEndpoint {
    do {
      try await pool.write { db in
        let at = SQLTime.ms(endpoint.createdAt)
        try db.execute(
          sql: """
            INSERT INTO webhook_endpoints (id, url, event_types, enabled, description, sealed_secret, created_at, updated_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            """,
          arguments: [
            endpoint.id, endpoint.url, try Self.json(endpoint.eventTypes), endpoint.enabled, endpoint.description,
            Data(endpoint.sealedSecret), at, at,
          ])
        if let audit { try SQLiteAudit.append(audit, now: endpoint.createdAt, db) }
      }
    } catch let error as DatabaseError where error.uniqueViolationColumn != nil {
      throw StoreError.alreadyExists(field: "id")
    }
    var stored = endpoint
    stored.createdAt = Self.stored(endpoint.createdAt)
    return stored
  }

  func webhooks() async throws -> [WebhookEndpoint] {
    try await pool.read { db in
      try Row.fetchAll(db, sql: "SELECT \(Self.endpointColumns) FROM webhook_endpoints ORDER BY created_at, id")
        .map(Self.endpoint(from:))
    }
  }

  func webhook(id: String) async throws -> WebhookEndpoint? {
    try await pool.read { db in
      try Row.fetchOne(db, sql: "SELECT \(Self.endpointColumns) FROM webhook_endpoints WHERE id = ?", arguments: [id])
        .map(Self.endpoint(from:))
    }
  }

  func setWebhookEnabled(id: String, enabled: Bool, now: Date, audit: AuditEvent?) async throws -> WebhookEndpoint {
    try await pool.write { db in
      try db.execute(
        sql: "UPDATE webhook_endpoints SET enabled = ?, updated_at = ? WHERE id = ?", arguments: [enabled, SQLTime.ms(now), id])
      guard db.changesCount > 0,
            let row = try Row.fetchOne(db, sql: "SELECT \(Self.endpointColumns) FROM webhook_endpoints WHERE id = ?", arguments: [id])
      else { throw StoreError.notFound("webhook \(id)") }
      if let audit { try SQLiteAudit.append(audit, now: now, db) }
      return try Self.endpoint(from: row)
    }
  }

  // MARK: - Deliveries

  static let deliveryColumns =
    "id, channel, target, event_type, event_id, body, status, next_attempt_at, replay_of, created_at"

  /// Deliveries with their attempts, in the order of `rows`.
  static func deliveries(from rows: [Row], _ db: Database) throws -> [Delivery] {
    guard !rows.isEmpty else { return [] }
    let ids = rows.map { $0["id"] as String }
    var attempts: [String: [DeliveryAttempt]] = [:]
    for row in try Row.fetchAll(
      db,
      sql: """
        SELECT delivery_id, number, at, http_status, error, duration_ms FROM delivery_attempts
        WHERE delivery_id IN (\(databaseQuestionMarks(count: ids.count))) ORDER BY delivery_id, number
        """,
      arguments: StatementArguments(ids))
    {
      attempts[row["delivery_id"], default: []].append(
        DeliveryAttempt(
          number: row["number"], at: SQLTime.date(row["at"] as Int64), httpStatus: row["http_status"], error: row["error"],
          durationMillis: row["duration_ms"]))
    }
    return try rows.map { row in
      let id: String = row["id"]
      guard let status = DeliveryStatus(rawValue: row["status"]) else {
        throw StoreError.failedPrecondition("delivery \(id) has an unknown status")
      }
      return Delivery(
        id: id, channel: row["channel"], target: row["target"], eventType: row["event_type"], eventID: row["event_id"],
        body: Array(row["body"] as Data), status: status, attempts: attempts[id] ?? [],
        createdAt: SQLTime.date(row["created_at"] as Int64), nextAttemptAt: SQLTime.date(row["next_attempt_at"] as Int64?),
        replayOf: row["replay_of"])
    }
  }

  static func delivery(_ db: Database, id: String) throws -> Delivery? {
    let rows = try Row.fetchAll(db, sql: "SELECT \(deliveryColumns) FROM deliveries WHERE id = ?", arguments: [id])
    return try deliveries(from: rows, db).first
  }

  func claimDueDeliveries(now: Date, limit: Int) async throws -> [Delivery] {
    try await pool.write { db in
      let at = SQLTime.ms(now)
      let rows = try Row.fetchAll(
        db,
        sql: """
          SELECT \(Self.deliveryColumns) FROM deliveries
          WHERE status IN ('created', 'temporary-failure') AND next_attempt_at <= ?
          ORDER BY next_attempt_at, id LIMIT ?
          """,
        arguments: [at, limit])
      guard !rows.isEmpty else { return [] }
      let ids = rows.map { $0["id"] as String }
      try db.execute(
        sql: "UPDATE deliveries SET status = 'sending', updated_at = ? WHERE id IN (\(databaseQuestionMarks(count: ids.count)))",
        arguments: StatementArguments([at as any DatabaseValueConvertible] + ids.map { $0 as any DatabaseValueConvertible }))
      return try Self.deliveries(from: rows, db).map { delivery in
        var claimed = delivery
        claimed.status = .sending
        return claimed
      }
    }
  }

  func recordAttempt(deliveryID: String, attempt: DeliveryAttempt, status: DeliveryStatus, nextAttemptAt: Date?) async throws {
    try await pool.write { db in
      guard let raw = try String.fetchOne(db, sql: "SELECT status FROM deliveries WHERE id = ?", arguments: [deliveryID]) else {
        throw StoreError.notFound("delivery \(deliveryID)")
      }
      guard let current = DeliveryStatus(rawValue: raw) else {
        throw StoreError.failedPrecondition("delivery \(deliveryID) has an unknown status")
      }
      let at = SQLTime.ms(attempt.at)
      // The same attempt recorded twice (a retried call) is kept once.
      try db.execute(
        sql: """
          INSERT INTO delivery_attempts (delivery_id, number, at, http_status, error, duration_ms) VALUES (?, ?, ?, ?, ?, ?)
          ON CONFLICT DO NOTHING
          """,
        arguments: [deliveryID, attempt.number, at, attempt.httpStatus, attempt.error, attempt.durationMillis])
      try db.execute(
        sql: "UPDATE deliveries SET attempt_count = MAX(attempt_count, ?), updated_at = ? WHERE id = ?",
        arguments: [attempt.number, at, deliveryID])
      // Terminal statuses stick: a late update to them is ignored.
      if let next = current.applying(status) {
        try db.execute(
          sql: "UPDATE deliveries SET status = ?, next_attempt_at = ? WHERE id = ?",
          arguments: [next.rawValue, next.isTerminal ? nil : nextAttemptAt.map(SQLTime.ms), deliveryID])
      }
    }
  }

  func recoverInterruptedDeliveries(now: Date) async throws -> Int {
    try await pool.write { db in
      let at = SQLTime.ms(now)
      try db.execute(
        sql: "UPDATE deliveries SET status = 'temporary-failure', next_attempt_at = ?, updated_at = ? WHERE status = 'sending'",
        arguments: [at, at])
      return db.changesCount
    }
  }

  func delivery(id: String) async throws -> Delivery? {
    try await pool.read { db in try Self.delivery(db, id: id) }
  }

  func deliveries(endpointID: String?, status: DeliveryStatus?, before: String?, limit: Int) async throws -> [Delivery] {
    var conditions: [String] = []
    var arguments: [(any DatabaseValueConvertible)?] = []
    if let endpointID {
      conditions.append("target = ?")
      arguments.append(endpointID)
    }
    if let status {
      conditions.append("status = ?")
      arguments.append(status.rawValue)
    }
    if let before {
      conditions.append("id < ?")
      arguments.append(before)
    }
    arguments.append(limit)
    let filter = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
    let bound = StatementArguments(arguments)
    return try await pool.read { db in
      let rows = try Row.fetchAll(
        db, sql: "SELECT \(Self.deliveryColumns) FROM deliveries \(filter) ORDER BY id DESC LIMIT ?", arguments: bound)
      return try Self.deliveries(from: rows, db)
    }
  }

  func replayDelivery(id: String, newID: String, now: Date, audit: AuditEvent?) async throws -> Delivery {
    do {
      return try await pool.write { db in
        guard let original = try Self.delivery(db, id: id) else { throw StoreError.notFound("delivery \(id)") }
        guard original.status == .permanentFailure || original.status == .technicalFailure else {
          throw StoreError.failedPrecondition("delivery is \(original.status.rawValue); only a failed one can be replayed")
        }
        let at = SQLTime.ms(now)
        try db.execute(
          sql: """
            INSERT INTO deliveries (id, channel, target, event_type, event_id, body, status, attempt_count, next_attempt_at,
              replay_of, created_at, updated_at)
            VALUES (?, ?, ?, ?, ?, ?, 'created', 0, ?, ?, ?, ?)
            """,
          arguments: [
            newID, original.channel, original.target, original.eventType, original.eventID, Data(original.body), at, id, at, at,
          ])
        if let audit { try SQLiteAudit.append(audit, now: now, db) }
        return Delivery(
          id: newID, channel: original.channel, target: original.target, eventType: original.eventType,
          eventID: original.eventID, body: original.body, status: .created, attempts: [], createdAt: Self.stored(now),
          nextAttemptAt: Self.stored(now), replayOf: id)
      }
    } catch let error as DatabaseError where error.uniqueViolationColumn != nil {
      throw StoreError.alreadyExists(field: "id")
    }
  }

  func nextDeliveryDue() async throws -> Date? {
    try await pool.read { db in
      SQLTime.date(
        try Int64.fetchOne(db, sql: "SELECT MIN(next_attempt_at) FROM deliveries WHERE status IN ('created', 'temporary-failure')"))
    }
  }
}
