import Logging
import Metrics
import OneWindowStore
import ServiceLifecycle

/// Asks the database a trivial query every `interval` and tells `HealthService` whether it
/// answered within the interval, so `/readyz` and the gRPC health service turn NOT_SERVING
/// while the database is unreachable (the load balancer then sends work to a node that can do
/// it) and SERVING again once it answers. The pool reconnects by itself; this only watches.
/// `onewindow_database_up` shows the same in `/metrics`.
struct DatabaseReadiness: Service {
  let store: any Store
  let health: HealthService
  let interval: Duration
  let logger: Logger

  func run() async throws {
    let up = Gauge(label: "onewindow_database_up")
    up.record(1)
    await cancelWhenGracefulShutdown {
      var reachable = true
      while !Task.isCancelled {
        let answered = await answers(within: interval)
        if Task.isCancelled { return }
        if answered != reachable {
          reachable = answered
          health.setDatabaseReachable(answered)
          up.record(answered ? 1 : 0)
          if answered {
            logger.notice("the database answers again; serving")
          } else {
            logger.error("the database does not answer; not serving until it does", metadata: ["timeout": "\(interval)"])
          }
        }
        try? await Task.sleep(for: interval)
      }
    }
  }

  /// Whether a ping finished without error within `limit`.
  func answers(within limit: Duration) async -> Bool {
    await withTaskGroup(of: Bool.self) { group in
      group.addTask { (try? await store.ping()) != nil }
      group.addTask {
        try? await Task.sleep(for: limit)
        return false
      }
      let first = await group.next() ?? false
      group.cancelAll()
      return first
    }
  }
}
