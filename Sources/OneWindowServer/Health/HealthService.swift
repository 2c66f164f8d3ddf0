import GRPCCore
import OneWindowAPI
import Synchronization

/// The standard `grpc.health.v1.Health` service, so load balancers, Kubernetes probes and
/// grpc_health_probe can check the server. The empty service name is the whole server.
///
/// Every service is SERVING while the node can do its work: NOT_SERVING while the database does
/// not answer (`DatabaseReadiness`) and from the start of a graceful shutdown (draining) on,
/// so a load balancer sends work elsewhere; SERVING again once the database answers.
public final class HealthService: Grpc_Health_V1_Health.SimpleServiceProtocol, Sendable {
  public typealias Status = Grpc_Health_V1_HealthCheckResponse.ServingStatus

  /// Why the node is not serving, for `/readyz` and logs.
  public enum Obstacle: String, Sendable {
    case databaseUnreachable = "database unreachable"
    case draining = "draining"
  }

  private struct State {
    var statuses: [String: Status] = [:]
    var watchers: [UInt64: (service: String, continuation: AsyncStream<Status>.Continuation)] = [:]
    var nextWatcher: UInt64 = 0
    var draining = false
    var databaseReachable = true

    var obstacle: Obstacle? { draining ? .draining : databaseReachable ? nil : .databaseUnreachable }
  }

  private let state = Mutex(State())

  public init(services: [String]) {
    state.withLock { s in
      s.statuses[""] = .serving
      for name in services { s.statuses[name] = .serving }
    }
  }

  /// Whether the whole server (the empty service name) is SERVING; `/readyz` answers from it.
  public var isServing: Bool {
    state.withLock { $0.statuses[""] == .serving }
  }

  /// Why it is not serving; nil while it is.
  public var obstacle: Obstacle? {
    state.withLock { $0.obstacle }
  }

  /// Records whether the database answers; every service follows (unless draining).
  public func setDatabaseReachable(_ reachable: Bool) {
    update { $0.databaseReachable = reachable }
  }

  /// Applies `change`, then sets every service's status from the state and tells the watchers
  /// of those that changed.
  private func update(_ change: (inout State) -> Void) {
    let targets = state.withLock { s -> [(AsyncStream<Status>.Continuation, Status)] in
      change(&s)
      let status: Status = s.obstacle == nil ? .serving : .notServing
      var changed: Set<String> = []
      for (name, old) in s.statuses where old != status {
        s.statuses[name] = status
        changed.insert(name)
      }
      return s.watchers.values.filter { changed.contains($0.service) }.map { ($0.continuation, status) }
    }
    for (c, status) in targets { c.yield(status) }
  }

  /// Marks everything NOT_SERVING for good (graceful shutdown has begun) and ends the watches.
  public func shutDown() {
    update { $0.draining = true }
    let all = state.withLock { s -> [AsyncStream<Status>.Continuation] in
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
