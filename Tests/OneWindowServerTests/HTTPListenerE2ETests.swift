import AsyncHTTPClient
import Foundation
import GRPCCore
import NIOCore
import NIOHTTP1
import OneWindowAPI
import OneWindowClientPosix
import OneWindowCore
import Prometheus
import Testing

@testable import OneWindowServer

#if canImport(Glibc)
import Glibc
#endif

/// One answer of the plain-HTTP listener, as a test reads it.
struct HTTPReply {
  let status: Int
  let headers: HTTPHeaders
  let body: [UInt8]

  var text: String { String(decoding: body, as: UTF8.self) }
}

/// Sends one request to the listener on `port` with the process-wide AsyncHTTPClient.
func httpRequest(
  _ method: HTTPMethod = .GET, port: Int, _ path: String, headers: [(String, String)] = [], body: HTTPClientRequest.Body? = nil
) async throws -> HTTPReply {
  var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
  request.method = method
  for (name, value) in headers { request.headers.add(name: name, value: value) }
  if let body { request.body = body }
  let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
  let bytes = try await response.body.collect(upTo: 4 * 1024 * 1024)
  return HTTPReply(status: Int(response.status.code), headers: response.headers, body: Array(buffer: bytes))
}

/// The value of the exposition line that starts with `series` (name and labels), if present.
func metricValue(_ exposition: String, _ series: String) -> Double? {
  exposition.split(separator: "\n").first { $0.hasPrefix(series + " ") }.flatMap { Double($0.dropFirst(series.count + 1)) }
}

/// Whether a TCP connection to 127.0.0.1:`port` is accepted right now.
func tcpConnects(port: Int) -> Bool {
  let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
  guard fd >= 0 else { return false }
  defer { close(fd) }
  var address = sockaddr_in()
  address.sin_family = sa_family_t(AF_INET)
  address.sin_addr.s_addr = inet_addr("127.0.0.1")
  address.sin_port = UInt16(port).bigEndian
  return withUnsafePointer(to: &address) {
    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
  }
}

/// What the echo route saw, sent back as JSON.
private struct EchoedRequest: Codable {
  let method: String
  let path: String
  let query: String
  let parameters: [String: String]
  let headers: [String: String]
  let body: String
}

/// Routes a test plugs into the listener the way other modules do.
private let testRoutes: [HTTPRoute] = [
  HTTPRoute(method: "POST", path: "/echo/{provider}/{reference}") { request in
    var answer = HTTPResponseData.json(
      201,
      EchoedRequest(
        method: request.method, path: request.path, query: request.query, parameters: request.parameters,
        headers: request.headers.filter { $0.key.hasPrefix("x-") }, body: String(decoding: request.body, as: UTF8.self)))
    answer.headers["x-body-bytes"] = "\(request.body.count)"
    answer.headers["bad header name"] = "dropped, not a crash"
    return answer
  },
  HTTPRoute(method: "GET", path: "/broken") { _ in HTTPResponseData(status: 42, body: Array("nonsense".utf8)) },
]

@Suite struct HTTPListenerE2ETests {
  @Test func healthzAnswersServingAsJSON() async throws {
    try await TestEnvironment.run { (env) async throws in
      #expect(env.httpPort > 0 && env.httpPort != env.port)
      let reply = try await httpRequest(port: env.httpPort, "/healthz")
      #expect(reply.status == 200)
      #expect(reply.headers.first(name: "content-type") == "application/json")
      #expect(reply.text == #"{"status":"SERVING"}"#)
    }
  }

