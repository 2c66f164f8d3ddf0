import OneWindowAPI
import OneWindowCore
import OneWindowStore
import Synchronization

/// The live inbox streams of this process. The publish path hands it each committed message,
/// and it forwards the message to the streams of its owner (or of the topic's subscribers)
/// without touching the store, so arrival latency does not grow with the audience.
///
/// A push is only a fast path: every stream also reads the store whenever it sees a gap, so a
/// push that overtakes an earlier one, or one dropped from a full buffer, is never a lost message.
///
/// Several nodes: what one node's hub routes locally it also rings on the inbox doorbell
/// (`InboxDoorbell`: which account or topic reached which sequence, whose subscriptions
/// changed). The other nodes' hubs turn a doorbell into a nudge to the streams it concerns,
/// which read the store from their own positions; a missed doorbell is caught by the streams'
/// heartbeat resynchronisation.
final class NotificationHub: Sendable {
  enum Push: Sendable {
    /// A message of the account's own inbox, encoded once for all its devices.
    case inbox(InboxEntry, Onewindow_V1_InboxMessage)
    /// A topic message, encoded once for all subscribers.
    case topic(InboxEntry, Onewindow_V1_InboxMessage)
    /// The account subscribed to a topic (from `cursor`) or unsubscribed (nil).
    case subscription(topic: String, cursor: Int64?)
    /// Another node committed the account's inbox message `seq`: read the store up to it.
    case inboxCommitted(seq: Int64)
    /// Another node committed the topic's message `seq`.
    case topicCommitted(topic: String, seq: Int64)
    /// Re-read subscriptions and heads (another node changed them, or doorbells were missed).
    case resynchronize
  }

  typealias Listener = @Sendable (Push) -> Void

  private struct Session {
    var accountID: String
    var topics: Set<String>
    var listener: Listener
  }

  private struct State {
    var next: UInt64 = 0
    var sessions: [UInt64: Session] = [:]
    var byAccount: [String: Set<UInt64>] = [:]
    var byTopic: [String: Set<UInt64>] = [:]
  }

  private let state = Mutex(State())

  /// Pushes wait here in commit order and are routed by one task, so a publish returns as soon
  /// as it has committed, whatever the number of live streams it reaches.
  private enum Work: Sendable {
    case inbox([(accountID: String, entry: InboxEntry)])
    case topic(InboxEntry)
    case subscription(accountID: String, topic: String, cursor: Int64?)
    /// A doorbell from another node (nil: doorbells may have been missed).
    case doorbell(InboxDoorbell?)
  }

  private let queue: AsyncStream<Work>.Continuation
  private let doorbells: any Doorbells
  /// Doorbell lines waiting to be rung, in commit order, by one task.
  private let rings: AsyncStream<[InboxDoorbell.Line]>.Continuation
  private let observation: UInt64

  init(doorbells: any Doorbells = SilentDoorbells()) {
    self.doorbells = doorbells
    let (work, queue) = AsyncStream.makeStream(of: Work.self)
    self.queue = queue
    let (lines, rings) = AsyncStream.makeStream(of: [InboxDoorbell.Line].self)
    self.rings = rings
    observation = doorbells.observe(.inbox) { payload in
      queue.yield(.doorbell(payload.map(InboxDoorbell.init(parsing:))))
    }
    Task { [self] in
      for await item in work {
        switch item {
        case .inbox(let messages): route(inbox: messages)
        case .topic(let entry): route(topic: entry)
        case .subscription(let accountID, let topic, let cursor): route(accountID: accountID, topic: topic, cursor: cursor)
        case .doorbell(let doorbell): route(doorbell ?? InboxDoorbell(lines: [.everyone]))
        }
      }
    }
    guard doorbells.isShared else {
      rings.finish()
      return
    }
    Task { [doorbells] in
      var iterator = lines.makeAsyncIterator()
      while let first = await iterator.next() {
        for payload in InboxDoorbell(lines: first).payloads() { await doorbells.ring(.inbox, payload) }
      }
    }
  }

