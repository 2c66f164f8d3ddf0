import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// The server's second, plain-HTTP/1.1 listener (Hummingbird), for what speaks HTTP rather than
/// gRPC: load balancer and Kubernetes probes (`/healthz`), Prometheus scrapes (`/metrics`) and
/// routes other modules plug in as `HTTPRoute`s (payment provider callbacks, for instance).
///
/// Request bodies are collected up to `maxBodyBytes` (413 beyond, judged from Content-Length when
/// the client sends one, so an oversized body is refused before it is read); unknown paths are
/// 404. Handlers cannot throw, and a response they build with an impossible status or header is
/// repaired instead of trapping, so no route can take the server down. Connections are capped in
/// all and per address, and a request must finish its headers and body within deadlines
/// (`GuardedHTTP1Channel`, `HTTPRequestDeadlines`), so a slow or hostile client cannot hold
/// connections open.
///
/// It runs once: `run()` serves until `stop()` (or a graceful shutdown of the `ServiceGroup` it
/// runs in) and then lets in-flight requests finish.
final class HTTPListener: Service, Sendable {
  /// Largest request body a route receives.
  static let maxBodyBytes = 64 * 1024

  private let host: String
  private let port: Int
  private let routes: [HTTPRoute]
  private let logger: Logger
  private let limits: Limits
  private let connections: ConnectionLimiter
  private let clients: ClientAddresses
  private let stopSignal = AsyncStream.makeStream(of: Void.self)
  private let state = Mutex(State())

  private struct State {
    var started = false
    var stopRequested = false
    var bound: Result<Int, any Error>?
    var waiters: [CheckedContinuation<Int, any Error>] = []
  }

  enum ListenerError: Error, CustomStringConvertible {
    case notListening
    case noPort

    var description: String {
      switch self {
      case .notListening: "the HTTP listener stopped before it was listening"
      case .noPort: "the HTTP listener is not bound to an IP port"
      }
    }
  }

  /// Connection caps and request deadlines (see `HTTPRequestDeadlines`).
  struct Limits: Sendable {
    var connections = ConnectionLimiter.Limits(total: 10_000, perAddress: 200)
    var deadlines = HTTPRequestDeadlines.Timeouts(headers: .seconds(10), bodyIdle: .seconds(10), bodyTotal: .seconds(60))
    var idleTimeout: TimeAmount = .seconds(60)
  }

  init(
    host: String, port: Int, routes: [HTTPRoute], limits: Limits = Limits(),
    clients: ClientAddresses = ClientAddresses(trusted: .none), logger: Logger
  ) {
    // Resolve names the way the gRPC transport does, so both listeners use the same interface.
    self.host = host == "localhost" ? "127.0.0.1" : host.trimmingCharacters(in: ["[", "]"])
    self.port = port
    self.routes = routes
    self.limits = limits
    self.logger = logger
    self.clients = clients
    connections = ConnectionLimiter(limits: limits.connections, listener: "http", logger: logger, trusted: clients.trusted)
  }

  /// Serves until `stop()` or the enclosing service group's graceful shutdown. Throws if the
  /// port cannot be bound.
  func run() async throws {
    let proceed = state.withLock { s -> Bool in
      defer { s.started = true }
      return !s.started && !s.stopRequested
    }
    defer { resolve(.failure(ListenerError.notListening)) }  // wakes port waiters if binding never happened
    guard proceed else { return }

    let application = Application(
      router: makeRouter(),
      server: GuardedHTTP1Channel.builder(limits: limits, connections: connections),
      configuration: ApplicationConfiguration(address: .hostname(host, port: port)),
      onServerRunning: { [self] channel in
        resolve(channel.localAddress?.port.map { .success($0) } ?? .failure(ListenerError.noPort))
      },
      logger: logger)
    // The application's own service group follows an enclosing group's graceful shutdown
    // (runUntilSignalled); this one also lets `stop()` end it when nothing encloses it (tests).
    let group = ServiceGroup(services: [application], logger: logger)
    let stopSignal = self.stopSignal.stream
    do {
      try await withThrowingTaskGroup(of: Bool.self) { tasks in
        tasks.addTask {
          try await group.run()
          return true
        }
        tasks.addTask {
          for await _ in stopSignal {}
          if !Task.isCancelled { await group.triggerGracefulShutdown() }
          return false
        }
        // Only the server's end ends the listener: after triggering the shutdown, the stop task
        // returns first while in-flight requests still finish.
        while let serverEnded = try await tasks.next() {
          if serverEnded { break }
        }
        tasks.cancelAll()
      }
    } catch {
      resolve(.failure(error))  // "address already in use" rather than a bare "not listening"
      throw error
    }
  }

  /// Begins a graceful stop: no new connections, in-flight requests finish. Idempotent; before
  /// `run()` it makes `run()` return at once.
  func stop() {
    state.withLock { $0.stopRequested = true }
    stopSignal.continuation.finish()
  }

  /// The bound port (useful with port 0). Waits until the listener is bound; throws if it stops
  /// or fails first.
  func listeningPort() async throws -> Int {
    try await withCheckedThrowingContinuation { (c: CheckedContinuation<Int, any Error>) in
      let known = state.withLock { s -> Result<Int, any Error>? in
        if let bound = s.bound { return bound }
        s.waiters.append(c)
        return nil
      }
      if let known { c.resume(with: known) }
    }
  }

  /// Records the first outcome (bound port or failure) and wakes everyone waiting for it.
  private func resolve(_ result: Result<Int, any Error>) {
    let waiters = state.withLock { s -> [CheckedContinuation<Int, any Error>] in
      guard s.bound == nil else { return [] }
      s.bound = result
      defer { s.waiters = [] }
      return s.waiters
    }
    for waiter in waiters { waiter.resume(with: result) }
  }

