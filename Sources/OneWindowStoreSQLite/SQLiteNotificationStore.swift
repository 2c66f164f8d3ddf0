import OneWindowStore
import Foundation
import GRDB
import OneWindowCore

/// Notifications in SQLite (migration `v4-notifications`): templates, topics, publications and
/// the inboxes they write, the stream cursors, and outbound webhook deliveries. Streams and the
/// list view are in `+Streams`, webhooks, deliveries and outbox consumption in `+Webhooks`.
struct SQLiteNotificationStore: NotificationStore {
  let pool: DatabasePool

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
  static func stored(_ date: Date) -> Date { SQLTime.date(SQLTime.ms(date)) }

  // MARK: - Templates

  static let templateColumns = "name, version, title, body, category, system, created_at"

  static func template(from row: Row) throws -> StoredTemplate {
    StoredTemplate(
      template: try MessageTemplate(name: row["name"], version: row["version"], title: row["title"], body: row["body"]),
      category: row["category"], system: row["system"], createdAt: SQLTime.date(row["created_at"] as Int64))
  }

  static func insertTemplate(_ t: MessageTemplate, category: String, system: Bool, now: Date, _ db: Database) throws {
    try db.execute(
      sql: """
        INSERT INTO notification_templates (name, version, title, body, category, system, created_at)
        VALUES (?, ?, ?, ?, ?, ?, ?)
        """,
      arguments: [t.name, t.version, t.title, t.body, category, system, SQLTime.ms(now)])
  }

  func putTemplate(_ template: NewTemplate, expectedVersion: Int, now: Date, audit: AuditEvent?) async throws -> StoredTemplate {
    // Validates the text and normalizes the name before anything is read.
    let checked = try MessageTemplate(name: template.name, version: 1, title: template.title, body: template.body)
    do {
      return try await pool.write { db in
        let latest = try Int.fetchOne(
          db, sql: "SELECT MAX(version) FROM notification_templates WHERE name = ?", arguments: [checked.name]) ?? 0
        guard latest == expectedVersion else { throw StoreError.versionConflict(current: Int64(latest)) }
        let next = try MessageTemplate(name: checked.name, version: latest + 1, title: checked.title, body: checked.body)
        try Self.insertTemplate(next, category: template.category, system: template.system, now: now, db)
        if let audit { try SQLiteAudit.append(audit, now: now, db) }
        return StoredTemplate(template: next, category: template.category, system: template.system, createdAt: Self.stored(now))
      }
    } catch let error as DatabaseError where error.uniqueViolationColumn != nil {
      // Unreachable with one writer; kept so a concurrent store reports the conflict properly.
      let latest = try await pool.read { db in
        try Int.fetchOne(db, sql: "SELECT MAX(version) FROM notification_templates WHERE name = ?", arguments: [checked.name]) ?? 0
      }
      throw StoreError.versionConflict(current: Int64(latest))
    }
  }

  func seedTemplates(_ templates: [NewTemplate], now: Date) async throws {
    let checked = try templates.map { t in
      (try MessageTemplate(name: t.name, version: 1, title: t.title, body: t.body), t)
    }
    try await pool.write { db in
      for (template, new) in checked {
        let exists = try Bool.fetchOne(
          db, sql: "SELECT EXISTS (SELECT 1 FROM notification_templates WHERE name = ?)", arguments: [template.name]) ?? false
        if exists { continue }
        try Self.insertTemplate(template, category: new.category, system: new.system, now: now, db)
      }
    }
  }

  func template(name: String, version: Int?) async throws -> StoredTemplate? {
    try await pool.read { db in
      if let version {
        return try Row.fetchOne(
          db, sql: "SELECT \(Self.templateColumns) FROM notification_templates WHERE name = ? AND version = ?",
          arguments: [name, version]
        ).map(Self.template(from:))
      }
      return try Row.fetchOne(
        db, sql: "SELECT \(Self.templateColumns) FROM notification_templates WHERE name = ? ORDER BY version DESC LIMIT 1",
        arguments: [name]
      ).map(Self.template(from:))
    }
  }

  func latestTemplates() async throws -> [StoredTemplate] {
    try await pool.read { db in
      try Row.fetchAll(
        db,
        sql: """
          SELECT t.name, t.version, t.title, t.body, t.category, t.system, t.created_at
          FROM notification_templates t
          JOIN (SELECT name, MAX(version) AS version FROM notification_templates GROUP BY name) m
            ON m.name = t.name AND m.version = t.version
          ORDER BY t.name
          """
      ).map(Self.template(from:))
    }
  }

