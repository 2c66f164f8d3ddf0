import GRPCCore
import OneWindowCore

/// The caller of the RPC being handled, set by `AuthInterceptor` for the handler's task (and for
/// streaming response bodies, which run later).
public enum RequestContext {
  @TaskLocal public static var principal: Principal?

  /// The caller; only valid on RPCs the policy marks as needing a login.
  static func requirePrincipal() throws -> Principal {
    guard let principal else { throw RPCError(code: .unauthenticated, message: "log in first: this call needs an access token") }
    return principal
  }

  /// The caller, who must hold one of `roles`.
  static func require(_ roles: Set<Role>) throws -> Principal {
    let p = try requirePrincipal()
    guard roles.contains(p.role) else {
      throw RPCError(code: .permissionDenied, message: "this call is for \(roles.map(\.rawValue).sorted().joined(separator: " or ")) accounts")
    }
    return p
  }
}
