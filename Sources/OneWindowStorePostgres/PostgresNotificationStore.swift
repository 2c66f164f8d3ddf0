import Foundation
import Logging
import OneWindowCore
import OneWindowStore
import PostgresNIO

/// Notifications on PostgreSQL (migration `v4-notifications`), a port of the SQLite store:
/// templates, topics, publications and the inboxes they write, the stream cursors, and outbound
/// webhook deliveries. Streams and the list view are in `+Streams`, webhooks, deliveries and
/// outbox consumption in `+Webhooks`. Where SQLite's single writer made a read-then-write safe,
/// the PostgreSQL transaction locks the row (or an advisory key) first; each lock says why.
struct PostgresNotificationStore: NotificationStore {
  let pool: PostgresPool

  var logger: Logger { pool.logger }

  /// The publisher key of publications without a publishing account (system events).
  static let systemPublisher = "system"

  static let encoder: JSONEncoder = {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return encoder
  }()
  static let decoder = JSONDecoder()

  static func json<T: Encodable>(_ value: T) throws -> String {
    String(decoding: try encoder.encode(value), as: UTF8.self)
  }

  static func decode<T: Decodable>(_ type: T.Type, _ text: String) throws -> T {
    try decoder.decode(type, from: Data(text.utf8))
  }

  /// A time as stored (whole milliseconds), so values returned by a write equal later reads.
  static func stored(_ date: Date) -> Date { PGTime.date(PGTime.ms(date)) }

  /// One column of a row, decoded by name.
  static func col<T: PostgresDecodable>(_ row: PostgresRandomAccessRow, _ name: String, as _: T.Type = T.self) throws -> T {
    try row[name].decode(T.self)
  }

  /// Appends the audit event in the caller's transaction.
  static func audit(_ event: AuditEvent?, now: Date, _ conn: PostgresConnection, _ logger: Logger) async throws {
    guard let event else { return }
    try await PostgresAudit.append(conn, event, now: now, logger: logger)
  }

  // MARK: - Templates

  static let templateColumns = "name, version, title, body, category, system, created_at"

  static func template(from row: PostgresRandomAccessRow) throws -> StoredTemplate {
    StoredTemplate(
      template: try MessageTemplate(
        name: col(row, "name"), version: Int(col(row, "version", as: Int64.self)), title: col(row, "title"),
        body: col(row, "body")),
      category: try col(row, "category"), system: try col(row, "system", as: Int64.self) != 0,
      createdAt: PGTime.date(try col(row, "created_at", as: Int64.self)))
  }

  static func insertTemplate(
    _ t: MessageTemplate, category: String, system: Bool, now: Date, _ conn: PostgresConnection, _ logger: Logger
  ) async throws {
    try await conn.run(
      """
      INSERT INTO notification_templates (name, version, title, body, category, system, created_at)
      VALUES (\(t.name), \(Int64(t.version)), \(t.title), \(t.body), \(category), \(Int64(system ? 1 : 0)), \(PGTime.ms(now)))
      ON CONFLICT DO NOTHING
      """, logger: logger)
  }

  static func latestVersion(name: String, _ conn: PostgresConnection, _ logger: Logger) async throws -> Int {
    let latest = try await conn.all(
      "SELECT MAX(version) FROM notification_templates WHERE name = \(name)", as: Int64?.self, logger: logger)
    return Int(latest.first.flatMap { $0 } ?? 0)
  }

  func putTemplate(_ template: NewTemplate, expectedVersion: Int, now: Date, audit: AuditEvent?) async throws -> StoredTemplate {
    // Validates the text and normalizes the name before anything is read.
    let checked = try MessageTemplate(name: template.name, version: 1, title: template.title, body: template.body)
    let logger = logger
    do {
      return try await pool.write { conn in
        // Serializes writers of one name (a new name has no row to lock): two cannot both read
        // the same latest version and both take the next.
        try await conn.advisoryLock("notification_templates:" + checked.name, logger: logger)
        let latest = try await Self.latestVersion(name: checked.name, conn, logger)
        guard latest == expectedVersion else { throw StoreError.versionConflict(current: Int64(latest)) }
        let next = try MessageTemplate(name: checked.name, version: latest + 1, title: checked.title, body: checked.body)
        try await conn.run(
          """
          INSERT INTO notification_templates (name, version, title, body, category, system, created_at)
          VALUES (\(next.name), \(Int64(next.version)), \(next.title), \(next.body), \(template.category),
            \(Int64(template.system ? 1 : 0)), \(PGTime.ms(now)))
          """, logger: logger)
        try await Self.audit(audit, now: now, conn, logger)
        return StoredTemplate(template: next, category: template.category, system: template.system, createdAt: Self.stored(now))
      }
    } catch let error where error.postgres?.sqlState == "23505" && error.postgres?.constraintName == "notification_templates_pkey" {
      // Unreachable under the lock; kept so a writer without it still reports the conflict.
      let latest = try await pool.read { conn in try await Self.latestVersion(name: checked.name, conn, logger) }
      throw StoreError.versionConflict(current: Int64(latest))
    }
  }