  // MARK: - Topics

  func createTopic(code: String, title: String, description: String, now: Date, audit: AuditEvent?) async throws -> TopicInfo {
    let code = try TopicInfo.validateCode(code, field: "code")
    let title = try Check.text(title, field: "title", max: 100)
    let description = try Check.optionalText(description, field: "description", max: 500)
    do {
      try await pool.write { db in
        try db.execute(
          sql: "INSERT INTO topics (code, title, description, last_seq, created_at) VALUES (?, ?, ?, 0, ?)",
          arguments: [code, title, description, SQLTime.ms(now)])
        if let audit { try SQLiteAudit.append(audit, now: now, db) }
      }
    } catch let error as DatabaseError where error.uniqueViolationColumn != nil {
      throw StoreError.alreadyExists(field: "code")
    }
    return TopicInfo(
      code: code, title: title, description: description, subscriberCount: 0, subscribed: false, headSeq: 0,
      createdAt: Self.stored(now))
  }

  func topics(accountID: String?) async throws -> [TopicInfo] {
    try await pool.read { db in
      try Row.fetchAll(
        db,
        sql: """
          SELECT t.code, t.title, t.description, t.last_seq, t.created_at,
            (SELECT COUNT(*) FROM topic_subscriptions s WHERE s.topic = t.code) AS subscribers,
            EXISTS (SELECT 1 FROM topic_subscriptions s WHERE s.topic = t.code AND s.account_id = ?) AS subscribed
          FROM topics t ORDER BY t.code
          """,
        arguments: [accountID]
      ).map { row in
        TopicInfo(
          code: row["code"], title: row["title"], description: row["description"], subscriberCount: row["subscribers"],
          subscribed: row["subscribed"], headSeq: row["last_seq"], createdAt: SQLTime.date(row["created_at"] as Int64))
      }
    }
  }

  func setSubscription(accountID: String, topic: String, subscribed: Bool, now: Date) async throws -> StreamCursor {
    try await pool.write { db in
      guard let head = try Int64.fetchOne(db, sql: "SELECT last_seq FROM topics WHERE code = ?", arguments: [topic]) else {
        throw StoreError.notFound("topic \(topic)")
      }
      guard subscribed else {
        try db.execute(sql: "DELETE FROM topic_subscriptions WHERE account_id = ? AND topic = ?", arguments: [accountID, topic])
        return StreamCursor()
      }
      do {
        try db.execute(
          sql: """
            INSERT INTO topic_subscriptions (account_id, topic, acked_seq, sent_seq, rounds, read_seq, subscribed_at)
            VALUES (?, ?, ?, ?, 0, ?, ?) ON CONFLICT DO NOTHING
            """,
          arguments: [accountID, topic, head, head, head, SQLTime.ms(now)])
      } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_FOREIGNKEY {
        throw StoreError.notFound("account \(accountID)")
      }
      guard let cursor = try Self.topicCursor(db, accountID: accountID, topic: topic) else {
        throw StoreError.notFound("a subscription to topic \(topic)")
      }
      return cursor
    }
  }

  // MARK: - Publications

  static let publicationColumns =
    "id, publisher_key, idempotency_key, audience, content, ttl_ms, status, send_at, created_at, sent_at, recipient_count, event_id, webhook_event"

  static func publication(from row: Row) throws -> Publication {
    let id: String = row["id"]
    guard let status = PublicationStatus(rawValue: row["status"]) else {
      throw StoreError.failedPrecondition("publication \(id) has an unknown status")
    }
    let publisher: String = row["publisher_key"]
    return Publication(
      id: id, audience: try decode(Audience.self, row["audience"]), content: try decode(MessageContent.self, row["content"]),
      ttl: (row["ttl_ms"] as Int64?).map { Double($0) / 1000 }, status: status, sendAt: SQLTime.date(row["send_at"] as Int64?),
      createdAt: SQLTime.date(row["created_at"] as Int64), sentAt: SQLTime.date(row["sent_at"] as Int64?),
      recipientCount: row["recipient_count"], eventID: row["event_id"],
      publisherID: publisher == systemPublisher ? nil : publisher)
  }

