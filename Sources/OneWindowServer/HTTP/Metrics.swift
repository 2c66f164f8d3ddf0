import GRPCCore
import Metrics
import Prometheus
import Synchronization

/// The process-wide Prometheus registry behind `GET /metrics`.
///
/// The library never bootstraps the process's metrics system: the executable (or a test
/// harness) calls `bootstrapMetricsSystem()` once, so swift-metrics reports — the server's
/// counters and those of libraries such as postgres-nio — land in this registry. (Deliberately a
/// final class rather than a `static let` holding a `Mutex` of a struct, which a Swift 6.3.1
/// release build miscompiled.)
public final class ServerMetrics: Sendable {
  public static let shared = ServerMetrics()

  public let registry: PrometheusCollectorRegistry

  private init() {
    registry = PrometheusCollectorRegistry()
  }

  /// Makes this registry the process's swift-metrics backend. `MetricsSystem.bootstrap` may run
  /// only once per process, yet tests start many servers in one: the bootstrap sits in the
  /// initializer of a `static let`, which Swift runs exactly once, thread-safely.
  public static func bootstrapMetricsSystem() {
    _ = bootstrapped
  }

  private static let bootstrapped: Bool = {
    MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: shared.registry))
    return true
  }()

  /// The Prometheus text exposition format (version 0.0.4) of everything registered.
  public func exposition() -> [UInt8] {
    registry.emitToBuffer()
  }
}

/// Counts every RPC by method and final status code and times it.
///
/// Placed before `StatusInterceptor` in the server's list (so it wraps it): domain errors are
/// already mapped to their gRPC codes when they reach it. Server-streaming RPCs are counted when
/// their stream ends, with the code they ended with. Labels stay bounded: interceptors only run
/// for registered methods, and codes are the 17 gRPC codes; nothing from the caller is a label.
struct MetricsInterceptor: ServerInterceptor {
  /// 1 ms to 10 s: unary calls take milliseconds; uploads, pushes and streams take longer.
  static let buckets: [Duration] = [
    .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
    .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5),
    .seconds(10),
  ]

  private let instruments: Instruments

  /// Tests pass a registry of their own; the server uses the process-wide one.
  init(registry: PrometheusCollectorRegistry = ServerMetrics.shared.registry) {
    instruments = Instruments(registry: registry)
  }

  func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingServerRequest<Input>,
    context: ServerContext,
    next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
  ) async throws -> StreamingServerResponse<Output> {
    let start = ContinuousClock.now
    let method = "/" + context.descriptor.fullyQualifiedMethod
    let instruments = self.instruments
    @Sendable func finish(_ error: (any Error)?) {
      instruments.record(method: method, code: Self.codeName(error), duration: ContinuousClock.now - start)
    }
    var response: StreamingServerResponse<Output>
    do {
      response = try await next(request, context)
    } catch {
      finish(error)
      throw error
    }
    switch response.accepted {
    case .success(var contents):
      let producer = contents.producer
      contents.producer = { writer in
        do {
          let trailers = try await producer(writer)
          finish(nil)
          return trailers
        } catch {
          finish(error)
          throw error
        }
      }
      response.accepted = .success(contents)
    case .failure(let error):
      finish(error)
    }
    return response
  }

  /// The status name gRPC itself uses (`OK`, `INVALID_ARGUMENT`, …); anything that is not an
  /// RPC error reaches the client as UNKNOWN, so it is counted as that.
  static func codeName(_ error: (any Error)?) -> String {
    guard let error else { return "OK" }
    let code: RPCError.Code
    if let e = error as? RPCError {
      code = e.code
    } else if let e = error as? any RPCErrorConvertible {
      code = e.rpcErrorCode
    } else {
      code = .unknown
    }
    switch code {
    case .cancelled: return "CANCELLED"
    case .unknown: return "UNKNOWN"
    case .invalidArgument: return "INVALID_ARGUMENT"
    case .deadlineExceeded: return "DEADLINE_EXCEEDED"
    case .notFound: return "NOT_FOUND"
    case .alreadyExists: return "ALREADY_EXISTS"
    case .permissionDenied: return "PERMISSION_DENIED"
    case .resourceExhausted: return "RESOURCE_EXHAUSTED"
    case .failedPrecondition: return "FAILED_PRECONDITION"
    case .aborted: return "ABORTED"
    case .outOfRange: return "OUT_OF_RANGE"
    case .unimplemented: return "UNIMPLEMENTED"
    case .internalError: return "INTERNAL"
    case .unavailable: return "UNAVAILABLE"
    case .dataLoss: return "DATA_LOSS"
    case .unauthenticated: return "UNAUTHENTICATED"
    default: return "UNKNOWN"
    }
  }

  /// Looks each series up in the registry once and keeps it: the registry takes a lock and
  /// hashes the labels on every lookup.
  final class Instruments: Sendable {
    private let registry: PrometheusCollectorRegistry
    private let cache = Mutex<(counters: [String: Prometheus.Counter], histograms: [String: DurationHistogram])>(([:], [:]))

    init(registry: PrometheusCollectorRegistry) {
      self.registry = registry
    }

    func record(method: String, code: String, duration: Duration) {
      let (counter, histogram) = cache.withLock { c -> (Prometheus.Counter, DurationHistogram) in
        let counterKey = method + " " + code
        let counter: Prometheus.Counter
        if let existing = c.counters[counterKey] {
          counter = existing
        } else {
          counter = registry.makeCounter(
            descriptor: MetricNameDescriptor(
              namespace: "onewindow", subsystem: "grpc", metricName: "requests", unitName: "total",
              helpText: "gRPC calls handled, by method and final status code."),
            labels: [("method", method), ("code", code)])
          c.counters[counterKey] = counter
        }
        let histogram: DurationHistogram
        if let existing = c.histograms[method] {
          histogram = existing
        } else {
          histogram = registry.makeDurationHistogram(
            descriptor: MetricNameDescriptor(
              namespace: "onewindow", subsystem: "grpc", metricName: "request_duration", unitName: "seconds",
              helpText: "Time from receiving a gRPC call to its final status, by method."),
            labels: [("method", method)], buckets: MetricsInterceptor.buckets)
          c.histograms[method] = histogram
        }
        return (counter, histogram)
      }
      counter.increment()
      histogram.record(duration)
    }
  }
}
