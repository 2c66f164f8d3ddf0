import OneWindowStore
import Foundation
import GRDB
import OneWindowCore

/// Stream cursors, pending messages and the inbox as a list.
extension SQLiteNotificationStore {
  // MARK: - Rows

  static let inboxColumns = "seq, event_id, publication_id, content, replaces_event_id, state, sent_at, expires_at, read_at"
  static let topicColumns = "topic, seq, event_id, publication_id, content, replaces_event_id, state, sent_at, expires_at"

  static func state(_ row: Row) throws -> InboxMessageState {
    guard let state = InboxMessageState(rawValue: row["state"]) else {
      throw StoreError.failedPrecondition("message \(row["event_id"] as String) has an unknown state")
    }
    return state
  }

  static func inboxEntry(from row: Row) throws -> InboxEntry {
    InboxEntry(
      eventID: row["event_id"], topic: nil, seq: row["seq"], content: try decode(MessageContent.self, row["content"]),
      publicationID: row["publication_id"], replacesEventID: row["replaces_event_id"],
      sentAt: SQLTime.date(row["sent_at"] as Int64), expiresAt: SQLTime.date(row["expires_at"] as Int64?),
      readAt: SQLTime.date(row["read_at"] as Int64?), state: try state(row))
  }

  /// A topic entry; read (at its send time: topics keep no per-message read time) when at or
  /// below the account's read marker `readSeq`.
  static func topicEntry(from row: Row, readSeq: Int64? = nil) throws -> InboxEntry {
    let seq: Int64 = row["seq"]
    let sentAt = SQLTime.date(row["sent_at"] as Int64)
    return InboxEntry(
      eventID: row["event_id"], topic: row["topic"], seq: seq, content: try decode(MessageContent.self, row["content"]),
      publicationID: row["publication_id"], replacesEventID: row["replaces_event_id"], sentAt: sentAt,
      expiresAt: SQLTime.date(row["expires_at"] as Int64?), readAt: readSeq.flatMap { seq <= $0 ? sentAt : nil },
      state: try state(row))
  }

  // MARK: - Cursors

  static func cursor(from row: Row) -> StreamCursor {
    StreamCursor(acked: row["acked_seq"], sent: row["sent_seq"], rounds: row["rounds"])
  }

  static func topicCursor(_ db: Database, accountID: String, topic: String) throws -> StreamCursor? {
    try Row.fetchOne(
      db, sql: "SELECT acked_seq, sent_seq, rounds FROM topic_subscriptions WHERE account_id = ? AND topic = ?",
      arguments: [accountID, topic]
    ).map(cursor(from:))
  }

  static func cursors(_ db: Database, accountID: String) throws -> StreamCursors {
    let inbox = try Row.fetchOne(
      db, sql: "SELECT acked_seq, sent_seq, rounds FROM inbox_heads WHERE account_id = ?", arguments: [accountID]
    ).map(cursor(from:)) ?? StreamCursor()
    var topics: [String: StreamCursor] = [:]
    for row in try Row.fetchAll(
      db, sql: "SELECT topic, acked_seq, sent_seq, rounds FROM topic_subscriptions WHERE account_id = ?", arguments: [accountID])
    {
      topics[row["topic"]] = cursor(from: row)
    }
    return StreamCursors(inbox: inbox, topics: topics)
  }

  /// Makes sure the account has an inbox head (`notFound` for an unknown account).
  static func ensureInboxHead(_ db: Database, accountID: String) throws {
    do {
      try db.execute(
        sql: "INSERT INTO inbox_heads (account_id) VALUES (?) ON CONFLICT DO NOTHING", arguments: [accountID])
    } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_FOREIGNKEY {
      throw StoreError.notFound("account \(accountID)")
    }
  }

  func streamCursors(accountID: String) async throws -> StreamCursors {
    try await pool.read { db in try Self.cursors(db, accountID: accountID) }
  }

