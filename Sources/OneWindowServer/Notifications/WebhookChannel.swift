import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import OneWindowCore
import OneWindowStore
import Synchronization

/// Delivers webhook events: a signed JSON POST of the delivery's body to its endpoint's URL.
///
/// Each request carries `OneWindow-Signature: t=<now>,v1=<HMAC-SHA256>` (see `WebhookSignature`)
/// made with the endpoint's secret (stored sealed, opened here with the `SecretBox`), plus
/// `OneWindow-Event-Type`, `OneWindow-Event-Id` and `OneWindow-Delivery-Id`. Redirects are never
/// followed: a 3xx is the receiver's answer, and a rejection. A 2xx is delivered; 429, 5xx,
/// network errors and timeouts are retried; other statuses are permanent failures. A missing or
/// disabled endpoint is a permanent failure ("endpoint disabled").
///
/// One `HTTPClient` (on `MultiThreadedEventLoopGroup.singleton`) serves every delivery; it is
/// made on first use and closed by `shutdown()`, which `DeliveryDispatcher.run()` calls when it
/// ends (whoever drives the channel without `run()` must call it too).
public final class WebhookChannel: NotificationChannel {
  public static let channelName = "webhook"
  public static let userAgent = "OneWindow-Webhooks/1"
  /// The most of a response body read (for a failed attempt's error text).
  static let maxResponseBytes = 4096

  public var name: String { Self.channelName }

  let store: any NotificationStore
  let secrets: SecretBox
  let timeout: Duration
  let clock: any WallClock
  let logger: Logger

  private enum ClientState {
    case idle
    case running(HTTPClient)
    case shutDown
  }

  private let client = Mutex<ClientState>(.idle)

  /// - Parameters:
  ///   - store: where endpoints are looked up (`webhook(id: delivery.target)`).
  ///   - secrets: opens the endpoints' sealed signing secrets.
  ///   - timeout: the whole request, connecting and reading the response included.
  ///   - clock: the signature's timestamp.
  public init(
    store: any NotificationStore, secrets: SecretBox, timeout: Duration = .seconds(10), clock: any WallClock = SystemClock(),
    logger: Logger
  ) {
    self.store = store
    self.secrets = secrets
    self.timeout = timeout
    self.clock = clock
    self.logger = logger
  }

  deinit {
    // A safety net for a channel dropped without `shutdown()` (the dispatcher never ran): start
    // the client's shutdown without waiting, instead of leaking it (or tripping its debug check).
    let running: HTTPClient? = client.withLock { state in
      if case .running(let c) = state { return c }
      return nil
    }
    running?.shutdown { _ in }
  }

  public func deliver(_ delivery: Delivery, attempt: Int) async -> ChannelResult {
    let endpoint: WebhookEndpoint?
    do {
      endpoint = try await store.webhook(id: delivery.target)
    } catch {
      return ChannelResult(outcome: .retryable, error: "endpoint lookup failed")
    }
    guard let endpoint, endpoint.enabled else { return ChannelResult(outcome: .rejected, error: "endpoint disabled") }
    let secret: String
    do {
      secret = try secrets.open(endpoint.sealedSecret)
    } catch {
      // A server-side problem (the key file was replaced?): retried, then dead-lettered for replay.
      logger.error("cannot open a webhook endpoint's secret", metadata: ["endpoint": "\(endpoint.id)"])
      return ChannelResult(outcome: .retryable, error: "cannot decrypt the endpoint's signing secret")
    }
    guard let http = httpClient() else { return ChannelResult(outcome: .retryable, error: "server shutting down") }

    var request = HTTPClientRequest(url: endpoint.url)
    request.method = .POST
    let timestamp = Int64(clock.now().timeIntervalSince1970.rounded(.down))
    request.headers.add(name: "Content-Type", value: "application/json")
    request.headers.add(name: "User-Agent", value: Self.userAgent)
    request.headers.add(
      name: WebhookSignature.headerName, value: WebhookSignature.sign(body: delivery.body, secrets: [secret], timestamp: timestamp))
    request.headers.add(name: "OneWindow-Event-Type", value: delivery.eventType)
    request.headers.add(name: "OneWindow-Event-Id", value: delivery.eventID)
    request.headers.add(name: "OneWindow-Delivery-Id", value: delivery.id)
    request.body = .bytes(ByteBuffer(bytes: delivery.body))

    let started = ContinuousClock.now
    func elapsed() -> Int64 {
      let d = ContinuousClock.now - started
      return d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000
    }
    do {
      let response = try await http.execute(request, deadline: .now() + TimeAmount(timeout))
      let status = Int(response.status.code)
      // Read a little of the body (lets a small response finish, so the connection is reused)
      // and keep it only to explain a failure.
      let excerpt = await Self.readExcerpt(response.body)
      let outcome = RetryPolicy.classify(httpStatus: status)
      if outcome == .delivered { return ChannelResult(outcome: .delivered, httpStatus: status, durationMillis: elapsed()) }
      var error = "HTTP \(status)"
      if (300..<400).contains(status) { error += " (redirects are not followed)" }
      if !excerpt.isEmpty { error += ": " + excerpt }
      return ChannelResult(outcome: outcome, httpStatus: status, error: ChannelResult.truncated(error), durationMillis: elapsed())
    } catch {
      let (outcome, text) = Self.classify(error)
      return ChannelResult(outcome: outcome, error: ChannelResult.truncated(text), durationMillis: elapsed())
    }
  }

