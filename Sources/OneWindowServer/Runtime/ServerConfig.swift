import Foundation
import Logging
import OneWindowCore

/// How `onewindow serve` runs. Every field has a flag and an environment variable (see README).
public struct ServerConfig: Sendable {
  public var host = "127.0.0.1"
  /// 0 picks a free port (tests).
  public var port = 50051
  /// The plain-HTTP listener (/healthz, /metrics, callbacks) on the same host; 0 picks a free port.
  public var httpPort = 8081
  /// The HTTP listener's base URL as payers and providers reach it, e.g. a load balancer in
  /// front of several nodes (`https://pay.example.gov.cn/onewindow`): cashier and provider
  /// callback URLs are built on it, so they are the same whichever node made them. nil: this
  /// node's own listener address.
  public var publicHTTPURL: String?
  public var dataDirectory = "./onewindow-data"
  /// Where the private keys are (`ServerKeys`); nil: the data directory.
  public var keysDirectory: String?
  public var resolvedKeysDirectory: String { keysDirectory ?? dataDirectory }
  /// This node's name in job leases and logs; unique per process sharing a database.
  public var nodeID = ServerConfig.defaultNodeID()
  /// How long a node's lease on a singleton job lasts without renewal (renewed every third of
  /// it): a dead holder's jobs move to another node within twice this.
  public var leaseDuration: Duration = .seconds(15)
  /// How often the database is asked a trivial query; a node whose database has not answered
  /// within this is NOT_SERVING (`/readyz`, gRPC health) until it does.
  public var readinessInterval: Duration = .seconds(2)
  public var tlsCertificatePath: String?
  public var tlsKeyPath: String?
  /// Allow plaintext on a non-loopback address (behind a TLS-terminating proxy only).
  public var allowInsecure = false
  /// Largest request message accepted, in bytes.
  public var maxMessageBytes = 4 * 1024 * 1024
  /// A gRPC connection must finish TLS (when configured), the HTTP/2 preface and its SETTINGS
  /// within this time of being accepted; an HTTP request its headers, and its body may pause no
  /// longer between parts.
  public var handshakeTimeout: Duration = .seconds(10)
  /// Longest an HTTP request body may take in all.
  public var httpBodyTimeout: Duration = .seconds(60)
  /// Open connections per listener, in all and per client address; more are closed on accept.
  public var maxConnections = 10_000
  public var maxConnectionsPerAddress = 200
  /// Load balancers whose word on the caller's address is believed (`X-Forwarded-For`, the
  /// PROXY protocol): a comma-separated list of addresses and CIDR ranges. Empty: none.
  public var trustedProxies = ""
  public var logLevel: Logger.Level = .info
  public var sync = SyncSettings()
  public var cases = CaseSettings()
  public var notifications = NotificationSettings()
  public var payments = PaymentSettings()

  public init() {}

  public var usesTLS: Bool { tlsCertificatePath != nil }

  public enum ConfigError: Error, CustomStringConvertible {
    case insecureNonLoopback(String)
    case incompleteTLS
    case badPort(Int)
    case samePorts(Int)
    case badMessageSize(Int)
    case badHandshakeTimeout
    case badConnectionLimits(Int, Int)
    case badPublicURL(String)
    case badNodeID(String)
    case badLeaseDuration
    case badTrustedProxies(String)
    case badReadinessInterval

    public var description: String {
      switch self {
      case .insecureNonLoopback(let host):
        "refusing to serve plaintext on non-loopback address \(host): pass --tls-cert and --tls-key, or --insecure if a TLS proxy sits in front"
      case .incompleteTLS: "--tls-cert and --tls-key must be given together"
      case .badPort(let p): "port \(p) is outside 0–65535"
      case .samePorts(let p): "the gRPC port and the HTTP port are both \(p): give --http-port another one"
      case .badMessageSize(let n): "max message size \(n) must be between 64 KiB and 64 MiB"
      case .badHandshakeTimeout: "--handshake-timeout-seconds must be 1–300 and --http-body-timeout-seconds 1–3600"
      case .badConnectionLimits(let total, let perAddress):
        "--max-connections (\(total)) must be 1–1000000 and --max-connections-per-address (\(perAddress)) 1 to --max-connections"
      case .badPublicURL(let reason): "--public-http-url: \(reason)"
      case .badNodeID(let id): "--node-id '\(id)' must be 1–64 letters, digits, '.', '_' or '-'"
      case .badLeaseDuration: "--lease-seconds must be 1–300"
      case .badTrustedProxies(let reason): "--trusted-proxies: \(reason)"
      case .badReadinessInterval: "--readiness-interval-seconds must be 1–60"
      }
    }
  }