  func streamHeads(accountID: String) async throws -> StreamHeads {
    try await pool.read { db in
      let inbox = try Int64.fetchOne(
        db.cachedStatement(sql: "SELECT last_seq FROM inbox_heads WHERE account_id = ?"), arguments: [accountID]) ?? 0
      var topics: [String: StreamHeads.Topic] = [:]
      let rows = try Row.fetchAll(
        db.cachedStatement(sql: """
          SELECT s.topic, s.acked_seq, t.last_seq FROM topic_subscriptions s JOIN topics t ON t.code = s.topic
          WHERE s.account_id = ?
          """),
        arguments: [accountID])
      for row in rows { topics[row[0]] = StreamHeads.Topic(acked: row[1], head: row[2]) }
      return StreamHeads(inbox: inbox, topics: topics)
    }
  }

  func beginStream(accountID: String) async throws -> StreamCursors {
    // The common case (an inbox head exists, nothing sent unacknowledged) is a read: opening
    // thousands of streams at once must not queue thousands of writes.
    let unchanged = try await pool.read { db -> StreamCursors? in
      guard try Bool.fetchOne(db, sql: "SELECT 1 FROM inbox_heads WHERE account_id = ?", arguments: [accountID]) == true else {
        return nil
      }
      let current = try Self.cursors(db, accountID: accountID)
      let needsRound = current.inbox.sent > current.inbox.acked || current.topics.values.contains { $0.sent > $0.acked }
      return needsRound ? nil : current
    }
    if let unchanged { return unchanged }
    return try await pool.write { db in
      try Self.ensureInboxHead(db, accountID: accountID)
      let current = try Self.cursors(db, accountID: accountID)
      let inbox = current.inbox.beginningStream()
      if inbox != current.inbox {
        try db.execute(sql: "UPDATE inbox_heads SET rounds = ? WHERE account_id = ?", arguments: [inbox.rounds, accountID])
      }
      var topics: [String: StreamCursor] = [:]
      for (topic, cursor) in current.topics {
        let next = cursor.beginningStream()
        if next != cursor {
          try db.execute(
            sql: "UPDATE topic_subscriptions SET rounds = ? WHERE account_id = ? AND topic = ?",
            arguments: [next.rounds, accountID, topic])
        }
        topics[topic] = next
      }
      return StreamCursors(inbox: inbox, topics: topics)
    }
  }

  // MARK: - Pending messages

  func pendingInbox(accountID: String, after seq: Int64, limit: Int, now: Date) async throws -> [InboxEntry] {
    // Delivered ones too: another device's acknowledgement must not make this stream skip them
    // (a stream starts at the acknowledged cursor, so it never replays what was acknowledged).
    let select = """
      SELECT \(Self.inboxColumns) FROM inbox_messages
      WHERE account_id = ? AND state IN ('pending', 'delivered') AND seq > ? ORDER BY seq LIMIT ?
      """
    let arguments: StatementArguments = [accountID, seq, limit]
    let page = try await pool.read { db in
      try Row.fetchAll(db.cachedStatement(sql: select), arguments: arguments).map(Self.inboxEntry(from:))
    }
    // The common case: nothing expired, and no write.
    guard page.contains(where: { $0.isExpired(at: now) }) else { return page }
    return try await pool.write { db in
      try db.execute(
        sql: """
          UPDATE inbox_messages SET state = 'expired'
          WHERE account_id = ? AND state = 'pending' AND seq > ? AND expires_at IS NOT NULL AND expires_at <= ?
          """,
        arguments: [accountID, seq, SQLTime.ms(now)])
      return try Row.fetchAll(db.cachedStatement(sql: select), arguments: arguments).map(Self.inboxEntry(from:))
    }
  }

  func pendingTopic(topic: String, after seq: Int64, limit: Int, now: Date) async throws -> [InboxEntry] {
    let select = """
      SELECT \(Self.topicColumns) FROM topic_messages
      WHERE topic = ? AND state = 'pending' AND seq > ? ORDER BY seq LIMIT ?
      """
    let arguments: StatementArguments = [topic, seq, limit]
    let page = try await pool.read { db in
      try Row.fetchAll(db.cachedStatement(sql: select), arguments: arguments).map { try Self.topicEntry(from: $0) }
    }
    guard page.contains(where: { $0.isExpired(at: now) }) else { return page }
    return try await pool.write { db in
      try db.execute(
        sql: """
          UPDATE topic_messages SET state = 'expired'
          WHERE topic = ? AND state = 'pending' AND seq > ? AND expires_at IS NOT NULL AND expires_at <= ?
          """,
        arguments: [topic, seq, SQLTime.ms(now)])
      return try Row.fetchAll(db.cachedStatement(sql: select), arguments: arguments).map { try Self.topicEntry(from: $0) }
    }
  }

