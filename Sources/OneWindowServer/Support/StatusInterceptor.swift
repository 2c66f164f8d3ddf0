import GRPCCore
import Logging
import OneWindowCore
import OneWindowStore
import SwiftProtobuf

/// Outermost interceptor but for `MetricsInterceptor`, which wraps it to count final codes: turns
/// domain errors into gRPC statuses with actionable messages, and logs one line per RPC (method,
/// status, duration; never payloads or metadata, which may carry personal data or credentials).
/// An unexpected error becomes INTERNAL with a reference id that matches the log line, so details
/// never leak to callers.
struct StatusInterceptor: ServerInterceptor {
  let logger: Logger

  func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingServerRequest<Input>,
    context: ServerContext,
    next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
  ) async throws -> StreamingServerResponse<Output> {
    let start = ContinuousClock.now
    let method = context.descriptor.fullyQualifiedMethod
    let logger = self.logger
    let requestType: Any.Type = Input.self
    @Sendable func finish(_ error: (any Error)?) -> RPCError? {
      let mapped = error.map { Self.map($0, method: method, requestType: requestType, logger: logger) }
      if logger.logLevel <= .debug {
        let elapsed = (ContinuousClock.now - start).components
        let ms = Double(elapsed.seconds) * 1000 + Double(elapsed.attoseconds) / 1e15
        let code = mapped?.code.description ?? "ok"
        logger.debug("rpc", metadata: ["method": "\(method)", "code": "\(code)", "ms": "\(Int(ms.rounded()))"])
      }
      return mapped
    }
    var response: StreamingServerResponse<Output>
    do {
      response = try await next(request, context)
    } catch {
      throw finish(error) ?? error
    }
    switch response.accepted {
    case .success(var contents):
      let producer = contents.producer
      contents.producer = { writer in
        do {
          let trailers = try await producer(writer)
          _ = finish(nil)
          return trailers
        } catch {
          throw finish(error) ?? error
        }
      }
      response.accepted = .success(contents)
    case .failure(let error):
      response.accepted = .failure(finish(error) ?? error)
    }
    return response
  }

  static func map(_ error: any Error, method: String, requestType: Any.Type, logger: Logger) -> RPCError {
    switch error {
    case let e as RPCError:
      // GRPCCore's interceptor chain wraps an error thrown by an inner layer (the handler, or a
      // later interceptor) as UNKNOWN with the original as its cause: map the original.
      if e.code == .unknown, let cause = e.cause { return map(cause, method: method, requestType: requestType, logger: logger) }
      // The protobuf deserializer's own message names Swift types: say it in the API's terms.
      if e.code == .invalidArgument, let cause = e.cause as? BinaryDecodingError {
        let name = (requestType as? any SwiftProtobuf.Message.Type)?.protoMessageName ?? "request message"
        return RPCError(code: .invalidArgument, message: undecodable(name, cause))
      }
      return e
    case let e as ValidationError:
      return RPCError(code: .invalidArgument, message: e.description)
    case let e as PermissionDenied:
      return RPCError(code: .permissionDenied, message: e.message)
    case let e as PreconditionFailed:
      return RPCError(code: .failedPrecondition, message: e.message)
    case let e as CaseTransitionError:
      return RPCError(code: .failedPrecondition, message: e.description)
    case let e as StoreError:
      switch e {
      case .notFound(let what): return RPCError(code: .notFound, message: "\(what) not found")
      case .alreadyExists(let field): return RPCError(code: .alreadyExists, message: "\(field): already registered")
      case .versionConflict(let current):
        return RPCError(
          code: .aborted, message: "version conflict: it is now at version \(current); re-read it and retry",
          metadata: ["current-version": "\(current)"])
      case .failedPrecondition(let why): return RPCError(code: .failedPrecondition, message: why)
      case .permissionDenied(let why): return RPCError(code: .permissionDenied, message: why)
      case .conflict(let why): return RPCError(code: .alreadyExists, message: why)
      case .unavailable(let why): return RPCError(code: .unavailable, message: why)
      }
    case is CancellationError:
      return RPCError(code: .cancelled, message: "the call was cancelled")
    default:
      let reference = ULID.make()
      logger.error("unexpected error", metadata: [
        "method": "\(method)", "reference": "\(reference)", "error": "\(String(reflecting: type(of: error)))",
      ])
      return RPCError(code: .internalError, message: "internal error (reference \(reference)); the operators have the details")
    }
  }

  /// Why a request message could not be decoded, naming its protobuf type.
  static func undecodable(_ requestType: String, _ cause: BinaryDecodingError) -> String {
    let why: String
    switch cause {
    case .truncated: why = "it ends in the middle of a field"
    case .invalidUTF8: why = "a string field is not valid UTF-8"
    case .messageDepthLimit: why = "it nests messages more than 100 levels deep"
    default: why = "it is not valid protobuf wire format"
    }
    return "the request is not a valid \(requestType): \(why)"
  }
}