  func seedTemplates(_ templates: [NewTemplate], now: Date) async throws {
    let checked = try templates.map { t in
      (try MessageTemplate(name: t.name, version: 1, title: t.title, body: t.body), t)
    }
    let logger = logger
    try await pool.write { conn in
      for (template, new) in checked {
        let exists = try await conn.all(
          "SELECT EXISTS (SELECT 1 FROM notification_templates WHERE name = \(template.name))", as: Bool.self, logger: logger)
        if exists.first == true { continue }
        // ON CONFLICT: two servers seeding at once both see the name missing; version 1 is
        // written once (the loser waits for the winner's commit, then skips).
        try await Self.insertTemplate(template, category: new.category, system: new.system, now: now, conn, logger)
      }
    }
  }

  func template(name: String, version: Int?) async throws -> StoredTemplate? {
    let logger = logger
    return try await pool.read { conn in
      if let version {
        return try await conn.rows(
          """
          SELECT \(unescaped: Self.templateColumns) FROM notification_templates WHERE name = \(name) AND version = \(Int64(version))
          """, logger: logger
        ).first.map(Self.template(from:))
      }
      return try await conn.rows(
        """
        SELECT \(unescaped: Self.templateColumns) FROM notification_templates WHERE name = \(name) ORDER BY version DESC LIMIT 1
        """, logger: logger
      ).first.map(Self.template(from:))
    }
  }

  func latestTemplates() async throws -> [StoredTemplate] {
    let logger = logger
    return try await pool.read { conn in
      try await conn.rows(
        """
        SELECT t.name, t.version, t.title, t.body, t.category, t.system, t.created_at
        FROM notification_templates t
        JOIN (SELECT name, MAX(version) AS version FROM notification_templates GROUP BY name) m
          ON m.name = t.name AND m.version = t.version
        ORDER BY t.name
        """, logger: logger
      ).map(Self.template(from:))
    }
  }

  // MARK: - Topics

  func createTopic(code: String, title: String, description: String, now: Date, audit: AuditEvent?) async throws -> TopicInfo {
    let code = try TopicInfo.validateCode(code, field: "code")
    let title = try Check.text(title, field: "title", max: 100)
    let description = try Check.optionalText(description, field: "description", max: 500)
    let logger = logger
    do {
      try await pool.write { conn in
        try await conn.run(
          """
          INSERT INTO topics (code, title, description, last_seq, created_at)
          VALUES (\(code), \(title), \(description), 0, \(PGTime.ms(now)))
          """, logger: logger)
        try await Self.audit(audit, now: now, conn, logger)
      }
    } catch let error where error.postgres?.sqlState == "23505" && error.postgres?.constraintName == "topics_pkey" {
      throw StoreError.alreadyExists(field: "code")
    }
    return TopicInfo(
      code: code, title: title, description: description, subscriberCount: 0, subscribed: false, headSeq: 0,
      createdAt: Self.stored(now))
  }

  func topics(accountID: String?) async throws -> [TopicInfo] {
    let logger = logger
    return try await pool.read { conn in
      try await conn.rows(
        """
        SELECT t.code, t.title, t.description, t.last_seq, t.created_at,
          (SELECT COUNT(*) FROM topic_subscriptions s WHERE s.topic = t.code) AS subscribers,
          EXISTS (SELECT 1 FROM topic_subscriptions s WHERE s.topic = t.code AND s.account_id = \(accountID)) AS subscribed
        FROM topics t ORDER BY t.code
        """, logger: logger
      ).map { row in
        TopicInfo(
          code: try Self.col(row, "code"), title: try Self.col(row, "title"), description: try Self.col(row, "description"),
          subscriberCount: try Self.col(row, "subscribers"), subscribed: try Self.col(row, "subscribed"),
          headSeq: try Self.col(row, "last_seq"), createdAt: PGTime.date(try Self.col(row, "created_at", as: Int64.self)))
      }
    }
  }

