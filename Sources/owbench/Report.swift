import Foundation
import Histogram

// MARK: Data (also the --json output)

struct BenchReport: Codable, Sendable {
  var conditions: Conditions
  var runs: [RunReport]
  /// Medians per scenario across runs (only with --runs > 1).
  var summary: [SummaryRow]?
  var memory: MemoryReport
  var targets: [TargetCheck]
}

struct Conditions: Codable, Sendable {
  var server: String
  var spawned: Bool
  var concurrency: Int
  var connections: Int
  var warmupSeconds: Double
  var durationSeconds: Double
  var runs: Int
  var scenarios: [String]
  /// Scenarios that run at another concurrency than `concurrency` (sync-pull's full syncs).
  var concurrencyOverrides: [String: Int]
  /// Whether the clients used gzip (the server then also compresses every response).
  var gzip: Bool
  var cpus: Int
  var owbenchBuild: String
  var note: String
  /// The spawned server's database: "sqlite" (the embedded file) or "postgresql"; nil for a
  /// server owbench did not start.
  var database: String? = nil
  /// PostgreSQL: the schema (`search_path=`) the spawned server created and used.
  var postgresSchema: String? = nil
  /// `--database-settings-note`, verbatim (PostgreSQL's fsync and synchronous_commit).
  var databaseSettingsNote: String? = nil
  /// What the CPU figures are, for readers of the JSON.
  var cpuNote: String? = nil
}

struct RunReport: Codable, Sendable {
  var run: Int
  var scenarios: [ScenarioReport]
  /// Largest server VmRSS sampled (every 200 ms) during this run.
  var peakRSSSampledBytes: UInt64?
}

struct ScenarioReport: Codable, Sendable {
  var scenario: String
  var concurrency: Int
  var calls: Int
  var errors: Int
  var errorsByCode: [String: Int]
  var qps: Double
  /// What one call moves ("mutations", "records") and how many; nil when a call is the unit.
  var items: ItemCount?
  /// qps × items per call.
  var itemsPerSecond: Double?
  /// concurrency × items per call / mean call time. For calls of seconds (a full sync), a
  /// 10 s window holds only a few and `itemsPerSecond` moves in steps of one call; this does not.
  var itemsPerSecondByCallTime: Double?
  var p50Ms: Double
  var p90Ms: Double
  var p99Ms: Double
  var maxMs: Double
  var meanMs: Double
  /// This scenario's QPS over ping's QPS in the same run; nil when ping was not run.
  var ratioToPing: Double?
  var drainTimedOut: Bool
  /// Calls whose result broke a protocol promise, in any period (warmup included); any fails the run.
  var failedChecks: Int
  /// Figures measured beside the calls (notify scenarios: publish → arrival); nil for most.
  var extra: ExtraFigures?
  /// The server process's CPU time (user + system) over the measured period; nil when its pid
  /// is unknown or /proc unreadable.
  var serverCPUSeconds: Double?
  /// serverCPUSeconds per call completed in the period (µs).
  var serverCPUMicrosPerCall: Double?
  /// PostgreSQL runs: the CPU time of every `postgres` process on this machine over the period.
  var postgresCPUSeconds: Double?
  var postgresCPUMicrosPerCall: Double?
  /// Server + PostgreSQL backends, per call (µs).
  var totalCPUMicrosPerCall: Double?

