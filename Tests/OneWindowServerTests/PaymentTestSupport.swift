import AsyncHTTPClient
import Foundation
import GRPCCore
import NIOCore
import NIOHTTP1
import OneWindowAPI
import OneWindowClientPosix
import OneWindowCore
import Testing

/// A `CaseWorld` whose item charges two fees (20.00 + 15.00 yuan), with payment helpers.
struct PaymentWorld {
  static let fees: [Onewindow_V1_FeeItem] = [
    .with { $0.name = "许可证工本费"; $0.amountFen = 2000; $0.legalBasis = "收费标准第 1 条" },
    .with { $0.name = "现场核查费"; $0.amountFen = 1500; $0.legalBasis = "收费标准第 2 条" },
  ]
  static let total: Int64 = 3500

  var world: CaseWorld
  var env: TestEnvironment { world.env }
  var api: Onewindow_V1_PaymentService.Client<PosixTransport> { .init(wrapping: env.clients.grpc) }

  static func make(_ env: TestEnvironment, start: Date = cst("2026-11-16T10:00:00+08:00")) async throws -> PaymentWorld {
    PaymentWorld(world: try await CaseWorld.make(env, start: start, fees: fees))
  }

  /// A submitted case of the citizen (or `token`'s account) and its fee order.
  func orderedCase(_ token: String? = nil, key: String = UUID().uuidString) async throws -> (caseID: String, order: Onewindow_V1_FeeOrder) {
    let token = token ?? world.citizen
    let submitted = try await world.submitCase(token).case
    let order = try await api.createOrder(.with { $0.caseID = submitted.id; $0.idempotencyKey = key }, metadata: bearer(token))
    return (submitted.id, order)
  }

  func pay(_ order: Onewindow_V1_FeeOrder, _ token: String? = nil, key: String = UUID().uuidString) async throws -> Onewindow_V1_Payment {
    try await api.createPayment(
      .with { $0.orderID = order.id; $0.amountFen = order.totalFen; $0.idempotencyKey = key }, metadata: bearer(token ?? world.citizen))
  }

  /// The payer submits `account` at the sandbox cashier.
  @discardableResult
  func authorise(_ payment: Onewindow_V1_Payment, account: String = SandboxAccounts.success) async throws -> HTTPReply {
    let path = try #require(payment.cashierURL.range(of: "/sandbox/cashier/")).lowerBound
    return try await httpRequest(
      .POST, port: env.httpPort, String(payment.cashierURL[path...]), headers: [("content-type", "application/json")],
      body: .bytes(ByteBuffer(string: "{\"account\":\"\(account)\"}")))
  }

  func payment(_ id: String, _ token: String? = nil) async throws -> Onewindow_V1_Payment {
    try await api.getPayment(.with { $0.paymentID = id }, metadata: bearer(token ?? world.admin))
  }

  /// Waits (real time: the sandbox's callbacks are real HTTP requests) until the payment is in `state`.
  func waitFor(_ id: String, _ state: Onewindow_V1_PaymentState, limit: Duration = .seconds(15)) async throws -> Onewindow_V1_Payment {
    var last = try await payment(id)
    let ok = try await eventually(limit) {
      last = try await payment(id)
      return last.state == state
    }
    #expect(ok, "payment \(id) stayed \(last.state) instead of \(state)")
    return last
  }

  /// The sandbox's callback secret (it lives in the data directory).
  func secret() throws -> String {
    let path = (env.app.config.dataDirectory as NSString).appendingPathComponent("sandbox-callback.secret")
    return try String(contentsOfFile: path, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
  }

  /// Sends a callback as the sandbox would, signed with `secret` (default: the real one) at
  /// `timestamp` (default: the server's clock).
  func callback(
    _ payment: Onewindow_V1_Payment, status: String, notificationID: String = "ntf_" + UUID().uuidString,
    timestamp: Int64? = nil, secret overridingSecret: String? = nil, nonce: String = UUID().uuidString
  ) async throws -> HTTPReply {
    let body = Array(
      "{\"notification_id\":\"\(notificationID)\",\"payment_id\":\"\(payment.id)\",\"reference\":\"\(payment.providerReference)\",\"status\":\"\(status)\"}".utf8)
    let t = timestamp ?? Int64(env.clock.now().timeIntervalSince1970)
    let signature = SandboxCallbackSignature.sign(body: body, secret: try overridingSecret ?? secret(), timestamp: t, nonce: nonce)
    return try await httpRequest(
      .POST, port: env.httpPort, "/callbacks/sandbox",
      headers: [
        ("content-type", "application/json"), ("x-sandbox-timestamp", "\(t)"), ("x-sandbox-nonce", nonce),
        ("x-sandbox-signature", signature),
      ],
      body: .bytes(ByteBuffer(bytes: body)))
  }

  func ledgerCheck() async throws -> Onewindow_V1_CheckLedgerResponse {
    try await api.checkLedger(.init(), metadata: bearer(world.admin))
  }
}
