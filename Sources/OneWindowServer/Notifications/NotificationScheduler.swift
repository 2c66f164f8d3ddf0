import Foundation
import Logging
import OneWindowCore
import OneWindowStore
import ServiceLifecycle

/// Sends scheduled publications when their time comes, marks messages whose TTL passed as
/// expired, and reminds departments of case deadlines. Sleeps until the next scheduled send
/// (or its interval), and is woken when a publication is scheduled.
public final class NotificationScheduler: Service, Sendable {
  let store: any Store
  let publisher: NotificationPublisher
  let reminders: DeadlineReminders
  let clock: any WallClock
  let logger: Logger
  let interval: Duration
  let wake: WakeSignal
  /// Passes run only while this node holds the job's lease (so a scheduled publication is sent
  /// once, however many nodes there are).
  let gate: JobGate

  init(
    store: any Store, publisher: NotificationPublisher, reminders: DeadlineReminders, clock: any WallClock, logger: Logger,
    interval: Duration, wake: WakeSignal, gate: JobGate = .always
  ) {
    self.wake = wake
    self.store = store
    self.publisher = publisher
    self.reminders = reminders
    self.clock = clock
    self.logger = logger
    self.interval = interval
    self.gate = gate
  }

  public func run() async throws {
    await cancelWhenGracefulShutdown {
      while !Task.isCancelled {
        var pause = self.interval
        do {
          guard self.gate.isOpen else {
            await self.wake.wait(upTo: pause)
            continue
          }
          try await self.runOnce()
          if let next = try await self.store.notifications.nextScheduled() {
            let seconds = max(0, next.timeIntervalSince(self.clock.now()))
            pause = min(pause, .milliseconds(Int64((seconds * 1000).rounded(.up))))
          }
        } catch is CancellationError {
          return
        } catch {
          self.logger.error("notification scheduler failed", metadata: ["error": "\(String(reflecting: type(of: error)))"])
        }
        await self.wake.wait(upTo: pause)
      }
    }
  }

  /// One pass: sends what is due, expires what is stale, sends due reminders. Returns how many
  /// scheduled publications were sent.
  @discardableResult
  public func runOnce() async throws -> Int {
    let now = clock.now()
    var sent = 0
    while true {
      let outcomes = try await store.notifications.releaseDue(now: now, limit: 100, limits: publisher.limits)
      for outcome in outcomes { publisher.deliverLive(outcome) }
      sent += outcomes.count
      if outcomes.count < 100 { break }
    }
    let expired = try await store.notifications.expireMessages(now: now)
    if expired > 0 { logger.info("notifications expired unsent", metadata: ["messages": "\(expired)"]) }
    try await reminders.runOnce(now: now)
    return sent
  }
}