  func setSubscription(accountID: String, topic: String, subscribed: Bool, now: Date) async throws -> StreamCursor {
    let logger = logger
    return try await pool.write { conn in
      guard let head = try await conn.all("SELECT last_seq FROM topics WHERE code = \(topic)", as: Int64.self, logger: logger).first
      else { throw StoreError.notFound("topic \(topic)") }
      guard subscribed else {
        try await conn.run(
          "DELETE FROM topic_subscriptions WHERE account_id = \(accountID) AND topic = \(topic)", logger: logger)
        return StreamCursor()
      }
      do {
        try await conn.run(
          """
          INSERT INTO topic_subscriptions (account_id, topic, acked_seq, sent_seq, rounds, read_seq, subscribed_at)
          VALUES (\(accountID), \(topic), \(head), \(head), 0, \(head), \(PGTime.ms(now))) ON CONFLICT DO NOTHING
          """, logger: logger)
      } catch let error where error.postgres?.sqlState == "23503" {
        throw StoreError.notFound("account \(accountID)")
      }
      guard let cursor = try await Self.topicCursor(conn, accountID: accountID, topic: topic, logger) else {
        throw StoreError.notFound("a subscription to topic \(topic)")
      }
      return cursor
    }
  }

  // MARK: - Publications

  static let publicationColumns =
    "id, publisher_key, idempotency_key, audience, content, ttl_ms, status, send_at, created_at, sent_at, recipient_count, event_id, webhook_event"

  static func publication(from row: PostgresRandomAccessRow) throws -> Publication {
    let id: String = try col(row, "id")
    guard let status = PublicationStatus(rawValue: try col(row, "status")) else {
      throw StoreError.failedPrecondition("publication \(id) has an unknown status")
    }
    let publisher: String = try col(row, "publisher_key")
    return Publication(
      id: id, audience: try decode(Audience.self, col(row, "audience")), content: try decode(MessageContent.self, col(row, "content")),
      ttl: try col(row, "ttl_ms", as: Int64?.self).map { Double($0) / 1000 }, status: status,
      sendAt: PGTime.date(try col(row, "send_at", as: Int64?.self)),
      createdAt: PGTime.date(try col(row, "created_at", as: Int64.self)), sentAt: PGTime.date(try col(row, "sent_at", as: Int64?.self)),
      recipientCount: try col(row, "recipient_count"), eventID: try col(row, "event_id"),
      publisherID: publisher == systemPublisher ? nil : publisher)
  }

  /// The publication's row; `forUpdate` locks it (release and cancel both decide on its status).
  static func loadPublication(
    _ conn: PostgresConnection, id: String, forUpdate: Bool = false, _ logger: Logger
  ) async throws -> PostgresRandomAccessRow? {
    try await conn.rows(
      "SELECT \(unescaped: publicationColumns) FROM publications WHERE id = \(id)\(unescaped: forUpdate ? " FOR UPDATE" : "")",
      logger: logger
    ).first
  }

  static func publication(
    _ conn: PostgresConnection, publisherKey: String, idempotencyKey: String, _ logger: Logger
  ) async throws -> Publication? {
    try await conn.rows(
      """
      SELECT \(unescaped: publicationColumns) FROM publications
      WHERE publisher_key = \(publisherKey) AND idempotency_key = \(idempotencyKey)
      """, logger: logger
    ).first.map(publication(from:))
  }

  static func ttlMillis(_ ttl: TimeInterval?) -> Int64? { ttl.map { Int64(($0 * 1000).rounded()) } }

  /// The queued webhook event of a scheduled publication, as stored in `webhook_event`.
  struct StoredWebhookEvent: Codable {
    var id: String
    var type: String
    var body: String

    init(_ event: WebhookEvent) {
      id = event.id
      type = event.type
      body = Data(event.body).base64EncodedString()
    }

    func event() throws -> WebhookEvent {
      guard let bytes = Data(base64Encoded: body) else {
        throw StoreError.failedPrecondition("stored webhook event \(id) is unreadable")
      }
      return WebhookEvent(id: id, type: type, body: Array(bytes))
    }
  }

