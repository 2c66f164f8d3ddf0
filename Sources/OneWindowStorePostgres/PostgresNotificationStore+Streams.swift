import Foundation
import Logging
import OneWindowCore
import OneWindowStore
import PostgresNIO

/// Stream cursors, pending messages and the inbox as a list. Lock order, shared with publishing:
/// an account's inbox head, then its topic subscriptions by topic code.
extension PostgresNotificationStore {
  // MARK: - Rows

  static let inboxColumns = "seq, event_id, publication_id, content, replaces_event_id, state, sent_at, expires_at, read_at"
  static let topicColumns = "topic, seq, event_id, publication_id, content, replaces_event_id, state, sent_at, expires_at"

  static func state(_ row: PostgresRandomAccessRow) throws -> InboxMessageState {
    guard let state = InboxMessageState(rawValue: try col(row, "state")) else {
      throw StoreError.failedPrecondition("message \(try col(row, "event_id", as: String.self)) has an unknown state")
    }
    return state
  }

  static func inboxEntry(from row: PostgresRandomAccessRow) throws -> InboxEntry {
    InboxEntry(
      eventID: try col(row, "event_id"), topic: nil, seq: try col(row, "seq"),
      content: try decode(MessageContent.self, col(row, "content")), publicationID: try col(row, "publication_id"),
      replacesEventID: try col(row, "replaces_event_id"), sentAt: PGTime.date(try col(row, "sent_at", as: Int64.self)),
      expiresAt: PGTime.date(try col(row, "expires_at", as: Int64?.self)),
      readAt: PGTime.date(try col(row, "read_at", as: Int64?.self)), state: try state(row))
  }

  /// A topic entry; read (at its send time: topics keep no per-message read time) when at or
  /// below the account's read marker `readSeq`.
  static func topicEntry(from row: PostgresRandomAccessRow, readSeq: Int64? = nil) throws -> InboxEntry {
    let seq: Int64 = try col(row, "seq")
    let sentAt = PGTime.date(try col(row, "sent_at", as: Int64.self))
    return InboxEntry(
      eventID: try col(row, "event_id"), topic: try col(row, "topic"), seq: seq,
      content: try decode(MessageContent.self, col(row, "content")), publicationID: try col(row, "publication_id"),
      replacesEventID: try col(row, "replaces_event_id"), sentAt: sentAt,
      expiresAt: PGTime.date(try col(row, "expires_at", as: Int64?.self)), readAt: readSeq.flatMap { seq <= $0 ? sentAt : nil },
      state: try state(row))
  }

  // MARK: - Cursors

  static func cursor(from row: PostgresRandomAccessRow) throws -> StreamCursor {
    StreamCursor(acked: try col(row, "acked_seq"), sent: try col(row, "sent_seq"), rounds: try col(row, "rounds"))
  }

  static func topicCursor(
    _ conn: PostgresConnection, accountID: String, topic: String, _ logger: Logger
  ) async throws -> StreamCursor? {
    try await conn.rows(
      """
      SELECT acked_seq, sent_seq, rounds FROM topic_subscriptions WHERE account_id = \(accountID) AND topic = \(topic)
      """, logger: logger
    ).first.map(cursor(from:))
  }

  static func cursors(_ conn: PostgresConnection, accountID: String, _ logger: Logger) async throws -> StreamCursors {
    let inbox = try await conn.rows(
      "SELECT acked_seq, sent_seq, rounds FROM inbox_heads WHERE account_id = \(accountID)", logger: logger
    ).first.map(cursor(from:)) ?? StreamCursor()
    var topics: [String: StreamCursor] = [:]
    for row in try await conn.rows(
      "SELECT topic, acked_seq, sent_seq, rounds FROM topic_subscriptions WHERE account_id = \(accountID)", logger: logger)
    {
      topics[try col(row, "topic")] = try cursor(from: row)
    }
    return StreamCursors(inbox: inbox, topics: topics)
  }

  /// Makes sure the account has an inbox head (`notFound` for an unknown account).
  static func ensureInboxHead(_ conn: PostgresConnection, accountID: String, _ logger: Logger) async throws {
    do {
      try await conn.run("INSERT INTO inbox_heads (account_id) VALUES (\(accountID)) ON CONFLICT DO NOTHING", logger: logger)
    } catch let error where error.postgres?.sqlState == "23503" {
      throw StoreError.notFound("account \(accountID)")
    }
  }

  func streamCursors(accountID: String) async throws -> StreamCursors {
    let logger = logger
    return try await pool.read { conn in try await Self.cursors(conn, accountID: accountID, logger) }
  }

