import ArgumentParser
import Foundation
import Logging
import OneWindowCore
import OneWindowDatabase
import OneWindowServer
import OneWindowStore

struct Serve: AsyncParsableCommand {
  static let configuration = CommandConfiguration(abstract: "Run the gRPC server (creates and migrates the database on first start).")

  @OptionGroup var data: DataOptions

  @Option(help: "Address to listen on. [env: ONEWINDOW_HOST] (default: 127.0.0.1)")
  var host: String?

  @Option(help: "Port to listen on; 0 picks a free one. [env: ONEWINDOW_PORT] (default: 50051)")
  var port: Int?

  @Option(help: "Plain-HTTP port for /healthz, /metrics and callbacks, on the same address; 0 picks a free one. [env: ONEWINDOW_HTTP_PORT] (default: 8081)")
  var httpPort: Int?

  @Option(
    help: "Base URL of the HTTP listener as payers and providers reach it (e.g. a load balancer); cashier and callback URLs are built on it. [env: ONEWINDOW_PUBLIC_HTTP_URL] (default: this node's listener)")
  var publicHttpUrl: String?

  @Option(help: "This node's name in job leases and logs, unique among the processes sharing a database. [env: ONEWINDOW_NODE_ID] (default: host-pid-random)")
  var nodeId: String?

  @Option(help: "Seconds a node's lease on a singleton job (deemed acceptance, reminders, payment repair…) lasts without renewal; a dead node's jobs move within twice this. [env: ONEWINDOW_LEASE_SECONDS] (default: 15)")
  var leaseSeconds: Int?

  @Option(help: "PEM certificate chain for TLS. [env: ONEWINDOW_TLS_CERT]")
  var tlsCert: String?

  @Option(help: "PEM private key for TLS. [env: ONEWINDOW_TLS_KEY]")
  var tlsKey: String?

  @Flag(help: "Allow plaintext on a non-loopback address (only behind a TLS-terminating proxy).")
  var insecure = false

  @Option(help: "Largest accepted request message in bytes. [env: ONEWINDOW_MAX_MESSAGE_BYTES] (default: 4194304)")
  var maxMessageBytes: Int?

  @Option(help: "Seconds a new connection has to finish its opening (TLS, HTTP/2 preface and settings) and an HTTP request its headers, and longest pause inside an HTTP request body. [env: ONEWINDOW_HANDSHAKE_TIMEOUT_SECONDS] (default: 10)")
  var handshakeTimeoutSeconds: Int?

  @Option(help: "Longest an HTTP request body may take in all, in seconds. [env: ONEWINDOW_HTTP_BODY_TIMEOUT_SECONDS] (default: 60)")
  var httpBodyTimeoutSeconds: Int?

  @Option(help: "Open connections per listener (gRPC, HTTP); more are closed on accept. [env: ONEWINDOW_MAX_CONNECTIONS] (default: 10000)")
  var maxConnections: Int?

  @Option(help: "Open connections per client address and listener; more are closed on accept. [env: ONEWINDOW_MAX_CONNECTIONS_PER_ADDRESS] (default: 200)")
  var maxConnectionsPerAddress: Int?

  @Option(help: "Seconds between the database checks behind /readyz and gRPC health: a node whose database has not answered within this is NOT_SERVING until it does. [env: ONEWINDOW_READINESS_INTERVAL_SECONDS] (default: 2)")
  var readinessIntervalSeconds: Int?

  @Option(help: "Load balancers and proxies whose X-Forwarded-For and PROXY protocol headers name the caller, as a comma-separated list of addresses and CIDR ranges (e.g. 10.0.0.0/8,192.168.1.10); per-address limits and the audit trail then use the caller's address. [env: ONEWINDOW_TRUSTED_PROXIES] (default: none)")
  var trustedProxies: String?

  @Option(help: "Days tombstones and push results are kept before compaction; older sync cursors reset. [env: ONEWINDOW_SYNC_RETENTION_DAYS] (default: 30)")
  var syncRetentionDays: Int?

