import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import OneWindowAPI
import OneWindowClientPosix
import OneWindowCore
import OneWindowServer
import OneWindowTestSupport
import Testing

/// Sends and receives raw bytes, to put garbage on the wire.
struct RawBytesCoder: MessageSerializer, MessageDeserializer {
  func serialize<Bytes: GRPCContiguousBytes>(_ message: [UInt8]) throws -> Bytes { Bytes(message) }
  func deserialize<Bytes: GRPCContiguousBytes>(_ bytes: Bytes) throws -> [UInt8] { bytes.withUnsafeBytes { Array($0) } }
}

@Suite struct TransportE2ETests {
  @Test func healthCheckAndWatch() async throws {
    try await TestEnvironment.run { (env) async throws in
      #expect(try await env.health.check(.init()).status == .serving)
      #expect(try await env.health.check(.with { $0.service = "onewindow.v1.CatalogService" }).status == .serving)
      await expectRPCError(.notFound) { try await env.health.check(.with { $0.service = "no.such.Service" }) }
      let first = try await env.health.watch(.init()) { response in
        for try await message in response.messages { return message.status }
        return .unknown
      }
      #expect(first == .serving)
    }
  }

  @Test func gzipCompressedRequestsAndResponsesWork() async throws {
    try await TestEnvironment.run { (env) async throws in
      let options = ConnectionOptions(host: "127.0.0.1", port: env.port, gzip: true)
      try await OneWindowClients.with(options) { clients in
        var call = CallOptions.defaults
        call.compression = .gzip
        let account = try await clients.identity.registerCitizen(
          .with { $0.name = String(repeating: "压", count: 50); $0.phone = "13900000011"; $0.idNumber = "11010519491231002X" },
          options: call)
        #expect(account.displayName.count == 50)
        #expect(try await clients.health.check(.init(), options: call).status == .serving)
      }
    }
  }

  @Test func oversizedRequestsAreRefusedWithoutHarmingOtherCalls() async throws {
    try await TestEnvironment.run(configure: { $0.maxMessageBytes = 64 * 1024 }) { (env) async throws in
      // The transport refuses the oversized message before any handler runs: it resets the
      // stream (clients see RESOURCE_EXHAUSTED or UNAVAILABLE depending on timing).
      do {
        _ = try await env.identity.registerCitizen(.with {
          $0.name = String(repeating: "x", count: 100 * 1024); $0.phone = "13900000012"; $0.idNumber = "11010519491231002X"
        })
        Issue.record("an oversized request was accepted")
      } catch let error as RPCError {
        #expect([.resourceExhausted, .unavailable].contains(error.code), "got \(error)")
      }
      #expect(try await env.health.check(.init()).status == .serving)
      #expect(try await env.count("accounts") == 0)
    }
  }

  @Test func garbageBytesAreInvalidArgument() async throws {
    try await TestEnvironment.run { (env) async throws in
      await expectRPCError(.invalidArgument) {
        try await env.clients.grpc.unary(
          request: ClientRequest(message: [0xFF, 0xFF, 0xFF, 0xFF, 0x0F]),
          descriptor: Onewindow_V1_IdentityService.Method.RegisterCitizen.descriptor,
          serializer: RawBytesCoder(), deserializer: RawBytesCoder(), options: .defaults
        ) { try $0.message }
      }
      #expect(try await env.count("accounts") == 0)
      #expect(try await env.health.check(.init()).status == .serving)
    }
  }

  @Test func clientDeadlinesAreHonoured() async throws {
    try await TestEnvironment.run { (env) async throws in
      _ = try await env.citizenSession()
      var options = CallOptions.defaults
      options.timeout = .milliseconds(1)
      // Password login runs a ~0.1 s key derivation: far beyond a 1 ms deadline.
      await expectRPCError(.deadlineExceeded) {
        try await env.identity.loginWithPassword(.with { $0.login = "13900000001"; $0.password = "Citizen-pass-1" }, options: options)
      }
    }
  }

  @Test func tlsServesEncryptedAndRefusesPlaintext() async throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ow-tls-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let openssl = try await ChildProcess.run("openssl", [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
      "-keyout", "\(dir)/key.pem", "-out", "\(dir)/cert.pem", "-days", "1", "-subj", "/CN=localhost",
      "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
    ])
    try #require(openssl.status == 0, "openssl is needed to make a test certificate")

    try await TestEnvironment.run(configure: {
      $0.tlsCertificatePath = "\(dir)/cert.pem"
      $0.tlsKeyPath = "\(dir)/key.pem"
    }) { (env) async throws in
      let secure = ConnectionOptions(host: "localhost", port: env.port, tls: true, caCertificatePath: "\(dir)/cert.pem")
      let status = try await OneWindowClients.with(secure) { try await $0.health.check(.init()).status }
      #expect(status == .serving)
      // The plaintext test client cannot talk to a TLS server.
      var quick = CallOptions.defaults
      quick.timeout = .seconds(3)
      do {
        _ = try await env.health.check(.init(), options: quick)
        Issue.record("a plaintext call to a TLS server succeeded")
      } catch {}
    }
  }

  @Test func plaintextOnPublicAddressesNeedsInsecure() throws {
    var config = ServerConfig()
    config.host = "0.0.0.0"
    #expect(throws: ServerConfig.ConfigError.self) { try config.validate() }
    config.allowInsecure = true
    try config.validate()
    config.allowInsecure = false
    config.tlsCertificatePath = "/c.pem"
    #expect(throws: ServerConfig.ConfigError.self) { try config.validate() }  // key missing
    config.tlsKeyPath = "/k.pem"
    try config.validate()
    #expect(ServerConfig.isLoopback("127.0.0.1") && ServerConfig.isLoopback("::1") && !ServerConfig.isLoopback("10.0.0.1"))
  }

  @Test func publicHTTPURLIsAPlainHTTPBase() throws {
    #expect(try ServerConfig.publicBaseURL("https://pay.example.gov.cn/onewindow/") == "https://pay.example.gov.cn/onewindow")
    #expect(try ServerConfig.publicBaseURL("http://10.1.2.3:8081") == "http://10.1.2.3:8081")
    // At the length limit, and one byte over it.
    let host = "https://h.example/"
    #expect(try ServerConfig.publicBaseURL(host + String(repeating: "a", count: 1024 - host.utf8.count)).utf8.count == 1024)
    #expect(throws: ServerConfig.ConfigError.self) { try ServerConfig.publicBaseURL(host + String(repeating: "a", count: 1025 - host.utf8.count)) }
    for bad in ["", "pay.example.gov.cn", "ftp://pay.example.gov.cn", "http://", "http:///path", "https://u:p@pay.example.gov.cn",
                "https://pay.example.gov.cn/?x=1", "https://pay.example.gov.cn/#top"] {
      #expect(throws: ServerConfig.ConfigError.self, "\(bad)") { try ServerConfig.publicBaseURL(bad) }
    }
    var config = ServerConfig()
    config.publicHTTPURL = "ftp://pay.example.gov.cn"
    #expect { try config.validate() } throws: { "\($0)".contains("--public-http-url") }
  }
}