  init(_ result: LoadResult, pingQPS: Double?) {
    scenario = result.name
    concurrency = result.concurrency
    calls = result.calls
    errors = result.errorCount
    errorsByCode = result.errors
    qps = result.qps
    items = result.items
    itemsPerSecond = result.items.map { result.qps * Double($0.perCall) }
    let h = result.histogram
    func ms(_ us: UInt64) -> Double { h.totalCount == 0 ? 0 : Double(us) / 1000 }
    p50Ms = ms(h.valueAtPercentile(50))
    p90Ms = ms(h.valueAtPercentile(90))
    p99Ms = ms(h.valueAtPercentile(99))
    maxMs = ms(h.max)
    meanMs = h.totalCount == 0 ? 0 : h.mean / 1000
    let meanSeconds = meanMs / 1000
    itemsPerSecondByCallTime = result.items.flatMap { items in
      meanSeconds > 0 ? Double(result.concurrency * items.perCall) / meanSeconds : nil
    }
    ratioToPing = pingQPS.flatMap { $0 > 0 ? result.qps / $0 : nil }
    drainTimedOut = result.drainTimedOut
    failedChecks = result.failedChecks
    let calls = Double(result.calls)
    func perCall(_ seconds: Double?) -> Double? { seconds.flatMap { calls > 0 ? $0 * 1e6 / calls : nil } }
    serverCPUSeconds = result.cpu?.serverSeconds
    serverCPUMicrosPerCall = perCall(serverCPUSeconds)
    postgresCPUSeconds = result.cpu?.postgresSeconds
    postgresCPUMicrosPerCall = perCall(postgresCPUSeconds)
    if let server = serverCPUSeconds, let postgres = postgresCPUSeconds {
      totalCPUMicrosPerCall = perCall(server + postgres)
    }
  }
}

struct SummaryRow: Codable, Sendable {
  var scenario: String
  var concurrency: Int
  var qps: Double
  var items: ItemCount?
  var itemsPerSecond: Double?
  var itemsPerSecondByCallTime: Double?
  var p50Ms: Double
  var p99Ms: Double
  var ratioToPing: Double?
  var extra: ExtraFigures? = nil
  var serverCPUMicrosPerCall: Double? = nil
  var postgresCPUMicrosPerCall: Double? = nil
  var totalCPUMicrosPerCall: Double? = nil

  /// Median of each figure across runs (each taken separately).
  static func medians(of runs: [RunReport]) -> [SummaryRow] {
    guard let first = runs.first else { return [] }
    return first.scenarios.map { row in
      let rows = runs.compactMap { $0.scenarios.first { $0.scenario == row.scenario } }
      let ratios = rows.compactMap(\.ratioToPing)
      let itemRates = rows.compactMap(\.itemsPerSecond)
      let callTimeRates = rows.compactMap(\.itemsPerSecondByCallTime)
      func medianOrNil(_ values: [Double]) -> Double? { values.isEmpty ? nil : median(values) }
      return SummaryRow(
        scenario: row.scenario,
        concurrency: row.concurrency,
        qps: median(rows.map(\.qps)),
        items: row.items,
        itemsPerSecond: itemRates.isEmpty ? nil : median(itemRates),
        itemsPerSecondByCallTime: callTimeRates.isEmpty ? nil : median(callTimeRates),
        p50Ms: median(rows.map(\.p50Ms)),
        p99Ms: median(rows.map(\.p99Ms)),
        ratioToPing: ratios.isEmpty ? nil : median(ratios),
        extra: ExtraFigures.medians(rows.compactMap(\.extra)),
        serverCPUMicrosPerCall: medianOrNil(rows.compactMap(\.serverCPUMicrosPerCall)),
        postgresCPUMicrosPerCall: medianOrNil(rows.compactMap(\.postgresCPUMicrosPerCall)),
        totalCPUMicrosPerCall: medianOrNil(rows.compactMap(\.totalCPUMicrosPerCall)))
    }
  }
}

struct MemoryReport: Codable, Sendable {
  var pid: Int32?
  /// VmRSS right after the server was up, before any load.
  var idleRSSBytes: UInt64?
  /// Largest VmRSS sampled every 200 ms during all runs.
  var peakRSSSampledBytes: UInt64?
  /// VmHWM after the last scenario: peak resident since the server started (startup included).
  var vmHWMBytes: UInt64?
}

struct TargetCheck: Codable, Sendable {
  var target: String
  var value: String
  /// nil when it could not be evaluated (scenario not run, memory not measured).
  var met: Bool?
}