  @Option(help: "Seconds between heartbeats on idle sync Watch streams. [env: ONEWINDOW_SYNC_HEARTBEAT_SECONDS] (default: 15)")
  var syncHeartbeatSeconds: Int?

  @Option(help: "Seconds a device's clock may run ahead before its stamps are clamped. [env: ONEWINDOW_SYNC_MAX_SKEW_SECONDS] (default: 60)")
  var syncMaxSkewSeconds: Int?

  @Option(help: "JSON file with later years' official holidays and make-up working days, e.g. {\"years\": [2027], \"holidays\": [\"2027-01-01\"], \"workdays\": []}; 2026 is built in. [env: ONEWINDOW_HOLIDAY_CALENDAR]")
  var holidayCalendar: String?

  @Option(help: "Largest material upload in MiB. [env: ONEWINDOW_MAX_MATERIAL_MIB] (default: 20)")
  var maxMaterialMib: Int?

  @Flag(help: "Development only: accept http:// webhook URLs to a loopback address (production endpoints must be https). [env: ONEWINDOW_ALLOW_LOOPBACK_WEBHOOKS=1]")
  var allowLoopbackWebhooks = false

  @Option(help: "Messages kept per inbox before the oldest read ones are pruned. [env: ONEWINDOW_INBOX_CAP] (default: 10000)")
  var inboxCap: Int?

  @Option(help: "Seconds between heartbeats on idle inbox streams. [env: ONEWINDOW_INBOX_HEARTBEAT_SECONDS] (default: 15)")
  var inboxHeartbeatSeconds: Int?

  @Option(help: "Inbox streams one account may hold open at once. [env: ONEWINDOW_MAX_INBOX_STREAMS_PER_ACCOUNT] (default: 32)")
  var maxInboxStreamsPerAccount: Int?

  @Option(help: "Attempts per webhook delivery before it is dead-lettered. [env: ONEWINDOW_WEBHOOK_MAX_ATTEMPTS] (default: 6)")
  var webhookMaxAttempts: Int?

  @Option(help: "Sandbox payments only: seconds the sandbox provider waits before each callback (testing lost callbacks). [env: ONEWINDOW_SANDBOX_CALLBACK_DELAY_SECONDS] (default: 0)")
  var sandboxCallbackDelaySeconds: Int?

  @Flag(help: "Load the demo catalog and demo accounts into an empty database and print their passwords.")
  var demo = false