  func streamHeads(accountID: String) async throws -> StreamHeads {
    let logger = logger
    return try await pool.read { conn in
      let inbox = try await conn.all(
        "SELECT last_seq FROM inbox_heads WHERE account_id = \(accountID)", as: Int64.self, logger: logger
      ).first ?? 0
      var topics: [String: StreamHeads.Topic] = [:]
      for (topic, acked, head) in try await conn.all(
        """
        SELECT s.topic, s.acked_seq, t.last_seq FROM topic_subscriptions s JOIN topics t ON t.code = s.topic
        WHERE s.account_id = \(accountID)
        """, as: (String, Int64, Int64).self, logger: logger)
      {
        topics[topic] = StreamHeads.Topic(acked: acked, head: head)
      }
      return StreamHeads(inbox: inbox, topics: topics)
    }
  }

  func beginStream(accountID: String) async throws -> StreamCursors {
    let logger = logger
    // The common case (an inbox head exists, nothing sent unacknowledged) is a read: opening
    // thousands of streams at once must not queue thousands of writes.
    let unchanged = try await pool.read { conn -> StreamCursors? in
      guard try await conn.run("SELECT 1 FROM inbox_heads WHERE account_id = \(accountID)", logger: logger) > 0 else {
        return nil
      }
      let current = try await Self.cursors(conn, accountID: accountID, logger)
      let needsRound = current.inbox.sent > current.inbox.acked || current.topics.values.contains { $0.sent > $0.acked }
      return needsRound ? nil : current
    }
    if let unchanged { return unchanged }
    return try await pool.write { conn in
      try await Self.ensureInboxHead(conn, accountID: accountID, logger)
      // Locks the head, then the subscriptions (the shared order): two streams opening at once
      // count one round each, not one between them.
      try await conn.run("SELECT 1 FROM inbox_heads WHERE account_id = \(accountID) FOR UPDATE", logger: logger)
      try await conn.run(
        "SELECT 1 FROM topic_subscriptions WHERE account_id = \(accountID) ORDER BY topic FOR UPDATE", logger: logger)
      let current = try await Self.cursors(conn, accountID: accountID, logger)
      let inbox = current.inbox.beginningStream()
      if inbox != current.inbox {
        try await conn.run("UPDATE inbox_heads SET rounds = \(inbox.rounds) WHERE account_id = \(accountID)", logger: logger)
      }
      var topics: [String: StreamCursor] = [:]
      for (topic, cursor) in current.topics {
        let next = cursor.beginningStream()
        if next != cursor {
          try await conn.run(
            "UPDATE topic_subscriptions SET rounds = \(next.rounds) WHERE account_id = \(accountID) AND topic = \(topic)",
            logger: logger)
        }
        topics[topic] = next
      }
      return StreamCursors(inbox: inbox, topics: topics)
    }
  }

  // MARK: - Pending messages

  func pendingInbox(accountID: String, after seq: Int64, limit: Int, now: Date) async throws -> [InboxEntry] {
    let logger = logger
    // Delivered ones too: another device's acknowledgement must not make this stream skip them
    // (a stream starts at the acknowledged cursor, so it never replays what was acknowledged).
    let select: PostgresQuery = """
      SELECT \(unescaped: Self.inboxColumns) FROM inbox_messages
      WHERE account_id = \(accountID) AND state IN ('pending', 'delivered') AND seq > \(seq) ORDER BY seq LIMIT \(Int64(limit))
      """
    let page = try await pool.read { conn in try await conn.rows(select, logger: logger).map(Self.inboxEntry(from:)) }
    // The common case: nothing expired, and no write.
    guard page.contains(where: { $0.isExpired(at: now) }) else { return page }
    return try await pool.write { conn in
      try await conn.run(
        """
        UPDATE inbox_messages SET state = 'expired'
        WHERE account_id = \(accountID) AND state = 'pending' AND seq > \(seq) AND expires_at IS NOT NULL
          AND expires_at <= \(PGTime.ms(now))
        """, logger: logger)
      return try await conn.rows(select, logger: logger).map(Self.inboxEntry(from:))
    }
  }

  func pendingTopic(topic: String, after seq: Int64, limit: Int, now: Date) async throws -> [InboxEntry] {
    let logger = logger
    let select: PostgresQuery = """
      SELECT \(unescaped: Self.topicColumns) FROM topic_messages
      WHERE topic = \(topic) AND state = 'pending' AND seq > \(seq) ORDER BY seq LIMIT \(Int64(limit))
      """
    let page = try await pool.read { conn in try await conn.rows(select, logger: logger).map { try Self.topicEntry(from: $0) } }
    guard page.contains(where: { $0.isExpired(at: now) }) else { return page }
    return try await pool.write { conn in
      try await conn.run(
        """
        UPDATE topic_messages SET state = 'expired'
        WHERE topic = \(topic) AND state = 'pending' AND seq > \(seq) AND expires_at IS NOT NULL AND expires_at <= \(PGTime.ms(now))
        """, logger: logger)
      return try await conn.rows(select, logger: logger).map { try Self.topicEntry(from: $0) }
    }
  }