  func publish(_ publication: NewPublication, now: Date, limits: InboxLimits) async throws -> PublishOutcome {
    let logger = logger
    do {
      return try await pool.write { conn in try await Self.publish(publication, now: now, limits: limits, conn, logger) }
    } catch let error where error.postgres?.sqlState == "23505" {
      switch error.postgres?.constraintName {
      case "publications_publisher_key_idempotency_key_key":
        // Lost a race with the same key (unreachable under the key lock): the other is the original.
        let key = publication.publisherID ?? Self.systemPublisher
        if let original = try await pool.read({ conn in
          try await Self.publication(conn, publisherKey: key, idempotencyKey: publication.idempotencyKey, logger)
        }) {
          return PublishOutcome(publication: original, replayed: true)
        }
      case "publications_pkey": throw StoreError.alreadyExists(field: "id")
      default: break
      }
      throw error
    }
  }

  /// `publish` inside a write transaction (also used for the publications of outbox events).
  static func publish(
    _ p: NewPublication, now: Date, limits: InboxLimits, _ conn: PostgresConnection, _ logger: Logger
  ) async throws -> PublishOutcome {
    let publisherKey = p.publisherID ?? systemPublisher
    // Serializes publishes with one idempotency key of one publisher (no row to lock yet): the
    // second sees the first's publication and replays it instead of sending again.
    try await conn.advisoryLock("publications:" + publisherKey + "\u{1F}" + p.idempotencyKey, logger: logger)
    if let original = try await publication(conn, publisherKey: publisherKey, idempotencyKey: p.idempotencyKey, logger) {
      return PublishOutcome(publication: original, replayed: true)
    }
    let at = stored(now)
    var result = Publication(
      id: p.id, audience: p.audience, content: p.content, ttl: p.ttl, status: .scheduled, sendAt: p.sendAt.map(stored),
      createdAt: at, sentAt: nil, recipientCount: 0, eventID: "", publisherID: p.publisherID)
    var outcome = PublishOutcome(publication: result, replayed: false)
    if let sendAt = p.sendAt, sendAt > now {
      try await insertPublication(
        result, publisherKey: publisherKey, idempotencyKey: p.idempotencyKey,
        webhookEvent: p.webhookEvent.map(StoredWebhookEvent.init), conn, logger)
    } else {
      let sent = try await send(
        publicationID: p.id, audience: p.audience, content: p.content, ttl: p.ttl, webhookEvent: p.webhookEvent, now: now,
        limits: limits, conn, logger)
      result.status = .sent
      result.sentAt = at
      result.recipientCount = sent.recipientCount
      result.eventID = sent.eventID
      try await insertPublication(result, publisherKey: publisherKey, idempotencyKey: p.idempotencyKey, webhookEvent: nil, conn, logger)
      outcome = PublishOutcome(
        publication: result, replayed: false, inboxMessages: sent.inboxMessages, topicMessage: sent.topicMessage)
    }
    try await audit(p.audit, now: now, conn, logger)
    return outcome
  }

  static func insertPublication(
    _ p: Publication, publisherKey: String, idempotencyKey: String, webhookEvent: StoredWebhookEvent?,
    _ conn: PostgresConnection, _ logger: Logger
  ) async throws {
    try await conn.run(
      """
      INSERT INTO publications (id, publisher_key, idempotency_key, audience, content, ttl_ms, status, send_at, created_at,
        sent_at, recipient_count, event_id, webhook_event)
      VALUES (\(p.id), \(publisherKey), \(idempotencyKey), \(try json(p.audience)), \(try json(p.content)), \(ttlMillis(p.ttl)),
        \(p.status.rawValue), \(p.sendAt.map(PGTime.ms)), \(PGTime.ms(p.createdAt)), \(p.sentAt.map(PGTime.ms)),
        \(p.recipientCount), \(p.eventID), \(try webhookEvent.map { try json($0) }))
      """, logger: logger)
  }

  /// What sending a publication wrote.
  struct Sent {
    var recipientCount: Int64 = 0
    var eventID = ""
    var inboxMessages: [(accountID: String, entry: InboxEntry)] = []
    var topicMessage: InboxEntry?
  }

