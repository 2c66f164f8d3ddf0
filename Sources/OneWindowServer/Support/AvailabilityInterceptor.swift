import GRPCCore
import OneWindowAPI

/// While this node cannot reach its database (`DatabaseReadiness`), calls are answered
/// UNAVAILABLE at once, so callers retry (through the load balancer, on a node that can answer)
/// instead of waiting for a database connection until their deadline. The health service
/// still answers: it is how balancers learn the node is NOT_SERVING.
struct AvailabilityInterceptor: ServerInterceptor {
  let health: HealthService

  static let unreachable = RPCError(
    code: .unavailable, message: "this server cannot reach its database right now; retry shortly")

  func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingServerRequest<Input>,
    context: ServerContext,
    next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
  ) async throws -> StreamingServerResponse<Output> {
    if health.obstacle == .databaseUnreachable, context.descriptor.service != Grpc_Health_V1_Health.descriptor {
      throw Self.unreachable
    }
    return try await next(request, context)
  }
}
