import ArgumentParser
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import OneWindowAPI
import OneWindowClientPosix

struct OWBench: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "owbench",
    abstract: "Load benchmark for a OneWindow server: QPS and latency per scenario, against the ping baseline.",
    discussion: """
      Scenarios: \(Scenarios.names.joined(separator: ", ")). Build owbench and the server with -c release; \
      with --spawn, owbench starts its own server on a free port with a fresh database and the demo catalog.

      The sync scenarios each register a citizen (the server allows 20 registrations per address and hour) \
      and write to its private `preferences` collection. sync-push: a call pushes 500 new records (items/s is \
      mutations/s); every mutation must be applied. sync-pull: the setup seeds 100 000 records; a call is a \
      complete initial sync (Pull pages from an empty cursor until has_more is false; items/s is records/s), \
      --sync-pull-concurrency at a time. sync-watch: a call pushes one record and waits until another device's \
      Watch stream delivers it (latency is push to arrival; 5 s at most). A failed check (a mutation not \
      applied, a short sync, a record that never arrives) makes owbench exit with status 1.

      Notifications (run only when named in --scenarios; they publish as an administrator: --admin-password, \
      or --spawn, which creates one): notify-direct publishes to --direct-subscribers accounts, each with a live \
      Subscribe stream (QPS is publishes/s; publish → arrival is reported beside the table; every message must \
      arrive). notify-broadcast-1k / -10k (and notify-broadcast with --subscribers) open that many live streams \
      over --notify-accounts accounts, then publish one topic message every 500 ms (a call is a round; its \
      latency is publish → the last stream; every stream must get each message exactly once).

      CPU: for every scenario owbench reads the server's CPU time (user + system, /proc/PID/stat) at the \
      start and the end of the measured period and reports CPU µs per call (srv CPU µs/op; with --server-pid or \
      --spawn, Linux). The load generator's own CPU is not in it.

      PostgreSQL: with --spawn and --database-url, owbench runs the whole scenario list (all --runs) twice: \
      first against a spawned server on its embedded SQLite, then against a second one on PostgreSQL, in a new \
      schema owbench_<random> of that database (search_path= is added to the URL; the server creates and \
      migrates the schema; owbench leaves it behind, drop it with DROP SCHEMA … CASCADE). It prints both \
      reports and a comparison: QPS of each, their ratio, each one's ratio to its own ping, and CPU µs per call. \
      In the PostgreSQL run the CPU of every process named postgres on this machine (backends, WAL writer, \
      checkpointer, …) is added as pg CPU µs/op, so use a cluster on this machine that nothing else loads. \
      State its durability settings with --database-settings-note, e.g. "fsync=on, synchronous_commit=on".
      """)

  @Option(help: "Server address host:port. [env: OWBENCH_SERVER] (default: 127.0.0.1:50051)")
  var server: String?

  @Option(help: "Concurrent calls (worker tasks).")
  var concurrency = 64

  @Option(help: "Measured seconds per scenario.")
  var duration = 10.0

  @Option(help: "Warmup seconds per scenario (not recorded).")
  var warmup = 2.0

  @Option(help: "HTTP/2 connections (gRPC clients) the workers are spread over.")
  var connections = 4

  @Option(help: "Comma-separated scenarios to run, in order.")
  var scenarios = Scenarios.defaultNames.joined(separator: ",")

  @Option(help: "PID of the server, to report its resident memory (Linux /proc).")
  var serverPid: Int32?

  @Option(help: "Path to a onewindow binary to start (free port, temporary data directory, --demo) and stop afterwards.")
  var spawn: String?

  @Option(help: "Concurrent full syncs in sync-pull (each call pulls the whole 100k-record account).")
  var syncPullConcurrency = 1

  @Option(help: "Run the whole scenario list this many times and summarise the medians.")
  var runs = 1

  @Flag(help: "Compress requests and accept compressed responses (as owctl --gzip); off by default.")
  var gzip = false

  @Flag(help: "Print the results as JSON instead of tables.")
  var json = false

  @Option(help: "notify-*: the administrator who publishes (ignored with --spawn, which creates its own).")
  var adminUser = "admin"

  @Option(help: "notify-*: that administrator's password. [env: OWBENCH_ADMIN_PASSWORD]")
  var adminPassword: String?

  @Option(help: "notify-direct: subscriber accounts, one live stream each (citizens while registration allows, then caseworkers).")
  var directSubscribers = 10

  @Option(help: "notify-broadcast: live subscriber streams (notify-broadcast-1k and -10k fix it at 1000 and 10000).")
  var subscribers = 1000

  @Option(help: "notify-broadcast*: accounts the streams are spread over (caseworkers made by the administrator; each stream of an account gets every topic message); more when --max-streams-per-account requires.")
  var notifyAccounts = 200

  @Option(help: "notify-broadcast*: the server's --max-inbox-streams-per-account (its default is 32).")
  var maxStreamsPerAccount = 32

  @Option(help: "pay: cases the setup submits before measuring (each is paid once; the runs stop with an error when they run out).")
  var payCases = 8000

  @Option(help: "With --spawn: also run every scenario against a second spawned server on this PostgreSQL database (postgres://user:password@host:port/database?sslmode=…), in a new schema owbench_<random>, and compare. [env: OWBENCH_DATABASE_URL]")
  var databaseURL: String?

  @Option(help: "With --database-url: how many nodes the PostgreSQL run starts on the one database (1–8); the connections are spread over them round-robin, and srv CPU is their sum. The SQLite run stays one node.")
  var nodes = 1

  @Option(help: "With --database-url: the PostgreSQL settings the figures were measured with, printed verbatim beside them; state fsync and synchronous_commit (e.g. \"fsync=on, synchronous_commit=on\").")
  var databaseSettingsNote: String?

  /// `--database-url`, else OWBENCH_DATABASE_URL (when not empty).
  var resolvedDatabaseURL: String? {
    if let databaseURL { return databaseURL }
    guard let value = ProcessInfo.processInfo.environment["OWBENCH_DATABASE_URL"], !value.isEmpty else { return nil }
    return value
  }

  func validate() throws {
    guard concurrency >= 1 else { throw ValidationError("--concurrency must be at least 1") }
    guard connections >= 1 else { throw ValidationError("--connections must be at least 1") }
    guard duration > 0, duration <= 86_400 else { throw ValidationError("--duration must be between 0 and 86400 seconds") }
    guard warmup >= 0, warmup <= 3_600 else { throw ValidationError("--warmup must be between 0 and 3600 seconds") }
    guard runs >= 1 else { throw ValidationError("--runs must be at least 1") }
    guard syncPullConcurrency >= 1 else { throw ValidationError("--sync-pull-concurrency must be at least 1") }
    guard directSubscribers >= 1 else { throw ValidationError("--direct-subscribers must be at least 1") }
    guard subscribers >= 1 else { throw ValidationError("--subscribers must be at least 1") }
    guard notifyAccounts >= 1 else { throw ValidationError("--notify-accounts must be at least 1") }
    guard maxStreamsPerAccount >= 1 else { throw ValidationError("--max-streams-per-account must be at least 1") }
    guard (1...1_000_000).contains(payCases) else { throw ValidationError("--pay-cases must be 1–1000000") }
    guard (1...8).contains(nodes) else { throw ValidationError("--nodes must be 1–8") }
    if nodes > 1, resolvedDatabaseURL == nil || spawn == nil {
      throw ValidationError("--nodes needs --spawn and --database-url: several nodes share one PostgreSQL database")
    }
    _ = try selectedScenarios()
    if spawn != nil, server != nil || serverPid != nil {
      throw ValidationError("--spawn starts its own server: don't combine it with --server or --server-pid")
    }
    if let url = resolvedDatabaseURL {
      let source = databaseURL != nil ? "--database-url" : "OWBENCH_DATABASE_URL"
      guard spawn != nil else {
        throw ValidationError(
          "\(source) needs --spawn: owbench compares PostgreSQL with SQLite on servers it starts itself "
            + "(to benchmark a running server on PostgreSQL, use --server and --server-pid without \(source))")
      }
      guard url.hasPrefix("postgres://") || url.hasPrefix("postgresql://") else {
        throw ValidationError("\(source) must be a postgres:// URL")
      }
      let query = URLComponents(string: url)?.queryItems ?? []
      guard !query.contains(where: { $0.name == "search_path" || $0.name == "schema" }) else {
        throw ValidationError("\(source): leave out search_path=; owbench uses a new schema owbench_<random> each time")
      }
    } else if databaseSettingsNote != nil {
      throw ValidationError("--database-settings-note describes the --database-url database: give --database-url too")
    }
  }

  func selectedScenarios() throws -> [Scenario] {
    let names = scenarios.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    guard !names.isEmpty else { throw ValidationError("--scenarios is empty") }
    return try names.map { name in
      guard let scenario = Scenarios.named(name) else {
        throw ValidationError("unknown scenario '\(name)' (known: \(Scenarios.names.joined(separator: ", ")))")
      }
      return scenario
    }
  }

  func run() async throws {
    PayBench.settings.state.withLock { $0 = payCases }
    let settings = BenchSettings(
      concurrency: concurrency, connections: min(connections, concurrency),
      load: LoadSettings(
        concurrency: concurrency, warmup: .milliseconds(Int64(warmup * 1000)),
        duration: .milliseconds(Int64(duration * 1000))),
      runs: runs, scenarios: try selectedScenarios(), gzip: gzip,
      concurrencyOverrides: NotifyBench.concurrencyOverrides.merging([Scenarios.syncPull.name: syncPullConcurrency]) { $1 })

    guard let url = resolvedDatabaseURL, spawn != nil else {
      let report = try await benchOnce(settings, database: nil)
      try printReport(report)
      try exitIfFailed([report])
      return
    }
    // --database-url: the same scenarios on SQLite, then on PostgreSQL.
    progress("SQLite: the embedded database")
    let sqlite = try await benchOnce(settings, database: nil)
    let schema = "owbench_" + String(UInt64.random(in: 0...UInt64.max), radix: 36)
    let separator = url.hasSuffix("?") || url.hasSuffix("&") ? "" : url.contains("?") ? "&" : "?"
    let schemaURL = url + separator + "search_path=" + schema
    progress("PostgreSQL: schema \(schema) (owbench leaves it behind: DROP SCHEMA \(schema) CASCADE)")
    NotifyBench.forgetServer()
    let postgres = try await benchOnce(
      settings, database: SpawnDatabase(url: schemaURL, schema: schema, settingsNote: databaseSettingsNote))
    let both = DatabaseComparisonReport(sqlite: sqlite, postgresql: postgres, databaseSettingsNote: databaseSettingsNote)
    if json {
      print(try encodeJSON(both))
    } else {
      var out = "=== SQLite (embedded) ===\n\n" + textReport(sqlite)
      out += "\n=== PostgreSQL (schema \(schema)\(nodes > 1 ? ", \(nodes) nodes" : "")) ===\n\n" + textReport(postgres)
      out += "\n" + TextReport.comparison(both)
      print(out, terminator: "")
    }
    try exitIfFailed([sqlite, postgres])
  }

  /// Starts the server when --spawn (on `database`, or its embedded SQLite), runs the scenarios
  /// against it and stops it.
  private func benchOnce(_ settings: BenchSettings, database: SpawnDatabase?) async throws -> BenchReport {
    var spawned: SpawnedServer?
    /// The other nodes of a PostgreSQL run with --nodes (sharing the first one's keys).
    var others: [SpawnedServer] = []
    if let spawn {
      let count = database == nil ? 1 : nodes
      progress("starting \(spawn)\(database == nil ? "" : " on PostgreSQL")\(count > 1 ? " (\(count) nodes)" : "") …")
      let first = try await SpawnedServer.start(executable: spawn, databaseURL: database?.url, nodeID: count > 1 ? "bench-0" : nil)
      spawned = first
      do {
        for n in 1..<count {
          others.append(try await SpawnedServer.start(
            executable: spawn, databaseURL: database?.url, keys: first.dataDirectory, nodeID: "bench-\(n)"))
        }
      } catch {
        for server in others { await server.stop() }
        await first.stop()
        throw error
      }
    }
    let address = spawned?.address ?? server ?? ProcessInfo.processInfo.environment["OWBENCH_SERVER"] ?? "127.0.0.1:50051"
    let addresses = [address] + others.map(\.address)
    let pid = spawned?.pid ?? serverPid
    func stopAll() async {
      for server in others { await server.stop() }
      await spawned?.stop()
    }
    NotifyBench.configure {
      $0.address = address
      $0.gzip = gzip
      $0.adminLogin = adminUser
      $0.adminPassword = adminPassword ?? ProcessInfo.processInfo.environment["OWBENCH_ADMIN_PASSWORD"]
      $0.directSubscribers = directSubscribers
      $0.broadcastSubscribers = subscribers
      $0.broadcastAccounts = notifyAccounts
      $0.maxStreamsPerAccount = maxStreamsPerAccount
    }
    if let spawn, let spawned, NotifyBench.uses(settings.scenarios) {
      do {
        try await NotifyBench.provisionAdmin(executable: spawn, server: spawned)
      } catch {
        await stopAll()
        throw error
      }
    }

    var report: BenchReport
    do {
      report = try await Bench(
        settings: settings, addresses: addresses, pid: pid, otherPIDs: others.map(\.pid), spawned: spawned != nil,
        measurePostgres: database != nil
      ).run()
    } catch {
      await stopAll()
      throw error
    }
    await stopAll()
    if spawned != nil {
      report.conditions.database = database == nil ? "sqlite" : "postgresql"
      report.conditions.postgresSchema = database?.schema
      report.conditions.databaseSettingsNote = database?.settingsNote
    }
    return report
  }

  private func printReport(_ report: BenchReport) throws {
    if json {
      print(try encodeJSON(report))
    } else {
      print(textReport(report), terminator: "")
    }
  }

  private func encodeJSON(_ value: some Encodable) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    return String(decoding: try encoder.encode(value), as: UTF8.self)
  }

  private func textReport(_ report: BenchReport) -> String {
    var out = ""
    for run in report.runs { out += TextReport.runTable(run, of: report.runs.count) + "\n" }
    if let summary = report.summary { out += TextReport.summaryTable(summary, runs: report.runs.count) + "\n" }
    out += TextReport.memory(report.memory) + "\n"
    out += TextReport.targets(report.targets, runs: report.runs.count) + "\n"
    out += TextReport.conditions(report.conditions)
    return out
  }

  private func exitIfFailed(_ reports: [BenchReport]) throws {
    let failed = reports.flatMap(\.runs).flatMap(\.scenarios).filter { $0.failedChecks > 0 }
    if !failed.isEmpty {
      progress("FAILED: checks failed in \(Set(failed.map(\.scenario)).sorted().joined(separator: ", ")) (see the errors above)")
      throw ExitCode.failure
    }
  }
}

