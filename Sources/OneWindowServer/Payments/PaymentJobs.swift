import Foundation
import Logging
import OneWindowCore
import OneWindowStore
import ServiceLifecycle

/// The payments background job: expiry, repair of unfinished payments whose outcome was missed
/// and of unfinished refunds, automatic refunds of withdrawn cases, and pruning of idempotency
/// keys. Its first pass after a start checks every payment whose cashier was opened with the
/// provider, so money taken while the server was down is recorded without waiting for a
/// callback (the provider's pending callbacks died with the process).
public final class PaymentJobs: Service, Sendable {
  let desk: PaymentDesk
  let settings: PaymentSettings
  let clock: any WallClock
  let logger: Logger
  let wake = WakeSignal()
  /// Passes run only while this node holds the job's lease.
  let gate: JobGate

  init(desk: PaymentDesk, settings: PaymentSettings, clock: any WallClock, logger: Logger, gate: JobGate = .always) {
    self.gate = gate
    self.desk = desk
    self.settings = settings
    self.clock = clock
    self.logger = logger
  }

  /// Runs a pass soon (a case was withdrawn).
  func kick() { wake.kick() }

  public func run() async throws {
    await cancelWhenGracefulShutdown {
      // The first pass of each holding (after a start, or after taking the lease from a node
      // that died) checks every opened payment: that node's provider callbacks died with it.
      var first = true
      while !Task.isCancelled {
        do {
          if !self.gate.isOpen {
            first = true
          } else {
            try await self.runOnce(startup: first)
            first = false
          }
        } catch is CancellationError {
          return
        } catch {
          self.logger.error("payment job failed", metadata: ["error": "\(String(reflecting: type(of: error)))"])
        }
        await self.wake.wait(upTo: self.settings.jobInterval)
      }
    }
  }

  /// One pass (tests call it with a manual clock). `startup` checks every unfinished payment
  /// whose cashier was opened, however recently it was checked.
  public func runOnce(startup: Bool = false) async throws {
    try await desk.expireAndRepair(stuckAfter: startup ? nil : settings.stuckAfter)
    try await desk.repairRefunds()
    _ = try await desk.store.payments.pruneIdempotencyKeys(
      before: clock.now().addingTimeInterval(-max(settings.idempotencyRetention, 24 * 3600)))
  }
}
