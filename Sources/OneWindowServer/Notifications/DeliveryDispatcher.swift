import Foundation
import Logging
import OneWindowCore
import OneWindowStore
import ServiceLifecycle
import Synchronization

/// Sends queued outbound deliveries (webhooks, and other channels later) in the background.
///
/// `run()` first returns deliveries a crash left in `sending` to the queue, then loops: claim
/// the due deliveries (the store moves each to `sending` in the claiming transaction), send each
/// through the channel named by its `channel` (at most `maxConcurrentDeliveries` at once), and
/// record the attempt with the status `RetryPolicy` gives it. A temporary failure is due again
/// after the policy's backoff (with jitter); the last failed attempt dead-letters it as
/// technical-failure; a delivery for a channel that is not configured is a technical failure at
/// once. When nothing is due it sleeps until the next delivery comes due, a `kick()`, or 60 s.
///
/// On graceful shutdown it stops claiming, lets the requests in flight finish (each bounded by
/// its channel's timeout) and records them, then shuts the channels down. If its task is
/// cancelled outright instead, requests in flight are abandoned without an attempt recorded;
/// those deliveries stay in `sending` until the next start recovers them (at-least-once).
///
/// The lead wires it as
/// `DeliveryDispatcher(store: store.notifications, channels: ["webhook": webhookChannel], policy: settings.retry, clock: clock, logger: logger)`,
/// runs it in the ServiceGroup, and calls `kick()` after a commit that queued deliveries.
public final class DeliveryDispatcher: Service, Sendable {
  let store: any NotificationStore
  let channels: [String: any NotificationChannel]
  let policy: RetryPolicy
  let clock: any WallClock
  let logger: Logger
  let maxConcurrentDeliveries: Int
  /// The longest sleep between passes.
  let maxIdle: Duration

  private let wakeups: AsyncStream<Void>
  private let wake: AsyncStream<Void>.Continuation
  private let stopping = Atomic<Bool>(false)
  private let inFlight = Atomic<Int>(0)
  /// Sending runs only while this node holds the job's lease; the server sets it before `run()`.
  let leaseGate = Mutex<JobGate>(.always)

  /// - Parameters:
  ///   - store: `store.notifications`.
  ///   - channels: by delivery channel name, e.g. `["webhook": WebhookChannel(...)]`.
  ///   - policy: retries and backoff (`NotificationSettings.retry`).
  ///   - maxConcurrentDeliveries: requests in flight at once (at least 1).
  public init(
    store: any NotificationStore, channels: [String: any NotificationChannel], policy: RetryPolicy = RetryPolicy(),
    clock: any WallClock = SystemClock(), logger: Logger, maxConcurrentDeliveries: Int = 16, maxIdle: Duration = .seconds(60)
  ) {
    self.store = store
    self.channels = channels
    self.policy = policy
    self.clock = clock
    self.logger = logger
    self.maxConcurrentDeliveries = max(1, maxConcurrentDeliveries)
    self.maxIdle = maxIdle
    (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
  }

  /// The same, with the channels keyed by their own `name`.
  public convenience init(
    store: any NotificationStore, channels: [any NotificationChannel], policy: RetryPolicy = RetryPolicy(),
    clock: any WallClock = SystemClock(), logger: Logger, maxConcurrentDeliveries: Int = 16, maxIdle: Duration = .seconds(60)
  ) {
    self.init(
      store: store, channels: Dictionary(channels.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first }), policy: policy,
      clock: clock, logger: logger, maxConcurrentDeliveries: maxConcurrentDeliveries, maxIdle: maxIdle)
  }

  /// Wakes the loop now: call after committing deliveries. Kicks while it is busy collapse into
  /// one more pass. Cheap and safe from any task.
  public func kick() {
    wake.yield()
  }

  // MARK: - The service

  /// Runs until graceful shutdown (or cancellation). Call once.
  public func run() async throws {
    await withGracefulShutdownHandler {
      await loop()
    } onGracefulShutdown: {
      self.stopping.store(true, ordering: .sequentiallyConsistent)
      self.wake.yield()
    }
    await shutdownChannels()
  }

  /// Shuts every channel down (closes their HTTP clients). `run()` does it when it ends; tests
  /// that drive `runOnce()` call it themselves.
  public func shutdownChannels() async {
    for channel in channels.values { await channel.shutdown() }
  }

  /// One pass (tests): claims what is due now (at most `maxConcurrentDeliveries`), sends it all
  /// concurrently, records the attempts, and returns how many deliveries were sent.
  @discardableResult
  public func runOnce() async throws -> Int {
    let claimed = try await store.claimDueDeliveries(now: clock.now(), limit: maxConcurrentDeliveries)
    await withDiscardingTaskGroup { group in
      for delivery in claimed { group.addTask { await self.process(delivery) } }
    }
    return claimed.count
  }

  private var isStopping: Bool { stopping.load(ordering: .sequentiallyConsistent) || Task.isCancelled }

  private func recover() async {
    do {
      let recovered = try await store.recoverInterruptedDeliveries(now: clock.now())
      if recovered > 0 { logger.warning("deliveries interrupted by a restart queued again", metadata: ["count": "\(recovered)"]) }
    } catch {
      logger.error("recovering interrupted deliveries failed", metadata: ["error": "\(String(reflecting: type(of: error)))"])
    }
  }