func median(_ values: [Double]) -> Double {
  let sorted = values.sorted()
  guard !sorted.isEmpty else { return 0 }
  let mid = sorted.count / 2
  return sorted.count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

// MARK: Targets from the product issue

enum Targets {
  /// Checks the product issue's targets against the median figures (or the only run's).
  static func check(_ rows: [SummaryRow], memory: MemoryReport, concurrency: Int) -> [TargetCheck] {
    var checks: [TargetCheck] = []
    func ratioCheck(_ scenario: String, _ minimum: Double) {
      let row = rows.first { $0.scenario == scenario }
      let ratio = row?.ratioToPing
      checks.append(TargetCheck(
        target: "\(scenario) ≥ \(Int(minimum * 100))% of ping QPS",
        value: ratio.map { percent($0) } ?? "not measured",
        met: ratio.map { $0 >= minimum }))
    }
    ratioCheck("catalog-get", 0.70)
    ratioCheck("catalog-search", 0.40)
    let at = concurrency == 64 ? "" : " (stated at 64 concurrent calls; this is \(concurrency))"
    for scenario in ["ping", "catalog-get", "catalog-search"] {
      guard let row = rows.first(where: { $0.scenario == scenario }) else { continue }
      checks.append(TargetCheck(
        target: "\(scenario) p99 < 10 ms\(at)", value: fixed(row.p99Ms, 2) + " ms", met: row.p99Ms < 10))
    }
    // Sync throughput and live latency, checked only when those scenarios ran.
    func itemsCheck(_ scenario: String, _ minimum: Double) {
      guard let row = rows.first(where: { $0.scenario == scenario }), let rate = row.itemsPerSecond, let items = row.items
      else { return }
      checks.append(TargetCheck(
        target: "\(scenario) ≥ \(Int(minimum)) \(items.unit)/s", value: fixed(rate, 0) + " \(items.unit)/s",
        met: rate >= minimum))
    }
    checks += NotifyTargets.check(rows)
    itemsCheck("sync-push", 20_000)
    itemsCheck("sync-pull", 100_000)
    if let row = rows.first(where: { $0.scenario == "sync-watch" }) {
      checks.append(TargetCheck(
        target: "sync-watch p99 < 50 ms (push to arrival)", value: fixed(row.p99Ms, 2) + " ms", met: row.p99Ms < 50))
    }
    let mb = 1_000_000.0
    checks.append(TargetCheck(
      target: "idle RSS < 60 MB", value: memory.idleRSSBytes.map(megabytes) ?? "not measured",
      met: memory.idleRSSBytes.map { Double($0) < 60 * mb }))
    let loaded = [memory.peakRSSSampledBytes, memory.vmHWMBytes].compactMap { $0 }.max()
    checks.append(TargetCheck(
      target: "RSS under load < 200 MB (max of sampled peak and VmHWM)",
      value: loaded.map(megabytes) ?? "not measured", met: loaded.map { Double($0) < 200 * mb }))
    return checks
  }
}

// MARK: Text

enum TextReport {
  static func runTable(_ run: RunReport, of runs: Int) -> String {
    var out = runs > 1 ? "Run \(run.run) of \(runs)\n" : ""
    let pg = run.scenarios.contains { $0.postgresCPUMicrosPerCall != nil }
    out += table(
      headers: ["scenario", "conc", "calls", "errors", "QPS", "items/s"] + cpuHeaders(postgres: pg)
        + ["p50 ms", "p90 ms", "p99 ms", "max ms", "× ping"],
      rows: run.scenarios.map { r in
        [r.scenario, "\(r.concurrency)", "\(r.calls)", "\(r.errors)", fixed(r.qps, 1), itemRate(r.itemsPerSecond, r.items)]
          + cpuCells(r.serverCPUMicrosPerCall, r.postgresCPUMicrosPerCall, r.totalCPUMicrosPerCall, postgres: pg)
          + [fixed(r.p50Ms, 2), fixed(r.p90Ms, 2), fixed(r.p99Ms, 2), fixed(r.maxMs, 2), r.ratioToPing.map { fixed($0, 2) } ?? "–"]
      })
    for r in run.scenarios {
      if let items = r.items { out += perCall(r.scenario, items, p50Ms: r.p50Ms, byCallTime: r.itemsPerSecondByCallTime) }
    }
    for r in run.scenarios { if let e = r.extra { out += extra(r.scenario, e) } }
    for r in run.scenarios where r.errors > 0 {
      let codes = r.errorsByCode.sorted { $0.value > $1.value }.map { "\($0.key) × \($0.value)" }
      out += "  errors in \(r.scenario): \(codes.joined(separator: ", "))\n"
    }
    for r in run.scenarios where r.failedChecks > 0 {
      out += "  \(r.scenario): \(r.failedChecks) failed check\(r.failedChecks == 1 ? "" : "s") (warmup included): the run fails\n"
    }
    for r in run.scenarios where r.drainTimedOut {
      out += "  \(r.scenario): calls still running 60 s after the period were cancelled\n"
    }
    if runs > 1, let peak = run.peakRSSSampledBytes {
      out += "  server peak RSS during this run (sampled): \(megabytes(peak))\n"
    }
    return out
  }

  static func summaryTable(_ rows: [SummaryRow], runs: Int) -> String {
    let pg = rows.contains { $0.postgresCPUMicrosPerCall != nil }
    var out = "Median of \(runs) runs\n" + table(
      headers: ["scenario", "conc", "QPS", "items/s"] + cpuHeaders(postgres: pg) + ["p50 ms", "p99 ms", "× ping"],
      rows: rows.map { r in
        [r.scenario, "\(r.concurrency)", fixed(r.qps, 1), itemRate(r.itemsPerSecond, r.items)]
          + cpuCells(r.serverCPUMicrosPerCall, r.postgresCPUMicrosPerCall, r.totalCPUMicrosPerCall, postgres: pg)
          + [fixed(r.p50Ms, 2), fixed(r.p99Ms, 2), r.ratioToPing.map { fixed($0, 2) } ?? "–"]
      })
    for r in rows {
      if let items = r.items { out += perCall(r.scenario, items, p50Ms: r.p50Ms, byCallTime: r.itemsPerSecondByCallTime) }
    }
    for r in rows { if let e = r.extra { out += extra(r.scenario, e, medians: true) } }
    return out
  }

  /// CPU µs per call: the server's, and with PostgreSQL its processes' and the sum.
  static func cpuHeaders(postgres: Bool) -> [String] {
    postgres ? ["srv CPU µs/op", "pg CPU µs/op", "srv+pg µs/op"] : ["srv CPU µs/op"]
  }

  static func cpuCells(_ server: Double?, _ postgres: Double?, _ total: Double?, postgres withPostgres: Bool) -> [String] {
    func show(_ v: Double?) -> String { v.map { fixed($0, $0 < 100 ? 1 : 0) } ?? "–" }
    return withPostgres ? [show(server), show(postgres), show(total)] : [show(server)]
  }

  /// "24500 mutations", or "–" for scenarios whose unit is the call.
  static func itemRate(_ rate: Double?, _ items: ItemCount?) -> String {
    guard let rate, let items else { return "–" }
    return "\(fixed(rate, 0)) \(items.unit)"
  }

  /// What a call of an items scenario is, how long one takes (a full sync, for sync-pull), and
  /// the rate from the call time, which does not move in steps of one call as items/s does.
  static func perCall(_ scenario: String, _ items: ItemCount, p50Ms: Double, byCallTime: Double?) -> String {
    let rate = byCallTime.map { "; \(fixed($0, 0)) \(items.unit)/s from mean call time × concurrency" } ?? ""
    return "  \(scenario): \(items.perCall) \(items.unit) per call, \(fixed(p50Ms / 1000, 3)) s per call (p50)\(rate)\n"
  }

  static func memory(_ m: MemoryReport) -> String {
    guard let pid = m.pid else {
      return """
        server memory: not measured (pass --server-pid or --spawn)

        """
    }
    func show(_ v: UInt64?) -> String { v.map(megabytes) ?? "unreadable (/proc/\(pid)/status)" }
    return """
      server memory (pid \(pid)):
        idle RSS (server up, before load)  \(show(m.idleRSSBytes))
        peak RSS during run (sampled)      \(show(m.peakRSSSampledBytes))
        VmHWM (peak since server start)    \(show(m.vmHWMBytes))

      """
  }

  static func targets(_ checks: [TargetCheck], runs: Int) -> String {
    var out = "targets (product issue\(runs > 1 ? ", median figures" : "")):\n"
    let width = checks.map(\.target.count).max() ?? 0
    let valueWidth = checks.map(\.value.count).max() ?? 0
    for c in checks {
      let verdict = c.met.map { $0 ? "met" : "NOT met" } ?? "–"
      let value = String(repeating: " ", count: valueWidth - c.value.count) + c.value
      out += "  \(c.target.padding(toLength: width, withPad: " ", startingAt: 0))  \(value)  \(verdict)\n"
    }
    return out
  }

  static func conditions(_ c: Conditions) -> String {
    let server = c.spawned ? "\(c.server) (spawned by owbench, demo data)" : c.server
    let overrides = c.concurrencyOverrides.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }
    let except = overrides.isEmpty ? "" : " (except \(overrides.joined(separator: ", ")))"
    return """
      conditions: \(c.concurrency) concurrent call\(c.concurrency == 1 ? "" : "s")\(except) over \(c.connections) connection\(c.connections == 1 ? "" : "s"), \
      warmup \(trimmed(c.warmupSeconds)) s + \(trimmed(c.durationSeconds)) s measured per scenario, \
      \(c.runs) run\(c.runs == 1 ? "" : "s"), server \(server), \(c.cpus) CPUs shared with the load generator, \
      \(c.gzip ? "gzip on (requests and responses compressed)" : "no compression"); \
      \(c.note) (this owbench is a \(c.owbenchBuild) build).
      \(c.cpuNote.map { "CPU µs/op: \($0)\n" } ?? "")\(database(c))
      """
  }

  /// "database: …" and the settings note, or nothing for a server owbench did not start.
  static func database(_ c: Conditions) -> String {
    guard let database = c.database else { return "" }
    var out = "database: " + (database == "postgresql" ? "PostgreSQL (schema \(c.postgresSchema ?? "?"))" : "embedded SQLite")
    if let note = c.databaseSettingsNote { out += "; PostgreSQL settings: \(note)" }
    return out + "\n"
  }

  /// Left-aligned first column, right-aligned others.
  static func table(headers: [String], rows: [[String]]) -> String {
    let all = [headers] + rows
    let widths = headers.indices.map { i in all.map { $0[i].count }.max() ?? 0 }
    func line(_ cells: [String]) -> String {
      cells.enumerated().map { i, cell in
        let pad = String(repeating: " ", count: widths[i] - cell.count)
        return i == 0 ? cell + pad : pad + cell
      }.joined(separator: "  ")
    }
    return ([line(headers)] + rows.map(line)).joined(separator: "\n") + "\n"
  }
}

