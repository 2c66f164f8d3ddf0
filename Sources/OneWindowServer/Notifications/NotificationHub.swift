import OneWindowAPI
import OneWindowCore
import Synchronization

/// The live inbox streams of this process. The publish path hands it each committed message,
/// and it forwards the message to the streams of its owner (or of the topic's subscribers)
/// without touching the store, so arrival latency does not grow with the audience.
///
/// A push is only a fast path: every stream also reads the store whenever it sees a gap, so a
/// push that overtakes an earlier one, or one dropped from a full buffer, is never a lost message.
final class NotificationHub: Sendable {
  enum Push: Sendable {
    /// A message of the account's own inbox, encoded once for all its devices.
    case inbox(InboxEntry, Onewindow_V1_InboxMessage)
    /// A topic message, encoded once for all subscribers.
    case topic(InboxEntry, Onewindow_V1_InboxMessage)
    /// The account subscribed to a topic (from `cursor`) or unsubscribed (nil).
    case subscription(topic: String, cursor: Int64?)
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
  }

  private let queue: AsyncStream<Work>.Continuation

  init() {
    let (work, queue) = AsyncStream.makeStream(of: Work.self)
    self.queue = queue
    Task { [self] in
      for await item in work {
        switch item {
        case .inbox(let messages): route(inbox: messages)
        case .topic(let entry): route(topic: entry)
        case .subscription(let accountID, let topic, let cursor): route(accountID: accountID, topic: topic, cursor: cursor)
        }
      }
    }
  }

  /// Stops routing (server shutdown); streams end on their own.
  func close() { queue.finish() }

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

  /// Forwards inbox messages to every stream of their owners.
  func deliver(inbox messages: [(accountID: String, entry: InboxEntry)]) {
    guard !messages.isEmpty else { return }
    queue.yield(.inbox(messages))
  }

  /// Forwards a topic message to every live subscriber's streams.
  func deliver(topic entry: InboxEntry) {
    queue.yield(.topic(entry))
  }

  /// Routes a topic's messages to (or away from) the account's open streams.
  func subscriptionChanged(accountID: String, topic: String, cursor: Int64?) {
    queue.yield(.subscription(accountID: accountID, topic: topic, cursor: cursor))
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