/// The PostgreSQL database a spawned server runs on (`--database-url` with owbench's schema).
struct SpawnDatabase: Sendable {
  var url: String
  var schema: String
  var settingsNote: String?
}

struct BenchSettings: Sendable {
  var concurrency: Int
  var connections: Int
  var load: LoadSettings
  var runs: Int
  var scenarios: [Scenario]
  var gzip: Bool
  /// Per-scenario concurrency instead of `concurrency`.
  var concurrencyOverrides: [String: Int]

  /// The overrides of the scenarios that run.
  var activeOverrides: [String: Int] {
    concurrencyOverrides.filter { name, _ in scenarios.contains { $0.name == name } }
  }

  func load(for scenario: String) -> LoadSettings {
    var settings = load
    if let concurrency = concurrencyOverrides[scenario] { settings.concurrency = concurrency }
    return settings
  }
}

/// Connects, prepares every scenario once, then runs the scenario list `runs` times while
/// sampling the server's memory.
struct Bench: Sendable {
  let settings: BenchSettings
  /// The nodes' addresses; connections are spread over them round-robin (setups use the first).
  let addresses: [String]
  var address: String { addresses[0] }
  let pid: Int32?
  /// The other nodes' pids: their CPU is added to the first one's.
  var otherPIDs: [Int32] = []
  let spawned: Bool
  /// Also measure the CPU of every `postgres` process (the server runs on PostgreSQL here).
  var measurePostgres = false

