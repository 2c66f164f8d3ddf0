import GRPCCore

/// Per-call metadata carrying a bearer token.
public func bearer(_ token: String?) -> Metadata {
  guard let token, !token.isEmpty else { return [:] }
  return ["authorization": "Bearer \(token)"]
}

extension RPCError.Code {
  /// The canonical gRPC name, e.g. `PERMISSION_DENIED`.
  public var canonicalName: String {
    switch self {
    case .cancelled: "CANCELLED"
    case .unknown: "UNKNOWN"
    case .invalidArgument: "INVALID_ARGUMENT"
    case .deadlineExceeded: "DEADLINE_EXCEEDED"
    case .notFound: "NOT_FOUND"
    case .alreadyExists: "ALREADY_EXISTS"
    case .permissionDenied: "PERMISSION_DENIED"
    case .resourceExhausted: "RESOURCE_EXHAUSTED"
    case .failedPrecondition: "FAILED_PRECONDITION"
    case .aborted: "ABORTED"
    case .outOfRange: "OUT_OF_RANGE"
    case .unimplemented: "UNIMPLEMENTED"
    case .internalError: "INTERNAL"
    case .unavailable: "UNAVAILABLE"
    case .dataLoss: "DATA_LOSS"
    case .unauthenticated: "UNAUTHENTICATED"
    default: "CODE_\(rawValue)"
    }
  }
}
