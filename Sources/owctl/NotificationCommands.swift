import ArgumentParser
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import OneWindowAPI
import OneWindowClientPosix
import SwiftProtobuf
import Synchronization

// Notifications (主动推送) for every logged-in account: the inbox, the live stream with cursor
// acknowledgements, read marks and topic subscriptions (InboxService). docs/notifications.md has
// the delivery semantics.

extension Remote {
  var inbox: Onewindow_V1_InboxService.Client<HTTP2ClientTransport.Posix> { clients.inbox }
  var notify: Onewindow_V1_NotifyService.Client<HTTP2ClientTransport.Posix> { clients.notify }
}

// MARK: - inbox

struct InboxCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "inbox",
    abstract: "Your notifications: list the inbox (the default) or a topic, delete messages.",
    discussion: """
      Marks: ! high priority, * unread. `owctl read SEQ…` marks messages read, `owctl watch` \
      follows new ones live, `owctl topics` lists the topics you can subscribe to.
      """,
    subcommands: [List.self, Delete.self],
    defaultSubcommand: List.self)

  struct List: OwctlCommand {
    static let configuration = CommandConfiguration(
      abstract: "List the inbox, newest first (or a subscribed topic's messages with --topic).")

    @OptionGroup var global: GlobalOptions

    @Flag(help: "Only unread messages.")
    var unread = false

    @Option(help: "Only messages of this category, e.g. case, reminder, security, general.")
    var category: String?

    @Option(help: "List this subscribed topic instead of the inbox (see `owctl topics list`).")
    var topic: String?

    @OptionGroup var page: PageOptions

    func validate() throws {
      if topic != nil, unread || category != nil {
        throw ArgumentParser.ValidationError(
          "--unread and --category filter the inbox; --topic lists all of the topic's messages (unread ones are marked *).")
      }
      if let category, category.isEmpty { throw ArgumentParser.ValidationError("--category must not be empty.") }
    }

    func execute() async throws {
      try await global.connect { remote in
        let response: Onewindow_V1_ListInboxResponse
        if let topic {
          response = try await remote.authorized { metadata in
            try await remote.inbox.listTopicMessages(.with {
              $0.topic = topic
              $0.pageSize = page.pageSize
              $0.pageToken = page.token
            }, metadata: metadata, options: remote.call)
          }
        } else {
          response = try await remote.authorized { metadata in
            try await remote.inbox.listInbox(.with {
              $0.unreadOnly = unread
              $0.category = category ?? ""
              $0.pageSize = page.pageSize
              $0.pageToken = page.token
            }, metadata: metadata, options: remote.call)
          }
        }
        try remote.output.show(response) {
          if response.messages.isEmpty {
            let filtered = unread || category != nil || page.pageToken != nil
            Console.out(topic.map { "no messages in topic \($0)" } ?? (filtered ? "no matching messages" : "the inbox is empty"))
          } else {
            NotificationView.table(response.messages).print()
          }
          let place = topic.map { "in topic \($0)" } ?? "in the inbox"
          Console.out("\(response.unreadCount) unread \(place)")
          if !response.nextPageToken.isEmpty { Console.out("more: --page-token \(response.nextPageToken)") }
        }
      }
    }
  }

  struct Delete: OwctlCommand {
    static let configuration = CommandConfiguration(
      abstract: "Delete inbox messages by seq (unknown seqs are ignored).")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The messages' seqs (see `owctl inbox`).")
    var seqs: [Int64] = []

    func validate() throws {
      try SeqList.validate(seqs, what: "delete")
    }

    func execute() async throws {
      try await global.connect { remote in
        let response = try await remote.authorized { metadata in
          try await remote.inbox.deleteMessages(.with { $0.seqs = seqs }, metadata: metadata, options: remote.call)
        }
        try remote.output.show(response) {
          let asked = Set(seqs).count
          var line = "deleted \(response.deleted) message(s)"
          if response.deleted < asked { line += " (\(asked - Int(response.deleted)) seq(s) were not in the inbox)" }
          Console.out(line)
        }
      }
    }
  }
}

enum SeqList {
  static func validate(_ seqs: [Int64], what: String) throws {
    guard !seqs.isEmpty else {
      throw ArgumentParser.ValidationError("Give the seqs of the messages to \(what) (the SEQ column of `owctl inbox`).")
    }
    if let bad = seqs.first(where: { $0 < 1 }) { throw ArgumentParser.ValidationError("Seqs are positive; got \(bad).") }
    guard Set(seqs).count <= 500 else { throw ArgumentParser.ValidationError("At most 500 seqs per command.") }
  }
}

