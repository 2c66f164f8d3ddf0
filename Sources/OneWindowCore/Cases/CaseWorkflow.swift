#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// What a person asks to do to a case, with the details some events require.
public struct CaseAction: Sendable, Equatable {
  public var event: CaseEvent
  public var reason: String
  /// request_correction: every missing item (一次性告知).
  public var missingItems: [String]
  /// extend: who approved the extension (the agency head, 本机关负责人).
  public var approver: String
  /// dispatch_result: the courier's tracking number.
  public var deliveryReference: String
  /// supply_correction: the materials supplied.
  public var materials: [CaseMaterialRef]
  /// Documents attached to this step (material ids uploaded by the actor).
  public var attachmentIDs: [String]

  public init(
    event: CaseEvent, reason: String = "", missingItems: [String] = [], approver: String = "", deliveryReference: String = "",
    materials: [CaseMaterialRef] = [], attachmentIDs: [String] = []
  ) {
    self.event = event
    self.reason = reason
    self.missingItems = missingItems
    self.approver = approver
    self.deliveryReference = deliveryReference
    self.materials = materials
    self.attachmentIDs = attachmentIDs
  }
}

/// The case rules beyond the transition table: who counts as applicant or handler, step
/// routing across departments, the one-time notice, the single extension, the clocks. Pure:
/// the caller reads the case, applies an action here, and stores the result only if the case
/// is still at the version it read (so of two concurrent actions exactly one wins).
public enum CaseWorkflow {
  public static let maxMissingItems = 50
  public static let maxReasonLength = 500
  public static let maxAttachments = 10

  /// How `principal` takes part in `record`: the applicant, the handler of the current step, an
  /// administrator. A caseworker of another step's department may read but not act; anyone
  /// else gets nil (the case is invisible to them).
  public static func involvement(of principal: Principal, in record: CaseRecord) -> Involvement? {
    if principal.accountID == record.applicantID { return .applicant }
    switch principal.role {
    case .admin: return .administrator
    case .caseworker:
      guard let department = principal.departmentCode, record.departments.contains(department) else { return nil }
      return department == record.handlingDepartment ? .handler : .otherStep
    case .citizen, .enterprise: return nil
    }
  }

  public enum Involvement: Sendable, Equatable {
    case applicant, handler, otherStep, administrator

    /// The actor kind for the transition table; nil for a reader who may not act.
    public var actorKind: CaseActorKind? {
      switch self {
      case .applicant: .applicant
      case .handler: .handler
      case .administrator: .administrator
      case .otherStep: nil
      }
    }
  }