  func run() async throws -> BenchReport {
    let nodeOptions = try addresses.map { try ConnectionOptions(server: $0, gzip: settings.gzip) }
    for options in nodeOptions { try await checkServing(options) }

    var memory = MemoryReport(pid: pid)
    if let pid {
      memory.idleRSSBytes = ProcStatus.bytes("VmRSS", pid: pid)
      if memory.idleRSSBytes == nil { progress("warning: cannot read /proc/\(pid)/status; memory will not be reported") }
    }

    let clients = try (0..<settings.connections).map { i in
      BenchClient(transport: try nodeOptions[i % nodeOptions.count].makeTransport())
    }
    let runs = try await withThrowingTaskGroup(of: Void.self) { group in
      for client in clients { group.addTask { try await client.runConnections() } }
      do {
        let runs = try await measure(clients)
        for client in clients { client.beginGracefulShutdown() }
        try await group.waitForAll()
        return runs
      } catch {
        for client in clients { client.beginGracefulShutdown() }
        group.cancelAll()
        throw error
      }
    }

    if let pid {
      memory.peakRSSSampledBytes = runs.compactMap(\.peakRSSSampledBytes).max()
      memory.vmHWMBytes = ProcStatus.bytes("VmHWM", pid: pid)
    }
    let summary = runs.count > 1 ? SummaryRow.medians(of: runs) : nil
    let rows = summary ?? SummaryRow.medians(of: runs)
    return BenchReport(
      conditions: Conditions(
        server: addresses.joined(separator: ","), spawned: spawned, concurrency: settings.concurrency, connections: settings.connections,
        warmupSeconds: settings.load.warmup.seconds, durationSeconds: settings.load.duration.seconds,
        runs: settings.runs, scenarios: settings.scenarios.map(\.name),
        concurrencyOverrides: settings.activeOverrides.filter { $0.value != settings.concurrency }, gzip: settings.gzip,
        cpus: ProcessInfo.processInfo.activeProcessorCount, owbenchBuild: owbenchBuild,
        note: "build owbench and the server with -c release",
        cpuNote: pid == nil ? nil : (measurePostgres
          ? "CPU time (user + system) of the server (srv) and of every postgres process on this machine (pg) over the measured period, per call completed in it"
          : "CPU time (user + system) of the server over the measured period, per call completed in it")),
      runs: runs, summary: summary, memory: memory,
      targets: Targets.check(rows, memory: memory, concurrency: settings.concurrency))
  }