// MARK: - read

struct ReadCommand: OwctlCommand {
  static let configuration = CommandConfiguration(
    commandName: "read",
    abstract: "Mark inbox messages read (`owctl read SEQ…`), or a topic up to a seq (--topic T --up-to SEQ).")

  @OptionGroup var global: GlobalOptions

  @Argument(help: "Inbox seqs (see `owctl inbox`).")
  var seqs: [Int64] = []

  @Option(help: "Mark this topic read instead (with --up-to).")
  var topic: String?

  @Option(name: .customLong("up-to"), help: ArgumentHelp("With --topic: the newest seq read (see `owctl inbox --topic T`).", valueName: "seq"))
  var upTo: Int64?

  func validate() throws {
    if topic != nil {
      guard seqs.isEmpty else { throw ArgumentParser.ValidationError("Give inbox seqs or --topic T --up-to SEQ, not both.") }
      guard let upTo else {
        throw ArgumentParser.ValidationError("--topic needs --up-to SEQ: the newest seq you read (see `owctl inbox --topic T`).")
      }
      guard upTo >= 1 else { throw ArgumentParser.ValidationError("--up-to must be 1 or more.") }
    } else {
      guard upTo == nil else { throw ArgumentParser.ValidationError("--up-to goes with --topic T.") }
      guard !seqs.isEmpty else {
        throw ArgumentParser.ValidationError("Give the seqs to mark read (see `owctl inbox`), or --topic T --up-to SEQ.")
      }
      try SeqList.validate(seqs, what: "mark read")
    }
  }

  func execute() async throws {
    let request = Onewindow_V1_MarkReadRequest.with {
      if let topic, let upTo {
        $0.topic = .with {
          $0.topic = topic
          $0.seq = upTo
        }
      } else {
        $0.seqs = seqs
      }
    }
    try await global.connect { remote in
      let response = try await remote.authorized { metadata in
        try await remote.inbox.markRead(request, metadata: metadata, options: remote.call)
      }
      try remote.output.show(response) {
        if let topic, let upTo {
          Console.out(response.marked > 0 ? "topic \(topic) read up to seq \(upTo)" : "topic \(topic) was already read that far")
        } else {
          let asked = Set(seqs).count
          var line = "marked \(response.marked) message(s) read"
          if response.marked < asked { line += " (\(asked - Int(response.marked)) already read or not in the inbox)" }
          Console.out(line)
        }
      }
    }
  }
}

// MARK: - topics

struct TopicsCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "topics",
    abstract: "Topics (e.g. district announcements): list them, subscribe, unsubscribe.",
    discussion: """
      A subscription starts at the topic's head: later messages reach `owctl watch` and \
      `owctl inbox --topic T`; earlier ones are not replayed.
      """,
    subcommands: [List.self, Subscribe.self, Unsubscribe.self],
    defaultSubcommand: List.self)

  struct List: OwctlCommand {
    static let configuration = CommandConfiguration(abstract: "Every topic, and whether you subscribe to it.")

    @OptionGroup var global: GlobalOptions

    func execute() async throws {
      try await global.connect { remote in
        let response = try await remote.authorized { metadata in
          try await remote.inbox.listTopics(.init(), metadata: metadata, options: remote.call)
        }
        try remote.output.show(response) {
          guard !response.topics.isEmpty else { return Console.out("no topics yet") }
          var table = Table(["TOPIC", "TITLE", "SUBSCRIBED", "SUBSCRIBERS", "LAST SEQ", "DESCRIPTION"], right: [3, 4])
          for t in response.topics {
            table.add([t.code, t.title, t.subscribed ? "yes" : "-", "\(t.subscriberCount)", "\(t.headSeq)", t.description_p])
          }
          table.print()
        }
      }
    }
  }

  struct Subscribe: OwctlCommand {
    static let configuration = CommandConfiguration(abstract: "Subscribe to a topic from its current head.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The topic code, e.g. district.310104.")
    var topic: String

    func execute() async throws {
      try await global.connect { remote in
        let subscription = try await remote.authorized { metadata in
          try await remote.inbox.subscribeTopic(.with { $0.topic = topic }, metadata: metadata, options: remote.call)
        }
        try remote.output.show(subscription) {
          Console.out(
            "subscribed to \(subscription.topic): messages after seq \(subscription.ackedSeq) reach `owctl watch` "
              + "and `owctl inbox --topic \(subscription.topic)`")
        }
      }
    }
  }

  struct Unsubscribe: OwctlCommand {
    static let configuration = CommandConfiguration(abstract: "Stop receiving a topic's messages.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The topic code.")
    var topic: String

    func execute() async throws {
      try await global.connect { remote in
        let subscription = try await remote.authorized { metadata in
          try await remote.inbox.unsubscribeTopic(.with { $0.topic = topic }, metadata: metadata, options: remote.call)
        }
        try remote.output.show(subscription) { Console.out("unsubscribed from \(subscription.topic)") }
      }
    }
  }
}

