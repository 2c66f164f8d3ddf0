import Logging
import Metrics
import OneWindowStore
import ServiceLifecycle
import Synchronization

/// The background jobs that must run on one node of a cluster at a time, and the leases that
/// decide which. Every node runs every job's loop; a loop does its pass only while its node
/// holds the job's lease (`holds`). This service takes and renews the leases every third of
/// the lease duration, judged by the database's clock, so when a holder dies its leases expire
/// and another node takes them within twice the duration. A node that stops releases its
/// leases at once.
///
/// A kick (new work was committed) wakes the job here and rings the jobs doorbell, so the node
/// holding the lease wakes too. On the embedded engine there is one process: every lease is
/// held without asking the database.
///
/// `/metrics`: `onewindow_job_leader{job}` is 1 on the node running the job, and
/// `onewindow_job_lease_takeovers_total{job}` counts the times this node took a job over (at
/// its start, or from a node that stopped or died).
final class ClusterJobs: Service, Sendable {
  /// The singleton jobs.
  enum Job: String, Sendable, CaseIterable {
    case caseClock = "case-clock"
    case notificationScheduler = "notification-scheduler"
    case systemEvents = "system-events"
    case payments = "payments"
    case housekeeping = "housekeeping"
    case deliveries = "deliveries"
  }

  let leases: any Leases
  let doorbells: any Doorbells
  let node: String
  let duration: Duration
  let logger: Logger
  private let state = Mutex<State>(State())

  private struct State {
    /// Until when (this node's monotonic clock) each held lease is certainly still ours.
    var heldUntil: [Job: ContinuousClock.Instant] = [:]
    var wakers: [Job: @Sendable () -> Void] = [:]
    /// Jobs whose doorbell is being rung, and those kicked again meanwhile.
    var ringing: Set<Job> = []
    var again: Set<Job> = []
  }

  init(store: any Store, node: String, duration: Duration, logger: Logger) {
    leases = store.leases
    doorbells = store.doorbells
    self.node = node
    self.duration = duration
    self.logger = logger
  }

  /// The job's loop wakes through `wake` (a kick here or on another node).
  func register(_ job: Job, wake: @escaping @Sendable () -> Void) {
    state.withLock { $0.wakers[job] = wake }
  }

  /// True while this node holds the job's lease (always on the embedded engine).
  func holds(_ job: Job) -> Bool {
    guard doorbells.isShared else { return true }
    let now = ContinuousClock.now
    return state.withLock { ($0.heldUntil[job]).map { now < $0 } ?? false }
  }

  /// New work for `job`: wakes it here, and on the node holding its lease. Kicks while a
  /// doorbell for the job is being rung collapse into one more ring after it.
  func kick(_ job: Job) {
    let wake = state.withLock { $0.wakers[job] }
    wake?()
    guard doorbells.isShared, !holds(job) else { return }
    let start = state.withLock { s -> Bool in
      if s.ringing.contains(job) {
        s.again.insert(job)
        return false
      }
      s.ringing.insert(job)
      return true
    }
    guard start else { return }
    Task {
      while true {
        await doorbells.ring(.jobs, job.rawValue)
        let more = state.withLock { s -> Bool in
          if s.again.remove(job) != nil { return true }
          s.ringing.remove(job)
          return false
        }
        if !more { return }
      }
    }
  }

  static func leader(_ job: Job) -> Gauge { Gauge(label: "onewindow_job_leader", dimensions: [("job", job.rawValue)]) }

  func run() async throws {
    guard doorbells.isShared else {
      for job in Job.allCases { Self.leader(job).record(1) }
      try? await gracefulShutdown()
      for job in Job.allCases { Self.leader(job).record(0) }
      return
    }
    let token = doorbells.observe(.jobs) { [weak self] payload in
      guard let self else { return }
      // nil: doorbells were missed; wake every job this node runs.
      let jobs = payload.flatMap(Job.init(rawValue:)).map { [$0] } ?? Job.allCases
      for job in jobs where self.holds(job) { self.state.withLock { $0.wakers[job] }?() }
    }
    defer { doorbells.cancel(token) }
    await cancelWhenGracefulShutdown {
      while !Task.isCancelled {
        await self.renew()
        try? await Task.sleep(for: self.duration / 3)
      }
    }
    await releaseAll()
  }

  /// One round: take or renew every job's lease; wake the jobs just taken over.
  func renew() async {
    for job in Job.allCases {
      let sent = ContinuousClock.now
      do {
        let held = try await leases.acquire(job.rawValue, holder: node, for: duration)
        let (gained, wake) = state.withLock { s -> (Bool, (@Sendable () -> Void)?) in
          let before = s.heldUntil[job].map { sent < $0 } ?? false
          // Counted from before the request: the database's lease ends no earlier than this.
          s.heldUntil[job] = held ? sent + duration : nil
          return (held && !before, s.wakers[job])
        }
        Self.leader(job).record(held ? 1 : 0)
        if gained {
          Counter(label: "onewindow_job_lease_takeovers_total", dimensions: [("job", job.rawValue)]).increment()
          logger.info("job lease taken", metadata: ["job": "\(job.rawValue)", "node": "\(node)"])
          wake?()
        }
      } catch {
        if Task.isCancelled { return }
        logger.warning("renewing a job lease failed", metadata: ["job": "\(job.rawValue)", "error": "\(String(reflecting: type(of: error)))"])
      }
    }
  }

  private func releaseAll() async {
    let held = state.withLock { s -> [Job] in
      defer { s.heldUntil = [:] }
      return Array(s.heldUntil.keys)
    }
    for job in Job.allCases { Self.leader(job).record(0) }
    for job in held {
      do { try await leases.release(job.rawValue, holder: node) } catch {
        logger.warning("releasing a job lease failed; it expires by itself", metadata: ["job": "\(job.rawValue)"])
      }
    }
  }
}

/// A job loop's view of its lease: it does a pass only while `isOpen`.
struct JobGate: Sendable {
  /// Always open: one process, or a test driving the job by hand.
  static let always = JobGate(jobs: nil, job: nil)
  let jobs: ClusterJobs?
  let job: ClusterJobs.Job?

  var isOpen: Bool {
    guard let jobs, let job else { return true }
    return jobs.holds(job)
  }
}
