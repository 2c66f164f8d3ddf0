import ArgumentParser
import Foundation
import Logging
import OneWindowCore
import OneWindowServer
import OneWindowStore

@main
struct OneWindowCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "onewindow",
    abstract: "OneWindow 一网通办 government services backend.",
    subcommands: [Serve.self, Migrate.self, SeedDemo.self, Admin.self, Audit.self, Payments.self],
    defaultSubcommand: Serve.self)
}

/// Options shared by every command that opens the database.
struct DataOptions: ParsableArguments {
  @Option(name: .customLong("data-dir"), help: "Directory holding onewindow.sqlite. [env: ONEWINDOW_DATA_DIR] (default: ./onewindow-data)")
  var dataDirectory: String?

  @Option(help: "Log level: trace, debug, info, notice, warning, error, critical. [env: ONEWINDOW_LOG_LEVEL] (default: info)")
  var logLevel: String?

  var resolvedDataDirectory: String {
    dataDirectory ?? Environment.value("ONEWINDOW_DATA_DIR") ?? ServerConfig().dataDirectory
  }

  func makeLogger(label: String = "onewindow") throws -> Logger {
    let raw = logLevel ?? Environment.value("ONEWINDOW_LOG_LEVEL") ?? "info"
    guard let level = Logger.Level(rawValue: raw) else { throw ValidationError("unknown log level '\(raw)'") }
    LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
    var logger = Logger(label: label)
    logger.logLevel = level
    return logger
  }

  func openStore() throws -> SQLiteStore {
    try SQLiteStore(directory: resolvedDataDirectory)
  }
}

enum Environment {
  static func value(_ name: String) -> String? {
    guard let v = ProcessInfo.processInfo.environment[name], !v.isEmpty else { return nil }
    return v
  }
}

struct Serve: AsyncParsableCommand {
  static let configuration = CommandConfiguration(abstract: "Run the gRPC server (creates and migrates the database on first start).")

  @OptionGroup var data: DataOptions

  @Option(help: "Address to listen on. [env: ONEWINDOW_HOST] (default: 127.0.0.1)")
  var host: String?

  @Option(help: "Port to listen on; 0 picks a free one. [env: ONEWINDOW_PORT] (default: 50051)")
  var port: Int?

  @Option(help: "Plain-HTTP port for /healthz, /metrics and callbacks, on the same address; 0 picks a free one. [env: ONEWINDOW_HTTP_PORT] (default: 8081)")
  var httpPort: Int?

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
    config.dataDirectory = data.resolvedDataDirectory
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
    let store = try data.openStore()
    if demo {
      let result = try await DemoData.seed(into: store)
      printDemo(result, config: config)
    }
    let app = try await ServerApp.make(config: config, store: store, logger: logger)
    try await withThrowingTaskGroup(of: Void.self) { group in
      group.addTask { try await app.runUntilSignalled() }
      let port = try await app.listeningPort()
      let httpPort = try await app.httpListeningPort()
      // Tests and owbench that spawn the server pass --http-port 0 and read the bound port here.
      logger.notice("serving", metadata: [
        "address": "\(config.host):\(port)", "http-address": "\(config.host):\(httpPort)", "tls": "\(config.usesTLS)",
        "data-dir": "\(config.dataDirectory)",
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

struct Migrate: AsyncParsableCommand {
  static let configuration = CommandConfiguration(abstract: "Create or migrate the database, then exit.")

  @OptionGroup var data: DataOptions

  func run() async throws {
    let store = try data.openStore()
    let applied = try store.appliedMigrations()
    print("database \(data.resolvedDataDirectory)/onewindow.sqlite is at schema \(applied.last ?? "none") (\(applied.count) migrations applied)")
    try await store.close()
  }
}

struct SeedDemo: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "seed-demo", abstract: "Load the demo catalog and demo accounts (existing items and accounts are kept).")

  @OptionGroup var data: DataOptions

  func run() async throws {
    let store = try data.openStore()
    let result = try await DemoData.seed(into: store)
    try await store.close()
    print("\(result.departments) departments, \(result.itemsCreated) new items published.")
    for c in result.credentials {
      print("\(c.role.rawValue)\t\(c.login)\t\(c.password)\t\(c.displayName)")
    }
    if result.credentials.isEmpty { print("Demo accounts already existed; none created.") }
  }
}

struct Admin: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Offline administration on the database (use when no administrator exists yet).",
    subcommands: [CreateUser.self])