  /// Sends a publication at `now` (TTL counted from then): its inbox rows or topic entry, and
  /// its webhook deliveries. Shared by `publish`, `releaseDue` and `consumeEvents`.
  static func send(
    publicationID: String, audience: Audience, content: MessageContent, ttl: TimeInterval?, webhookEvent: WebhookEvent?,
    now: Date, limits: InboxLimits, _ conn: PostgresConnection, _ logger: Logger
  ) async throws -> Sent {
    let message = try OutgoingMessage(publicationID: publicationID, content: content, ttl: ttl, now: now)
    var sent = Sent()
    switch audience {
    case .account(let accountID):
      let exists = try await conn.all(
        "SELECT EXISTS (SELECT 1 FROM accounts WHERE id = \(accountID))", as: Bool.self, logger: logger)
      guard exists.first == true else { throw StoreError.notFound("account \(accountID)") }
      let written = try await writeInboxes([accountID], message, limits: limits, conn, logger)
      if let first = written.first {
        sent.inboxMessages = written
        sent.eventID = first.entry.eventID
      }
      sent.recipientCount = 1
    case .segment(let segment):
      let accounts = try await segmentAccounts(try segment.validated(), limit: limits.maxSegmentRecipients, conn, logger)
      sent.inboxMessages = try await writeInboxes(accounts, message, limits: limits, conn, logger)
      sent.recipientCount = Int64(accounts.count)
    case .topic(let topic):
      let entry = try await writeTopic(topic, message, conn, logger)
      sent.topicMessage = entry
      sent.eventID = entry.eventID
      sent.recipientCount = 1
    }
    if let webhookEvent { try await queueWebhook(webhookEvent, now: now, conn, logger) }
    return sent
  }

  /// One message ready to write into inboxes or a topic log (content encoded once).
  struct OutgoingMessage {
    var publicationID: String
    var content: MessageContent
    var contentJSON: String
    var now: Date
    var sentAt: Int64
    var expiresAt: Int64?

    init(publicationID: String, content: MessageContent, ttl: TimeInterval?, now: Date) throws {
      self.publicationID = publicationID
      self.content = content
      contentJSON = try PostgresNotificationStore.json(content)
      self.now = now
      sentAt = PGTime.ms(now)
      expiresAt = PostgresNotificationStore.ttlMillis(ttl).map { sentAt + $0 }
    }

    func entry(eventID: String, topic: String?, seq: Int64, replaces: String?) -> InboxEntry {
      InboxEntry(
        eventID: eventID, topic: topic, seq: seq, content: content, publicationID: publicationID, replacesEventID: replaces,
        sentAt: PGTime.date(sentAt), expiresAt: PGTime.date(expiresAt), readAt: nil, state: .pending)
    }
  }

  /// The accounts a segment reaches, at most `limit` (`failedPrecondition` past it).
  static func segmentAccounts(_ segment: Segment, limit: Int, _ conn: PostgresConnection, _ logger: Logger) async throws -> [String] {
    var conditions: [String] = []
    var binds = PostgresBindings()
    if let role = segment.role {
      binds.append(role.rawValue)
      conditions.append("role = $\(binds.count)")
    }
    if let department = segment.departmentCode {
      binds.append(department)
      conditions.append("department_code = $\(binds.count)")
    }
    if let region = segment.region {
      // `accounts.region_code` is the account's division code; a 2- or 4-digit region is a
      // prefix of it (digits only, so no LIKE wildcard).
      binds.append(region + "%")
      conditions.append("region_code LIKE $\(binds.count)")
    }
    let filter = conditions.joined(separator: " AND ")
    let countBinds = binds
    binds.append(Int64(limit) + 1)
    let ids = try await conn.all(
      PostgresQuery(unsafeSQL: "SELECT id FROM accounts WHERE \(filter) ORDER BY id LIMIT $\(binds.count)", binds: binds),
      as: String.self, logger: logger)
    if ids.count > limit {
      let count = try await conn.all(
        PostgresQuery(unsafeSQL: "SELECT COUNT(*) FROM accounts WHERE \(filter)", binds: countBinds), as: Int64.self, logger: logger
      ).first ?? 0
      throw StoreError.failedPrecondition("segment matches \(count) accounts, over the limit of \(limit)")
    }
    return ids
  }