// MARK: - watch

struct WatchCommand: OwctlCommand {
  static let configuration = CommandConfiguration(
    commandName: "watch",
    abstract: "Stay connected and print notifications as they arrive, acknowledging each one (Ctrl-C to stop).",
    discussion: """
      First replays every message this account has not acknowledged yet (what arrived while no \
      device was watching), prints "caught up", then prints each message as it is published, \
      inbox and subscribed topics alike. Each message is acknowledged after it is printed, so the \
      next watch, on any device of the account, starts after it; a message sent again because its \
      acknowledgement was lost is marked (redelivered ×N), and one this watch already printed is \
      not printed twice. A lost connection is retried after 1 s, 2 s, 4 s … (at most 30 s) and \
      resumes from the acknowledged cursor. Acknowledging is not reading: `owctl read SEQ` marks a \
      message read, and `owctl inbox --unread` lists what is unread. With --json, one InboxEvent \
      per line (reconnect notices go to stderr).
      """)

  @OptionGroup var global: GlobalOptions

  @Option(help: ArgumentHelp(
    "Resume after this inbox seq (the last one this device processed); like Matrix's `since`, it also acknowledges everything up to it.",
    valueName: "seq"))
  var from: Int64?

  @Flag(help: "Also print heartbeats, and each message's event id and data.")
  var verbose = false

  @Option(help: "A name for this device in the server's logs, 1–64 characters (default: owctl@HOSTNAME).")
  var device: String?

  func validate() throws {
    if let from, from < 0 { throw ArgumentParser.ValidationError("--from must not be negative.") }
    if let device, !(1...64).contains(device.count) { throw ArgumentParser.ValidationError("--device must be 1–64 characters.") }
  }

  func execute() async throws {
    let device = self.device ?? String("owctl@\(ProcessInfo.processInfo.hostName)".prefix(64))
    let json = global.json
    let verbose = self.verbose
    let from = self.from
    let interrupted = try await global.connect { remote in
      let watcher = InboxWatcher(remote: remote, json: json, verbose: verbose, device: device)
      return try await Interrupt.run { try await watcher.run(from: from) }
    }
    if interrupted && !json { Console.error("stopped") }
  }
}

/// One `owctl watch`: subscribes, prints and acknowledges each message, and subscribes again
/// with backoff when the connection is lost.
struct InboxWatcher: Sendable {
  let remote: Remote
  let json: Bool
  let verbose: Bool
  let device: String
  let state = WatchState()

  static let maxBackoffSeconds = 30

  /// Codes after which subscribing again may work: the server or the network may recover.
  static func isTransient(_ code: RPCError.Code) -> Bool {
    switch code {
    case .unavailable, .unknown, .internalError, .deadlineExceeded, .resourceExhausted, .aborted, .cancelled: true
    default: false
    }
  }

