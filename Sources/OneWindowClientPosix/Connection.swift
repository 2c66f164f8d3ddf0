@_exported import OneWindowClient
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import OneWindowAPI

/// Where and how to reach a OneWindow server.
public struct ConnectionOptions: Sendable {
  public var host: String
  public var port: Int
  /// Use TLS (verify the server against the system roots, or `caCertificatePath`).
  public var tls: Bool
  /// PEM file of the CA (or self-signed certificate) to trust instead of the system roots.
  public var caCertificatePath: String?
  /// Compress requests with gzip and accept compressed responses (the server supports gzip
  /// and deflate both ways).
  public var gzip: Bool

  public init(host: String = "127.0.0.1", port: Int = 50051, tls: Bool = false, caCertificatePath: String? = nil, gzip: Bool = false) {
    self.host = host
    self.port = port
    self.tls = tls
    self.caCertificatePath = caCertificatePath
    self.gzip = gzip
  }

  /// Parses `host:port`, `[v6]:port` or `host` (port 50051).
  public init(server: String, tls: Bool = false, caCertificatePath: String? = nil, gzip: Bool = false) throws(ConnectionError) {
    var host = server
    var port = 50051
    if server.hasPrefix("["), let close = server.firstIndex(of: "]") {
      host = String(server[server.index(after: server.startIndex)..<close])
      let rest = server[server.index(after: close)...]
      if rest.hasPrefix(":") {
        guard let p = Int(rest.dropFirst()) else { throw .badAddress(server) }
        port = p
      }
    } else if let colon = server.lastIndex(of: ":") {
      host = String(server[..<colon])
      guard let p = Int(server[server.index(after: colon)...]) else { throw .badAddress(server) }
      port = p
    }
    guard !host.isEmpty, (1...65535).contains(port) else { throw .badAddress(server) }
    self.init(host: host, port: port, tls: tls, caCertificatePath: caCertificatePath, gzip: gzip)
  }

  public var display: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

  public func makeTransport() throws -> HTTP2ClientTransport.Posix {
    let target: any ResolvableTarget =
      host.contains(":") ? .ipv6(address: host, port: port)
      : host.allSatisfy({ $0.isNumber || $0 == "." }) ? .ipv4(address: host, port: port) : .dns(host: host, port: port)
    let security: HTTP2ClientTransport.Posix.TransportSecurity
    if tls {
      let ca = caCertificatePath
      security = .tls { config in
        if let ca { config.trustRoots = .certificates([.file(path: ca, format: .pem)]) }
      }
    } else {
      security = .plaintext
    }
    let gzip = self.gzip
    return try HTTP2ClientTransport.Posix(
      target: target, transportSecurity: security,
      config: .defaults { config in
        // Advertising gzip makes the server compress every response; that costs server CPU
        // on small messages, so it is opt-in (worth it on slow mobile links).
        if gzip {
          config.compression.enabledAlgorithms = [.gzip, .deflate]
          config.compression.algorithm = .gzip
        }
      })
  }
}

public enum ConnectionError: Error, CustomStringConvertible {
  case badAddress(String)

  public var description: String {
    switch self {
    case .badAddress(let s): "server address '\(s)' is not host:port"
    }
  }
}

/// Typed clients for every OneWindow service over one HTTP/2 connection.
public struct OneWindowClients: Sendable {
  public let grpc: GRPCClient<HTTP2ClientTransport.Posix>
  public var identity: Onewindow_V1_IdentityService.Client<HTTP2ClientTransport.Posix> { .init(wrapping: grpc) }
  public var catalog: Onewindow_V1_CatalogService.Client<HTTP2ClientTransport.Posix> { .init(wrapping: grpc) }
  public var health: Grpc_Health_V1_Health.Client<HTTP2ClientTransport.Posix> { .init(wrapping: grpc) }
  public var sync: Onewindow_V1_SyncService.Client<HTTP2ClientTransport.Posix> { .init(wrapping: grpc) }
  public var cases: Onewindow_V1_CaseService.Client<HTTP2ClientTransport.Posix> { .init(wrapping: grpc) }
  public var materials: Onewindow_V1_MaterialService.Client<HTTP2ClientTransport.Posix> { .init(wrapping: grpc) }
  public var certificates: Onewindow_V1_CertificateService.Client<HTTP2ClientTransport.Posix> { .init(wrapping: grpc) }
  public var evaluations: Onewindow_V1_EvaluationService.Client<HTTP2ClientTransport.Posix> { .init(wrapping: grpc) }
  public var audit: Onewindow_V1_AuditService.Client<HTTP2ClientTransport.Posix> { .init(wrapping: grpc) }
  public var inbox: Onewindow_V1_InboxService.Client<HTTP2ClientTransport.Posix> { .init(wrapping: grpc) }
  public var notify: Onewindow_V1_NotifyService.Client<HTTP2ClientTransport.Posix> { .init(wrapping: grpc) }
  public var payments: Onewindow_V1_PaymentService.Client<HTTP2ClientTransport.Posix> { .init(wrapping: grpc) }

  /// Connects, runs `body`, then closes the connection gracefully.
  public static func with<T: Sendable>(
    _ options: ConnectionOptions, _ body: (OneWindowClients) async throws -> T
  ) async throws -> T {
    try await withGRPCClient(transport: options.makeTransport()) { grpc in
      try await body(OneWindowClients(grpc: grpc))
    }
  }
}
