import AsyncHTTPClient
import Foundation
import GRPCCore
import OneWindowAPI
import OneWindowClientPosix
import OneWindowServer
import OneWindowTestSupport
import Testing

/// A real HAProxy (Debian's package; `.ci/run` installs it) with a configuration written from a
/// template: `{name}` placeholders become free ports (read back from `ports`) or the values
/// given. Stopped (SIGKILL) when the test ends.
final class HAProxy: Sendable {
  let ports: [String: Int]
  private let process: ChildProcess
  private let directory: String

  /// nil when HAProxy is not installed (outside CI; under CI that is an error).
  static func start(config template: String, values: [String: String] = [:]) async throws -> HAProxy? {
    guard FileManager.default.isExecutableFile(atPath: "/usr/sbin/haproxy") else {
      if ProcessInfo.processInfo.environment["CI"] == "true" {
        Issue.record("HAProxy is required under CI (apt-get install haproxy)")
      } else {
        print("note: haproxy not found; skipping (apt-get install haproxy)")
      }
      return nil
    }
    var text = template
    for (name, value) in values { text = text.replacingOccurrences(of: "{\(name)}", with: value) }
    var ports: [String: Int] = [:]
    while let open = text.range(of: "{"), let close = text[open.upperBound...].range(of: "}") {
      let name = String(text[open.upperBound..<close.lowerBound])
      let port = try ports[name] ?? ServerProcess.freePort()
      ports[name] = port
      text = text.replacingOccurrences(of: "{\(name)}", with: "\(port)")
    }
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ow-haproxy-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    try text.write(toFile: directory + "/haproxy.cfg", atomically: true, encoding: .utf8)
    let process = try ChildProcess("/usr/sbin/haproxy", ["-db", "-f", directory + "/haproxy.cfg"], stderr: .appendingTo(directory + "/log"))
    let proxy = HAProxy(ports: ports, process: process, directory: directory)
    let deadline = ContinuousClock.now + .seconds(20)
    while !ports.values.allSatisfy({ tcpConnects(port: $0) }) {
      guard process.isRunning, ContinuousClock.now < deadline else {
        let log = (try? String(contentsOfFile: directory + "/log", encoding: .utf8)) ?? ""
        throw RPCError(code: .unavailable, message: "haproxy did not start: \(log)")
      }
      try await Task.sleep(for: .milliseconds(50))
    }
    return proxy
  }

  private init(ports: [String: Int], process: ChildProcess, directory: String) {
    self.ports = ports
    self.process = process
    self.directory = directory
  }

  deinit {
    stop()
    try? FileManager.default.removeItem(atPath: directory)
  }

  /// Kills it (every connection through it drops at once) and waits until it is gone.
  func stop() {
    process.signal(SIGKILL)
    process.waitBlocking()
  }

  func port(_ name: String) -> Int { ports[name] ?? 0 }
}

/// Callers behind a load balancer (`--trusted-proxies`), through a real HAProxy. Loopback has
/// all of 127.0.0.0/8, so HAProxy's `source` makes callers with distinct addresses: each
/// `callerX` frontend connects onward from its own address, as a phone in its own network would.
@Suite struct ProxyE2ETests {
  /// The per-address brake on failed progress queries, limit 3.
  static let limit = 3

