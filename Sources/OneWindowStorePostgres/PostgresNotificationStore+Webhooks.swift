import Foundation
import Logging
import OneWindowCore
import OneWindowStore
import PostgresNIO

/// System events (the outbox), webhook endpoints and outbound deliveries.
extension PostgresNotificationStore {
  // MARK: - System events

  func pendingEvents(topic: String, limit: Int) async throws -> [OutboxEvent] {
    let logger = logger
    return try await pool.read { conn in
      try await conn.all(
        """
        SELECT id, topic, aggregate_id, payload, created_at FROM event_outbox
        WHERE published_at IS NULL AND topic = \(topic) ORDER BY id LIMIT \(Int64(limit))
        """, as: (Int64, String, String, String, Int64).self, logger: logger
      ).map { id, topic, aggregateID, payload, createdAt in
        OutboxEvent(
          id: id, topic: topic, aggregateID: aggregateID, payload: try Self.decode([String: String].self, payload),
          createdAt: PGTime.date(createdAt))
      }
    }
  }

  func consumeEvents(
    ids: [Int64], publications: [NewPublication], webhookEvents: [WebhookEvent], now: Date, limits: InboxLimits
  ) async throws -> [PublishOutcome] {
    let ids = Array(Set(ids)).sorted()
    let logger = logger
    return try await pool.write { conn in
      // Locks the outbox events first (in id order): consumers of the same events run one after
      // the other, so each event is marked consumed once and its publications are sent once
      // (the later consumer replays them by idempotency key).
      if !ids.isEmpty {
        try await conn.run("SELECT 1 FROM event_outbox WHERE id = ANY(\(ids)) ORDER BY id FOR UPDATE", logger: logger)
      }
      var outcomes: [PublishOutcome] = []
      for (index, publication) in publications.enumerated() {
        // A publication that cannot be sent (its account or topic is unknown, its segment too
        // large) is skipped alone: failing the whole batch would retry it forever and block
        // every later event. The savepoint undoes its partial writes.
        let savepoint = "consume_\(index)"
        try await conn.run(PostgresQuery(unsafeSQL: "SAVEPOINT \(savepoint)"), logger: logger)
        let outcome: PublishOutcome
        do {
          outcome = try await Self.publish(publication, now: now, limits: limits, conn, logger)
        } catch where error is StoreError || error is ValidationError {
          try await conn.run(PostgresQuery(unsafeSQL: "ROLLBACK TO SAVEPOINT \(savepoint)"), logger: logger)
          continue
        }
        try await conn.run(PostgresQuery(unsafeSQL: "RELEASE SAVEPOINT \(savepoint)"), logger: logger)
        if !outcome.replayed { outcomes.append(outcome) }
      }
      for event in webhookEvents { try await Self.queueWebhook(event, now: now, conn, logger) }
      if !ids.isEmpty {
        try await conn.run(
          "UPDATE event_outbox SET published_at = \(PGTime.ms(now)) WHERE published_at IS NULL AND id = ANY(\(ids))",
          logger: logger)
      }
      return outcomes
    }
  }

  /// One delivery per enabled endpoint subscribed to the event's type (once per event and
  /// endpoint: a queued event is not queued again).
  static func queueWebhook(_ event: WebhookEvent, now: Date, _ conn: PostgresConnection, _ logger: Logger) async throws {
    let at = PGTime.ms(now)
    for (id, eventTypes) in try await conn.all(
      "SELECT id, event_types FROM webhook_endpoints WHERE enabled = 1 ORDER BY id", as: (String, String).self, logger: logger)
    {
      let types = try decode([String].self, eventTypes)
      guard types.contains(event.type) else { continue }
      // ON CONFLICT (deliveries_once): a concurrent queue of the same event waits for the
      // other's commit and then writes nothing.
      try await conn.run(
        """
        INSERT INTO deliveries (id, channel, target, event_type, event_id, body, status, attempt_count, next_attempt_at,
          replay_of, created_at, updated_at)
        VALUES (\("dlv_" + ULID.make(at: now)), 'webhook', \(id), \(event.type), \(event.id), \(Data(event.body)), 'created', 0,
          \(at), NULL, \(at), \(at))
        ON CONFLICT DO NOTHING
        """, logger: logger)
    }
  }