  /// Closes the HTTP client (after in-flight requests end). Later deliveries fail as retryable.
  public func shutdown() async {
    let running: HTTPClient? = client.withLock { state in
      defer { state = .shutDown }
      if case .running(let c) = state { return c }
      return nil
    }
    guard let running else { return }
    do {
      try await running.shutdown()
    } catch {
      logger.warning("webhook HTTP client shutdown failed", metadata: ["error": "\(String(reflecting: type(of: error)))"])
    }
  }

  private func httpClient() -> HTTPClient? {
    client.withLock { state in
      switch state {
      case .running(let c):
        return c
      case .shutDown:
        return nil
      case .idle:
        let amount = TimeAmount(timeout)
        var configuration = HTTPClient.Configuration(
          redirectConfiguration: .disallow, timeout: .init(connect: amount, read: amount), decompression: .disabled)
        // As many connections to one receiver as the dispatcher sends at once (its default).
        configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 16)
        let c = HTTPClient(
          eventLoopGroup: MultiThreadedEventLoopGroup.singleton, configuration: configuration, backgroundActivityLogger: logger)
        state = .running(c)
        return c
      }
    }
  }

  /// Up to `maxResponseBytes` of the body as single-line text (invalid UTF-8 and control
  /// characters replaced); "" when there is none or it cannot be read.
  static func readExcerpt(_ body: HTTPClientResponse.Body) async -> String {
    var bytes: [UInt8] = []
    do {
      for try await chunk in body {
        bytes += chunk.readableBytesView.prefix(maxResponseBytes - bytes.count)
        if bytes.count >= maxResponseBytes { break }
      }
    } catch {
      // What was read is enough to explain the failure.
    }
    let text = String(decoding: bytes, as: UTF8.self)
    let cleaned = String(String.UnicodeScalarView(text.unicodeScalars.map {
      $0.properties.generalCategory == .control ? " " : $0
    }))
    return cleaned.trimmingCharacters(in: .whitespaces)
  }

  /// How a failure without a response ends, with a short description (no request content).
  static func classify(_ error: any Error) -> (outcome: RetryPolicy.Outcome, error: String) {
    if let e = error as? HTTPClientError {
      switch e {
      case .deadlineExceeded, .readTimeout, .connectTimeout, .writeTimeout, .tlsHandshakeTimeout: return (.retryable, "timed out")
      case .remoteConnectionClosed: return (.retryable, "connection closed by the receiver")
      // Checked when the endpoint was added, so this does not heal by itself.
      case .invalidURL, .emptyHost, .emptyScheme: return (.rejected, "invalid endpoint URL")
      case .alreadyShutdown: return (.retryable, "server shutting down")
      case .cancelled: return (.retryable, "cancelled")
      default: return (.retryable, "HTTP client error: \(e)")
      }
    }
    if error is CancellationError { return (.retryable, "cancelled") }
    if let e = error as? NIOConnectionError {
      guard let first = e.connectionErrors.first else { return (.retryable, "cannot connect (\(e.host))") }
      if let io = first.error as? IOError { return (.retryable, "cannot connect: \(String(cString: strerror(io.errnoCode)))") }
      return (.retryable, "cannot connect: \(first.error)")
    }
    if let e = error as? IOError { return (.retryable, "network error: \(String(cString: strerror(e.errnoCode)))") }
    return (.retryable, "network error: \(String(describing: error))")
  }
}
