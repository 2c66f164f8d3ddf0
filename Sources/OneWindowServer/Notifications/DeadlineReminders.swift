import Foundation
import Logging
import OneWindowCore
import OneWindowStore
import Synchronization

/// Reminds the handling department's caseworkers when a case's legal deadline is
/// `workingDaysAhead` working days away or less (and not yet passed): one message per case and
/// deadline, made idempotent by its key, so restarts and repeated passes never send twice.
final class DeadlineReminders: Sendable {
  let cases: any CaseStore
  let publisher: NotificationPublisher
  let calendar: WorkingCalendar
  let logger: Logger
  let workingDaysAhead = 2
  /// Passes closer together than this do nothing (the scheduler runs far more often).
  let minimumGap: TimeInterval = 3600
  private let lastRun = Mutex<Date?>(nil)

  init(cases: any CaseStore, publisher: NotificationPublisher, calendar: WorkingCalendar, logger: Logger) {
    self.cases = cases
    self.publisher = publisher
    self.calendar = calendar
    self.logger = logger
  }

  static let deadlineNames: [CaseState: String] = [
    .pendingAcceptance: "受理决定期限", .accepted: "审查决定期限", .underReview: "审查决定期限",
    .approved: "结果送达期限", .denied: "结果送达期限",
  ]

  /// Returns how many reminders were published.
  @discardableResult
  func runOnce(now: Date, force: Bool = false) async throws -> Int {
    let due = lastRun.withLock { last -> Bool in
      if !force, let last, now.timeIntervalSince(last) < minimumGap, now >= last { return false }
      last = now
      return true
    }
    guard due else { return 0 }
    let today = CivilDate(now)
    let horizon = calendar.addingWorkingDays(workingDaysAhead, to: today)
    var sent = 0
    for record in try await cases.casesDue(from: today, until: horizon, limit: 1000) {
      guard let deadline = record.clock.nextDeadline(in: record.state, asOf: today, calendar) else { continue }
      let left = calendar.workingDaysLeft(from: today, until: deadline)
      guard left >= 0, left <= workingDaysAhead else { continue }
      let values = [
        "tracking_code": record.trackingCode, "item_name": record.item.name,
        "deadline": Self.deadlineNames[record.state] ?? "办理期限", "due_date": deadline.description, "days_left": "\(left)",
      ]
      do {
        let rendered = try await publisher.render(template: SystemTemplates.deadlineReminder, version: nil, personalisation: values)
        let outcome = try await publisher.publish(NewPublication(
          id: ULID.make(at: now), audience: .segment(Segment(role: .caseworker, departmentCode: record.handlingDepartment)),
          content: MessageContent(
            title: rendered.title, body: rendered.body, category: rendered.template.category, priority: left == 0 ? .high : .normal,
            data: ["case_id": record.id, "tracking_code": record.trackingCode, "due_date": deadline.description],
            template: rendered.template.template.name, templateVersion: rendered.template.template.version,
            collapseKey: "deadline:\(record.id)"),
          ttl: nil, sendAt: nil, publisherID: nil, idempotencyKey: "reminder-\(record.id)-\(deadline.dayNumber)"), now: now)
        if !outcome.replayed { sent += 1 }
      } catch is CancellationError {
        throw CancellationError()
      } catch {
        logger.error("deadline reminder failed for a case", metadata: [
          "case": "\(record.id)", "error": "\(String(reflecting: type(of: error)))",
        ])
      }
    }
    return sent
  }
}
