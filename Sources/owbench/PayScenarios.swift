import AsyncHTTPClient
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import NIOCore
import OneWindowAPI
import OneWindowClientPosix
import OneWindowCore
import Synchronization

typealias PaymentClient = Onewindow_V1_PaymentService.Client<HTTP2ClientTransport.Posix>

/// The payment workload (docs/payments.md) against the sandbox provider.
///
/// - pay: one call is a whole payment of a case's fee: CreateOrder, CreatePayment, the payer's
///   POST to the sandbox cashier (the success account), then GetPayment until the provider's
///   callback has been received, confirmed with the provider and applied (SUCCESS with a
///   receipt). The cases are submitted by the setup (`--pay-cases`, default 8 000; each case is
///   paid once), so the figure is payments, not applications.
extension Scenarios {
  /// A demo item for citizens with a fee and a form without patterns.
  static let payItemCode = "SF-GA-0003"

  static let pay = Scenario(name: "pay") { client in
    let account = try await BenchAccount.register(client)
    let item = try await Onewindow_V1_CatalogService.Client(wrapping: client).getItem(.with { $0.code = payItemCode })
    guard item.spec.fees.contains(where: { $0.amountFen > 0 }) else { throw BenchError("pay: \(payItemCode) charges no fee") }
    let form = try benchForm(item.spec.formSchema.fields)
    let devices = DevicePool(role: "pay")
    let wanted = PayBench.cases
    let cases = CasePool()
    // Submit the pool with 32 applications in flight.
    try await withThrowingTaskGroup(of: Void.self) { group in
      for worker in 0..<32 {
        let share = wanted / 32 + (worker < wanted % 32 ? 1 : 0)
        group.addTask {
          for _ in 0..<share {
            let metadata = try await account.metadata(client)
            let submitted = try await submitBenchCase(client, item: item, form: form, devices: devices, metadata: metadata)
            cases.add(submitted.id)
          }
        }
      }
      try await group.waitForAll()
    }
    return PreparedScenario { client, _ in
      guard let caseID = cases.take() else {
        throw BenchError("pay: all \(wanted) prepared cases are paid; raise --pay-cases")
      }
      let metadata = try await account.metadata(client)
      let api = PaymentClient(wrapping: client)
      let order = try await api.createOrder(.with { $0.caseID = caseID; $0.idempotencyKey = UUID().uuidString }, metadata: metadata)
      let payment = try await api.createPayment(
        .with { $0.orderID = order.id; $0.amountFen = order.totalFen; $0.idempotencyKey = UUID().uuidString }, metadata: metadata)
      var request = HTTPClientRequest(url: payment.cashierURL)
      request.method = .POST
      request.headers.add(name: "content-type", value: "application/json")
      request.body = .bytes(ByteBuffer(string: "{\"account\":\"\(SandboxAccounts.success)\"}"))
      let response = try await PayBench.cashierClient.execute(request, timeout: .seconds(10))
      _ = try await response.body.collect(upTo: 64 * 1024)
      guard response.status.code == 202 else { throw CheckFailure("pay: the cashier answered \(response.status.code)") }
      let deadline = ContinuousClock.now + .seconds(10)
      // A real app would wait on its inbox stream; polling with backoff keeps the bench's own
      // reads a small share of the server's work.
      var delay = Duration.milliseconds(5)
      while ContinuousClock.now < deadline {
        let current = try await api.getPayment(.with { $0.paymentID = payment.id }, metadata: metadata)
        switch current.state {
        case .success:
          guard !current.receiptNumber.isEmpty else { throw CheckFailure("pay: a successful payment has no receipt") }
          return
        case .submitted, .started, .created: break
        default: throw CheckFailure("pay: the payment ended \(current.state) \(current.code)")
        }
        try await Task.sleep(for: delay)
        delay = min(delay * 2, .milliseconds(100))
      }
      throw CheckFailure("pay: the provider's callback was not applied within 10 s")
    }
  }
}

enum PayBench {
  /// One connection per concurrent payer (the shared client keeps 8 per host). Never shut down.
  static let cashierClient: HTTPClient = {
    var configuration = HTTPClient.Configuration()
    configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 256)
    return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
  }()

  /// Cases the `pay` setup submits (`--pay-cases`).
  static var cases: Int { settings.state.withLock { $0 } }
  static let settings = PayBenchSettings()
}

/// A class holding the setting (see `NotifyBenchSettings` for why not a global Mutex).
final class PayBenchSettings: Sendable {
  let state: Mutex<Int>
  init() { state = Mutex(8000) }
}

/// Submitted cases not paid yet.
final class CasePool: Sendable {
  private let ids = Mutex<[String]>([])
  func add(_ id: String) { ids.withLock { $0.append(id) } }
  func take() -> String? { ids.withLock { $0.popLast() } }
}
