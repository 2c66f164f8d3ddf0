import Foundation
import GRPCCore
import OneWindowAPI
import OneWindowCore
import OneWindowStore
import Synchronization

/// One Subscribe stream: replays what is pending after the cursor from the store, then forwards
/// the hub's pushes as messages are published, with heartbeats.
///
/// Positions only move forward. A push that does not continue from the stream's position (an
/// earlier commit's push is still on its way, or pushes were dropped from a full buffer) makes
/// the stream read the gap from the store, so it never skips a committed message and never
/// sends one twice.
struct InboxStream {
  let store: any NotificationStore
  let identity: any IdentityStore
  let hub: NotificationHub
  let principal: Principal
  let heartbeat: Duration
  let maxStreamsPerAccount: Int
  let sentPositions: SentPositionRecorder
  let clock: any WallClock
  let shutdown: StreamShutdown

  enum Input: Sendable {
    case push(NotificationHub.Push)
    case heartbeat
  }

  /// Pushes a slow stream may have queued before it falls back to reading the store.
  static let bufferedPushes = 4096
  static let pageSize = 200

  /// Set when a push was dropped from the full buffer: the stream re-reads the store.
  final class Overflow: Sendable {
    let dropped = Atomic<Bool>(false)
  }

  /// Where the stream stands, and the cursors it started from (for delivery counts).
  struct Positions {
    var inbox: Int64
    var topics: [String: Int64]
    let startCursors: StreamCursors

    func deliveryCount(_ entry: InboxEntry) -> Int {
      if let topic = entry.topic { return startCursors.topics[topic]?.deliveryCount(of: entry.seq) ?? 1 }
      return startCursors.inbox.deliveryCount(of: entry.seq)
    }
  }