// MARK: PostgreSQL against SQLite (--database-url)

/// Both reports of a `--database-url` invocation and their comparison (the --json output then).
struct DatabaseComparisonReport: Codable, Sendable {
  var sqlite: BenchReport
  var postgresql: BenchReport
  /// Per scenario, median figures over the runs of each.
  var comparison: [ComparisonRow]
  /// `--database-settings-note`, verbatim.
  var databaseSettingsNote: String?

  init(sqlite: BenchReport, postgresql: BenchReport, databaseSettingsNote: String?) {
    self.sqlite = sqlite
    self.postgresql = postgresql
    self.databaseSettingsNote = databaseSettingsNote
    let sqliteRows = sqlite.summary ?? SummaryRow.medians(of: sqlite.runs)
    let postgresRows = postgresql.summary ?? SummaryRow.medians(of: postgresql.runs)
    comparison = postgresRows.map { pg in
      let lite = sqliteRows.first { $0.scenario == pg.scenario }
      return ComparisonRow(
        scenario: pg.scenario, postgresQPS: pg.qps, sqliteQPS: lite?.qps,
        postgresToSQLite: lite.flatMap { $0.qps > 0 ? pg.qps / $0.qps : nil },
        postgresRatioToPing: pg.ratioToPing, sqliteRatioToPing: lite?.ratioToPing,
        sqliteServerCPUMicrosPerCall: lite?.serverCPUMicrosPerCall,
        postgresServerCPUMicrosPerCall: pg.serverCPUMicrosPerCall,
        postgresBackendsCPUMicrosPerCall: pg.postgresCPUMicrosPerCall,
        postgresTotalCPUMicrosPerCall: pg.totalCPUMicrosPerCall)
    }
  }
}