  /// Stops routing (server shutdown); streams end on their own.
  func close() {
    doorbells.cancel(observation)
    queue.finish()
    rings.finish()
  }

  /// Registers a stream; keep the token to unregister it. nil when the account already has
  /// `limit` streams open.
  func register(accountID: String, topics: Set<String>, limit: Int, listener: @escaping Listener) -> UInt64? {
    state.withLock { s in
      guard (s.byAccount[accountID]?.count ?? 0) < limit else { return nil }
      s.next += 1
      let token = s.next
      s.sessions[token] = Session(accountID: accountID, topics: topics, listener: listener)
      s.byAccount[accountID, default: []].insert(token)
      for topic in topics { s.byTopic[topic, default: []].insert(token) }
      return token
    }
  }

  func unregister(_ token: UInt64) {
    state.withLock { s in
      guard let session = s.sessions.removeValue(forKey: token) else { return }
      s.byAccount[session.accountID]?.remove(token)
      if s.byAccount[session.accountID]?.isEmpty == true { s.byAccount[session.accountID] = nil }
      for topic in session.topics {
        s.byTopic[topic]?.remove(token)
        if s.byTopic[topic]?.isEmpty == true { s.byTopic[topic] = nil }
      }
    }
  }

  var streamCount: Int { state.withLock { $0.sessions.count } }

  /// Replaces the topics routed to a stream (it read its subscriptions from the store).
  func setTopics(_ token: UInt64, _ topics: Set<String>) {
    state.withLock { s in
      guard let old = s.sessions[token]?.topics, old != topics else { return }
      for topic in old.subtracting(topics) {
        s.byTopic[topic]?.remove(token)
        if s.byTopic[topic]?.isEmpty == true { s.byTopic[topic] = nil }
      }
      for topic in topics.subtracting(old) { s.byTopic[topic, default: []].insert(token) }
      s.sessions[token]?.topics = topics
    }
  }

  /// Forwards inbox messages to every stream of their owners (here and on the other nodes).
  func deliver(inbox messages: [(accountID: String, entry: InboxEntry)]) {
    guard !messages.isEmpty else { return }
    queue.yield(.inbox(messages))
    rings.yield(messages.map { .inbox(accountID: $0.accountID, seq: $0.entry.seq) })
  }

  /// Forwards a topic message to every live subscriber's streams (here and on the other nodes).
  func deliver(topic entry: InboxEntry) {
    queue.yield(.topic(entry))
    if let topic = entry.topic { rings.yield([.topic(topic, seq: entry.seq)]) }
  }

  /// Routes a topic's messages to (or away from) the account's open streams (here and on the
  /// other nodes).
  func subscriptionChanged(accountID: String, topic: String, cursor: Int64?) {
    queue.yield(.subscription(accountID: accountID, topic: topic, cursor: cursor))
    rings.yield([.subscriptions(accountID: accountID)])
  }

  private func route(_ doorbell: InboxDoorbell) {
    let targets: [(Listener, Push)] = state.withLock { s in
      var out: [(Listener, Push)] = []
      for line in doorbell.lines {
        switch line {
        case .inbox(let accountID, let seq):
          for token in s.byAccount[accountID] ?? [] {
            if let session = s.sessions[token] { out.append((session.listener, .inboxCommitted(seq: seq))) }
          }
        case .topic(let topic, let seq):
          for token in s.byTopic[topic] ?? [] {
            if let session = s.sessions[token] { out.append((session.listener, .topicCommitted(topic: topic, seq: seq))) }
          }
        case .subscriptions(let accountID):
          for token in s.byAccount[accountID] ?? [] {
            if let session = s.sessions[token] { out.append((session.listener, .resynchronize)) }
          }
        case .everyone:
          for session in s.sessions.values { out.append((session.listener, .resynchronize)) }
        }
      }
      return out
    }
    for (listener, push) in targets { listener(push) }
  }