  static func loadPublication(_ db: Database, id: String) throws -> Row? {
    try Row.fetchOne(db, sql: "SELECT \(publicationColumns) FROM publications WHERE id = ?", arguments: [id])
  }

  static func publication(_ db: Database, publisherKey: String, idempotencyKey: String) throws -> Publication? {
    try Row.fetchOne(
      db.cachedStatement(sql: "SELECT \(publicationColumns) FROM publications WHERE publisher_key = ? AND idempotency_key = ?"),
      arguments: [publisherKey, idempotencyKey]
    ).map(publication(from:))
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
    do {
      return try await pool.write { db in try Self.publish(publication, now: now, limits: limits, db) }
    } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_UNIQUE
      || error.extendedResultCode == .SQLITE_CONSTRAINT_PRIMARYKEY
    {
      let message = error.message ?? ""
      if message.contains("publications.publisher_key") || message.contains("publications.idempotency_key") {
        // Lost a race with the same key: the other publication is the original.
        let key = publication.publisherID ?? Self.systemPublisher
        if let original = try await pool.read({ db in
          try Self.publication(db, publisherKey: key, idempotencyKey: publication.idempotencyKey)
        }) {
          return PublishOutcome(publication: original, replayed: true)
        }
      }
      if message.contains("publications.id") { throw StoreError.alreadyExists(field: "id") }
      throw error
    }
  }

  /// `publish` inside a write transaction (also used for the publications of outbox events).
  static func publish(_ p: NewPublication, now: Date, limits: InboxLimits, _ db: Database) throws -> PublishOutcome {
    let publisherKey = p.publisherID ?? systemPublisher
    if let original = try publication(db, publisherKey: publisherKey, idempotencyKey: p.idempotencyKey) {
      return PublishOutcome(publication: original, replayed: true)
    }
    let at = stored(now)
    var result = Publication(
      id: p.id, audience: p.audience, content: p.content, ttl: p.ttl, status: .scheduled, sendAt: p.sendAt.map(stored),
      createdAt: at, sentAt: nil, recipientCount: 0, eventID: "", publisherID: p.publisherID)
    var outcome = PublishOutcome(publication: result, replayed: false)
    if let sendAt = p.sendAt, sendAt > now {
      try insertPublication(result, publisherKey: publisherKey, idempotencyKey: p.idempotencyKey,
                            webhookEvent: p.webhookEvent.map(StoredWebhookEvent.init), db)
    } else {
      let sent = try send(
        publicationID: p.id, audience: p.audience, content: p.content, ttl: p.ttl, webhookEvent: p.webhookEvent, now: now,
        limits: limits, db)
      result.status = .sent
      result.sentAt = at
      result.recipientCount = sent.recipientCount
      result.eventID = sent.eventID
      try insertPublication(result, publisherKey: publisherKey, idempotencyKey: p.idempotencyKey, webhookEvent: nil, db)
      outcome = PublishOutcome(
        publication: result, replayed: false, inboxMessages: sent.inboxMessages, topicMessage: sent.topicMessage)
    }
    if let audit = p.audit { try SQLiteAudit.append(audit, now: now, db) }
    return outcome
  }

  static func insertPublication(
    _ p: Publication, publisherKey: String, idempotencyKey: String, webhookEvent: StoredWebhookEvent?, _ db: Database
  ) throws {
    try db.execute(
      sql: """
        INSERT INTO publications (id, publisher_key, idempotency_key, audience, content, ttl_ms, status, send_at, created_at,
          sent_at, recipient_count, event_id, webhook_event)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        """,
      arguments: [
        p.id, publisherKey, idempotencyKey, try json(p.audience), try json(p.content), ttlMillis(p.ttl), p.status.rawValue,
        p.sendAt.map(SQLTime.ms), SQLTime.ms(p.createdAt), p.sentAt.map(SQLTime.ms), p.recipientCount, p.eventID,
        try webhookEvent.map { try json($0) },
      ])
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
    now: Date, limits: InboxLimits, _ db: Database
  ) throws -> Sent {
    let message = try OutgoingMessage(publicationID: publicationID, content: content, ttl: ttl, now: now)
    var sent = Sent()
    switch audience {
    case .account(let accountID):
      let exists = try Bool.fetchOne(
        db.cachedStatement(sql: "SELECT EXISTS (SELECT 1 FROM accounts WHERE id = ?)"), arguments: [accountID]) ?? false
      guard exists else { throw StoreError.notFound("account \(accountID)") }
      if let entry = try InboxWriter(db).write(accountID: accountID, message, limits: limits, db) {
        sent.inboxMessages.append((accountID, entry))
        sent.eventID = entry.eventID
      }
      sent.recipientCount = 1
    case .segment(let segment):
      let accounts = try segmentAccounts(try segment.validated(), limit: limits.maxSegmentRecipients, db)
      sent.inboxMessages.reserveCapacity(accounts.count)
      let writer = try InboxWriter(db)
      for accountID in accounts {
        if let entry = try writer.write(accountID: accountID, message, limits: limits, db) {
          sent.inboxMessages.append((accountID, entry))
        }
      }
      sent.recipientCount = Int64(accounts.count)
    case .topic(let topic):
      let entry = try writeTopic(topic, message, db)
      sent.topicMessage = entry
      sent.eventID = entry.eventID
      sent.recipientCount = 1
    }
    if let webhookEvent { try queueWebhook(webhookEvent, now: now, db) }
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
      contentJSON = try SQLiteNotificationStore.json(content)
      self.now = now
      sentAt = SQLTime.ms(now)
      expiresAt = SQLiteNotificationStore.ttlMillis(ttl).map { sentAt + $0 }
    }