  public func validate() throws(ConfigError) {
    guard (0...65535).contains(port) else { throw .badPort(port) }
    guard (0...65535).contains(httpPort) else { throw .badPort(httpPort) }
    guard httpPort == 0 || httpPort != port else { throw .samePorts(port) }
    guard (64 * 1024...64 * 1024 * 1024).contains(maxMessageBytes) else { throw .badMessageSize(maxMessageBytes) }
    guard (tlsCertificatePath == nil) == (tlsKeyPath == nil) else { throw .incompleteTLS }
    guard (Duration.seconds(1)...Duration.seconds(300)).contains(handshakeTimeout),
          (Duration.seconds(1)...Duration.seconds(3600)).contains(httpBodyTimeout)
    else { throw .badHandshakeTimeout }
    guard (1...1_000_000).contains(maxConnections), (1...maxConnections).contains(maxConnectionsPerAddress) else {
      throw .badConnectionLimits(maxConnections, maxConnectionsPerAddress)
    }
    if !usesTLS && !allowInsecure && !Self.isLoopback(host) { throw .insecureNonLoopback(host) }
    if let publicHTTPURL { _ = try Self.publicBaseURL(publicHTTPURL) }
    guard nodeID.range(of: #"^[A-Za-z0-9._-]{1,64}$"#, options: .regularExpression) != nil else { throw .badNodeID(nodeID) }
    guard (Duration.seconds(1)...Duration.seconds(300)).contains(leaseDuration) else { throw .badLeaseDuration }
    _ = try TrustedProxies.parse(trustedProxies)
    guard (Duration.seconds(1)...Duration.seconds(60)).contains(readinessInterval) else { throw .badReadinessInterval }
  }

  /// The host name, the process id and a random suffix (a restarted process is a new holder).
  public static func defaultNodeID() -> String {
    let host = ProcessInfo.processInfo.hostName.filter { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." }.prefix(40)
    return "\(host.isEmpty ? "node" : String(host))-\(ProcessInfo.processInfo.processIdentifier)-\(UInt16.random(in: 0...UInt16.max))"
  }

  /// `text` as a base URL to append paths to: http or https with a host, an optional port and
  /// path, no user, query or fragment, at most 1 024 bytes; a trailing `/` is dropped.
  public static func publicBaseURL(_ text: String) throws(ConfigError) -> String {
    guard text.utf8.count <= 1024 else { throw .badPublicURL("longer than 1024 bytes") }
    guard let url = URLComponents(string: text), let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https"
    else { throw .badPublicURL("'\(text)' is not an http:// or https:// URL") }
    guard let host = url.host, !host.isEmpty else { throw .badPublicURL("'\(text)' has no host") }
    guard url.user == nil, url.password == nil, url.query == nil, url.fragment == nil else {
      throw .badPublicURL("'\(text)' may not carry a user, a query or a fragment (cashier and callback paths are appended to it)")
    }
    var base = text
    while base.hasSuffix("/") { base.removeLast() }
    return base
  }

  public static func isLoopback(_ host: String) -> Bool {
    host == "localhost" || host == "::1" || host == "[::1]" || host.hasPrefix("127.")
  }
}

/// Case handling: the working-day calendar, material limits, the public query's brake, and how
/// often the deemed-acceptance job runs.
public struct CaseSettings: Sendable {
  /// Official holidays and make-up working days; the built-in one covers 2026. Add later years
  /// with `--holiday-calendar FILE` as the State Council publishes them.
  public var calendar: WorkingCalendar = .china2026
  public var maxMaterialBytes: Int64 = MaterialRules.defaultMaxMaterialBytes
  /// Failed public progress queries allowed per address and window.
  public var trackFailureLimit = 10
  public var trackFailureWindow: Double = 600
  /// How often the deemed-acceptance job looks for cases whose notice deadline passed.
  public var clockInterval: Duration = .seconds(600)
  public var rectificationDays = EvaluationRules.defaultRectificationDays

  public init() {}
}
