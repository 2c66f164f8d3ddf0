import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import OneWindowAPI
import OneWindowClientPosix
import OneWindowCore
import OneWindowServer
import OneWindowStore
import Synchronization
import Testing

// Helpers for the notification E2E tests: clients, accounts made straight in the store (fast,
// no password hashing), publishing from a template, and a live Subscribe stream recorder.

extension TestEnvironment {
  var inboxAPI: Onewindow_V1_InboxService.Client<PosixTransport> { .init(wrapping: clients.grpc) }
  var notifyAPI: Onewindow_V1_NotifyService.Client<PosixTransport> { .init(wrapping: clients.grpc) }

  /// A citizen account with a session, created directly in the store; returns (account id, token).
  func quickCitizen(_ n: Int, region: String = "110105") async throws -> (id: String, token: String) {
    let first17 = region + "19900307" + String(format: "%03d", n % 1000)
    let idNumber = first17 + String(ResidentIDNumber.checkCharacter(forFirst17: first17) ?? "0")
    let account = try await store.identity.createAccount(NewAccount(
      account: Account(
        id: ULID.make(), role: .citizen, displayName: "市民\(n)", phone: "139" + String(format: "%08d", n), idNumber: idNumber,
        hasPassword: false, createdAt: clock.now()),
      passwordHash: nil))
    let tokens = IssuedTokens.issue(now: clock.now())
    _ = try await store.identity.createSession(accountID: account.id, tokens: tokens, now: clock.now())
    return (account.id, tokens.accessToken)
  }

  /// A template named `name` whose body is `((text))`.
  func plainTemplate(_ admin: String, name: String = "test.plain", category: String = "general") async throws {
    _ = try await notifyAPI.putTemplate(.with {
      $0.name = name
      $0.title = "通知"
      $0.body = "((text))"
      $0.category = category
    }, metadata: bearer(admin))
  }

  /// Publishes `text` with the plain template.
  @discardableResult
  func publish(
    _ admin: String, to audience: Onewindow_V1_Audience, text: String, key: String = UUID().uuidString,
    template: String = "test.plain", _ configure: (inout Onewindow_V1_PublishRequest) -> Void = { _ in }
  ) async throws -> Onewindow_V1_PublishResponse {
    var request = Onewindow_V1_PublishRequest.with {
      $0.audience = audience
      $0.template = template
      $0.personalisation = ["text": text]
      $0.idempotencyKey = key
    }
    configure(&request)
    return try await notifyAPI.publish(request, metadata: bearer(admin))
  }
}

extension TestEnvironment {
  /// Runs `body` with `count` extra connections to the server (many streams spread over
  /// several connections, as devices would; cancelling hundreds of streams at once on one
  /// connection trips HTTP/2's rapid-reset protection).
  func withConnections<T: Sendable>(
    _ count: Int, _ body: ([GRPCClient<HTTP2ClientTransport.Posix>]) async throws -> T
  ) async throws -> T {
    func nest(_ opened: [GRPCClient<HTTP2ClientTransport.Posix>]) async throws -> T {
      if opened.count == count { return try await body(opened) }
      return try await OneWindowClients.with(ConnectionOptions(host: "127.0.0.1", port: port)) { clients in
        try await nest(opened + [clients.grpc])
      }
    }
    return try await nest([])
  }
}

extension Onewindow_V1_Audience {
  static func account(_ id: String) -> Self { .with { $0.accountID = id } }
  static func topic(_ code: String) -> Self { .with { $0.topic = code } }
}

/// A live Subscribe stream in the background, recording what arrives.
final class InboxRecorder: Sendable {
  private let state = Mutex<(events: [Onewindow_V1_InboxEvent], ended: (any Error)?, finished: Bool)>(([], nil, false))
  private let task = Mutex<Task<Void, Never>?>(nil)

  /// Opens the stream on `client`; events are recorded until `stop()` or the stream ends.
  static func open(
    _ client: GRPCClient<HTTP2ClientTransport.Posix>, token: String, afterSeq: Int64? = nil
  ) -> InboxRecorder {
    let recorder = InboxRecorder()
    let api = Onewindow_V1_InboxService.Client(wrapping: client)
    let task = Task {
      do {
        try await api.subscribe(.with { if let afterSeq { $0.afterSeq = afterSeq } }, metadata: bearer(token)) { response in
          for try await event in response.messages { recorder.state.withLock { $0.events.append(event) } }
        }
        recorder.state.withLock { $0.finished = true }
      } catch {
        recorder.state.withLock { $0.ended = error; $0.finished = true }
      }
    }
    recorder.task.withLock { $0 = task }
    return recorder
  }

  var messages: [Onewindow_V1_InboxMessage] {
    state.withLock { $0.events.compactMap { if case .message(let m)? = $0.event { m } else { nil } } }
  }

  var caughtUp: Bool { state.withLock { $0.events.contains { if case .caughtUp? = $0.event { true } else { false } } } }
  var endedWith: (any Error)? { state.withLock { $0.ended } }
  var finished: Bool { state.withLock { $0.finished } }

  /// Waits (polling) until `condition` holds, failing after `timeout`.
  func wait(
    _ what: String, timeout: Duration = .seconds(30), sourceLocation: SourceLocation = #_sourceLocation,
    until condition: (InboxRecorder) -> Bool
  ) async throws {
    let deadline = ContinuousClock.now + timeout
    while !condition(self) {
      guard ContinuousClock.now < deadline else {
        Issue.record("timed out waiting for \(what); got \(messages.map(\.seq))", sourceLocation: sourceLocation)
        throw CancellationError()
      }
      try await Task.sleep(for: .milliseconds(10))
    }
  }

  func waitCaughtUp(sourceLocation: SourceLocation = #_sourceLocation) async throws {
    try await wait("caught_up", sourceLocation: sourceLocation) { $0.caughtUp }
  }

  func waitMessages(_ count: Int, timeout: Duration = .seconds(30), sourceLocation: SourceLocation = #_sourceLocation) async throws {
    try await wait("\(count) messages", timeout: timeout, sourceLocation: sourceLocation) { $0.messages.count >= count }
  }

  /// Disconnects (cancels the RPC) and waits until the stream has ended.
  func stop() async {
    let task = task.withLock { $0 }
    task?.cancel()
    await task?.value
  }
}