  /// Writes one inbox row per account (in the given order) with each inbox's next seq,
  /// replacing pending messages with the same collapse key and pruning past the cap. An account
  /// is left out of the result when pruning removed the new message itself (an inbox full of
  /// unread high-priority messages receiving a normal one). Set-based, so a large segment is a
  /// handful of statements rather than several per recipient.
  static func writeInboxes(
    _ accountIDs: [String], _ m: OutgoingMessage, limits: InboxLimits, _ conn: PostgresConnection, _ logger: Logger
  ) async throws -> [(accountID: String, entry: InboxEntry)] {
    guard !accountIDs.isEmpty else { return [] }
    do {
      try await conn.run("INSERT INTO inbox_heads (account_id) SELECT unnest(\(accountIDs)::text[]) ON CONFLICT DO NOTHING", logger: logger)
    } catch let error where error.postgres?.sqlState == "23503" {
      throw StoreError.notFound("account \(accountIDs[0])")
    }
    // Locks each recipient's inbox head (in account order, as every writer of heads does), so
    // concurrent publishes to one inbox give out consecutive seqs and count every message.
    var heads: [String: (seq: Int64, count: Int64)] = [:]
    for (id, last, count) in try await conn.all(
      """
      SELECT account_id, last_seq, message_count FROM inbox_heads WHERE account_id = ANY(\(accountIDs))
      ORDER BY account_id FOR UPDATE
      """, as: (String, Int64, Int64).self, logger: logger)
    {
      heads[id] = (last + 1, count + 1)
    }
    var replaced: [String: String] = [:]
    if let key = m.content.collapseKey {
      for (id, eventID) in try await conn.all(
        """
        SELECT DISTINCT ON (account_id) account_id, event_id FROM inbox_messages
        WHERE account_id = ANY(\(accountIDs)) AND collapse_key = \(key) AND state = 'pending'
        ORDER BY account_id, seq DESC
        """, as: (String, String).self, logger: logger)
      {
        replaced[id] = eventID
      }
      if !replaced.isEmpty {
        try await conn.run(
          """
          UPDATE inbox_messages SET state = 'replaced'
          WHERE account_id = ANY(\(Array(replaced.keys))) AND collapse_key = \(key) AND state = 'pending'
          """, logger: logger)
      }
    }
    var written: [(accountID: String, entry: InboxEntry)] = []
    written.reserveCapacity(accountIDs.count)
    var seqs: [Int64] = []
    var counts: [Int64] = []
    var eventIDs: [String] = []
    var replaces: [String] = []
    for id in accountIDs {
      guard let head = heads[id] else { throw StoreError.notFound("account \(id)") }
      let eventID = ULID.make(at: m.now)
      written.append((id, m.entry(eventID: eventID, topic: nil, seq: head.seq, replaces: replaced[id])))
      seqs.append(head.seq)
      counts.append(head.count)
      eventIDs.append(eventID)
      replaces.append(replaced[id] ?? "")
    }
    try await conn.run(
      """
      INSERT INTO inbox_messages (account_id, seq, event_id, publication_id, content, category, priority, collapse_key,
        replaces_event_id, state, sent_at, expires_at)
      SELECT v.a, v.s, v.e, \(m.publicationID)::text, \(m.contentJSON)::text, \(m.content.category)::text,
        \(m.content.priority.rawValue)::text, \(m.content.collapseKey)::text, NULLIF(v.r, ''), 'pending', \(m.sentAt)::bigint,
        \(m.expiresAt)::bigint
      FROM unnest(\(accountIDs)::text[], \(seqs)::bigint[], \(eventIDs)::text[], \(replaces)::text[]) AS v(a, s, e, r)
      """, logger: logger)
    try await conn.run(
      """
      UPDATE inbox_heads h SET last_seq = v.s, message_count = v.c
      FROM unnest(\(accountIDs)::text[], \(seqs)::bigint[], \(counts)::bigint[]) AS v(a, s, c)
      WHERE h.account_id = v.a
      """, logger: logger)
    var pruned: Set<String> = []
    for (index, id) in accountIDs.enumerated() where counts[index] > Int64(limits.cap) {
      let victims = try await prune(accountID: id, cap: limits.cap - limits.cap / 100, conn, logger)
      if victims.contains(seqs[index]) { pruned.insert(id) }
    }
    return pruned.isEmpty ? written : written.filter { !pruned.contains($0.accountID) }
  }

