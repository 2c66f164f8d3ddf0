import Foundation
import Logging
import OneWindowCore
import OneWindowStore
import ServiceLifecycle

/// Enforces 行政许可法 第三十二条 in the background: a case still pending acceptance after
/// the 5-working-day notice deadline, with no correction notice issued, is recorded as accepted
/// from the day of receipt (the `deem_accepted` event by the system).
public struct CaseClockService: Service {
  let store: any Store
  let calendar: WorkingCalendar
  let clock: any WallClock
  let logger: Logger
  var interval: Duration
  /// Called after a case change commits (wakes the case notifications).
  var caseChanged: @Sendable () -> Void = {}
  /// Passes run only while this node holds the job's lease.
  var gate: JobGate = .always
  let wake = WakeSignal()

  public func run() async throws {
    await cancelWhenGracefulShutdown {
      while !Task.isCancelled {
        do {
          if gate.isOpen { _ = try await runOnce() }
        } catch is CancellationError {
          return
        } catch {
          logger.error("case clock failed", metadata: ["error": "\(String(reflecting: type(of: error)))"])
        }
        await wake.wait(upTo: interval)
      }
    }
  }

  /// One pass; returns how many cases were deemed accepted.
  public func runOnce() async throws -> Int {
    let now = clock.now()
    let today = CivilDate(now)
    // Received at least 5 calendar days ago (a cheap lower bound for 5 working days).
    let candidates = try await store.cases.pendingAcceptance(receivedOnOrBefore: today.adding(days: -CaseClock.correctionNoticeDays))
    var accepted = 0
    for record in candidates where record.clock.deemedAccepted(on: today, calendar) {
      do {
        let updated = try CaseWorkflow.apply(CaseAction(event: .deemAccepted), to: record, by: .system, at: now, calendar: calendar)
        _ = try await store.cases.update(
          updated, expectedVersion: record.version,
          effects: CaseEffects(
            audit: AuditEvent(.system, action: "case.deem_accepted", targetType: "case", targetID: record.id,
                              subjectID: record.applicantID, reason: updated.history.last?.reason ?? ""),
            today: today, calendar: calendar),
          now: now)
        accepted += 1
      } catch StoreError.versionConflict {
        // A caseworker acted at the same moment; the next pass judges the new state.
        continue
      } catch is CancellationError {
        throw CancellationError()
      } catch {
        // One case's failure must not stop the others.
        logger.error("deemed acceptance failed for a case", metadata: [
          "case": "\(record.id)", "error": "\(String(reflecting: type(of: error)))",
        ])
      }
    }
    if accepted > 0 { caseChanged() }
    if accepted > 0 { logger.info("cases deemed accepted", metadata: ["count": "\(accepted)"]) }
    return accepted
  }
}