  @Test func metricsCountTheRPCsJustMadeByMethodAndFinalCode() async throws {
    try await TestEnvironment.run { (env) async throws in
      #expect(try await env.health.check(.init()).status == .serving)
      // A domain validation error: the status interceptor maps it, and the count sees the mapped code.
      await expectRPCError(.invalidArgument) {
        try await env.identity.registerCitizen(.with { $0.name = "王五"; $0.phone = "12345"; $0.idNumber = "11010519491231002X" })
      }
      let reply = try await httpRequest(port: env.httpPort, "/metrics")
      #expect(reply.status == 200)
      #expect(reply.headers.first(name: "content-type")?.hasPrefix("text/plain; version=0.0.4") == true)
      let text = reply.text
      #expect(text.contains("# TYPE onewindow_grpc_requests_total counter"))
      #expect(text.contains("# TYPE onewindow_grpc_request_duration_seconds histogram"))
      let ok = metricValue(text, #"onewindow_grpc_requests_total{method="/grpc.health.v1.Health/Check",code="OK"}"#)
      #expect((ok ?? 0) >= 1, "\(text)")
      let invalid = metricValue(
        text, #"onewindow_grpc_requests_total{method="/onewindow.v1.IdentityService/RegisterCitizen",code="INVALID_ARGUMENT"}"#)
      #expect((invalid ?? 0) >= 1, "\(text)")
      let count = metricValue(text, #"onewindow_grpc_request_duration_seconds_count{method="/grpc.health.v1.Health/Check"}"#)
      #expect((count ?? 0) >= 1)
      #expect(text.contains(#"onewindow_grpc_request_duration_seconds_bucket{method="/grpc.health.v1.Health/Check",le="0.001"}"#))
      #expect(text.contains(#"onewindow_grpc_request_duration_seconds_bucket{method="/grpc.health.v1.Health/Check",le="10.0"}"#))
    }
  }

  @Test func unknownPathsAndMethodsAre404() async throws {
    try await TestEnvironment.run { (env) async throws in
      #expect(try await httpRequest(port: env.httpPort, "/no/such/path").status == 404)
      #expect(try await httpRequest(.GET, port: env.httpPort, "/echo/alipay/1").status == 404)
      #expect(try await httpRequest(.DELETE, port: env.httpPort, "/healthz").status == 404)
    }
  }

  @Test func aPluggedRouteReceivesParametersHeadersQueryAndBody() async throws {
    try await TestEnvironment.run(httpRoutes: testRoutes) { (env) async throws in
      let body = "amount=1200&sign=签名"
      let reply = try await httpRequest(
        .POST, port: env.httpPort, "/echo/alipay/ORDER%2042?notify=1&x=y",
        headers: [("X-Trace", "a"), ("x-trace", "b"), ("X-Signature", "t=1,v1=abc"), ("Content-Type", "text/plain")],
        body: .bytes(ByteBuffer(string: body)))
      #expect(reply.status == 201)
      #expect(reply.headers.first(name: "content-type") == "application/json")
      #expect(reply.headers.first(name: "x-body-bytes") == "\(Array(body.utf8).count)")
      #expect(!reply.headers.contains(name: "bad header name"))
      let echoed = try JSONDecoder().decode(EchoedRequest.self, from: Data(reply.body))
      #expect(echoed.method == "POST")
      #expect(echoed.path == "/echo/alipay/ORDER%2042")
      #expect(echoed.query == "notify=1&x=y")
      #expect(echoed.parameters == ["provider": "alipay", "reference": "ORDER 42"])
      #expect(echoed.headers == ["x-trace": "a, b", "x-signature": "t=1,v1=abc"])
      #expect(echoed.body == body)
      // Sorted keys: the JSON is stable byte for byte.
      #expect(reply.text.hasPrefix(#"{"body":"#))
    }
  }

  @Test func aRouteAnsweringAnImpossibleStatusGets500AndTheServerLivesOn() async throws {
    try await TestEnvironment.run(httpRoutes: testRoutes) { (env) async throws in
      #expect(try await httpRequest(port: env.httpPort, "/broken").status == 500)
      #expect(try await httpRequest(port: env.httpPort, "/healthz").status == 200)
    }
  }

  @Test func bodiesOver64KiBAre413WhetherDeclaredOrChunked() async throws {
    try await TestEnvironment.run(httpRoutes: testRoutes) { (env) async throws in
      let limit = 64 * 1024
      // Exactly the limit is accepted.
      let atLimit = try await httpRequest(
        .POST, port: env.httpPort, "/echo/p/r", body: .bytes(ByteBuffer(repeating: UInt8(ascii: "a"), count: limit)))
      #expect(atLimit.status == 201)
      #expect(atLimit.headers.first(name: "x-body-bytes") == "\(limit)")
      // One byte more with a Content-Length: refused before the body is read.
      let declared = try await httpRequest(
        .POST, port: env.httpPort, "/echo/p/r", body: .bytes(ByteBuffer(repeating: UInt8(ascii: "a"), count: limit + 1)))
      #expect(declared.status == 413)
      // Chunked, no length announced: refused once the collected body passes the limit.
      let (chunks, writer) = AsyncStream.makeStream(of: ByteBuffer.self)
      for _ in 0..<5 { writer.yield(ByteBuffer(repeating: UInt8(ascii: "b"), count: 16 * 1024)) }
      writer.finish()
      let chunked = try await httpRequest(.POST, port: env.httpPort, "/echo/p/r", body: .stream(chunks, length: .unknown))
      #expect(chunked.status == 413)
      #expect(try await httpRequest(port: env.httpPort, "/healthz").status == 200)
    }
  }

  /// After `beginGracefulShutdown()` the listener keeps answering while gRPC calls drain, with
  /// 503 so a load balancer stops sending work; once they have finished it stops listening.
  @Test func healthzIs503WhileTheServerDrainsThenTheListenerStops() async throws {
    let sender = GatedCodeSender()
    try await TestEnvironment.run(codeSender: sender) { (env) async throws in
      _ = try await env.identity.registerCitizen(.with { $0.name = "周八"; $0.phone = "13900000032"; $0.idNumber = "11010519491231002X" })
      #expect(try await httpRequest(port: env.httpPort, "/healthz").status == 200)
      async let inFlight = env.identity.requestLoginCode(.with { $0.phone = "13900000032" })
      await sender.waitUntilEntered()
      env.app.beginGracefulShutdown()

      let draining = try await httpRequest(port: env.httpPort, "/healthz")
      #expect(draining.status == 503)
      #expect(draining.text == #"{"reason":"draining","status":"NOT_SERVING"}"#)
      #expect(try await httpRequest(port: env.httpPort, "/readyz").status == 503)
      #expect(try await httpRequest(port: env.httpPort, "/livez").status == 200, "liveness does not follow draining")

      sender.release()
      _ = try await inFlight
      // The drained gRPC server lets the HTTP listener stop: connections are refused. (Checked
      // with a bare connect: AsyncHTTPClient retries a refused connection until its deadline.)
      let deadline = ContinuousClock.now + .seconds(10)
      while tcpConnects(port: env.httpPort), ContinuousClock.now < deadline {
        try await Task.sleep(for: .milliseconds(20))
      }
      #expect(!tcpConnects(port: env.httpPort), "the HTTP listener still listened 10 s after the gRPC calls drained")
    }
  }

  /// The real binary: `--http-port 0`, the port read from its log, and a SIGTERM that stops both
  /// listeners cleanly (exit status 0).
  @Test func theServeCommandServesHTTPAndStopsCleanlyOnSIGTERM() async throws {
    let server = try await ServerProcess.make()
    try await server.start()
    #expect(server.httpPort > 0)
    let health = try await httpRequest(port: server.httpPort, "/healthz")
    #expect(health.status == 200)
    #expect(health.text == #"{"status":"SERVING"}"#)
    let metrics = try await httpRequest(port: server.httpPort, "/metrics")
    // start() polled the gRPC health check until it answered SERVING.
    #expect(metricValue(metrics.text, #"onewindow_grpc_requests_total{method="/grpc.health.v1.Health/Check",code="OK"}"#) != nil)
    #expect(server.terminate() == 0)
  }

  /// The interceptor on its own, against a registry of its own: a streaming response is counted
  /// when its stream ends, with the code it ended with; a rejected call at once.
  @Test func streamingCallsAreCountedWhenTheirStreamEnds() async throws {
    let registry = PrometheusCollectorRegistry()
    let interceptor = MetricsInterceptor(registry: registry)
    let context = ServerContext(
      descriptor: MethodDescriptor(fullyQualifiedService: "test.Feed", method: "Watch"), remotePeer: "in-process:1",
      localPeer: "in-process:2", cancellation: .init())
    let request = StreamingServerRequest(single: ServerRequest(metadata: [:], message: 0))
    let series = #"onewindow_grpc_requests_total{method="/test.Feed/Watch",code="#

    let ok: StreamingServerResponse<Int> = try await interceptor.intercept(request: request, context: context) { _, _ in
      StreamingServerResponse { writer in
        try await writer.write(1)
        return [:]
      }
    }
    #expect(!registry.emitToString().contains(series), "counted before the stream ended")
    _ = try await ok.accepted.get().producer(RPCWriter(wrapping: DiscardingWriter<Int>()))
    #expect(metricValue(registry.emitToString(), series + #""OK"}"#) == 1)

    let failed: StreamingServerResponse<Int> = try await interceptor.intercept(request: request, context: context) { _, _ in
      StreamingServerResponse { _ in throw RPCError(code: .unavailable, message: "shutting down") }
    }
    await #expect(throws: RPCError.self) { _ = try await failed.accepted.get().producer(RPCWriter(wrapping: DiscardingWriter<Int>())) }
    #expect(metricValue(registry.emitToString(), series + #""UNAVAILABLE"}"#) == 1)

    let rejected: StreamingServerResponse<Int> = try await interceptor.intercept(request: request, context: context) { _, _ in
      StreamingServerResponse(error: RPCError(code: .permissionDenied, message: "no"))
    }
    #expect(throws: RPCError.self) { try rejected.accepted.get() }
    let text = registry.emitToString()
    #expect(metricValue(text, series + #""PERMISSION_DENIED"}"#) == 1)
    #expect(metricValue(text, #"onewindow_grpc_request_duration_seconds_count{method="/test.Feed/Watch"}"#) == 3)
  }

  @Test func httpPortIsValidated() throws {
    var config = ServerConfig()
    config.httpPort = 70000
    #expect(throws: ServerConfig.ConfigError.self) { try config.validate() }
    config.httpPort = config.port
    #expect(throws: ServerConfig.ConfigError.self) { try config.validate() }
    config.port = 0
    config.httpPort = 0
    try config.validate()
  }
}

/// A response writer that accepts and drops everything.
private struct DiscardingWriter<Element: Sendable>: RPCWriterProtocol {
  func write(_ element: Element) async throws {}
  func write(contentsOf elements: some Sequence<Element>) async throws {}
}