  struct CreateUser: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "create-user", abstract: "Create an administrator or caseworker account; prints a generated password if none is given.")

    @OptionGroup var data: DataOptions

    @Option(help: "admin or caseworker.")
    var role: String

    @Option(help: "Login username: 3–32 of a-z 0-9 . _ -, starting with a letter.")
    var username: String

    @Option(help: "Display name (defaults to the username).")
    var name: String?

    @Option(help: "Department code (required for caseworkers).")
    var department: String = ""

    @Flag(help: "Read the password from standard input instead of generating one.")
    var passwordStdin = false

    func run() async throws {
      guard let role = Role(rawValue: role), role.isStaff else { throw ValidationError("--role must be admin or caseworker") }
      var password = ""
      if passwordStdin { password = readLine(strippingNewline: true) ?? "" }
      let store = try data.openStore()
      do {
        let created = try await StaffAccounts.create(
          role: role, username: username, displayName: name ?? username, departmentCode: department, password: password,
          store: store.identity, catalog: store.catalog, now: Date())
        try await store.close()
        print("created \(role.rawValue) \(created.account.username ?? "") (id \(created.account.id))")
        if let generated = created.generatedPassword { print("password: \(generated)   (shown once; change it with owctl passwd)") }
      } catch let error as OneWindowCore.ValidationError {
        try? await store.close()
        throw ValidationError(error.description)
      } catch let error as StoreError {
        try? await store.close()
        throw ValidationError("\(error)")
      }
    }
  }
}

struct Audit: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Check the audit log.", subcommands: [Verify.self])

  struct Verify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Walk the audit hash chain; exit 1 and name the first broken entry if any row was altered or removed.")

    @OptionGroup var data: DataOptions

    func run() async throws {
      let store = try data.openStore()
      let result = try await AuditVerification.run(store.audit)
      try await store.close()
      if let broken = result.firstBreak {
        print("audit log BROKEN at entry \(broken.sequence): \(broken.description) (\(result.checked) entries verified before it)")
        throw ExitCode(1)
      }
      print("audit log intact: \(result.checked) entries verified")
    }
  }
}

struct Payments: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Check the payments ledger and reconcile it with the provider.", subcommands: [Check.self, Reconcile.self])

  struct Check: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Verify the ledger invariants (balanced transactions, one capture per payment, refunds ≤ captured); exit 1 on a violation.")

    @OptionGroup var data: DataOptions

    func run() async throws {
      let store = try data.openStore()
      let result = try await PaymentMaintenance.check(store: store)
      try await store.close()
      for line in result.lines { print(line) }
      if !result.ok { throw ExitCode(1) }
    }
  }

  struct Reconcile: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Compare one business day (UTC+8) of the ledger with the sandbox provider's settlement file; exit 1 on mismatches.")

    @OptionGroup var data: DataOptions

    @Option(help: "The settlement day, YYYY-MM-DD.")
    var date: String

    func run() async throws {
      guard let day = CivilDate(date) else { throw ValidationError("--date must be YYYY-MM-DD") }
      let store = try data.openStore()
      let result = try await PaymentMaintenance.reconcile(
        store: store, dataDirectory: data.resolvedDataDirectory, day: day, logger: try data.makeLogger())
      try await store.close()
      for line in result.lines { print(line) }
      if !result.ok { throw ExitCode(1) }
    }
  }
}