struct ComparisonRow: Codable, Sendable {
  var scenario: String
  var postgresQPS: Double
  var sqliteQPS: Double?
  /// postgresQPS / sqliteQPS.
  var postgresToSQLite: Double?
  /// Each one's QPS over ping's in its own runs.
  var postgresRatioToPing: Double?
  var sqliteRatioToPing: Double?
  var sqliteServerCPUMicrosPerCall: Double?
  var postgresServerCPUMicrosPerCall: Double?
  /// Every `postgres` process on this machine.
  var postgresBackendsCPUMicrosPerCall: Double?
  /// Server + PostgreSQL backends.
  var postgresTotalCPUMicrosPerCall: Double?
}

extension TextReport {
  static func comparison(_ report: DatabaseComparisonReport) -> String {
    let runs = report.postgresql.runs.count
    var out = "PostgreSQL against SQLite (\(runs > 1 ? "medians of \(runs) runs each" : "one run each"); CPU in µs per call)\n"
    out += "PostgreSQL settings: \(report.databaseSettingsNote ?? "not stated (--database-settings-note)")\n"
    func show(_ v: Double?, _ decimals: Int = 2) -> String { v.map { fixed($0, decimals) } ?? "–" }
    func cpu(_ v: Double?) -> String { v.map { fixed($0, $0 < 100 ? 1 : 0) } ?? "–" }
    out += table(
      headers: ["scenario", "PG QPS", "SQLite QPS", "PG/SQLite", "PG × ping", "SQLite × ping",
                "SQLite srv µs", "PG srv µs", "PG backends µs", "PG srv+pg µs"],
      rows: report.comparison.map { r in
        [r.scenario, fixed(r.postgresQPS, 1), show(r.sqliteQPS, 1), show(r.postgresToSQLite), show(r.postgresRatioToPing),
         show(r.sqliteRatioToPing), cpu(r.sqliteServerCPUMicrosPerCall), cpu(r.postgresServerCPUMicrosPerCall),
         cpu(r.postgresBackendsCPUMicrosPerCall), cpu(r.postgresTotalCPUMicrosPerCall)]
      })
    return out
  }
}

func fixed(_ value: Double, _ decimals: Int) -> String { String(format: "%.\(decimals)f", value) }
func percent(_ ratio: Double) -> String { String(format: "%.0f%%", ratio * 100) }
func megabytes(_ bytes: UInt64) -> String { String(format: "%.1f MB", Double(bytes) / 1_000_000) }
func trimmed(_ seconds: Double) -> String {
  seconds == seconds.rounded() ? String(Int(seconds)) : String(format: "%.1f", seconds)
}