  func recordSent(_ positions: [SentPositions]) async throws {
    // Account order, the order every writer of heads locks in (each update is monotonic on its own).
    let positions = positions.filter { $0.inbox != nil || !$0.topics.isEmpty }.sorted { $0.accountID < $1.accountID }
    guard !positions.isEmpty else { return }
    let logger = logger
    try await pool.write { conn in
      for p in positions {
        if let inbox = p.inbox {
          try await conn.run(
            "UPDATE inbox_heads SET sent_seq = GREATEST(sent_seq, LEAST(\(inbox), last_seq)) WHERE account_id = \(p.accountID)",
            logger: logger)
        }
        for (topic, seq) in p.topics.sorted(by: { $0.key < $1.key }) {
          try await conn.run(
            """
            UPDATE topic_subscriptions SET sent_seq = GREATEST(sent_seq, LEAST(\(seq), (SELECT last_seq FROM topics WHERE code = \(topic))))
            WHERE account_id = \(p.accountID) AND topic = \(topic)
            """, logger: logger)
        }
      }
    }
  }

  func acknowledge(accountID: String, inbox: Int64?, topics: [String: Int64], now: Date) async throws -> StreamCursors {
    let logger = logger
    return try await pool.write { conn in
      if let inbox {
        try await Self.ensureInboxHead(conn, accountID: accountID, logger)
        // Locks the inbox head: concurrent acknowledgements (several devices) each move the
        // cursor from the latest one, so it only moves forward.
        guard let row = try await conn.rows(
          """
          SELECT last_seq, acked_seq, sent_seq, rounds FROM inbox_heads WHERE account_id = \(accountID) FOR UPDATE
          """, logger: logger
        ).first
        else { throw StoreError.notFound("account \(accountID)") }
        let current = try Self.cursor(from: row)
        let next = current.acknowledging(min(inbox, try Self.col(row, "last_seq", as: Int64.self)))
        if next != current {
          try await conn.run(
            """
            UPDATE inbox_heads SET acked_seq = \(next.acked), sent_seq = \(next.sent), rounds = \(next.rounds)
            WHERE account_id = \(accountID)
            """, logger: logger)
        }
        if next.acked > 0 {
          try await conn.run(
            """
            UPDATE inbox_messages SET state = 'delivered', delivered_at = \(PGTime.ms(now))
            WHERE account_id = \(accountID) AND state = 'pending' AND seq <= \(next.acked)
            """, logger: logger)
        }
      }
      for (topic, seq) in topics.sorted(by: { $0.key < $1.key }) {
        // Locks the subscription (after the head, by topic code): the topic cursor also only
        // moves forward under concurrent acknowledgements.
        guard let row = try await conn.rows(
          """
          SELECT t.last_seq, s.acked_seq, s.sent_seq, s.rounds
          FROM topic_subscriptions s JOIN topics t ON t.code = s.topic
          WHERE s.account_id = \(accountID) AND s.topic = \(topic) FOR UPDATE OF s
          """, logger: logger
        ).first
        else { throw StoreError.notFound("a subscription to topic \(topic)") }
        let current = try Self.cursor(from: row)
        let next = current.acknowledging(min(seq, try Self.col(row, "last_seq", as: Int64.self)))
        if next != current {
          try await conn.run(
            """
            UPDATE topic_subscriptions SET acked_seq = \(next.acked), sent_seq = \(next.sent), rounds = \(next.rounds)
            WHERE account_id = \(accountID) AND topic = \(topic)
            """, logger: logger)
        }
      }
      return try await Self.cursors(conn, accountID: accountID, logger)
    }
  }

  // MARK: - The inbox as a list

  func inbox(accountID: String, unreadOnly: Bool, category: String?, beforeSeq: Int64?, limit: Int) async throws -> InboxPage {
    var binds = PostgresBindings()
    binds.append(accountID)
    var conditions = ["account_id = $1", "state IN ('pending', 'delivered')"]
    if unreadOnly { conditions.append("read_at IS NULL") }
    if let category {
      binds.append(category)
      conditions.append("category = $\(binds.count)")
    }
    if let beforeSeq {
      binds.append(beforeSeq)
      conditions.append("seq < $\(binds.count)")
    }
    binds.append(Int64(limit))
    let query = PostgresQuery(
      unsafeSQL: """
        SELECT \(Self.inboxColumns) FROM inbox_messages WHERE \(conditions.joined(separator: " AND "))
        ORDER BY seq DESC LIMIT $\(binds.count)
        """,
      binds: binds)
    let logger = logger
    return try await pool.read { conn in
      let entries = try await conn.rows(query, logger: logger).map(Self.inboxEntry(from:))
      let unread = try await conn.all(
        """
        SELECT COUNT(*) FROM inbox_messages
        WHERE account_id = \(accountID) AND state IN ('pending', 'delivered') AND read_at IS NULL
        """, as: Int64.self, logger: logger
      ).first ?? 0
      return InboxPage(entries: entries, unreadCount: unread)
    }
  }