  // MARK: - Webhook endpoints

  static let endpointColumns = "id, url, event_types, enabled, description, sealed_secret, created_at"

  static func endpoint(from row: PostgresRandomAccessRow) throws -> WebhookEndpoint {
    WebhookEndpoint(
      id: try col(row, "id"), url: try col(row, "url"), eventTypes: try decode([String].self, col(row, "event_types")),
      enabled: try col(row, "enabled", as: Int64.self) != 0, description: try col(row, "description"),
      createdAt: PGTime.date(try col(row, "created_at", as: Int64.self)),
      sealedSecret: Array(try col(row, "sealed_secret", as: Data.self)))
  }

  func addWebhook(_ endpoint: WebhookEndpoint, audit: AuditEvent?) async throws -> WebhookEndpoint {
    let logger = logger
    do {
      try await pool.write { conn in
        let at = PGTime.ms(endpoint.createdAt)
        try await conn.run(
          """
          INSERT INTO webhook_endpoints (id, url, event_types, enabled, description, sealed_secret, created_at, updated_at)
          VALUES (\(endpoint.id), \(endpoint.url), \(try Self.json(endpoint.eventTypes)), \(Int64(endpoint.enabled ? 1 : 0)),
            \(endpoint.description), \(Data(endpoint.sealedSecret)), \(at), \(at))
          """, logger: logger)
        try await Self.audit(audit, now: endpoint.createdAt, conn, logger)
      }
    } catch let error where error.postgres?.sqlState == "23505" && error.postgres?.constraintName == "webhook_endpoints_pkey" {
      throw StoreError.alreadyExists(field: "id")
    }
    var stored = endpoint
    stored.createdAt = Self.stored(endpoint.createdAt)
    return stored
  }

  func webhooks() async throws -> [WebhookEndpoint] {
    let logger = logger
    return try await pool.read { conn in
      try await conn.rows(
        "SELECT \(unescaped: Self.endpointColumns) FROM webhook_endpoints ORDER BY created_at, id", logger: logger
      ).map(Self.endpoint(from:))
    }
  }

  func webhook(id: String) async throws -> WebhookEndpoint? {
    let logger = logger
    return try await pool.read { conn in
      try await conn.rows("SELECT \(unescaped: Self.endpointColumns) FROM webhook_endpoints WHERE id = \(id)", logger: logger)
        .first.map(Self.endpoint(from:))
    }
  }

  func setWebhookEnabled(id: String, enabled: Bool, now: Date, audit: AuditEvent?) async throws -> WebhookEndpoint {
    let logger = logger
    return try await pool.write { conn in
      guard let row = try await conn.rows(
        """
        UPDATE webhook_endpoints SET enabled = \(Int64(enabled ? 1 : 0)), updated_at = \(PGTime.ms(now)) WHERE id = \(id)
        RETURNING \(unescaped: Self.endpointColumns)
        """, logger: logger
      ).first
      else { throw StoreError.notFound("webhook \(id)") }
      try await Self.audit(audit, now: now, conn, logger)
      return try Self.endpoint(from: row)
    }
  }

  // MARK: - Deliveries

  static let deliveryColumns =
    "id, channel, target, event_type, event_id, body, status, next_attempt_at, replay_of, created_at"