  /// Keeps up to `maxConcurrentDeliveries` in flight: claims as slots free up, sleeps when
  /// nothing is due. Each finished delivery wakes the loop (a slot is free).
  private func loop() async {
    var wakeups = self.wakeups.makeAsyncIterator()
    var holding = false
    await withDiscardingTaskGroup { group in
      while !isStopping {
        // Deliveries left in `sending` by a node that died (or by this one's last run) are queued
        // again when the lease is taken: no other node sends while this one holds it.
        guard leaseGate.withLock({ $0 }).isOpen else {
          holding = false
          await sleep(upTo: maxIdle, wakeups: &wakeups)
          continue
        }
        if !holding {
          holding = true
          await recover()
        }
        var wait: Duration
        let free = maxConcurrentDeliveries - inFlight.load(ordering: .sequentiallyConsistent)
        if free > 0 {
          do {
            let claimed = try await store.claimDueDeliveries(now: clock.now(), limit: free)
            for delivery in claimed {
              inFlight.add(1, ordering: .sequentiallyConsistent)
              group.addTask {
                await self.process(delivery)
                self.inFlight.subtract(1, ordering: .sequentiallyConsistent)
                self.wake.yield()
              }
            }
            // A full claim: more may be due; claim again if slots are left.
            if claimed.count == free { continue }
            wait = try await idleWait()
          } catch {
            if isStopping { break }
            logger.error("looking for due deliveries failed", metadata: ["error": "\(String(reflecting: type(of: error)))"])
            wait = .seconds(5)
          }
        } else {
          // Every slot is busy: a finished delivery wakes the loop.
          wait = maxIdle
        }
        if isStopping { break }
        await sleep(upTo: wait, wakeups: &wakeups)
      }
    }
  }

  /// Until the next delivery is due, at most `maxIdle`; at least 1 s when one is due already
  /// (claiming just found nothing, so it is someone else's, or about to be).
  private func idleWait() async throws -> Duration {
    guard let next = try await store.nextDeliveryDue() else { return maxIdle }
    let seconds = next.timeIntervalSince(clock.now())
    guard seconds > 0 else { return .seconds(1) }
    return min(maxIdle, .milliseconds(Int64((seconds * 1000).rounded(.up))))
  }

  /// Returns after `timeout`, a kick, a finished delivery or shutdown, whichever is first.
  private func sleep(upTo timeout: Duration, wakeups: inout AsyncStream<Void>.Iterator) async {
    let timer = Task { [wake] in
      guard (try? await Task.sleep(for: timeout)) != nil else { return }
      wake.yield()
    }
    defer { timer.cancel() }
    _ = await wakeups.next()
  }

  // MARK: - One delivery

  private func process(_ delivery: Delivery) async {
    let attempt = (delivery.attempts.map(\.number).max() ?? 0) + 1
    let startedAt = clock.now()
    let result: ChannelResult
    let status: DeliveryStatus
    if let channel = channels[delivery.channel] {
      result = await channel.deliver(delivery, attempt: attempt)
      // Abandoned mid-request (hard cancellation): recorded by nobody; recovered at the next start.
      if Task.isCancelled { return }
      status = policy.status(after: result.outcome, attempt: attempt)
    } else {
      result = ChannelResult(outcome: .rejected, error: "no channel '\(delivery.channel)' is configured")
      status = .technicalFailure
    }
    let finishedAt = clock.now()
    var nextAttemptAt: Date?
    if status == .temporaryFailure {
      let delay = policy.delay(afterAttempt: attempt, jitter: Double.random(in: 0...1)) ?? policy.baseDelay
      nextAttemptAt = finishedAt.addingTimeInterval(delay)
    }
    let record = DeliveryAttempt(
      number: attempt, at: startedAt, httpStatus: result.httpStatus, error: result.error, durationMillis: result.durationMillis)
    await save(delivery: delivery, attempt: record, status: status, nextAttemptAt: nextAttemptAt)

    var metadata: Logger.Metadata = [
      "channel": "\(delivery.channel)", "event_type": "\(delivery.eventType)", "delivery": "\(delivery.id)",
      "attempt": "\(attempt)", "status": "\(status.rawValue)",
    ]
    if let code = result.httpStatus { metadata["http_status"] = "\(code)" }
    switch status {
    case .delivered:
      logger.debug("delivery sent", metadata: metadata)
    case .temporaryFailure:
      if let nextAttemptAt { metadata["retry_in_s"] = "\(Int(nextAttemptAt.timeIntervalSince(finishedAt).rounded()))" }
      logger.notice("delivery attempt failed; will retry", metadata: metadata)
    case .permanentFailure:
      logger.warning("delivery refused by the receiver", metadata: metadata)
    case .technicalFailure:
      logger.error("delivery failed for good (dead letter; replayable)", metadata: metadata)
    case .created, .sending:
      break
    }
  }

  /// Records the attempt, trying a few times: a delivery whose attempt is never recorded stays
  /// in `sending` until the next start.
  private func save(delivery: Delivery, attempt: DeliveryAttempt, status: DeliveryStatus, nextAttemptAt: Date?) async {
    for tryNumber in 1...3 {
      do {
        try await store.recordAttempt(deliveryID: delivery.id, attempt: attempt, status: status, nextAttemptAt: nextAttemptAt)
        return
      } catch {
        logger.error(
          "recording a delivery attempt failed",
          metadata: ["delivery": "\(delivery.id)", "try": "\(tryNumber)", "error": "\(String(reflecting: type(of: error)))"])
        if Task.isCancelled || tryNumber == 3 { return }
        try? await Task.sleep(for: .milliseconds(200 * tryNumber))
      }
    }
  }
}
