import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import OneWindowCore
import OneWindowStore
import Synchronization

/// A provider that behaves like a real asynchronous one, for development, tests and
/// integrators: it keeps its own books (a `SandboxBook`; by default `SandboxProviderBook`, its
/// own SQLite file), runs a cashier on the HTTP listener (`/sandbox/cashier/<reference>`),
/// decides outcomes from the documented test
/// accounts (`SandboxAccounts`), and reports them later as signed HTTP callbacks to
/// `/callbacks/sandbox` — so OneWindow's callback, query and repair paths are all exercised.
public final class SandboxProvider: PaymentProvider {
  public let name = "sandbox"
  let book: any SandboxBook
  let secret: String
  let clock: any WallClock
  let logger: Logger
  /// Extra wait before each callback is sent (tests widen the window between "the provider
  /// took the money" and "OneWindow heard about it").
  let callbackDelay: Duration
  /// The HTTP listener the cashier and the callback endpoint live on, bound after init.
  private let listener = Mutex<(listener: HTTPListener?, host: String)>((nil, "127.0.0.1"))
  private let pending = Mutex<(closed: Bool, tasks: [UInt64: Task<Void, Never>], next: UInt64)>((false, [:], 0))
  private let queries = Atomic<Int>(0)
  private let closes = Atomic<Int>(0)

  /// How often OneWindow asked the sandbox for a payment's status, and asked it to close one:
  /// what a real provider meters and rate-limits (tests check the repair paths stay frugal).
  public var statusQueries: Int { queries.load(ordering: .relaxed) }
  public var closeRequests: Int { closes.load(ordering: .relaxed) }