  func topicMessages(accountID: String, topic: String, beforeSeq: Int64?, limit: Int) async throws -> InboxPage {
    let logger = logger
    return try await pool.read { conn in
      guard let (readSeq, head) = try await conn.all(
        """
        SELECT s.read_seq, t.last_seq FROM topic_subscriptions s JOIN topics t ON t.code = s.topic
        WHERE s.account_id = \(accountID) AND s.topic = \(topic)
        """, as: (Int64, Int64).self, logger: logger
      ).first
      else { throw StoreError.notFound("a subscription to topic \(topic)") }
      let top = beforeSeq.map { min($0 - 1, head) } ?? head
      let entries = try await conn.rows(
        """
        SELECT \(unescaped: Self.topicColumns) FROM topic_messages
        WHERE topic = \(topic) AND state = 'pending' AND seq <= \(top) ORDER BY seq DESC LIMIT \(Int64(limit))
        """, logger: logger
      ).map { try Self.topicEntry(from: $0, readSeq: readSeq) }
      let unread = try await conn.all(
        """
        SELECT COUNT(*) FROM topic_messages WHERE topic = \(topic) AND state = 'pending' AND seq > \(readSeq) AND seq <= \(head)
        """, as: Int64.self, logger: logger
      ).first ?? 0
      return InboxPage(entries: entries, unreadCount: unread)
    }
  }

  func markRead(accountID: String, seqs: [Int64], now: Date) async throws -> Int {
    let seqs = Array(Set(seqs)).sorted()
    guard !seqs.isEmpty else { return 0 }
    let logger = logger
    return try await pool.write { conn in
      // One statement: a row another transaction just marked is re-checked (read_at IS NULL)
      // after its commit, so each message counts once.
      Int(
        try await conn.all(
          """
          WITH u AS (
            UPDATE inbox_messages SET read_at = \(PGTime.ms(now))
            WHERE account_id = \(accountID) AND read_at IS NULL AND seq = ANY(\(seqs)) RETURNING 1)
          SELECT COUNT(*) FROM u
          """, as: Int64.self, logger: logger
        ).first ?? 0)
    }
  }

  func markTopicRead(accountID: String, topic: String, upTo seq: Int64) async throws -> Int {
    let logger = logger
    return try await pool.write { conn in
      // Locks the subscription: the read marker only moves forward under concurrent calls.
      guard let (current, head) = try await conn.all(
        """
        SELECT s.read_seq, t.last_seq FROM topic_subscriptions s JOIN topics t ON t.code = s.topic
        WHERE s.account_id = \(accountID) AND s.topic = \(topic) FOR UPDATE OF s
        """, as: (Int64, Int64).self, logger: logger
      ).first
      else { throw StoreError.notFound("a subscription to topic \(topic)") }
      let next = max(current, min(seq, head))
      guard next > current else { return 0 }
      try await conn.run(
        "UPDATE topic_subscriptions SET read_seq = \(next) WHERE account_id = \(accountID) AND topic = \(topic)", logger: logger)
      return 1
    }
  }

  func deleteMessages(accountID: String, seqs: [Int64]) async throws -> Int {
    let seqs = Array(Set(seqs)).sorted()
    guard !seqs.isEmpty else { return 0 }
    let logger = logger
    return try await pool.write { conn in
      // Locks the inbox head before its messages, as publishing (and its pruning) does: the
      // message count stays exact and the two cannot deadlock.
      try await conn.run("SELECT 1 FROM inbox_heads WHERE account_id = \(accountID) FOR UPDATE", logger: logger)
      return try await Self.deleteInboxRows(accountID: accountID, seqs: seqs, conn, logger)
    }
  }

  func expireMessages(now: Date) async throws -> Int {
    let logger = logger
    return try await pool.write { conn in
      let at = PGTime.ms(now)
      let inbox = try await conn.all(
        """
        WITH u AS (UPDATE inbox_messages SET state = 'expired' WHERE expires_at <= \(at) AND state = 'pending' RETURNING 1)
        SELECT COUNT(*) FROM u
        """, as: Int64.self, logger: logger
      ).first ?? 0
      let topic = try await conn.all(
        """
        WITH u AS (UPDATE topic_messages SET state = 'expired' WHERE expires_at <= \(at) AND state = 'pending' RETURNING 1)
        SELECT COUNT(*) FROM u
        """, as: Int64.self, logger: logger
      ).first ?? 0
      return Int(inbox + topic)
    }
  }
}