  /// Runs until cancelled (Ctrl-C) or a failure that reconnecting cannot cure (e.g. the login ended).
  func run(from: Int64?) async throws {
    var afterSeq = from
    var failures = 0
    while !Task.isCancelled {
      var reason = "the server ended the stream"
      do {
        let metadata = try await remote.authorized { $0 }
        var options = remote.call
        options.timeout = nil  // a watch is meant to stay open
        let request = Onewindow_V1_SubscribeRequest.with {
          if let afterSeq { $0.afterSeq = afterSeq }
          $0.device = device
        }
        try await remote.inbox.subscribe(request, metadata: metadata, options: options) { response in
          try await consume(response)
        }
      } catch {
        if Task.isCancelled || error is CancellationError { return }
        guard let rpc = error as? RPCError, Self.isTransient(rpc.code) else { throw error }
        reason = "\(rpc.code.canonicalName): \(ErrorReport.oneLine(rpc.message))"
      }
      if Task.isCancelled { return }
      let wasUp = state.takeEstablished()
      if wasUp {
        // The stream was up: the server holds the cursor now, and the backoff starts over.
        afterSeq = nil
        failures = 0
      }
      failures += 1
      let delay = min(Self.maxBackoffSeconds, 1 << min(failures - 1, 5))
      Console.error("\(wasUp ? "connection lost" : "cannot subscribe") (\(reason)); retrying in \(delay) s")
      do { try await Task.sleep(for: .seconds(delay)) } catch { return }
    }
  }

  /// Reads one Subscribe stream until it ends.
  private func consume(_ response: StreamingClientResponse<Onewindow_V1_InboxEvent>) async throws {
    var replayed = 0
    var live = false
    for try await event in response.messages {
      state.markEstablished()
      switch event.event {
      case .message(let message)?:
        if !live { replayed += 1 }
        if state.firstSight(message.eventID) { try emit(event) { NotificationView.printLive(message, verbose: verbose) } }
        try await acknowledge(message)
      case .caughtUp(let positions)?:
        live = true
        try emit(event) {
          let again = state.subscriptions > 1 ? "reconnected; " : ""
          Console.out("— \(again)caught up: \(replayed) message(s) replayed; \(NotificationView.positions(positions)) —")
        }
      case .heartbeat(let positions)?:
        guard verbose else { continue }
        try emit(event) {
          let time = positions.hasServerTime ? " at \(Format.date(positions.serverTime))" : ""
          Console.out("heartbeat\(time): \(NotificationView.positions(positions))")
        }
      case nil:
        continue
      }
    }
  }

  private func emit(_ event: Onewindow_V1_InboxEvent, text: () -> Void) throws {
    if json {
      Console.out(try event.jsonString(options: Output.jsonOptions))
    } else {
      text()
    }
  }

  /// Moves the account's cursor past `message` (the inbox's, or its topic's).
  private func acknowledge(_ message: Onewindow_V1_InboxMessage) async throws {
    let request = Onewindow_V1_AckRequest.with {
      if message.topic.isEmpty {
        $0.upToSeq = message.seq
      } else {
        $0.topics = [.with {
          $0.topic = message.topic
          $0.seq = message.seq
        }]
      }
    }
    do {
      _ = try await remote.authorized { metadata in
        try await remote.inbox.ack(request, metadata: metadata, options: remote.call)
      }
    } catch let error as RPCError where !Self.isTransient(error.code) && error.code != .unauthenticated {
      // e.g. the topic was unsubscribed meanwhile: the message was shown; keep watching.
      Console.error("warning: could not acknowledge \(NotificationView.position(message)): \(error.code.canonicalName): \(error.message)")
    }
  }
}

/// What a watch remembers across its reconnects.
final class WatchState: Sendable {
  private struct Contents {
    var established = false
    var subscriptions = 0
    var seen = Set<String>()
    var order: [String] = []
  }

  private let contents = Mutex(Contents())

  /// Event ids remembered to drop redeliveries of messages already printed.
  static let remembered = 10_000

  /// Called on each event; counts a new subscription on its first event. Returns whether this
  /// was the stream's first event.
  @discardableResult
  func markEstablished() -> Bool {
    contents.withLock { c in
      guard !c.established else { return false }
      c.established = true
      c.subscriptions += 1
      return true
    }
  }

  /// Whether the last stream delivered anything (and resets that for the next one).
  func takeEstablished() -> Bool {
    contents.withLock { c in
      defer { c.established = false }
      return c.established
    }
  }

  var subscriptions: Int { contents.withLock { $0.subscriptions } }

  /// True the first time an event id is seen.
  func firstSight(_ eventID: String) -> Bool {
    guard !eventID.isEmpty else { return true }
    return contents.withLock { c in
      guard c.seen.insert(eventID).inserted else { return false }
      c.order.append(eventID)
      if c.order.count > Self.remembered {
        let drop = c.order.count - Self.remembered
        for id in c.order.prefix(drop) { c.seen.remove(id) }
        c.order.removeFirst(drop)
      }
      return true
    }
  }
}