  static let haproxyConfig = """
    global
      maxconn 200
    defaults
      mode tcp
      timeout connect 5s
      timeout client 60s
      timeout server 60s
    # The load balancer in front of the node: PROXY v2 and, on a second port, v1.
    frontend lb
      bind 127.0.0.1:{lb}
      default_backend node_v2
    backend node_v2
      server n1 127.0.0.1:{grpc} send-proxy-v2
    frontend lb1
      bind 127.0.0.1:{lb1}
      default_backend node_v1
    backend node_v1
      server n1 127.0.0.1:{grpc} send-proxy
    # An HTTP load balancer adding X-Forwarded-For.
    frontend lbhttp
      mode http
      timeout client 60s
      option forwardfor
      bind 127.0.0.1:{lbhttp}
      default_backend node_http
    backend node_http
      mode http
      server n1 127.0.0.1:{http}
    # Callers, each from its own address.
    frontend callerA
      bind 127.0.0.1:{callerA}
      default_backend viaA
    backend viaA
      server lb 127.0.0.1:{lb} source 127.0.0.2
    frontend callerB
      bind 127.0.0.1:{callerB}
      default_backend viaB
    backend viaB
      server lb 127.0.0.1:{lb} source 127.0.0.3
    frontend callerAv1
      bind 127.0.0.1:{callerAv1}
      default_backend viaAv1
    backend viaAv1
      server lb 127.0.0.1:{lb1} source 127.0.0.2
    frontend callerAhttp
      bind 127.0.0.1:{callerAhttp}
      default_backend viaAhttp
    backend viaAhttp
      server lb 127.0.0.1:{lbhttp} source 127.0.0.2
    # A caller that reaches the node directly, from an address that is no proxy.
    frontend direct
      bind 127.0.0.1:{direct}
      default_backend viaDirect
    backend viaDirect
      server n1 127.0.0.1:{grpc} source 127.0.0.4
    frontend directhttp
      bind 127.0.0.1:{directhttp}
      default_backend viaDirectHTTP
    backend viaDirectHTTP
      server n1 127.0.0.1:{http} source 127.0.0.4

    """

  /// A failed progress query through `port`: NOT_FOUND while the caller's address is under the
  /// brake, RESOURCE_EXHAUSTED once over it.
  static func failedQuery(port: Int, forwardedFor: String? = nil) async throws -> RPCError.Code? {
    try await OneWindowClients.with(ConnectionOptions(host: "127.0.0.1", port: port)) { clients in
      var metadata = Metadata()
      if let forwardedFor { metadata.addString(forwardedFor, forKey: "x-forwarded-for") }
      do {
        _ = try await clients.cases.trackCase(.with { $0.trackingCode = "ZZZZ-ZZZZ-ZZZZ"; $0.phoneLast4 = "0000" }, metadata: metadata)
        return nil
      } catch let error as RPCError {
        return error.code
      }
    }
  }