  func run() async throws {
    var config = ServerConfig()
    config.host = host ?? Environment.value("ONEWINDOW_HOST") ?? config.host
    if let p = port ?? Environment.value("ONEWINDOW_PORT").flatMap(Int.init) { config.port = p }
    if let p = httpPort ?? Environment.value("ONEWINDOW_HTTP_PORT").flatMap(Int.init) { config.httpPort = p }
    config.publicHTTPURL = publicHttpUrl ?? Environment.value("ONEWINDOW_PUBLIC_HTTP_URL")
    config.dataDirectory = data.resolvedDataDirectory
    config.keysDirectory = data.resolvedKeysDirectory
    if let id = nodeId ?? Environment.value("ONEWINDOW_NODE_ID") { config.nodeID = id }
    if let s = leaseSeconds ?? Environment.value("ONEWINDOW_LEASE_SECONDS").flatMap(Int.init) { config.leaseDuration = .seconds(s) }
    config.tlsCertificatePath = tlsCert ?? Environment.value("ONEWINDOW_TLS_CERT")
    config.tlsKeyPath = tlsKey ?? Environment.value("ONEWINDOW_TLS_KEY")
    config.allowInsecure = insecure
    if let m = maxMessageBytes ?? Environment.value("ONEWINDOW_MAX_MESSAGE_BYTES").flatMap(Int.init) { config.maxMessageBytes = m }
    if let s = handshakeTimeoutSeconds ?? Environment.value("ONEWINDOW_HANDSHAKE_TIMEOUT_SECONDS").flatMap(Int.init) {
      config.handshakeTimeout = .seconds(s)
    }
    if let s = httpBodyTimeoutSeconds ?? Environment.value("ONEWINDOW_HTTP_BODY_TIMEOUT_SECONDS").flatMap(Int.init) {
      config.httpBodyTimeout = .seconds(s)
    }
    if let n = maxConnections ?? Environment.value("ONEWINDOW_MAX_CONNECTIONS").flatMap(Int.init) { config.maxConnections = n }
    if let n = maxConnectionsPerAddress ?? Environment.value("ONEWINDOW_MAX_CONNECTIONS_PER_ADDRESS").flatMap(Int.init) {
      config.maxConnectionsPerAddress = n
    }
    if let s = readinessIntervalSeconds ?? Environment.value("ONEWINDOW_READINESS_INTERVAL_SECONDS").flatMap(Int.init) {
      config.readinessInterval = .seconds(s)
    }
    config.trustedProxies = trustedProxies ?? Environment.value("ONEWINDOW_TRUSTED_PROXIES") ?? ""
    if let days = syncRetentionDays ?? Environment.value("ONEWINDOW_SYNC_RETENTION_DAYS").flatMap(Int.init) {
      guard (1...3650).contains(days) else { throw ValidationError("--sync-retention-days must be 1–3650") }
      config.sync.retention = .seconds(days * 24 * 3600)
    }
    if let seconds = syncHeartbeatSeconds ?? Environment.value("ONEWINDOW_SYNC_HEARTBEAT_SECONDS").flatMap(Int.init) {
      guard (1...300).contains(seconds) else { throw ValidationError("--sync-heartbeat-seconds must be 1–300") }
      config.sync.heartbeat = .seconds(seconds)
    }
    if let seconds = syncMaxSkewSeconds ?? Environment.value("ONEWINDOW_SYNC_MAX_SKEW_SECONDS").flatMap(Int.init) {
      guard (1...86_400).contains(seconds) else { throw ValidationError("--sync-max-skew-seconds must be 1–86400") }
      config.sync.maxClockSkew = Double(seconds)
    }
    if let path = holidayCalendar ?? Environment.value("ONEWINDOW_HOLIDAY_CALENDAR") {
      guard let bytes = FileManager.default.contents(atPath: path) else { throw ValidationError("cannot read --holiday-calendar \(path)") }
      do { config.cases.calendar = config.cases.calendar.merging(try WorkingCalendar(json: Array(bytes))) } catch {
        throw ValidationError("--holiday-calendar \(path): \(error.description)")
      }
    }
    if let mib = maxMaterialMib ?? Environment.value("ONEWINDOW_MAX_MATERIAL_MIB").flatMap(Int.init) {
      guard (1...1024).contains(mib) else { throw ValidationError("--max-material-mib must be 1–1024") }
      config.cases.maxMaterialBytes = Int64(mib) * 1024 * 1024
    }
    config.notifications.allowLoopbackHTTPWebhooks =
      allowLoopbackWebhooks || Environment.value("ONEWINDOW_ALLOW_LOOPBACK_WEBHOOKS") == "1"
    if let cap = inboxCap ?? Environment.value("ONEWINDOW_INBOX_CAP").flatMap(Int.init) {
      guard (100...1_000_000).contains(cap) else { throw ValidationError("--inbox-cap must be 100–1000000") }
      config.notifications.inboxCap = cap
    }
    if let seconds = inboxHeartbeatSeconds ?? Environment.value("ONEWINDOW_INBOX_HEARTBEAT_SECONDS").flatMap(Int.init) {
      guard (1...300).contains(seconds) else { throw ValidationError("--inbox-heartbeat-seconds must be 1–300") }
      config.notifications.heartbeat = .seconds(seconds)
    }
    if let streams = maxInboxStreamsPerAccount ?? Environment.value("ONEWINDOW_MAX_INBOX_STREAMS_PER_ACCOUNT").flatMap(Int.init) {
      guard (1...10_000).contains(streams) else { throw ValidationError("--max-inbox-streams-per-account must be 1–10000") }
      config.notifications.maxStreamsPerAccount = streams
    }
    if let attempts = webhookMaxAttempts ?? Environment.value("ONEWINDOW_WEBHOOK_MAX_ATTEMPTS").flatMap(Int.init) {
      guard (1...20).contains(attempts) else { throw ValidationError("--webhook-max-attempts must be 1–20") }
      config.notifications.retry.maxAttempts = attempts
    }
    if let seconds = sandboxCallbackDelaySeconds ?? Environment.value("ONEWINDOW_SANDBOX_CALLBACK_DELAY_SECONDS").flatMap(Int.init) {
      guard (0...86_400).contains(seconds) else { throw ValidationError("--sandbox-callback-delay-seconds must be 0–86400") }
      config.payments.sandboxCallbackDelay = .seconds(seconds)
    }
    do { try config.validate() } catch { throw ValidationError(error.description) }

    let logger = try data.makeLogger()
    let thisYear = CivilDate(Date()).components.year
    for year in [thisYear, thisYear + 1] where !config.cases.calendar.years.contains(year) {
      logger.warning(
        "the holiday calendar does not cover this year: legal deadlines count weekends only; pass --holiday-calendar with the State Council's dates",
        metadata: ["year": "\(year)"])
    }
    let dependencies = try await ServerDependencies.build(config: config, database: try data.database(), logger: logger)
    if demo {
      let result = try await DemoData.seed(into: dependencies.store)
      printDemo(result, config: config)
    }
    let app = try await ServerApp.make(config: config, dependencies: dependencies, logger: logger)
    try await withThrowingTaskGroup(of: Void.self) { group in
      group.addTask { try await app.runUntilSignalled() }
      let port = try await app.listeningPort()
      let httpPort = try await app.httpListeningPort()
      // Tests and owbench that spawn the server pass --http-port 0 and read the bound port here.
      logger.notice("serving", metadata: [
        "address": "\(config.host):\(port)", "http-address": "\(config.host):\(httpPort)", "tls": "\(config.usesTLS)",
        "data-dir": "\(config.dataDirectory)", "database": "\(dependencies.database)", "node": "\(config.nodeID)",
      ])
      try await group.waitForAll()
    }
  }