  /// Deliveries with their attempts, in the order of `rows`.
  static func deliveries(
    from rows: [PostgresRandomAccessRow], _ conn: PostgresConnection, _ logger: Logger
  ) async throws -> [Delivery] {
    guard !rows.isEmpty else { return [] }
    let ids = try rows.map { try col($0, "id", as: String.self) }
    var attempts: [String: [DeliveryAttempt]] = [:]
    for (deliveryID, number, at, httpStatus, error, duration) in try await conn.all(
      """
      SELECT delivery_id, number, at, http_status, error, duration_ms FROM delivery_attempts
      WHERE delivery_id = ANY(\(ids)) ORDER BY delivery_id, number
      """, as: (String, Int64, Int64, Int64?, String, Int64).self, logger: logger)
    {
      attempts[deliveryID, default: []].append(
        DeliveryAttempt(
          number: Int(number), at: PGTime.date(at), httpStatus: httpStatus.map { Int($0) }, error: error,
          durationMillis: duration))
    }
    return try rows.map { row in
      let id: String = try col(row, "id")
      guard let status = DeliveryStatus(rawValue: try col(row, "status")) else {
        throw StoreError.failedPrecondition("delivery \(id) has an unknown status")
      }
      return Delivery(
        id: id, channel: try col(row, "channel"), target: try col(row, "target"), eventType: try col(row, "event_type"),
        eventID: try col(row, "event_id"), body: Array(try col(row, "body", as: Data.self)), status: status,
        attempts: attempts[id] ?? [], createdAt: PGTime.date(try col(row, "created_at", as: Int64.self)),
        nextAttemptAt: PGTime.date(try col(row, "next_attempt_at", as: Int64?.self)), replayOf: try col(row, "replay_of"))
    }
  }

  static func delivery(_ conn: PostgresConnection, id: String, _ logger: Logger) async throws -> Delivery? {
    let rows = try await conn.rows("SELECT \(unescaped: deliveryColumns) FROM deliveries WHERE id = \(id)", logger: logger)
    return try await deliveries(from: rows, conn, logger).first
  }

  func claimDueDeliveries(now: Date, limit: Int) async throws -> [Delivery] {
    let logger = logger
    return try await pool.write { conn in
      let at = PGTime.ms(now)
      // SKIP LOCKED: a delivery another worker is claiming is left to it (its row lock), and
      // one it already claimed no longer matches once its commit is seen, so no two workers
      // take one delivery and none waits for another.
      let rows = try await conn.rows(
        """
        SELECT \(unescaped: Self.deliveryColumns) FROM deliveries
        WHERE status IN ('created', 'temporary-failure') AND next_attempt_at <= \(at)
        ORDER BY next_attempt_at, id LIMIT \(Int64(limit))
        FOR UPDATE SKIP LOCKED
        """, logger: logger)
      guard !rows.isEmpty else { return [] }
      let ids = try rows.map { try Self.col($0, "id", as: String.self) }
      try await conn.run(
        "UPDATE deliveries SET status = 'sending', updated_at = \(at) WHERE id = ANY(\(ids))", logger: logger)
      return try await Self.deliveries(from: rows, conn, logger).map { delivery in
        var claimed = delivery
        claimed.status = .sending
        return claimed
      }
    }
  }

  func recordAttempt(deliveryID: String, attempt: DeliveryAttempt, status: DeliveryStatus, nextAttemptAt: Date?) async throws {
    let logger = logger
    try await pool.write { conn in
      // Locks the delivery: two results recorded at once apply one after the other, so a
      // terminal status sticks.
      guard let raw = try await conn.all(
        "SELECT status FROM deliveries WHERE id = \(deliveryID) FOR UPDATE", as: String.self, logger: logger
      ).first
      else { throw StoreError.notFound("delivery \(deliveryID)") }
      guard let current = DeliveryStatus(rawValue: raw) else {
        throw StoreError.failedPrecondition("delivery \(deliveryID) has an unknown status")
      }
      let at = PGTime.ms(attempt.at)
      // The same attempt recorded twice (a retried call) is kept once.
      try await conn.run(
        """
        INSERT INTO delivery_attempts (delivery_id, number, at, http_status, error, duration_ms)
        VALUES (\(deliveryID), \(Int64(attempt.number)), \(at), \(attempt.httpStatus.map { Int64($0) }), \(attempt.error),
          \(attempt.durationMillis))
        ON CONFLICT DO NOTHING
        """, logger: logger)
      try await conn.run(
        """
        UPDATE deliveries SET attempt_count = GREATEST(attempt_count, \(Int64(attempt.number))), updated_at = \(at)
        WHERE id = \(deliveryID)
        """, logger: logger)
      // Terminal statuses stick: a late update to them is ignored.
      if let next = current.applying(status) {
        let nextAt: Int64? = next.isTerminal ? nil : nextAttemptAt.map(PGTime.ms)
        try await conn.run(
          "UPDATE deliveries SET status = \(next.rawValue), next_attempt_at = \(nextAt) WHERE id = \(deliveryID)", logger: logger)
      }
    }
  }