  func recordSent(_ positions: [SentPositions]) async throws {
    let positions = positions.filter { $0.inbox != nil || !$0.topics.isEmpty }
    guard !positions.isEmpty else { return }
    try await pool.write { db in
      let inboxUpdate = try db.cachedStatement(
        sql: "UPDATE inbox_heads SET sent_seq = MAX(sent_seq, MIN(?, last_seq)) WHERE account_id = ?")
      let topicUpdate = try db.cachedStatement(
        sql: """
          UPDATE topic_subscriptions SET sent_seq = MAX(sent_seq, MIN(?, (SELECT last_seq FROM topics WHERE code = ?)))
          WHERE account_id = ? AND topic = ?
          """)
      for p in positions {
        if let inbox = p.inbox { try inboxUpdate.execute(arguments: [inbox, p.accountID]) }
        for (topic, seq) in p.topics { try topicUpdate.execute(arguments: [seq, topic, p.accountID, topic]) }
      }
    }
  }

  func acknowledge(accountID: String, inbox: Int64?, topics: [String: Int64], now: Date) async throws -> StreamCursors {
    try await pool.write { db in
      if let inbox {
        try Self.ensureInboxHead(db, accountID: accountID)
        guard let row = try Row.fetchOne(
          db, sql: "SELECT last_seq, acked_seq, sent_seq, rounds FROM inbox_heads WHERE account_id = ?", arguments: [accountID])
        else { throw StoreError.notFound("account \(accountID)") }
        let current = Self.cursor(from: row)
        let next = current.acknowledging(min(inbox, row["last_seq"] as Int64))
        if next != current {
          try db.execute(
            sql: "UPDATE inbox_heads SET acked_seq = ?, sent_seq = ?, rounds = ? WHERE account_id = ?",
            arguments: [next.acked, next.sent, next.rounds, accountID])
        }
        if next.acked > 0 {
          try db.execute(
            sql: """
              UPDATE inbox_messages SET state = 'delivered', delivered_at = ?
              WHERE account_id = ? AND state = 'pending' AND seq <= ?
              """,
            arguments: [SQLTime.ms(now), accountID, next.acked])
        }
      }
      for (topic, seq) in topics.sorted(by: { $0.key < $1.key }) {
        guard let row = try Row.fetchOne(
          db,
          sql: """
            SELECT t.last_seq, s.acked_seq, s.sent_seq, s.rounds
            FROM topic_subscriptions s JOIN topics t ON t.code = s.topic
            WHERE s.account_id = ? AND s.topic = ?
            """,
          arguments: [accountID, topic])
        else { throw StoreError.notFound("a subscription to topic \(topic)") }
        let current = Self.cursor(from: row)
        let next = current.acknowledging(min(seq, row["last_seq"] as Int64))
        if next != current {
          try db.execute(
            sql: "UPDATE topic_subscriptions SET acked_seq = ?, sent_seq = ?, rounds = ? WHERE account_id = ? AND topic = ?",
            arguments: [next.acked, next.sent, next.rounds, accountID, topic])
        }
      }
      return try Self.cursors(db, accountID: accountID)
    }
  }

  // MARK: - The inbox as a list

  func inbox(accountID: String, unreadOnly: Bool, category: String?, beforeSeq: Int64?, limit: Int) async throws -> InboxPage {
    var conditions = ["account_id = ?", "state IN ('pending', 'delivered')"]
    var arguments: [(any DatabaseValueConvertible)?] = [accountID]
    if unreadOnly { conditions.append("read_at IS NULL") }
    if let category {
      conditions.append("category = ?")
      arguments.append(category)
    }
    if let beforeSeq {
      conditions.append("seq < ?")
      arguments.append(beforeSeq)
    }
    arguments.append(limit)
    let sql = "SELECT \(Self.inboxColumns) FROM inbox_messages WHERE \(conditions.joined(separator: " AND ")) ORDER BY seq DESC LIMIT ?"
    let bound = StatementArguments(arguments)
    return try await pool.read { db in
      let entries = try Row.fetchAll(db.cachedStatement(sql: sql), arguments: bound).map(Self.inboxEntry(from:))
      let unread = try Int64.fetchOne(
        db.cachedStatement(
          sql: """
            SELECT COUNT(*) FROM inbox_messages
            WHERE account_id = ? AND state IN ('pending', 'delivered') AND read_at IS NULL
            """),
        arguments: [accountID]) ?? 0
      return InboxPage(entries: entries, unreadCount: unread)
    }
  }

