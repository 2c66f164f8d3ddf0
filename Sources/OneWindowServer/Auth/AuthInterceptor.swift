import GRPCCore
import OneWindowCore
import OneWindowStore

/// Resolves `authorization: Bearer <token>` to a principal and enforces `AccessPolicy` on every
/// RPC. Missing or invalid credentials → UNAUTHENTICATED; wrong role → PERMISSION_DENIED.
/// A token that is sent but invalid is refused even on public RPCs, so a client learns at once
/// that it must refresh.
struct AuthInterceptor: ServerInterceptor {
  let identity: any IdentityStore
  let clock: any WallClock

  func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingServerRequest<Input>,
    context: ServerContext,
    next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
  ) async throws -> StreamingServerResponse<Output> {
    guard let access = AccessPolicy.access(for: context.descriptor) else {
      throw RPCError(code: .permissionDenied, message: "\(context.descriptor.fullyQualifiedMethod) is not open to callers")
    }
    let principal = try await resolve(request.metadata)
    switch access {
    case .public:
      break
    case .authenticated:
      guard principal != nil else { throw Self.missingToken }
    case .roles(let roles):
      guard let principal else { throw Self.missingToken }
      guard roles.contains(principal.role) else {
        throw RPCError(
          code: .permissionDenied,
          message: "\(context.descriptor.method) is for \(roles.map(\.rawValue).sorted().joined(separator: " or ")) accounts")
      }
    }
    guard let principal else { return try await next(request, context) }
    var response = try await RequestContext.$principal.withValue(principal) { try await next(request, context) }
    response.carrying(RequestContext.$principal, principal)
    return response
  }

  static let missingToken = RPCError(
    code: .unauthenticated, message: "missing access token: send 'authorization: Bearer <access_token>'")

  func resolve(_ metadata: Metadata) async throws -> Principal? {
    var headers = metadata[stringValues: "authorization"].makeIterator()
    guard let header = headers.next() else { return nil }
    let prefix = "Bearer "
    guard header.count > prefix.count, header.prefix(prefix.count).lowercased() == prefix.lowercased() else {
      throw RPCError(code: .unauthenticated, message: "authorization metadata must be 'Bearer <access_token>'")
    }
    let token = String(header.dropFirst(prefix.count))
    guard OpaqueToken.isWellFormed(token, prefix: OpaqueToken.accessPrefix),
          let principal = try await identity.authenticate(accessHash: OpaqueToken.hash(token), now: clock.now())
    else {
      throw RPCError(code: .unauthenticated, message: "access token is invalid or expired: refresh the session or log in again")
    }
    return principal
  }
}