  /// Deletes the messages `InboxRules.prune` picks so the inbox gets back to `cap` (replaced and
  /// expired messages, no longer shown, go first like read ones). Returns the deleted seqs.
  static func prune(accountID: String, cap: Int, _ conn: PostgresConnection, _ logger: Logger) async throws -> [Int64] {
    let entries = try await conn.all(
      """
      SELECT seq, priority, (read_at IS NOT NULL OR state IN ('replaced', 'expired')) AS gone
      FROM inbox_messages WHERE account_id = \(accountID)
      """, as: (Int64, String, Bool).self, logger: logger
    ).map { seq, priority, gone in
      InboxRules.Entry(sequence: seq, priority: MessagePriority(rawValue: priority) ?? .normal, read: gone)
    }
    let victims = InboxRules.prune(entries, cap: cap)
    guard !victims.isEmpty else { return [] }
    try await deleteInboxRows(accountID: accountID, seqs: victims, conn, logger)
    return victims
  }

  /// Deletes rows of one inbox and keeps its message count; returns how many went. The caller
  /// holds the inbox head's lock.
  @discardableResult
  static func deleteInboxRows(accountID: String, seqs: [Int64], _ conn: PostgresConnection, _ logger: Logger) async throws -> Int {
    let deleted = try await conn.all(
      """
      WITH d AS (DELETE FROM inbox_messages WHERE account_id = \(accountID) AND seq = ANY(\(seqs)) RETURNING 1)
      SELECT COUNT(*) FROM d
      """, as: Int64.self, logger: logger
    ).first ?? 0
    if deleted > 0 {
      try await conn.run(
        "UPDATE inbox_heads SET message_count = message_count - \(deleted) WHERE account_id = \(accountID)", logger: logger)
    }
    return Int(deleted)
  }

  /// Appends one entry to a topic's log (stored once; subscribers read it through their cursors).
  static func writeTopic(_ topic: String, _ m: OutgoingMessage, _ conn: PostgresConnection, _ logger: Logger) async throws -> InboxEntry {
    // Locks the topic row: concurrent publishes to one topic take consecutive seqs.
    guard let last = try await conn.all(
      "SELECT last_seq FROM topics WHERE code = \(topic) FOR UPDATE", as: Int64.self, logger: logger
    ).first
    else { throw StoreError.notFound("topic \(topic)") }
    var replaces: String?
    if let key = m.content.collapseKey {
      replaces = try await conn.all(
        """
        SELECT event_id FROM topic_messages WHERE topic = \(topic) AND collapse_key = \(key) AND state = 'pending'
        ORDER BY seq DESC LIMIT 1
        """, as: String.self, logger: logger
      ).first
      if replaces != nil {
        try await conn.run(
          "UPDATE topic_messages SET state = 'replaced' WHERE topic = \(topic) AND collapse_key = \(key) AND state = 'pending'",
          logger: logger)
      }
    }
    let seq = last + 1
    let eventID = ULID.make(at: m.now)
    try await conn.run(
      """
      INSERT INTO topic_messages (topic, seq, event_id, publication_id, content, collapse_key, replaces_event_id, state, sent_at,
        expires_at)
      VALUES (\(topic), \(seq), \(eventID), \(m.publicationID), \(m.contentJSON), \(m.content.collapseKey), \(replaces), 'pending',
        \(m.sentAt), \(m.expiresAt))
      """, logger: logger)
    try await conn.run("UPDATE topics SET last_seq = \(seq) WHERE code = \(topic)", logger: logger)
    return m.entry(eventID: eventID, topic: topic, seq: seq, replaces: replaces)
  }

  func releaseDue(now: Date, limit: Int, limits: InboxLimits) async throws -> [PublishOutcome] {
    let logger = logger
    let due = try await pool.read { conn in
      try await conn.all(
        """
        SELECT id FROM publications WHERE status = 'scheduled' AND send_at <= \(PGTime.ms(now)) ORDER BY send_at, id
        LIMIT \(Int64(limit))
        """, as: String.self, logger: logger)
    }
    var outcomes: [PublishOutcome] = []
    var failure: (any Error)?
    for id in due {
      do {
        if let outcome = try await pool.write({ conn in try await Self.release(id: id, now: now, limits: limits, conn, logger) }) {
          outcomes.append(outcome)
        }
      } catch where error is StoreError || error is ValidationError {
        // Its audience is gone or grew past the segment limit: it cannot be sent, and left
        // scheduled it would come due again forever (and hold up the scheduler). Cancel it.
        try await pool.write { conn in
          try await conn.run(
            "UPDATE publications SET status = 'cancelled' WHERE id = \(id) AND status = 'scheduled'", logger: logger)
        }
      } catch is CancellationError {
        throw CancellationError()
      } catch {
        // Anything else may be passing (a busy database): this one stays scheduled for the next
        // pass, and the others are still sent (their outcomes must reach the live streams).
        failure = failure ?? error
      }
    }
    if let failure, outcomes.isEmpty { throw failure }
    return outcomes
  }

