import GRPCCore
import OneWindowAPI
import Synchronization

/// The standard `grpc.health.v1.Health` service, so load balancers, Kubernetes probes and
/// grpc_health_probe can check the server. The empty service name is the whole server.
public final class HealthService: Grpc_Health_V1_Health.SimpleServiceProtocol, Sendable {
  public typealias Status = Grpc_Health_V1_HealthCheckResponse.ServingStatus

  private struct State {
    var statuses: [String: Status] = [:]
    var watchers: [UInt64: (service: String, continuation: AsyncStream<Status>.Continuation)] = [:]
    var nextWatcher: UInt64 = 0
  }

  private let state = Mutex(State())

  public init(services: [String]) {
    state.withLock { s in
      s.statuses[""] = .serving
      for name in services { s.statuses[name] = .serving }
    }
  }

  /// Changes a service's status and tells every watcher of it.
  public func set(_ status: Status, for service: String = "") {
    let targets = state.withLock { s -> [AsyncStream<Status>.Continuation] in
      s.statuses[service] = status
      return s.watchers.values.filter { $0.service == service }.map(\.continuation)
    }
    for c in targets { c.yield(status) }
  }

  /// Whether the whole server (the empty service name) is SERVING; `/healthz` answers from it.
  public var isServing: Bool {
    state.withLock { $0.statuses[""] == .serving }
  }

  /// Marks everything NOT_SERVING (graceful shutdown has begun) and ends the watches.
  public func shutDown() {
    let all = state.withLock { s -> [AsyncStream<Status>.Continuation] in
      for key in s.statuses.keys { s.statuses[key] = .notServing }
      defer { s.watchers.removeAll() }
      return s.watchers.values.map(\.continuation)
    }
    for c in all {
      c.yield(.notServing)
      c.finish()
    }
  }

  public func check(
    request: Grpc_Health_V1_HealthCheckRequest, context: ServerContext
  ) async throws -> Grpc_Health_V1_HealthCheckResponse {
    guard let status = state.withLock({ $0.statuses[request.service] }) else {
      throw RPCError(code: .notFound, message: "unknown service '\(request.service)'")
    }
    return .with { $0.status = status }
  }

  public func watch(
    request: Grpc_Health_V1_HealthCheckRequest, response: RPCWriter<Grpc_Health_V1_HealthCheckResponse>,
    context: ServerContext
  ) async throws {
    let (stream, continuation) = AsyncStream.makeStream(of: Status.self, bufferingPolicy: .bufferingNewest(1))
    let id = state.withLock { s -> UInt64 in
      s.nextWatcher += 1
      s.watchers[s.nextWatcher] = (request.service, continuation)
      continuation.yield(s.statuses[request.service] ?? .serviceUnknown)
      return s.nextWatcher
    }
    defer { _ = state.withLock { $0.watchers.removeValue(forKey: id) } }
    try await withRPCCancellationHandler {
      var last: Status?
      for await status in stream where status != last {
        last = status
        try await response.write(.with { $0.status = status })
      }
    } onCancelRPC: {
      continuation.finish()
    }
  }
}
