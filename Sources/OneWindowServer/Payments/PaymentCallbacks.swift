import Foundation
import Logging
import Metrics
import OneWindowCore

/// `POST /callbacks/<provider>` on the HTTP listener. The order of checks is the point: the
/// signature and timestamp are verified before the body is trusted for anything; an unknown
/// payment gets 404 with nothing written; a replayed notification id is acknowledged and
/// changes nothing; a success is confirmed with the provider before it is applied (`PaymentDesk`).
struct PaymentCallbacks {
  let desk: PaymentDesk
  let clock: any WallClock
  let logger: Logger

  var route: HTTPRoute {
    HTTPRoute(method: "POST", path: "/callbacks/{provider}") { request in await handle(request) }
  }

  func handle(_ request: HTTPRequestData) async -> HTTPResponseData {
    let response = await answer(request)
    Counter(label: "onewindow_payment_callbacks_total", dimensions: [("status", String(response.status))]).increment()
    return response
  }

  private func answer(_ request: HTTPRequestData) async -> HTTPResponseData {
    guard request.parameters["provider"] == desk.provider.name else { return .text(404, "no such payment provider\n") }
    let callback: ProviderCallback
    do {
      callback = try desk.provider.verifyCallback(headers: request.headers, body: request.body, now: clock.now())
    } catch {
      logger.warning("payment callback refused", metadata: ["provider": "\(desk.provider.name)", "why": "\(error.description)"])
      return .text(error.status, error.description + "\n")
    }
    do {
      guard let result = try await desk.handle(callback) else { return .text(404, "no such payment\n") }
      switch result {
      case .duplicateNotification: return .json(200, ["result": "duplicate"])
      case .applied(let payment, let transition):
        let outcome = switch transition {
        case .moved: "applied"
        case .ignored: "ignored"
        case .refused: "refused"
        }
        return .json(200, ["result": outcome, "state": payment.state.rawValue])
      }
    } catch {
      logger.error("payment callback failed", metadata: ["error": "\(String(reflecting: type(of: error)))"])
      // 5xx: the provider retries later, which is what we want after a transient failure.
      return .text(503, "temporarily unable to process the callback\n")
    }
  }
}