  func recoverInterruptedDeliveries(now: Date) async throws -> Int {
    let logger = logger
    return try await pool.write { conn in
      let at = PGTime.ms(now)
      return Int(
        try await conn.all(
          """
          WITH u AS (
            UPDATE deliveries SET status = 'temporary-failure', next_attempt_at = \(at), updated_at = \(at)
            WHERE status = 'sending' RETURNING 1)
          SELECT COUNT(*) FROM u
          """, as: Int64.self, logger: logger
        ).first ?? 0)
    }
  }

  func delivery(id: String) async throws -> Delivery? {
    let logger = logger
    return try await pool.read { conn in try await Self.delivery(conn, id: id, logger) }
  }

  func deliveries(endpointID: String?, status: DeliveryStatus?, before: String?, limit: Int) async throws -> [Delivery] {
    var conditions: [String] = []
    var binds = PostgresBindings()
    if let endpointID {
      binds.append(endpointID)
      conditions.append("target = $\(binds.count)")
    }
    if let status {
      binds.append(status.rawValue)
      conditions.append("status = $\(binds.count)")
    }
    if let before {
      binds.append(before)
      conditions.append("id < $\(binds.count)")
    }
    binds.append(Int64(limit))
    let filter = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
    let query = PostgresQuery(
      unsafeSQL: "SELECT \(Self.deliveryColumns) FROM deliveries \(filter) ORDER BY id DESC LIMIT $\(binds.count)", binds: binds)
    let logger = logger
    return try await pool.read { conn in
      try await Self.deliveries(from: try await conn.rows(query, logger: logger), conn, logger)
    }
  }

  func replayDelivery(id: String, newID: String, now: Date, audit: AuditEvent?) async throws -> Delivery {
    let logger = logger
    do {
      return try await pool.write { conn in
        guard let original = try await Self.delivery(conn, id: id, logger) else { throw StoreError.notFound("delivery \(id)") }
        guard original.status == .permanentFailure || original.status == .technicalFailure else {
          throw StoreError.failedPrecondition("delivery is \(original.status.rawValue); only a failed one can be replayed")
        }
        let at = PGTime.ms(now)
        try await conn.run(
          """
          INSERT INTO deliveries (id, channel, target, event_type, event_id, body, status, attempt_count, next_attempt_at,
            replay_of, created_at, updated_at)
          VALUES (\(newID), \(original.channel), \(original.target), \(original.eventType), \(original.eventID),
            \(Data(original.body)), 'created', 0, \(at), \(id), \(at), \(at))
          """, logger: logger)
        try await Self.audit(audit, now: now, conn, logger)
        return Delivery(
          id: newID, channel: original.channel, target: original.target, eventType: original.eventType,
          eventID: original.eventID, body: original.body, status: .created, attempts: [], createdAt: Self.stored(now),
          nextAttemptAt: Self.stored(now), replayOf: id)
      }
    } catch let error where error.postgres?.sqlState == "23505" && error.postgres?.constraintName == "deliveries_pkey" {
      throw StoreError.alreadyExists(field: "id")
    }
  }

  func nextDeliveryDue() async throws -> Date? {
    let logger = logger
    return try await pool.read { conn in
      PGTime.date(
        try await conn.all(
          "SELECT MIN(next_attempt_at) FROM deliveries WHERE status IN ('created', 'temporary-failure')", as: Int64?.self,
          logger: logger
        ).first.flatMap { $0 })
    }
  }
}
