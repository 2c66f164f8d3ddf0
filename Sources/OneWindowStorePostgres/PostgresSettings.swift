import Foundation
import NIOSSL
import PostgresNIO

/// Where and how to reach PostgreSQL, read from a libpq-style URL
/// (`postgres://user[:password]@host[:port]/database?sslmode=…&sslrootcert=…`), so operators can
/// reuse the URL their other tools take. The password may come from a file instead, so it stays
/// out of the process list and the environment.
public struct PostgresSettings: Sendable, Equatable {
  /// libpq's `sslmode` values. `allow` and `prefer` try TLS and fall back to plaintext; `require`
  /// encrypts without checking the certificate; `verify-ca` checks the chain against
  /// `sslrootcert`; `verify-full` also checks the host name.
  public enum TLSMode: String, Sendable, Equatable, CaseIterable {
    case disable, allow, prefer, require
    case verifyCA = "verify-ca"
    case verifyFull = "verify-full"
  }

  public var host: String
  public var port: Int
  public var username: String
  public var password: String?
  public var database: String
  public var tlsMode: TLSMode
  /// PEM file of the certificate authorities to trust (`sslrootcert`); the system's when nil.
  public var rootCertificatePath: String?
  /// Schema the connections use first (`search_path`); nil for the server's default. Tests give
  /// each database its own.
  public var schema: String?
  /// Pooled connections per process (`pool_max_conns`).
  public var maximumConnections: Int
  /// Connections the pool keeps open even when idle (`pool_min_conns`), so the first calls
  /// after a quiet spell or a failover do not wait for connects.
  public var minimumConnections = 0
  /// How long opening one connection may take (libpq's `connect_timeout`, seconds).
  public var connectTimeout: Duration = .seconds(10)
  /// An idle pooled connection above the minimum is closed after this (`pool_max_conn_idle_time`,
  /// seconds).
  public var idleTimeout: Duration = .seconds(60)
  /// PostgreSQL's `statement_timeout` for every statement of the pool (milliseconds; nil: the
  /// server's setting), so a statement stuck behind a lock fails instead of holding a call.
  public var statementTimeoutMillis: Int?
  /// Where the doorbell listener (one LISTEN connection per process) connects instead of
  /// `host`/`port`: a transaction-pooling proxy in front of the database breaks LISTEN, so a
  /// deployment behind one points this at the database itself (`--database-listen-url`). Only
  /// its connection fields are used; the schema is this one's.
  public var listener: PostgresSettings? {
    get { listenerBox?.settings }
    set { listenerBox = newValue.map(ListenerBox.init) }
  }
  private var listenerBox: ListenerBox?

  /// Boxed, since a struct cannot hold itself.
  final class ListenerBox: Sendable, Equatable {
    let settings: PostgresSettings
    init(_ settings: PostgresSettings) { self.settings = settings }
    static func == (a: ListenerBox, b: ListenerBox) -> Bool { a.settings == b.settings }
  }

  /// Sets `listener` from a URL of the same form as the database URL (the password file, when
  /// given, applies to it too).
  public mutating func setListenURL(_ url: String, passwordFile: String? = nil) throws {
    listener = try PostgresSettings(url: url, passwordFile: passwordFile)
  }

  /// The settings of the doorbell listener's own client: `listener`'s endpoint, one connection.
  var listenerSettings: PostgresSettings {
    var settings = listener ?? self
    settings.schema = schema
    settings.listener = nil
    settings.maximumConnections = 1
    settings.minimumConnections = 0
    settings.statementTimeoutMillis = nil
    return settings
  }


  public struct InvalidURL: Error, CustomStringConvertible {
    public let description: String
    public init(description: String) { self.description = description }
  }