  func run(afterSeq: Int64?, response: RPCWriter<Onewindow_V1_InboxEvent>, context: ServerContext) async throws {
    let account = principal.accountID
    if let afterSeq, afterSeq > 0 {
      // `after_seq` is an acknowledgement (Matrix `since`), clamped to the inbox's head.
      _ = try await store.acknowledge(accountID: account, inbox: afterSeq, topics: [:], now: clock.now())
    }
    let overflow = Overflow()
    let (inputs, continuation) = AsyncStream.makeStream(of: Input.self, bufferingPolicy: .bufferingOldest(Self.bufferedPushes))
    // Register before reading the cursors and replaying, so nothing committed in between is
    // lost (a subscription change in between arrives as a push, or at the next heartbeat).
    guard let token = hub.register(accountID: account, topics: [], limit: maxStreamsPerAccount, listener: { push in
      if case .dropped = continuation.yield(.push(push)) { overflow.dropped.store(true, ordering: .relaxed) }
    }) else {
      throw RPCError(
        code: .resourceExhausted,
        message: "this account already has \(maxStreamsPerAccount) inbox streams open: close one (each device needs only one)")
    }
    defer { hub.unregister(token) }
    // A previous stream of this account may have just closed: its sent positions first.
    await sentPositions.flush()
    let cursors = try await store.beginStream(accountID: account)
    hub.setTopics(token, Set(cursors.topics.keys))
    var positions = Positions(inbox: cursors.inbox.acked, topics: cursors.topics.mapValues(\.acked), startCursors: cursors)
    guard let shutdownToken = shutdown.register({ continuation.finish() }) else { throw Self.shuttingDown }
    defer { shutdown.unregister(shutdownToken) }

    do {
      try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { [heartbeat] in
          // The first one at a random point of the interval, so that streams opened together
          // (a reconnect storm) do not all beat, and read the store, at the same moment.
          try await Task.sleep(for: heartbeat * Double.random(in: 0.5...1))
          while !Task.isCancelled {
            continuation.yield(.heartbeat)
            try await Task.sleep(for: heartbeat)
          }
        }
        defer { group.cancelAll() }
        try await withRPCCancellationHandler {
          try await catchUp(&positions, response: response)
          try await response.write(.with {
            $0.caughtUp = .init(inbox: positions.inbox, topics: positions.topics, now: clock.now())
          })
          for await input in inputs {
            if overflow.dropped.exchange(false, ordering: .relaxed) {
              try await resynchronize(&positions, token: token, response: response)
            }
            switch input {
            case .heartbeat:
              guard try await identity.isSessionActive(familyID: principal.sessionFamilyID) else {
                throw RPCError(code: .unauthenticated, message: "this login has ended (logged out or revoked): log in again")
              }
              // The safety net under every push: whatever a push race or a dropped push
              // missed is sent within one heartbeat.
              try await resynchronize(&positions, token: token, response: response)
              try await response.write(.with {
                $0.heartbeat = .init(inbox: positions.inbox, topics: positions.topics, now: clock.now())
              })
            case .push(.resynchronize):
              try await resynchronize(&positions, token: token, response: response)
            case .push(let push):
              try await handle(push, &positions, response: response)
            }
          }
          if shutdown.isClosed { throw Self.shuttingDown }
        } onCancelRPC: {
          continuation.finish()
        }
      }
    } catch {
      recordSent(positions)
      throw error
    }
    recordSent(positions)
  }

  private func handle(_ push: NotificationHub.Push, _ positions: inout Positions, response: RPCWriter<Onewindow_V1_InboxEvent>) async throws {
    switch push {
    case .inbox(let entry, let encoded):
      if entry.seq <= positions.inbox { return }
      if entry.seq == positions.inbox + 1 {
        positions.inbox = entry.seq
        try await send(entry, encoded, positions, response)
      } else {
        try await catchUpInbox(&positions, response: response)
        positions.inbox = max(positions.inbox, entry.seq)
      }
    case .topic(let entry, let encoded):
      guard let topic = entry.topic, let position = positions.topics[topic], entry.seq > position else { return }
      if entry.seq == position + 1 {
        positions.topics[topic] = entry.seq
        try await send(entry, encoded, positions, response)
      } else {
        try await catchUpTopic(topic, &positions, response: response)
        positions.topics[topic] = max(positions.topics[topic] ?? 0, entry.seq)
      }
    case .inboxCommitted(let seq):
      // Another node committed it: read the store up to it.
      if seq > positions.inbox {
        try await catchUpInbox(&positions, response: response)
        positions.inbox = max(positions.inbox, seq)
      }
    case .topicCommitted(let topic, let seq):
      guard let position = positions.topics[topic], seq > position else { return }
      try await catchUpTopic(topic, &positions, response: response)
      positions.topics[topic] = max(positions.topics[topic] ?? 0, seq)
    case .resynchronize:
      break  // handled by the caller, which has the hub token
    case .subscription(let topic, let cursor):
      if let cursor {
        if positions.topics[topic] == nil {
          positions.topics[topic] = cursor
          // A message published between the subscription's commit and this push.
          try await catchUpTopic(topic, &positions, response: response)
        }
      } else {
        positions.topics[topic] = nil
      }
    }
  }

  /// Re-reads the account's subscriptions (a subscription push may have been dropped or have
  /// raced the stream's start) and the heads, and reads from the store whatever was committed
  /// after the stream's positions — usually nothing, so this is one cheap read.
  private func resynchronize(_ positions: inout Positions, token: UInt64, response: RPCWriter<Onewindow_V1_InboxEvent>) async throws {
    let heads = try await store.streamHeads(accountID: principal.accountID)
    for (topic, t) in heads.topics where positions.topics[topic] == nil { positions.topics[topic] = t.acked }
    for topic in positions.topics.keys where heads.topics[topic] == nil { positions.topics[topic] = nil }
    hub.setTopics(token, Set(positions.topics.keys))
    // Everything up to a head read before catching up has been seen once the catch-up ends
    // (rows past the last sent one were deleted, replaced or expired), so the position moves to
    // the head and the next heartbeat does not read again.
    if heads.inbox > positions.inbox {
      try await catchUpInbox(&positions, response: response)
      positions.inbox = max(positions.inbox, heads.inbox)
    }
    for (topic, t) in heads.topics where t.head > (positions.topics[topic] ?? t.head) {
      try await catchUpTopic(topic, &positions, response: response)
      positions.topics[topic] = max(positions.topics[topic] ?? 0, t.head)
    }
  }

  private func send(
    _ entry: InboxEntry, _ encoded: Onewindow_V1_InboxMessage, _ positions: Positions, _ response: RPCWriter<Onewindow_V1_InboxEvent>
  ) async throws {
    guard !entry.isExpired(at: clock.now()) else { return }
    var message = encoded
    let count = positions.deliveryCount(entry)
    if count != 1 { message.deliveryCount = UInt32(clamping: count) }
    try await response.write(.with { $0.message = message })
  }

  /// Sends everything pending after the stream's positions, from the store.
  private func catchUp(_ positions: inout Positions, response: RPCWriter<Onewindow_V1_InboxEvent>) async throws {
    try await catchUpInbox(&positions, response: response)
    for topic in positions.topics.keys.sorted() { try await catchUpTopic(topic, &positions, response: response) }
  }

  private func catchUpInbox(_ positions: inout Positions, response: RPCWriter<Onewindow_V1_InboxEvent>) async throws {
    while true {
      let page = try await store.pendingInbox(
        accountID: principal.accountID, after: positions.inbox, limit: Self.pageSize, now: clock.now())
      for entry in page {
        positions.inbox = entry.seq
        try await response.write(.with { $0.message = .init(entry, deliveryCount: positions.deliveryCount(entry)) })
      }
      if page.count < Self.pageSize { return }
    }
  }

  private func catchUpTopic(_ topic: String, _ positions: inout Positions, response: RPCWriter<Onewindow_V1_InboxEvent>) async throws {
    guard var position = positions.topics[topic] else { return }
    while true {
      let page = try await store.pendingTopic(topic: topic, after: position, limit: Self.pageSize, now: clock.now())
      for entry in page {
        position = entry.seq
        positions.topics[topic] = position
        try await response.write(.with { $0.message = .init(entry, deliveryCount: positions.deliveryCount(entry)) })
      }
      if page.count < Self.pageSize { return }
    }
  }

  /// Remembers how far this stream sent (for the next stream's delivery counts), batched with
  /// other streams' by the recorder.
  private func recordSent(_ positions: Positions) {
    let start = positions.startCursors
    let topics = positions.topics.filter { $0.value > (start.topics[$0.key]?.sent ?? 0) }
    let inbox = positions.inbox > start.inbox.sent ? positions.inbox : nil
    guard inbox != nil || !topics.isEmpty else { return }
    sentPositions.record(SentPositions(accountID: principal.accountID, inbox: inbox, topics: topics))
  }

  static let shuttingDown = RPCError(code: .unavailable, message: "the server is shutting down: reconnect and subscribe again")
}