  private func route(inbox messages: [(accountID: String, entry: InboxEntry)]) {
    let targets: [(Listener, Push)] = state.withLock { s in
      var out: [(Listener, Push)] = []
      for (accountID, entry) in messages {
        guard let tokens = s.byAccount[accountID] else { continue }
        let push = Push.inbox(entry, Onewindow_V1_InboxMessage(entry, deliveryCount: 1))
        for token in tokens { if let session = s.sessions[token] { out.append((session.listener, push)) } }
      }
      return out
    }
    for (listener, push) in targets { listener(push) }
  }

  private func route(topic entry: InboxEntry) {
    guard let topic = entry.topic else { return }
    let listeners: [Listener] = state.withLock { s in
      (s.byTopic[topic] ?? []).compactMap { s.sessions[$0]?.listener }
    }
    guard !listeners.isEmpty else { return }
    let push = Push.topic(entry, Onewindow_V1_InboxMessage(entry, deliveryCount: 1))
    for listener in listeners { listener(push) }
  }

  private func route(accountID: String, topic: String, cursor: Int64?) {
    let listeners: [Listener] = state.withLock { s in
      let tokens = s.byAccount[accountID] ?? []
      for token in tokens {
        if cursor != nil {
          s.sessions[token]?.topics.insert(topic)
          s.byTopic[topic, default: []].insert(token)
        } else {
          s.sessions[token]?.topics.remove(topic)
          s.byTopic[topic]?.remove(token)
        }
      }
      if s.byTopic[topic]?.isEmpty == true { s.byTopic[topic] = nil }
      return tokens.compactMap { s.sessions[$0]?.listener }
    }
    for listener in listeners { listener(.subscription(topic: topic, cursor: cursor)) }
  }
}

/// What an inbox doorbell says, one line per fact: `a SEQ ACCOUNT` (the account's inbox reached
/// SEQ), `t SEQ TOPIC` (the topic reached SEQ), `s ACCOUNT` (the account's subscriptions
/// changed), `*` (every stream should resynchronise). A publication reaching more accounts than
/// fit in one doorbell rings `*` instead.
struct InboxDoorbell: Sendable, Equatable {
  enum Line: Sendable, Equatable {
    case inbox(accountID: String, seq: Int64)
    case topic(String, seq: Int64)
    case subscriptions(accountID: String)
    case everyone

    var text: String {
      switch self {
      case .inbox(let accountID, let seq): "a \(seq) \(accountID)"
      case .topic(let topic, let seq): "t \(seq) \(topic)"
      case .subscriptions(let accountID): "s \(accountID)"
      case .everyone: "*"
      }
    }
  }

  var lines: [Line]

  /// Doorbells with more lines than this ring `*`: every node's streams re-read, which for a
  /// large publication costs less than thousands of doorbells.
  static let maxLines = 200

  init(lines: [Line]) { self.lines = lines }

  /// Reads a payload; unreadable lines are skipped (a newer node may say more).
  init(parsing payload: String) {
    lines = payload.split(separator: "\n").compactMap { line in
      let fields = line.split(separator: " ", maxSplits: 2)
      switch (fields.first, fields.count) {
      case ("*", 1): return .everyone
      case ("s", 2): return .subscriptions(accountID: String(fields[1]))
      case ("a", 3): return Int64(fields[1]).map { .inbox(accountID: String(fields[2]), seq: $0) }
      case ("t", 3): return Int64(fields[1]).map { .topic(String(fields[2]), seq: $0) }
      default: return nil
      }
    }
  }

  /// The payloads to ring: the lines packed into as few doorbells as fit, or one `*`.
  func payloads() -> [String] {
    if lines.count > Self.maxLines || lines.contains(.everyone) { return [Line.everyone.text] }
    var out: [String] = []
    var current = ""
    for line in lines.map(\.text) {
      if !current.isEmpty && current.utf8.count + 1 + line.utf8.count > DoorbellTopic.maxPayloadBytes {
        out.append(current)
        current = ""
      }
      current += current.isEmpty ? line : "\n" + line
    }
    if !current.isEmpty { out.append(current) }
    return out
  }
}