  @Test func callersBehindOneTrustedProxyAreLimitedApartAndForgedHeadersAreIgnored() async throws {
    try await TestEnvironment.run(configure: {
      $0.trustedProxies = "127.0.0.1"
      $0.cases.trackFailureLimit = Self.limit
    }) { (env) async throws in
      guard let proxy = try await HAProxy.start(
        config: Self.haproxyConfig, values: ["grpc": "\(env.port)", "http": "\(env.httpPort)"])
      else { return }
      // Caller A (127.0.0.2) through PROXY v2: three failures, then the brake.
      for _ in 0..<Self.limit { #expect(try await Self.failedQuery(port: proxy.port("callerA")) == .notFound) }
      #expect(try await Self.failedQuery(port: proxy.port("callerA")) == .resourceExhausted)
      // Caller B (127.0.0.3) behind the same proxy is not braked by A.
      #expect(try await Self.failedQuery(port: proxy.port("callerB")) == .notFound)
      // Caller A again through PROXY v1: the same caller, still braked.
      #expect(try await Self.failedQuery(port: proxy.port("callerAv1")) == .resourceExhausted)

      // A direct caller that is no proxy (127.0.0.4): x-forwarded-for is ignored, so changing
      // it does not escape the brake.
      for n in 0..<Self.limit {
        #expect(try await Self.failedQuery(port: proxy.port("direct"), forwardedFor: "198.51.100.\(n)") == .notFound)
      }
      #expect(try await Self.failedQuery(port: proxy.port("direct"), forwardedFor: "198.51.100.99") == .resourceExhausted)

      // From the trusted proxy's own address with no PROXY header (an HTTP/2-aware proxy),
      // x-forwarded-for names the caller: two callers are braked apart.
      for _ in 0..<Self.limit { #expect(try await Self.failedQuery(port: env.port, forwardedFor: "203.0.113.7") == .notFound) }
      #expect(try await Self.failedQuery(port: env.port, forwardedFor: "203.0.113.7") == .resourceExhausted)
      #expect(try await Self.failedQuery(port: env.port, forwardedFor: "203.0.113.8") == .notFound)
      // A chain: the caller is the rightmost address that is not a trusted proxy.
      #expect(try await Self.failedQuery(port: env.port, forwardedFor: "203.0.113.9, 203.0.113.7, 127.0.0.1") == .resourceExhausted)
    }
  }

  /// The audit trail records the caller's address, not the balancer's.
  @Test func auditEntriesRecordTheCallerBehindTheProxy() async throws {
    try await TestEnvironment.run(configure: { $0.trustedProxies = "127.0.0.1" }) { (env) async throws in
      guard let proxy = try await HAProxy.start(
        config: Self.haproxyConfig, values: ["grpc": "\(env.port)", "http": "\(env.httpPort)"])
      else { return }
      let token = try await env.adminSession().accessToken
      for (port, code, expected) in [(proxy.port("callerA"), "d-a", "ipv4:127.0.0.2"), (proxy.port("callerB"), "d-b", "ipv4:127.0.0.3")] {
        try await OneWindowClients.with(ConnectionOptions(host: "127.0.0.1", port: port)) { clients in
          _ = try await clients.catalog.upsertDepartment(
            .with { $0.department = .with { $0.code = code; $0.name = "部门 \(code)" } }, metadata: bearer(token))
        }
        let entries = try await env.clients.audit.listAuditEntries(.with { $0.targetID = code }, metadata: bearer(token)).entries
        #expect(entries.map(\.clientAddress) == [expected], "\(entries)")
      }
      // The chain, addresses included, verifies.
      let verified = try await env.clients.audit.verifyAuditChain(.init(), metadata: bearer(token))
      #expect(verified.intact, "\(verified)")
    }
  }

  @Test func httpRoutesSeeTheCallerBehindATrustedProxyOnly() async throws {
    let echo = HTTPRoute(method: "GET", path: "/test/caller") { request in .text(200, request.clientAddress) }
    try await TestEnvironment.run(configure: { $0.trustedProxies = "127.0.0.1" }, httpRoutes: [echo]) { (env) async throws in
      guard let proxy = try await HAProxy.start(
        config: Self.haproxyConfig, values: ["grpc": "\(env.port)", "http": "\(env.httpPort)"])
      else { return }
      // Through HAProxy's `option forwardfor` from 127.0.0.2.
      let viaProxy = try await httpRequest(port: proxy.port("callerAhttp"), "/test/caller", headers: [("X-Forwarded-For", "192.0.2.1")])
      #expect(viaProxy.text == "ipv4:127.0.0.2")
      // Directly from 127.0.0.4, which is no proxy: its X-Forwarded-For is ignored.
      let direct = try await httpRequest(port: proxy.port("directhttp"), "/test/caller", headers: [("X-Forwarded-For", "192.0.2.1")])
      #expect(direct.text == "ipv4:127.0.0.4")
      // From the trusted address itself.
      let trusted = try await httpRequest(port: env.httpPort, "/test/caller", headers: [("X-Forwarded-For", "192.0.2.1")])
      #expect(trusted.text == "ipv4:192.0.2.1")
      let none = try await httpRequest(port: env.httpPort, "/test/caller")
      #expect(none.text == "ipv4:127.0.0.1")
    }
  }

  @Test func withoutTrustedProxiesEveryClaimIsIgnored() async throws {
    try await TestEnvironment.run(configure: { $0.cases.trackFailureLimit = Self.limit }) { (env) async throws in
      for n in 0..<Self.limit {
        #expect(try await Self.failedQuery(port: env.port, forwardedFor: "203.0.113.\(n)") == .notFound)
      }
      #expect(try await Self.failedQuery(port: env.port, forwardedFor: "203.0.113.50") == .resourceExhausted)
    }
  }
}