/// Runs a long command until it ends or the user presses Ctrl-C, which cancels it (a second
/// Ctrl-C ends the process at once).
enum Interrupt {
  private final class Flag: Sendable {
    let raised = Atomic<Bool>(false)
  }

  /// Returns true when Ctrl-C ended `body`.
  static func run(_ body: @escaping @Sendable () async throws -> Void) async throws -> Bool {
    let flag = Flag()
    let task = Task { try await body() }
    signal(SIGINT, SIG_IGN)
    let source = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
    source.setEventHandler {
      if flag.raised.exchange(true, ordering: .sequentiallyConsistent) { exit(130) }
      task.cancel()
    }
    source.resume()
    defer {
      source.cancel()
      signal(SIGINT, SIG_DFL)
    }
    do {
      try await withTaskCancellationHandler { try await task.value } onCancel: { task.cancel() }
    } catch where flag.raised.load(ordering: .sequentiallyConsistent) {
      return true
    }
    return flag.raised.load(ordering: .sequentiallyConsistent)
  }
}

// MARK: - Views

extension Onewindow_V1_MessagePriority {
  var label: String {
    switch self {
    case .high: "high"
    case .normal, .unspecified: "normal"
    case .UNRECOGNIZED(let n): "priority \(n)"
    }
  }
}

extension Onewindow_V1_InboxMessageState {
  var label: String {
    switch self {
    case .pending: "pending"
    case .delivered: "delivered"
    case .expired: "expired"
    case .replaced: "replaced"
    case .unspecified: "-"
    case .UNRECOGNIZED(let n): "state \(n)"
    }
  }
}

enum NotificationView {
  /// `#12`, or `district.310104#3` for a topic message.
  static func position(_ m: Onewindow_V1_InboxMessage) -> String {
    m.topic.isEmpty ? "#\(m.seq)" : "\(m.topic)#\(m.seq)"
  }

  /// `inbox at seq 12, district.310104 at 3`.
  static func positions(_ p: Onewindow_V1_StreamPositions) -> String {
    (["inbox at seq \(p.inboxSeq)"] + p.topics.map { "\($0.topic) at \($0.seq)" }).joined(separator: ", ")
  }

  static func firstLine(_ text: String) -> String {
    String(text.split(whereSeparator: \.isNewline).first ?? "")
  }

  /// Cut to `width` terminal columns, with … when cut.
  static func clip(_ text: String, width: Int) -> String {
    guard DisplayWidth.of(text) > width else { return text }
    var out = ""
    var used = 0
    for character in text {
      let w = DisplayWidth.of(character)
      if used + w > width - 1 { break }
      out.append(character)
      used += w
    }
    return out + "…"
  }

  /// One row per message: seq, time, marks (! high priority, * unread), title, body's first line.
  static func table(_ messages: [Onewindow_V1_InboxMessage]) -> Table {
    var table = Table(["SEQ", "SENT", "", "", "CATEGORY", "TITLE", "MESSAGE"], right: [0])
    for m in messages {
      table.add([
        "\(m.seq)", m.hasSentAt ? Format.minute(m.sentAt) : "", m.priority == .high ? "!" : "", m.hasReadAt ? "" : "*",
        m.category, clip(m.title, width: 40),
        clip(firstLine(m.body), width: 60),
      ])
    }
    return table
  }

  /// A message as `owctl watch` shows it.
  static func printLive(_ m: Onewindow_V1_InboxMessage, verbose: Bool) {
    var head = "\(position(m))  \(m.hasSentAt ? Format.minute(m.sentAt) : "")  [\(m.category)]  "
    if m.priority == .high { head += "! " }
    head += m.title
    if m.deliveryCount > 1 { head += "  (redelivered ×\(m.deliveryCount))" }
    var lines = [head]
    lines += m.body.split(separator: "\n", omittingEmptySubsequences: false).map { "    " + $0 }
    if verbose {
      var details = "    event \(m.eventID)"
      if !m.data.isEmpty { details += " · " + m.data.keys.sorted().map { "\($0)=\(m.data[$0] ?? "")" }.joined(separator: " ") }
      if !m.replacesEventID.isEmpty { details += " · replaces \(m.replacesEventID)" }
      if m.hasExpiresAt { details += " · expires \(Format.minute(m.expiresAt))" }
      lines.append(details)
    }
    Console.out(lines.joined(separator: "\n"))
  }
}
