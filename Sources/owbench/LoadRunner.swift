import GRPCCore
import GRPCNIOTransportHTTP2Posix
import Histogram
import OneWindowClientPosix
import Synchronization

typealias BenchClient = GRPCClient<HTTP2ClientTransport.Posix>

/// One RPC of a scenario. The `Int` is a call index (distinct across workers) for cycling
/// through request variants.
typealias BenchCall = @Sendable (BenchClient, Int) async throws -> Void

/// A named workload. `setup` runs once, before any run, on the first client (fetch item codes,
/// register an account, …) and returns the call the load loop repeats, with what one call moves
/// and what to close after the last run.
struct Scenario: Sendable {
  let name: String
  let setup: @Sendable (BenchClient) async throws -> PreparedScenario
}

/// What a scenario's setup hands the load loop.
struct PreparedScenario: Sendable {
  var call: BenchCall
  /// What one call moves, when that is more than one thing (500 mutations, 100k records): the
  /// report then shows items/s beside calls/s.
  var items: ItemCount?
  /// Closes what the setup left open (a Watch stream); runs once, after the last run.
  var teardown: @Sendable () async -> Void

  init(call: @escaping BenchCall, items: ItemCount? = nil, teardown: @escaping @Sendable () async -> Void = {}) {
    self.call = call
    self.items = items
    self.teardown = teardown
  }
}

struct ItemCount: Codable, Sendable {
  var perCall: Int
  /// Plural noun: "mutations", "records".
  var unit: String
}

/// A call that completed but broke a promise of the protocol (a push not applied, a record that
/// never arrived on a stream). Unlike an RPC error under load, any of these fails the whole run,
/// warmup included. Keep descriptions free of ids: the report groups errors by them.
struct CheckFailure: Error, CustomStringConvertible {
  let description: String
  init(_ description: String) { self.description = description }
}

struct LoadSettings: Sendable {
  var concurrency: Int
  var warmup: Duration
  var duration: Duration
  /// How long calls still in flight after the measured period may take before they are cancelled.
  var drainLimit: Duration = .seconds(60)
}

/// What one scenario measured: latencies (µs) of the calls that completed in the measured
/// period, and the calls that failed there, by status code.
struct LoadResult: Sendable {
  var name: String
  var histogram: Histogram<UInt64>
  var errors: [String: Int]
  var measured: Duration
  /// True when calls were still running `drainLimit` after the period and had to be cancelled.
  var drainTimedOut: Bool
  var concurrency: Int
  /// `CheckFailure`s in any period (warmup and drain included).
  var failedChecks: Int
  var items: ItemCount? = nil
  /// CPU time of the server (and PostgreSQL) over the measured period; nil when not measured.
  var cpu: CPUWindow? = nil

  var calls: Int { Int(histogram.totalCount) }
  var errorCount: Int { errors.values.reduce(0, +) }
  var qps: Double { Double(calls) / measured.seconds }
}

/// Lets a call report its own latency when its duration is not what is measured: sync-watch
/// measures push start → arrival on a stream, while the call also waits for the push response
/// (which usually comes after the arrival).
enum CallLatency {
  @TaskLocal static var slot: CallLatencySlot?

  /// Records `latency` as the current call's latency instead of its duration (inside a load loop).
  static func report(_ latency: Duration) { slot?.set(latency) }
}

/// One per worker: the latency its current call reported, if any.
final class CallLatencySlot: Sendable {
  /// Microseconds + 1; 0 when nothing was reported.
  private let reported = Atomic<UInt64>(0)

  func set(_ latency: Duration) { reported.store(latency.microseconds &+ 1, ordering: .relaxed) }

  func take() -> UInt64? {
    let value = reported.exchange(0, ordering: .relaxed)
    return value == 0 ? nil : value - 1
  }
}

private struct WorkerResult: Sendable {
  var histogram = Histogram<UInt64>(numberOfSignificantValueDigits: .three)
  var errors: [String: Int] = [:]
  var failedChecks = 0
}