  /// Sets up every scenario, runs them `runs` times, then tears them down (closing what their
  /// setups left open, so the clients can shut down gracefully).
  private func measure(_ clients: [BenchClient]) async throws -> [RunReport] {
    var prepared: [(name: String, scenario: PreparedScenario)] = []
    for scenario in settings.scenarios {
      progress("setting up \(scenario.name) …")
      do {
        prepared.append((scenario.name, try await scenario.setup(clients[0])))
      } catch {
        for (_, ready) in prepared { await ready.teardown() }
        throw BenchError("setup of \(scenario.name) failed: \(error)")
      }
    }

    let cpu = CPUProbe(serverPID: pid, otherServerPIDs: otherPIDs, postgres: measurePostgres)
    if let pid, ProcCPU.times(pid: pid) == nil {
      progress("warning: cannot read /proc/\(pid)/stat; server CPU will not be reported")
    }
    if measurePostgres, ProcCPU.postgresPIDs().isEmpty {
      progress("warning: no postgres processes in /proc (PostgreSQL on another machine or in a container?); its CPU will not be reported")
    }
    var runs: [RunReport] = []
    for index in 1...settings.runs {
      let sampler = pid.map { RSSSampler(pid: $0) }
      var results: [LoadResult] = []
      var extras: [String: ExtraFigures] = [:]
      for (name, scenario) in prepared {
        let label = settings.runs > 1 ? "run \(index)/\(settings.runs) \(name)" : name
        let load = settings.load(for: name)
        progress("\(label): \(trimmed(load.warmup.seconds)) s warmup + \(trimmed(load.duration.seconds)) s …")
        let hooks = ScenarioHooks.named(name)
        do {
          try await hooks?.beforeRun(load)
        } catch {
          for (_, ready) in prepared { await ready.teardown() }
          throw BenchError("\(label): \(error)")
        }
        var result = await runLoad(name: name, call: scenario.call, clients: clients, settings: load, cpu: cpu)
        result.items = scenario.items
        if let extra = await hooks?.afterRun() {
          result.failedChecks += extra.failedChecks
          extras[name] = extra
        }
        let rate = result.items.map { ", \(fixed(result.qps * Double($0.perCall), 0)) \($0.unit)/s" } ?? ""
        let calls = Double(result.calls)
        let serverCPU = result.cpu?.serverSeconds.flatMap { calls > 0 ? ", server CPU \(fixed($0 * 1e6 / calls, 1)) µs/op" : nil } ?? ""
        let postgresCPU = result.cpu?.postgresSeconds.flatMap { calls > 0 ? ", PostgreSQL \(fixed($0 * 1e6 / calls, 1)) µs/op" : nil } ?? ""
        progress("\(label): \(fixed(result.qps, 1)) QPS\(rate)\(serverCPU)\(postgresCPU), \(result.errorCount) errors")
        results.append(result)
      }
      let peak = await sampler?.finish()
      let pingQPS = results.first { $0.name == Scenarios.ping.name }?.qps
      runs.append(RunReport(
        run: index,
        scenarios: results.map { result in
          var report = ScenarioReport(result, pingQPS: pingQPS)
          report.extra = extras[result.name]
          if report.extra?.comparableToPing == false { report.ratioToPing = nil }
          return report
        },
        peakRSSSampledBytes: peak.flatMap { $0 > 0 ? $0 : nil }))
    }
    for (_, scenario) in prepared { await scenario.teardown() }
    return runs
  }