  /// Parses `url`; `passwordFile`, when given, supplies the password (its first line) and wins
  /// over one in the URL.
  public init(url: String, passwordFile: String? = nil) throws {
    guard let components = URLComponents(string: url), let scheme = components.scheme,
          scheme == "postgres" || scheme == "postgresql"
    else { throw InvalidURL(description: "the database URL must start with postgres:// (e.g. postgres://onewindow@db.example.org:5432/onewindow)") }
    guard let host = components.host, !host.isEmpty else {
      throw InvalidURL(description: "the database URL names no host (postgres://user@HOST:5432/database)")
    }
    guard let user = components.user, !user.isEmpty else {
      throw InvalidURL(description: "the database URL names no user (postgres://USER@host:5432/database)")
    }
    let database = String(components.path.drop(while: { $0 == "/" }))
    guard !database.isEmpty, !database.contains("/") else {
      throw InvalidURL(description: "the database URL names no database (postgres://user@host:5432/DATABASE)")
    }
    self.host = host
    self.port = components.port ?? 5432
    self.username = user.removingPercentEncoding ?? user
    self.password = components.password.map { $0.removingPercentEncoding ?? $0 }
    self.database = database.removingPercentEncoding ?? database
    self.tlsMode = .prefer
    self.rootCertificatePath = nil
    self.schema = nil
    self.maximumConnections = 20
    self.listenerBox = nil
    for item in components.queryItems ?? [] {
      let value = item.value ?? ""
      switch item.name {
      case "sslmode":
        guard let mode = TLSMode(rawValue: value) else {
          throw InvalidURL(description: "sslmode=\(value) is not one of \(TLSMode.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        tlsMode = mode
      case "sslrootcert": rootCertificatePath = value
      case "search_path", "schema":
        guard value.range(of: #"^[a-z_][a-z0-9_]{0,62}$"#, options: .regularExpression) != nil else {
          throw InvalidURL(description: "\(item.name)=\(value) must be a lower-case SQL identifier")
        }
        schema = value
      case "pool_max_conns":
        guard let n = Int(value), (1...1000).contains(n) else { throw InvalidURL(description: "pool_max_conns must be 1–1000") }
        maximumConnections = n
      case "pool_min_conns":
        guard let n = Int(value), (0...1000).contains(n) else { throw InvalidURL(description: "pool_min_conns must be 0–1000") }
        minimumConnections = n
      case "connect_timeout":
        guard let n = Int(value), (1...300).contains(n) else { throw InvalidURL(description: "connect_timeout must be 1–300 seconds") }
        connectTimeout = .seconds(n)
      case "pool_max_conn_idle_time":
        guard let n = Int(value), (1...86_400).contains(n) else {
          throw InvalidURL(description: "pool_max_conn_idle_time must be 1–86400 seconds")
        }
        idleTimeout = .seconds(n)
      case "statement_timeout":
        guard let n = Int(value), (0...86_400_000).contains(n) else {
          throw InvalidURL(description: "statement_timeout must be 0–86400000 milliseconds (0: none)")
        }
        statementTimeoutMillis = n
      case "application_name": break
      default:
        throw InvalidURL(description: "the database URL has an unknown parameter '\(item.name)' (known: sslmode, sslrootcert, search_path, pool_max_conns, pool_min_conns, pool_max_conn_idle_time, connect_timeout, statement_timeout, application_name)")
      }
    }
    guard minimumConnections <= maximumConnections else {
      throw InvalidURL(description: "pool_min_conns (\(minimumConnections)) must not exceed pool_max_conns (\(maximumConnections))")
    }
    if let passwordFile {
      guard let data = FileManager.default.contents(atPath: passwordFile), let text = String(data: data, encoding: .utf8) else {
        throw InvalidURL(description: "cannot read the database password file \(passwordFile)")
      }
      password = String(text.split(separator: "\n", omittingEmptySubsequences: false).first ?? "")
    }
  }

  /// The URL without its password, for logs and messages.
  public var redacted: String {
    "postgres://\(username)@\(host):\(port)/\(database)?sslmode=\(tlsMode.rawValue)"
      + (schema.map { "&search_path=\($0)" } ?? "")
  }

  func clientConfiguration() throws -> PostgresClient.Configuration {
    var config = PostgresClient.Configuration(
      host: host, port: port, username: username, password: password, database: database, tls: try tls())
    config.options.maximumConnections = maximumConnections
    config.options.minimumConnections = minimumConnections
    config.options.connectTimeout = connectTimeout
    config.options.connectionIdleTimeout = idleTimeout
    config.options.tlsServerName = tlsMode == .verifyFull ? host : nil
    var startup: [(String, String)] = [("application_name", "onewindow"), ("timezone", "UTC")]
    // Extensions (pg_trgm) live in public; a deployment's own schema comes first.
    if let schema { startup.append(("search_path", "\(schema),public")) }
    if let statementTimeoutMillis { startup.append(("statement_timeout", "\(statementTimeoutMillis)")) }
    config.options.additionalStartupParameters = startup
    return config
  }

  func tls() throws -> PostgresClient.Configuration.TLS {
    var tls = TLSConfiguration.makeClientConfiguration()
    switch tlsMode {
    case .disable: return .disable
    case .allow, .prefer, .require:
      tls.certificateVerification = .none
    case .verifyCA:
      tls.certificateVerification = .noHostnameVerification
    case .verifyFull:
      tls.certificateVerification = .fullVerification
    }
    if let rootCertificatePath {
      tls.trustRoots = .file(rootCertificatePath)
    }
    return tlsMode == .allow || tlsMode == .prefer ? .prefer(tls) : .require(tls)
  }
}