private enum Outcome: Sendable {
  case worker(WorkerResult)
  case watchdog(fired: Bool)
}

/// The one load loop every scenario uses: `concurrency` workers spread round-robin over
/// `clients`, each repeating `call` back to back. A warmup period (not recorded) comes first,
/// then the measured period; a call counts when it completes inside the measured period.
/// Workers stop starting calls at the deadline and let the calls in flight finish. `cpu` is read
/// at the start and at the end of the measured period (not the warmup).
func runLoad(
  name: String, call: @escaping BenchCall, clients: [BenchClient], settings: LoadSettings, cpu: CPUProbe? = nil
) async -> LoadResult {
  precondition(!clients.isEmpty && settings.concurrency > 0)
  let clock = ContinuousClock()
  let measureStart = clock.now + settings.warmup
  let end = measureStart + settings.duration
  let concurrency = settings.concurrency

  let cpuTask = cpu.map { probe in
    Task<CPUWindow, Never> {
      try? await Task.sleep(until: measureStart, clock: clock)
      let start = probe.snapshot()
      try? await Task.sleep(until: end, clock: clock)
      return probe.window(from: start, to: probe.snapshot())
    }
  }

  var total = WorkerResult()
  var drainTimedOut = false
  await withTaskGroup(of: Outcome.self) { group in
    for worker in 0..<concurrency {
      let client = clients[worker % clients.count]
      group.addTask {
        var result = WorkerResult()
        var index = worker
        let slot = CallLatencySlot()
        await CallLatency.$slot.withValue(slot) {
          while !Task.isCancelled {
            let start = clock.now
            if start >= end { break }
            do {
              try await call(client, index)
              let finish = clock.now
              let reported = slot.take()
              if finish >= measureStart && finish < end {
                result.histogram.record(reported ?? (finish - start).microseconds)
              }
            } catch {
              _ = slot.take()
              if error is CheckFailure { result.failedChecks += 1 }
              let finish = clock.now
              if finish >= measureStart && finish < end {
                result.errors[errorName(error), default: 0] += 1
              }
            }
            index &+= concurrency
          }
        }
        return .worker(result)
      }
    }
    group.addTask {
      do {
        try await Task.sleep(until: end + settings.drainLimit, clock: clock)
        return .watchdog(fired: true)
      } catch {
        return .watchdog(fired: false)
      }
    }

    var remaining = concurrency
    for await outcome in group {
      switch outcome {
      case .worker(let result):
        total.histogram.add(result.histogram)
        total.errors.merge(result.errors, uniquingKeysWith: +)
        total.failedChecks += result.failedChecks
        remaining -= 1
        if remaining == 0 { group.cancelAll() }  // stops the watchdog
      case .watchdog(let fired):
        if fired {
          drainTimedOut = true
          group.cancelAll()
        }
      }
    }
  }
  return LoadResult(
    name: name, histogram: total.histogram, errors: total.errors, measured: settings.duration,
    drainTimedOut: drainTimedOut, concurrency: concurrency, failedChecks: total.failedChecks,
    cpu: await cpuTask?.value)
}

/// `UNAVAILABLE`, `DEADLINE_EXCEEDED`, … for RPC errors; `check: …` for a failed check; the type
/// name otherwise.
func errorName(_ error: any Error) -> String {
  if let rpc = error as? RPCError { return rpc.code.canonicalName }
  if let check = error as? CheckFailure { return "check: \(check.description)" }
  if let runtime = error as? RuntimeError { return "client:\(runtime.code)" }
  return String(describing: type(of: error))
}

extension Duration {
  var seconds: Double {
    let c = components
    return Double(c.seconds) + Double(c.attoseconds) / 1e18
  }

  var microseconds: UInt64 {
    let c = components
    guard c.seconds >= 0, c.attoseconds >= 0 else { return 0 }
    return UInt64(c.seconds) * 1_000_000 + UInt64(c.attoseconds / 1_000_000_000_000)
  }
}
