import GRPCCore
import OneWindowCore

/// Resolves each call's caller address once (`ClientAddresses`: the peer, or the caller a
/// trusted proxy names) and makes it `CallerAddress.current` for the handler and its streaming
/// body: the address per-address limits count and audit entries record.
struct ClientAddressInterceptor: ServerInterceptor {
  let clients: ClientAddresses

  func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingServerRequest<Input>,
    context: ServerContext,
    next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
  ) async throws -> StreamingServerResponse<Output> {
    let address = clients.grpcCaller(remotePeer: context.remotePeer, metadata: request.metadata)
    var response = try await CallerAddress.$current.withValue(address) { try await next(request, context) }
    response.carrying(CallerAddress.$current, address)
    return response
  }
}