    func entry(eventID: String, topic: String?, seq: Int64, replaces: String?) -> InboxEntry {
      InboxEntry(
        eventID: eventID, topic: topic, seq: seq, content: content, publicationID: publicationID, replacesEventID: replaces,
        sentAt: SQLTime.date(sentAt), expiresAt: SQLTime.date(expiresAt), readAt: nil, state: .pending)
    }
  }

  /// The accounts a segment reaches, at most `limit` (`failedPrecondition` past it).
  static func segmentAccounts(_ segment: Segment, limit: Int, _ db: Database) throws -> [String] {
    var conditions: [String] = []
    var arguments: [(any DatabaseValueConvertible)?] = []
    if let role = segment.role {
      conditions.append("role = ?")
      arguments.append(role.rawValue)
    }
    if let department = segment.departmentCode {
      conditions.append("department_code = ?")
      arguments.append(department)
    }
    if let region = segment.region {
      // The account's division code is derived by the core (`Segment.regionCode`) when it is
      // stored; a 2- or 4-digit region is a prefix of it (digits only, so no LIKE wildcard).
      conditions.append("region_code LIKE ?")
      arguments.append(region + "%")
    }
    let filter = conditions.joined(separator: " AND ")
    let ids = try String.fetchAll(
      db, sql: "SELECT id FROM accounts WHERE \(filter) ORDER BY id LIMIT ?", arguments: StatementArguments(arguments + [limit + 1]))
    if ids.count > limit {
      let count = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM accounts WHERE \(filter)", arguments: StatementArguments(arguments)) ?? 0
      throw StoreError.failedPrecondition("segment matches \(count) accounts, over the limit of \(limit)")
    }
    return ids
  }

  /// The statements of an inbox write, prepared once per publication (a segment reuses them
  /// for every recipient).
  struct InboxWriter {
    let head: Statement
    let latestPending: Statement
    let replace: Statement
    let insert: Statement

    init(_ db: Database) throws {
      head = try db.cachedStatement(
        sql: """
          INSERT INTO inbox_heads (account_id, last_seq, message_count) VALUES (?, 1, 1)
          ON CONFLICT (account_id) DO UPDATE SET last_seq = inbox_heads.last_seq + 1,
            message_count = inbox_heads.message_count + 1
          RETURNING last_seq, message_count
          """)
      latestPending = try db.cachedStatement(
        sql: """
          SELECT event_id FROM inbox_messages WHERE account_id = ? AND collapse_key = ? AND state = 'pending'
          ORDER BY seq DESC LIMIT 1
          """)
      replace = try db.cachedStatement(
        sql: "UPDATE inbox_messages SET state = 'replaced' WHERE account_id = ? AND collapse_key = ? AND state = 'pending'")
      insert = try db.cachedStatement(
        sql: """
          INSERT INTO inbox_messages (account_id, seq, event_id, publication_id, content, category, priority, collapse_key,
            replaces_event_id, state, sent_at, expires_at)
          VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)
          """)
    }

    /// Writes one inbox row with the inbox's next seq, replacing pending messages with the same
    /// collapse key and pruning past the cap. nil when pruning removed the new message itself
    /// (an inbox full of unread high-priority messages receiving a normal one).
    func write(accountID: String, _ m: OutgoingMessage, limits: InboxLimits, _ db: Database) throws -> InboxEntry? {
      guard let row = try Row.fetchOne(head, arguments: [accountID]) else { throw StoreError.notFound("account \(accountID)") }
      let seq: Int64 = row["last_seq"]
      let count: Int = row["message_count"]
      var replaces: String?
      if let key = m.content.collapseKey {
        replaces = try String.fetchOne(latestPending, arguments: [accountID, key])
        if replaces != nil { try replace.execute(arguments: [accountID, key]) }
      }
      let eventID = ULID.make(at: m.now)
      try insert.execute(arguments: [
        accountID, seq, eventID, m.publicationID, m.contentJSON, m.content.category, m.content.priority.rawValue,
        m.content.collapseKey, replaces, m.sentAt, m.expiresAt,
      ])
      if count > limits.cap {
        let pruned = try SQLiteNotificationStore.prune(accountID: accountID, cap: limits.cap - limits.cap / 100, db)
        if pruned.contains(seq) { return nil }
      }
      return m.entry(eventID: eventID, topic: nil, seq: seq, replaces: replaces)
    }
  }

  /// Deletes the messages `InboxRules.prune` picks so the inbox gets back to `cap` (replaced and
  /// expired messages, no longer shown, go first like read ones). Returns the deleted seqs.
  static func prune(accountID: String, cap: Int, _ db: Database) throws -> [Int64] {
    let entries = try Row.fetchAll(
      db.cachedStatement(
        sql: """
          SELECT seq, priority, (read_at IS NOT NULL OR state IN ('replaced', 'expired')) AS gone
          FROM inbox_messages WHERE account_id = ?
          """),
      arguments: [accountID]
    ).map { row in
      InboxRules.Entry(
        sequence: row["seq"], priority: MessagePriority(rawValue: row["priority"]) ?? .normal, read: row["gone"])
    }
    let victims = InboxRules.prune(entries, cap: cap)
    guard !victims.isEmpty else { return [] }
    try deleteInboxRows(accountID: accountID, seqs: victims, db)
    return victims
  }

  /// Deletes rows of one inbox and keeps its message count; returns how many went.
  @discardableResult
  static func deleteInboxRows(accountID: String, seqs: [Int64], _ db: Database) throws -> Int {
    var deleted = 0
    // Chunks keep the statement under SQLite's parameter limit and its shapes few.
    for chunk in stride(from: 0, to: seqs.count, by: 500).map({ Array(seqs[$0..<min($0 + 500, seqs.count)]) }) {
      try db.execute(
        sql: "DELETE FROM inbox_messages WHERE account_id = ? AND seq IN (\(databaseQuestionMarks(count: chunk.count)))",
        arguments: StatementArguments([accountID] + chunk.map { $0 as any DatabaseValueConvertible }))
      deleted += db.changesCount
    }
    if deleted > 0 {
      try db.execute(
        sql: "UPDATE inbox_heads SET message_count = message_count - ? WHERE account_id = ?", arguments: [deleted, accountID])
    }
    return deleted
  }

  /// Appends one entry to a topic's log (stored once; subscribers read it through their cursors).
  static func writeTopic(_ topic: String, _ m: OutgoingMessage, _ db: Database) throws -> InboxEntry {
    guard let last = try Int64.fetchOne(db.cachedStatement(sql: "SELECT last_seq FROM topics WHERE code = ?"), arguments: [topic])
    else { throw StoreError.notFound("topic \(topic)") }
    var replaces: String?
    if let key = m.content.collapseKey {
      replaces = try String.fetchOne(
        db,
        sql: "SELECT event_id FROM topic_messages WHERE topic = ? AND collapse_key = ? AND state = 'pending' ORDER BY seq DESC LIMIT 1",
        arguments: [topic, key])
      if replaces != nil {
        try db.execute(
          sql: "UPDATE topic_messages SET state = 'replaced' WHERE topic = ? AND collapse_key = ? AND state = 'pending'",
          arguments: [topic, key])
      }
    }
    let seq = last + 1
    let eventID = ULID.make(at: m.now)
    try db.execute(
      sql: """
        INSERT INTO topic_messages (topic, seq, event_id, publication_id, content, collapse_key, replaces_event_id, state, sent_at,
          expires_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)
        """,
      arguments: [topic, seq, eventID, m.publicationID, m.contentJSON, m.content.collapseKey, replaces, m.sentAt, m.expiresAt])
    try db.execute(sql: "UPDATE topics SET last_seq = ? WHERE code = ?", arguments: [seq, topic])
    return m.entry(eventID: eventID, topic: topic, seq: seq, replaces: replaces)
  }

  func releaseDue(now: Date, limit: Int, limits: InboxLimits) async throws -> [PublishOutcome] {
    let due = try await pool.read { db in
      try String.fetchAll(
        db, sql: "SELECT id FROM publications WHERE status = 'scheduled' AND send_at <= ? ORDER BY send_at, id LIMIT ?",
        arguments: [SQLTime.ms(now), limit])
    }
    var outcomes: [PublishOutcome] = []
    var failure: (any Error)?
    for id in due {
      do {
        if let outcome = try await pool.write({ db in try Self.release(id: id, now: now, limits: limits, db) }) {
          outcomes.append(outcome)
        }
      } catch where error is StoreError || error is ValidationError {
        // Its audience is gone or grew past the segment limit: it cannot be sent, and left
        // scheduled it would come due again forever (and hold up the scheduler). Cancel it.
        try await pool.write { db in
          try db.execute(
            sql: "UPDATE publications SET status = 'cancelled' WHERE id = ? AND status = 'scheduled'", arguments: [id])
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
  static func release(id: String, now: Date, limits: InboxLimits, _ db: Database) throws -> PublishOutcome? {
    guard let row = try loadPublication(db, id: id) else { return nil }
    var p = try publication(from: row)
    guard p.status == .scheduled else { return nil }
    let webhookEvent = try (row["webhook_event"] as String?).map { try decode(StoredWebhookEvent.self, $0).event() }
    let sent = try send(
      publicationID: id, audience: p.audience, content: p.content, ttl: p.ttl, webhookEvent: webhookEvent, now: now,
      limits: limits, db)
    try db.execute(
      sql: "UPDATE publications SET status = 'sent', sent_at = ?, recipient_count = ?, event_id = ? WHERE id = ?",
      arguments: [SQLTime.ms(now), sent.recipientCount, sent.eventID, id])
    p.status = .sent
    p.sentAt = stored(now)
    p.recipientCount = sent.recipientCount
    p.eventID = sent.eventID
    return PublishOutcome(publication: p, replayed: false, inboxMessages: sent.inboxMessages, topicMessage: sent.topicMessage)
  }

  func nextScheduled() async throws -> Date? {
    try await pool.read { db in
      SQLTime.date(try Int64.fetchOne(db, sql: "SELECT MIN(send_at) FROM publications WHERE status = 'scheduled'"))
    }
  }

  func cancelPublication(id: String, now: Date, audit: AuditEvent?) async throws -> Publication {
    try await pool.write { db in
      guard let row = try Self.loadPublication(db, id: id) else { throw StoreError.notFound("publication \(id)") }
      var p = try Self.publication(from: row)
      guard p.status == .scheduled else {
        throw StoreError.failedPrecondition("publication is \(p.status.rawValue); only a scheduled one can be cancelled")
      }
      try db.execute(sql: "UPDATE publications SET status = 'cancelled' WHERE id = ?", arguments: [id])
      if let audit { try SQLiteAudit.append(audit, now: now, db) }
      p.status = .cancelled
      return p
    }
  }

  func publication(id: String) async throws -> Publication? {
    try await pool.read { db in try Self.loadPublication(db, id: id).map(Self.publication(from:)) }
  }

  func publication(publisherID: String?, idempotencyKey: String) async throws -> Publication? {
    try await pool.read { db in try Self.publication(db, publisherKey: publisherID ?? "system", idempotencyKey: idempotencyKey) }
  }

  func publications(before: String?, limit: Int) async throws -> [Publication] {
    try await pool.read { db in
      if let before {
        return try Row.fetchAll(
          db, sql: "SELECT \(Self.publicationColumns) FROM publications WHERE id < ? ORDER BY id DESC LIMIT ?",
          arguments: [before, limit]
        ).map(Self.publication(from:))
      }
      return try Row.fetchAll(
        db, sql: "SELECT \(Self.publicationColumns) FROM publications ORDER BY id DESC LIMIT ?", arguments: [limit]
      ).map(Self.publication(from:))
    }
  }
}