  /// Sends one scheduled publication (nil when it is no longer scheduled).
  static func release(
    id: String, now: Date, limits: InboxLimits, _ conn: PostgresConnection, _ logger: Logger
  ) async throws -> PublishOutcome? {
    // Locks the publication: two schedulers (or a cancel) deciding on one status; the loser
    // sees it sent (or cancelled) and leaves it.
    guard let row = try await loadPublication(conn, id: id, forUpdate: true, logger) else { return nil }
    var p = try publication(from: row)
    guard p.status == .scheduled else { return nil }
    let webhookEvent = try (try col(row, "webhook_event", as: String?.self)).map { try decode(StoredWebhookEvent.self, $0).event() }
    let sent = try await send(
      publicationID: id, audience: p.audience, content: p.content, ttl: p.ttl, webhookEvent: webhookEvent, now: now,
      limits: limits, conn, logger)
    try await conn.run(
      """
      UPDATE publications SET status = 'sent', sent_at = \(PGTime.ms(now)), recipient_count = \(sent.recipientCount),
        event_id = \(sent.eventID)
      WHERE id = \(id)
      """, logger: logger)
    p.status = .sent
    p.sentAt = stored(now)
    p.recipientCount = sent.recipientCount
    p.eventID = sent.eventID
    return PublishOutcome(publication: p, replayed: false, inboxMessages: sent.inboxMessages, topicMessage: sent.topicMessage)
  }

  func nextScheduled() async throws -> Date? {
    let logger = logger
    return try await pool.read { conn in
      PGTime.date(
        try await conn.all("SELECT MIN(send_at) FROM publications WHERE status = 'scheduled'", as: Int64?.self, logger: logger)
          .first.flatMap { $0 })
    }
  }

  func cancelPublication(id: String, now: Date, audit: AuditEvent?) async throws -> Publication {
    let logger = logger
    return try await pool.write { conn in
      // Locks the publication: a cancel racing its release must not cancel what was just sent.
      guard let row = try await Self.loadPublication(conn, id: id, forUpdate: true, logger) else {
        throw StoreError.notFound("publication \(id)")
      }
      var p = try Self.publication(from: row)
      guard p.status == .scheduled else {
        throw StoreError.failedPrecondition("publication is \(p.status.rawValue); only a scheduled one can be cancelled")
      }
      try await conn.run("UPDATE publications SET status = 'cancelled' WHERE id = \(id)", logger: logger)
      try await Self.audit(audit, now: now, conn, logger)
      p.status = .cancelled
      return p
    }
  }

  func publication(id: String) async throws -> Publication? {
    let logger = logger
    return try await pool.read { conn in try await Self.loadPublication(conn, id: id, logger).map(Self.publication(from:)) }
  }

  func publication(publisherID: String?, idempotencyKey: String) async throws -> Publication? {
    let logger = logger
    return try await pool.read { conn in
      try await Self.publication(conn, publisherKey: publisherID ?? Self.systemPublisher, idempotencyKey: idempotencyKey, logger)
    }
  }

  func publications(before: String?, limit: Int) async throws -> [Publication] {
    let logger = logger
    return try await pool.read { conn in
      if let before {
        return try await conn.rows(
          """
          SELECT \(unescaped: Self.publicationColumns) FROM publications WHERE id < \(before) ORDER BY id DESC LIMIT \(Int64(limit))
          """, logger: logger
        ).map(Self.publication(from:))
      }
      return try await conn.rows(
        "SELECT \(unescaped: Self.publicationColumns) FROM publications ORDER BY id DESC LIMIT \(Int64(limit))", logger: logger
      ).map(Self.publication(from:))
    }
  }
}