  /// The case after `action` by `actor` at `now`, with a new status row appended and the
  /// version incremented. Throws `CaseTransitionError` (FAILED_PRECONDITION) for an event the
  /// table does not allow now, `PreconditionFailed` for a rule about timing or steps,
  /// `PermissionDenied` for a reader who may not act, and `ValidationError` for bad details.
  public static func apply(
    _ action: CaseAction, to record: CaseRecord, by actor: CaseActor, at now: Date, calendar: WorkingCalendar
  ) throws -> CaseRecord {
    let today = CivilDate(now)
    let next = try CaseLifecycle.next(from: record.state, on: action.event, by: actor.kind)
    var r = record
    var entry = CaseStatusEntry(state: next, event: action.event, at: now, actor: actor, step: record.currentStep)
    let steps = record.item.processSteps.count
    try Check.count(action.attachmentIDs, field: "attachment_ids", max: maxAttachments)
    entry.attachmentIDs = action.attachmentIDs

    switch action.event {
    case .requestCorrection:
      if let issued = record.clock.noticeIssuedOn {
        throw PreconditionFailed(
          "the one-time correction notice (一次性告知) was already issued on \(issued): it must list every missing item at once; accept or reject the case")
      }
      if let due = record.clock.correctionNoticeDue(calendar), today > due {
        throw PreconditionFailed(
          "the correction notice was due by \(due) (5 working days after receipt); the case counts as accepted from receipt")
      }
      try Check.count(action.missingItems, field: "missing_items", max: maxMissingItems, min: 1)
      entry.missingItems = try action.missingItems.enumerated().map { i, item throws(ValidationError) in
        try Check.text(item, field: "missing_items[\(i)]", max: 200)
      }
      entry.reason = try Check.optionalText(action.reason, field: "reason", max: maxReasonLength)
      r.clock.noticeIssuedOn = today
    case .supplyCorrection:
      try Check.count(action.materials, field: "materials", max: 50, min: 1)
      r.materials = merged(record.materials, with: action.materials)
      entry.reason = try Check.optionalText(action.reason, field: "reason", max: maxReasonLength)
      r.clock.suppliedOn = today
    case .accept:
      // Past the notice deadline without a notice the law already counts the case as
      // accepted from receipt; a late acceptance is dated accordingly.
      r.clock.acceptedOn = record.clock.deemedAccepted(on: today, calendar) ? (record.clock.receivedOn ?? today) : today
      entry.reason = try Check.optionalText(action.reason, field: "reason", max: maxReasonLength)
    case .deemAccepted:
      // 行政许可法 第三十二条: accepted from the day the materials were received.
      r.clock.acceptedOn = record.clock.receivedOn ?? today
      entry.reason = "no correction notice within \(CaseClock.correctionNoticeDays) working days of receipt: accepted from receipt"
    case .reject, .deny, .reopen, .suspend:
      entry.reason = try Check.text(action.reason, field: "reason", max: maxReasonLength)
      if action.event == .suspend { r.clock.suspensions.append(.init(from: today, until: nil)) }
      // A reopened case awaits a new decision (its clock runs on from the original acceptance).
      if action.event == .reopen { r.clock.decidedOn = nil }
      if action.event == .deny {
        try requireDecidingDepartment(record, steps: steps)
        r.clock.decidedOn = today
      }
    case .resume:
      guard let open = r.clock.suspensions.indices.last, r.clock.suspensions[open].until == nil else {
        throw PreconditionFailed("the case has no open suspension to resume")
      }
      r.clock.suspensions[open].until = max(today, r.clock.suspensions[open].from)
      entry.reason = try Check.optionalText(action.reason, field: "reason", max: maxReasonLength)
    case .extend:
      if record.clock.extended {
        throw PreconditionFailed("the decision deadline was already extended once; the law allows one extension of 10 working days")
      }
      entry.reason = try Check.text(action.reason, field: "reason", max: maxReasonLength)
      let approver = try Check.text(action.approver, field: "approver", max: 50)
      entry.reason += " (approved by \(approver))"
      r.clock.extended = true
    case .advanceStep:
      guard record.currentStep + 1 < steps else {
        throw PreconditionFailed("the case is at its last step (\(steps) of \(steps)): approve or deny it")
      }
      r.currentStep += 1
      entry.step = r.currentStep
      entry.reason = try Check.optionalText(action.reason, field: "reason", max: maxReasonLength)
    case .approve:
      try requireDecidingDepartment(record, steps: steps)
      r.clock.decidedOn = today
      entry.reason = try Check.optionalText(action.reason, field: "reason", max: maxReasonLength)
    case .dispatchResult:
      r.deliveryReference = try Check.text(action.deliveryReference, field: "delivery_reference", max: 64)
      entry.reason = try Check.optionalText(action.reason, field: "reason", max: maxReasonLength)
    case .receive:
      r.clock.receivedOn = today
    case .submit, .startReview, .complete, .confirmDelivery, .withdraw:
      entry.reason = try Check.optionalText(action.reason, field: "reason", max: maxReasonLength)
    }
    r.state = next
    r.version += 1
    r.updatedAt = now
    r.history.append(entry)
    return r
  }

  /// A decision belongs to the department that handles every remaining step: when a later
  /// step is another department's, the case must be advanced to it first. (Consecutive steps of
  /// one department, such as 受理 → 审查 → 决定 → 送达, need no advancing.)
  static func requireDecidingDepartment(_ record: CaseRecord, steps: Int) throws {
    let remaining = record.item.processSteps.indices.filter { $0 > record.currentStep }
    guard let next = remaining.first(where: { record.item.processSteps[$0].departmentCode != record.handlingDepartment }) else {
      return
    }
    let step = record.item.processSteps[next]
    throw PreconditionFailed(
      "step \(next + 1) of \(steps) (\(step.name)) is handled by department \(step.departmentCode): advance the case before deciding")
  }

  /// Supplied materials replace earlier ones of the same name; others are kept.
  static func merged(_ old: [CaseMaterialRef], with new: [CaseMaterialRef]) -> [CaseMaterialRef] {
    let replaced = Set(new.map(\.name))
    return old.filter { !replaced.contains($0.name) } + new
  }

  /// What `kind` may do to `record` now: the transition table's events minus those a guard
  /// would refuse (a second extension or notice, advancing past the last step, deciding before
  /// another department's step). What clients should offer.
  public static func availableEvents(_ record: CaseRecord, for kind: CaseActorKind) -> [CaseEvent] {
    CaseLifecycle.events(from: record.state, for: kind).filter { event in
      switch event {
      case .extend: !record.clock.extended
      case .requestCorrection: record.clock.noticeIssuedOn == nil
      case .advanceStep: record.currentStep + 1 < record.item.processSteps.count
      case .approve, .deny: (try? requireDecidingDepartment(record, steps: record.item.processSteps.count)) != nil
      default: true
      }
    }
  }

  /// The cases of a department's queue whose deadline is within `days` working days (or past).
  public static func isDueSoon(_ deadline: CivilDate, today: CivilDate, within days: Int, _ calendar: WorkingCalendar) -> Bool {
    deadline <= calendar.addingWorkingDays(days, to: today)
  }
}