  private func makeRouter() -> Router<PeerRequestContext> {
    let router = Router(context: PeerRequestContext.self)
    for route in routes {
      guard let method = HTTPRequest.Method(route.method.uppercased()) else {
        logger.error("HTTP route skipped: invalid method", metadata: ["method": "\(route.method)", "path": "\(route.path)"])
        continue
      }
      let names = route.parameterNames
      let logger = self.logger
      let clients = self.clients
      router.on(RouterPath(route.path), method: method) { request, context -> Response in
        let caller = clients.httpCaller(peer: context.remoteAddress, forwardedFor: request.headers[values: HTTPField.Name.xForwardedFor])
        return await Self.respond(
          to: request, parameters: context.parameters, names: names, route: route, clientAddress: caller, logger: logger)
      }
    }
    return router
  }

  /// Collects the body, converts the request for the handler and its answer back.
  static func respond(
    to request: Request, parameters: Parameters, names: [String], route: HTTPRoute, clientAddress: String, logger: Logger
  ) async -> Response {
    if let declared = request.headers[.contentLength].flatMap({ Int($0) }), declared > maxBodyBytes {
      return response(from: .text(413, "request body larger than \(maxBodyBytes) bytes\n"), logger: logger)
    }
    let body: ByteBuffer
    do {
      body = try await request.body.collect(upTo: maxBodyBytes)
    } catch is NIOTooManyBytesError {
      return response(from: .text(413, "request body larger than \(maxBodyBytes) bytes\n"), logger: logger)
    } catch {
      return response(from: .text(400, "the request body could not be read\n"), logger: logger)
    }
    var headers: [String: String] = [:]
    for field in request.headers {
      let name = field.name.canonicalName  // already lowercase
      headers[name] = headers[name].map { $0 + ", " + field.value } ?? field.value
    }
    var values: [String: String] = [:]
    for name in names {
      guard let raw = parameters.get(name) else { continue }
      values[name] = raw.removingPercentEncoding ?? raw
    }
    let data = HTTPRequestData(
      method: request.method.rawValue, path: request.uri.path, query: request.uri.query ?? "", headers: headers,
      body: Array(buffer: body), parameters: values, clientAddress: clientAddress)
    return response(from: await route.handler(data), logger: logger)
  }

  /// Converts a handler's answer, replacing what `HTTPResponse` would trap on.
  static func response(from data: HTTPResponseData, logger: Logger) -> Response {
    guard (100...599).contains(data.status) else {
      logger.error("HTTP route answered an invalid status; sent 500 instead", metadata: ["status": "\(data.status)"])
      return response(from: .text(500, "internal error\n"), logger: logger)
    }
    var fields = HTTPFields()
    for (name, value) in data.headers.sorted(by: { $0.key < $1.key }) {
      guard let fieldName = HTTPField.Name(name) else {
        logger.error("HTTP route answered an invalid header name; dropped", metadata: ["header": "\(name)"])
        continue
      }
      if fieldName == .contentLength { continue }  // set from the body below
      fields.append(HTTPField(name: fieldName, value: value))
    }
    return Response(
      status: HTTPResponse.Status(code: data.status), headers: fields, body: ResponseBody(byteBuffer: ByteBuffer(bytes: data.body)))
  }
}

/// Hummingbird's request context plus the connection's peer, which `ClientAddresses` needs.
struct PeerRequestContext: Hummingbird.RequestContext {
  var coreContext: CoreRequestContextStorage
  let remoteAddress: NIOCore.SocketAddress?

  init(source: ApplicationRequestContextSource) {
    coreContext = .init(source: source)
    remoteAddress = source.channel.remoteAddress
  }
}

extension HTTPField.Name {
  static let xForwardedFor = HTTPField.Name("X-Forwarded-For")!
}

/// Hummingbird's HTTP/1.1 channel behind this listener's guards: a connection over the caps is
/// closed as soon as it is accepted, and every admitted one gets request deadlines (Hummingbird's
/// own idle timer restarts on every body part, so it cannot bound a trickled request).
struct GuardedHTTP1Channel: ServerChildChannel {
  typealias Value = HTTP1Channel.Value
  let inner: HTTP1Channel
  let connections: ConnectionLimiter
  let deadlines: HTTPRequestDeadlines.Timeouts

  static func builder(limits: HTTPListener.Limits, connections: ConnectionLimiter) -> HTTPServerBuilder {
    HTTPServerBuilder { responder in
      GuardedHTTP1Channel(
        inner: HTTP1Channel(responder: responder, configuration: .init(idleTimeout: limits.idleTimeout)),
        connections: connections, deadlines: limits.deadlines)
    }
  }

  func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
    // Refused connections are still set up (then closed), so the server's accept loop sees no error.
    let admitted = connections.guardConnection(channel)
    return inner.setup(channel: channel, logger: logger).flatMapThrowing { value in
      if admitted {
        let shared = HTTPRequestDeadlines(timeouts: deadlines)
        try channel.pipeline.syncOperations.addHandler(shared.rawBytes, position: .first)
        try channel.pipeline.syncOperations.addHandler(shared.parts, position: .before(try Self.consumer(of: channel)))
      }
      return value
    }
  }

  func handle(value: Value, logger: Logger) async {
    await inner.handle(value: value, logger: logger)
  }

  /// The handler the request parts go to last (Hummingbird's connection state handler), so the
  /// deadline handler sees decoded parts just before it.
  private static func consumer(of channel: any Channel) throws -> any ChannelHandler {
    try channel.pipeline.syncOperations.handler(type: HTTPConnectionStateHandler.self)
  }
}