  /// The sandbox's own client: a real provider sends many callbacks at once, and the shared
  /// client keeps only 8 connections per host (callbacks would queue behind each other).
  /// Process-wide and never shut down, like `HTTPClient.shared`.
  static let callbackClient: HTTPClient = {
    var configuration = HTTPClient.Configuration()
    configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 64)
    configuration.redirectConfiguration = .disallow
    return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
  }()

  let publicBaseURL: String?

  static let timestampHeader = "x-sandbox-timestamp"
  static let nonceHeader = "x-sandbox-nonce"
  static let signatureHeader = "x-sandbox-signature"

  /// `publicBaseURL`: what cashier and callback URLs start with (ServerConfig.publicHTTPURL,
  /// already validated); nil: the listener this node bound.
  init(
    book: any SandboxBook, secret: String, clock: any WallClock, callbackDelay: Duration, publicBaseURL: String? = nil,
    logger: Logger
  ) {
    self.book = book
    self.publicBaseURL = publicBaseURL
    self.secret = secret
    self.clock = clock
    self.callbackDelay = callbackDelay
    self.logger = logger
  }

  /// Serves the cashier and receives callbacks on `listener` (a wildcard host is reached on loopback).
  func bind(to http: HTTPListener, host: String) {
    let reachable = ["0.0.0.0", "::", "[::]", ""].contains(host) ? "127.0.0.1" : (host == "localhost" ? "127.0.0.1" : host)
    listener.withLock { $0 = (http, reachable.contains(":") ? "[\(reachable)]" : reachable) }
  }

  /// The configured public base URL, else `http://host:port` of the listener once it is bound.
  func baseURL() async throws -> String {
    if let publicBaseURL { return publicBaseURL }
    let (http, host) = listener.withLock { ($0.listener, $0.host) }
    guard let http else { throw CallbackRejection(status: 503, "the sandbox is not bound to the HTTP listener") }
    return "http://\(host):\(try await http.listeningPort())"
  }

  /// Stops sending callbacks (server shutdown).
  func shutDown() {
    let tasks = pending.withLock { p -> [Task<Void, Never>] in
      p.closed = true
      defer { p.tasks = [:] }
      return Array(p.tasks.values)
    }
    for task in tasks { task.cancel() }
  }

  /// The secret callbacks are signed with, kept in the data directory (mode 0600).
  static func loadOrCreateSecret(directory: String) throws -> String {
    let path = (directory as NSString).appendingPathComponent(ServerKeys.sandboxSecretFile)
    if let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8), text.count >= 32 {
      return text.trimmingWhitespace()
    }
    var rng = SystemRandomNumberGenerator()
    let secret = Hex.encode((0..<32).map { _ in UInt8.random(in: 0...255, using: &rng) })
    guard FileManager.default.createFile(atPath: path, contents: Data(secret.utf8), attributes: [.posixPermissions: 0o600]) else {
      throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: path])
    }
    return secret
  }

  // MARK: - PaymentProvider

  public func open(_ request: ProviderPaymentRequest) async throws -> ProviderSession {
    let entry = try await book.open(paymentID: request.paymentID, amount: request.amount, now: clock.now())
    return ProviderSession(reference: entry.reference, cashierURL: try await baseURL() + "/sandbox/cashier/" + entry.reference)
  }

  public func status(reference: String) async throws -> ProviderPaymentStatus {
    queries.add(1, ordering: .relaxed)
    return try await currentStatus(reference: reference)
  }

  public func close(reference: String) async throws -> ProviderPaymentStatus {
    closes.add(1, ordering: .relaxed)
    guard try await book.close(reference: reference) != nil else { return .unknown }
    return try await currentStatus(reference: reference)
  }

  private func currentStatus(reference: String) async throws -> ProviderPaymentStatus {
    guard let entry = try await book.entry(reference: reference, now: clock.now()) else { return .unknown }
    return Self.status(entry)
  }

  public func refund(_ request: ProviderRefundRequest) async throws -> ProviderRefundStatus {
    let entry = try await book.refund(refundID: request.refundID, reference: request.reference, amount: request.amount, now: clock.now())
    return entry.status == .success ? .success : .error
  }

  public func refundStatus(refundID: String) async throws -> ProviderRefundStatus {
    guard let entry = try await book.refund(id: refundID) else { return .unknown }
    return entry.status == .success ? .success : .error
  }

  public func settlement(day: CivilDate) async throws -> [SettlementEntry] {
    try SandboxSettlementFile.parse(try await settlementFile(day: day)).map(\.entry)
  }

  /// The day's settlement file as the sandbox publishes it (CSV, `SandboxSettlementFile`).
  func settlementFile(day: CivilDate) async throws -> String {
    let (start, end) = SettlementDay.bounds(day)
    let lines = try await book.settlement(
      from: Date(timeIntervalSince1970: Double(start) / 1000), to: Date(timeIntervalSince1970: Double(end) / 1000))
    return SandboxSettlementFile.render(lines)
  }

  public func verifyCallback(headers: [String: String], body: [UInt8], now: Date) throws(CallbackRejection) -> ProviderCallback {
    do {
      try SandboxCallbackSignature.verify(
        timestamp: headers[Self.timestampHeader] ?? "", nonce: headers[Self.nonceHeader] ?? "",
        signature: headers[Self.signatureHeader] ?? "", body: body, secret: secret, now: now)
    } catch {
      throw CallbackRejection(status: 401, error.description)
    }
    guard let wire = try? JSONDecoder().decode(CallbackBody.self, from: Data(body)),
          let status = Self.status(wire: wire.status), !wire.notification_id.isEmpty, wire.notification_id.utf8.count <= 128
    else { throw CallbackRejection(status: 400, "the body is not a sandbox callback") }
    return ProviderCallback(notificationID: wire.notification_id, paymentID: wire.payment_id, reference: wire.reference, status: status)
  }

  struct CallbackBody: Codable {
    var notification_id: String
    var payment_id: String
    var reference: String
    /// processing, success, declined, error, closed
    var status: String
  }

  static func status(wire: String) -> ProviderPaymentStatus? {
    switch wire {
    case "processing": .pending(authorised: true)
    case "success": .success
    case "declined": .failed(.declined)
    case "error": .error
    case "closed": .closed
    default: nil
    }
  }

  static func status(_ entry: SandboxBookEntry) -> ProviderPaymentStatus {
    switch entry.status {
    case .open: .pending(authorised: false)
    case .authorised: .pending(authorised: true)
    case .success: .success
    case .declined: .failed(.declined)
    case .error: .error
    case .closed: .closed
    }
  }

  // MARK: - Cashier

  /// The cashier routes on the HTTP listener.
  var routes: [HTTPRoute] {
    [
      HTTPRoute(method: "GET", path: "/sandbox/cashier/{reference}") { [self] request in await self.showCashier(request) },
      HTTPRoute(method: "POST", path: "/sandbox/cashier/{reference}") { [self] request in await self.pay(request) },
    ]
  }

  struct CashierView: Encodable {
    var reference: String
    var payment_id: String
    var amount_fen: Int64
    var amount_yuan: String
    var status: String
    var test_accounts: [String: String]
  }

  func showCashier(_ request: HTTPRequestData) async -> HTTPResponseData {
    do {
      guard let entry = try await book.entry(reference: request.parameters["reference"] ?? "", now: clock.now()) else {
        return .text(404, "no such cashier session\n")
      }
      return .json(200, CashierView(
        reference: entry.reference, payment_id: entry.paymentID, amount_fen: entry.amount.value, amount_yuan: entry.amount.yuan,
        status: entry.status.rawValue,
        test_accounts: [
          SandboxAccounts.success: "success", SandboxAccounts.declined: "declined", SandboxAccounts.timeout: "no answer (timeout)",
          SandboxAccounts.providerError: "provider error",
          SandboxAccounts.delayedSuccess: "success after \(SandboxAccounts.delaySeconds) s",
        ]))
    } catch {
      return .text(500, "sandbox book unavailable\n")
    }
  }

  struct PayBody: Decodable { var account: String }

  /// The payer submits a test account number (JSON `{"account": "…"}` or form `account=…`).
  func pay(_ request: HTTPRequestData) async -> HTTPResponseData {
    let account: String
    if let json = try? JSONDecoder().decode(PayBody.self, from: Data(request.body)) {
      account = json.account
    } else if let form = String(validating: request.body, as: UTF8.self),
              let field = form.split(separator: "&").first(where: { $0.hasPrefix("account=") })
    {
      account = String(field.dropFirst("account=".count))
    } else {
      return .text(400, "send {\"account\": \"6222000000000001\"} (see the test accounts)\n")
    }
    let now = clock.now()
    let (outcome, decideAt): (SandboxBookStatus?, Date?) = switch SandboxAccounts.outcome(forAccount: account) {
    case .success: (.success, now)
    case .declined: (.declined, now)
    case .providerError: (.error, now)
    case .timeout: (nil, nil)
    case .successAfterDelay(let seconds): (.success, now.addingTimeInterval(TimeInterval(seconds)))
    }
    do {
      guard let (entry, authorised) = try await book.authorise(
        reference: request.parameters["reference"] ?? "", account: account, outcome: outcome, decideAt: decideAt, now: now)
      else { return .text(404, "no such cashier session\n") }
      guard authorised else { return .text(409, "this cashier session is \(entry.status.rawValue)\n") }
      // Like WeChat Pay and Alipay, an immediate outcome is reported once; a pending one is
      // first reported as "processing" (so OneWindow knows the payer authorised), then decided.
      if entry.status == .authorised { notify(entry, status: "processing", after: .zero) }
      if let outcome, let decideAt {
        let wait = Duration.milliseconds(Int64(max(0, decideAt.timeIntervalSince(now)) * 1000))
        notify(entry, status: outcome == .success ? "success" : outcome.rawValue, after: wait, decideFirst: true)
      }
      return .json(202, ["status": "authorised", "reference": entry.reference])
    } catch {
      return .text(500, "sandbox book unavailable\n")
    }
  }

  // MARK: - Callbacks

  /// Sends a signed callback after `after` (+ the configured delay), retrying like a provider
  /// does (1, 2, 4, 8 s) until OneWindow answers 2xx.
  func notify(_ entry: SandboxBookEntry, status: String, after: Duration, decideFirst: Bool = false) {
    guard let id = pending.withLock({ p -> UInt64? in
      guard !p.closed else { return nil }
      p.next += 1
      return p.next
    }) else { return }
    let delay = after + callbackDelay
    let task = Task { [self] in
      defer { _ = pending.withLock { $0.tasks.removeValue(forKey: id) } }
      do {
        try await Task.sleep(for: delay)
        if decideFirst { _ = try await book.entry(reference: entry.reference, now: clock.now()) }
        let body = try JSONEncoder().encode(CallbackBody(
          notification_id: "ntf_" + ULID.make(at: clock.now()).lowercased(), payment_id: entry.paymentID,
          reference: entry.reference, status: status))
        var backoff = Duration.seconds(1)
        for attempt in 1...5 {
          if try await send(Array(body)) { return }
          logger.notice("sandbox callback not accepted; retrying", metadata: ["attempt": "\(attempt)", "reference": "\(entry.reference)"])
          try await Task.sleep(for: backoff)
          backoff *= 2
        }
      } catch {
        return
      }
    }
    pending.withLock { p in
      if p.closed { task.cancel() } else { p.tasks[id] = task }
    }
  }

  /// One delivery attempt: true when OneWindow answered 2xx (or 404, which no retry fixes).
  func send(_ body: [UInt8]) async throws -> Bool {
    let url = try await baseURL() + "/callbacks/sandbox"
    let timestamp = Int64(clock.now().timeIntervalSince1970.rounded())
    let nonce = ULID.make()
    var request = HTTPClientRequest(url: url)
    request.method = .POST
    request.headers.add(name: "content-type", value: "application/json")
    request.headers.add(name: Self.timestampHeader, value: "\(timestamp)")
    request.headers.add(name: Self.nonceHeader, value: nonce)
    request.headers.add(
      name: Self.signatureHeader, value: SandboxCallbackSignature.sign(body: body, secret: secret, timestamp: timestamp, nonce: nonce))
    request.body = .bytes(ByteBuffer(bytes: body))
    do {
      let response = try await Self.callbackClient.execute(request, timeout: .seconds(10))
      _ = try? await response.body.collect(upTo: 64 * 1024)
      return (200..<300).contains(Int(response.status.code)) || response.status == .notFound
    } catch is CancellationError {
      throw CancellationError()
    } catch {
      return false
    }
  }
}