  /// Written straight to the stdout file descriptor: `print` is buffered when stdout is a pipe,
  /// and the server may run for a long time before the buffer would be flushed.
  func printDemo(_ result: DemoData.SeedResult, config: ServerConfig) {
    var out = ""
    func print(_ line: String = "") { out += line + "\n" }
    defer { FileHandle.standardOutput.write(Data(out.utf8)) }
    print("Demo catalog: \(result.departments) departments, \(result.itemsCreated) new items published.")
    guard !result.credentials.isEmpty else {
      print("Demo accounts already exist (their passwords were printed when they were created).")
      return
    }
    print("Demo accounts (passwords are shown only now):")
    for c in result.credentials {
      print("  \(c.role.rawValue.padding(toLength: 11, withPad: " ", startingAt: 0)) login \(c.login.padding(toLength: 20, withPad: " ", startingAt: 0)) password \(c.password)   \(c.displayName) (\(c.note))")
    }
    let server = "\(config.host):\(config.port)"
    if let admin = result.credentials.first(where: { $0.role == .admin }) {
      print("""

        Try it with owctl (another terminal):
          swift run owctl --server \(server) health
          swift run owctl --server \(server) catalog search 身份证
          swift run owctl --server \(server) login --user admin --password '\(admin.password)'
          swift run owctl --server \(server) whoami
        Citizens can also log in by SMS code: `owctl login --phone 13800000001`; in development the
        code is printed in this server's log and kept in the outbox table.
        """)
    }
  }
}