  /// One health Check with a short timeout, so an unreachable server fails fast and clearly.
  private func checkServing(_ options: ConnectionOptions) async throws {
    var callOptions = CallOptions.defaults
    callOptions.timeout = .seconds(5)
    callOptions.waitForReady = false
    do {
      let status = try await withGRPCClient(transport: options.makeTransport()) { client in
        try await Grpc_Health_V1_Health.Client(wrapping: client)
          .check(Grpc_Health_V1_HealthCheckRequest(), options: callOptions).status
      }
      guard status == .serving else { throw BenchError("the server at \(options.display) reports health status \(status)") }
    } catch let error as BenchError {
      throw error
    } catch {
      throw BenchError("cannot reach a OneWindow server at \(options.display): \(error)")
    }
  }
}

#if DEBUG
let owbenchBuild = "debug"
#else
let owbenchBuild = "release"
#endif

/// Progress goes to stderr so that stdout holds only the report (tables or JSON).
func progress(_ message: String) {
  FileHandle.standardError.write(Data(("owbench: " + message + "\n").utf8))
}

/// Top-level code in main.swift resolves `OWBench.main()` to ParsableCommand's synchronous
/// entry point (which refuses async commands); inside an async function the async one wins.
func runOWBench() async {
  await OWBench.main()
}

await runOWBench()