  func topicMessages(accountID: String, topic: String, beforeSeq: Int64?, limit: Int) async throws -> InboxPage {
    try await pool.read { db in
      guard let subscription = try Row.fetchOne(
        db,
        sql: """
          SELECT s.read_seq, t.last_seq FROM topic_subscriptions s JOIN topics t ON t.code = s.topic
          WHERE s.account_id = ? AND s.topic = ?
          """,
        arguments: [accountID, topic])
      else { throw StoreError.notFound("a subscription to topic \(topic)") }
      let readSeq: Int64 = subscription["read_seq"]
      let head: Int64 = subscription["last_seq"]
      let top = beforeSeq.map { min($0 - 1, head) } ?? head
      let entries = try Row.fetchAll(
        db,
        sql: """
          SELECT \(Self.topicColumns) FROM topic_messages
          WHERE topic = ? AND state = 'pending' AND seq <= ? ORDER BY seq DESC LIMIT ?
          """,
        arguments: [topic, top, limit]
      ).map { try Self.topicEntry(from: $0, readSeq: readSeq) }
      let unread = try Int64.fetchOne(
        db,
        sql: "SELECT COUNT(*) FROM topic_messages WHERE topic = ? AND state = 'pending' AND seq > ? AND seq <= ?",
        arguments: [topic, readSeq, head]) ?? 0
      return InboxPage(entries: entries, unreadCount: unread)
    }
  }

  func markRead(accountID: String, seqs: [Int64], now: Date) async throws -> Int {
    let seqs = Array(Set(seqs)).sorted()
    guard !seqs.isEmpty else { return 0 }
    return try await pool.write { db in
      var changed = 0
      for chunk in stride(from: 0, to: seqs.count, by: 500).map({ Array(seqs[$0..<min($0 + 500, seqs.count)]) }) {
        try db.execute(
          sql: """
            UPDATE inbox_messages SET read_at = ?
            WHERE account_id = ? AND read_at IS NULL AND seq IN (\(databaseQuestionMarks(count: chunk.count)))
            """,
          arguments: StatementArguments([SQLTime.ms(now), accountID] + chunk.map { $0 as any DatabaseValueConvertible }))
        changed += db.changesCount
      }
      return changed
    }
  }

  func markTopicRead(accountID: String, topic: String, upTo seq: Int64) async throws -> Int {
    try await pool.write { db in
      guard let row = try Row.fetchOne(
        db,
        sql: """
          SELECT s.read_seq, t.last_seq FROM topic_subscriptions s JOIN topics t ON t.code = s.topic
          WHERE s.account_id = ? AND s.topic = ?
          """,
        arguments: [accountID, topic])
      else { throw StoreError.notFound("a subscription to topic \(topic)") }
      let current: Int64 = row["read_seq"]
      let next = max(current, min(seq, row["last_seq"] as Int64))
      guard next > current else { return 0 }
      try db.execute(
        sql: "UPDATE topic_subscriptions SET read_seq = ? WHERE account_id = ? AND topic = ?", arguments: [next, accountID, topic])
      return 1
    }
  }

  func deleteMessages(accountID: String, seqs: [Int64]) async throws -> Int {
    let seqs = Array(Set(seqs)).sorted()
    guard !seqs.isEmpty else { return 0 }
    return try await pool.write { db in try Self.deleteInboxRows(accountID: accountID, seqs: seqs, db) }
  }

  func expireMessages(now: Date) async throws -> Int {
    try await pool.write { db in
      let at = SQLTime.ms(now)
      try db.execute(
        sql: "UPDATE inbox_messages SET state = 'expired' WHERE expires_at <= ? AND state = 'pending'", arguments: [at])
      let inbox = db.changesCount
      try db.execute(
        sql: "UPDATE topic_messages SET state = 'expired' WHERE expires_at <= ? AND state = 'pending'", arguments: [at])
      return inbox + db.changesCount
    }
  }
}
