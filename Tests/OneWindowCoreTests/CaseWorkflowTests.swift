import Foundation
import Testing
@testable import OneWindowCore

// MARK: - Helpers (prefixed `wf` so they do not clash with helpers of other test files)

/// 10:00 China Standard Time on the given civil day.
func wfTime(_ text: String, hour: Int = 10) -> Date {
  Date(timeIntervalSince1970: TimeInterval(day(text).dayNumber * 86_400 - 8 * 3600 + hour * 3600))
}

/// The official 2026 National Day arrangement only (国庆节): 1–7 October off; Sunday 20 September
/// and Saturday 10 October are make-up working days. (Mid-Autumn is left out on purpose.)
let wfCalendar2026 = WorkingCalendar(
  holidays: Set((1...7).map { day("2026-10-0\($0)") }),
  makeUpWorkdays: [day("2026-09-20"), day("2026-10-10")])

let wfPlainCalendar = WorkingCalendar()

func wfItem(departments: [String] = ["shichang"], promisedDays: Int = 10) -> ServiceItemSpec {
  ServiceItemSpec(
    code: "SC-FOOD-0001", name: "食品经营许可", departmentCode: departments[0], category: .administrativeLicense, target: .enterprise,
    materials: [
      Material(name: "营业执照", form: .electronic, copies: 1, notes: "", ecertSubstitutable: true, required: true),
      Material(name: "场所平面图", form: .copy, copies: 1, notes: "", ecertSubstitutable: false, required: true),
    ],
    processSteps: departments.enumerated().map { i, d in ProcessStep(name: "第\(i + 1)步", departmentCode: d, description: "") },
    statutoryLimitDays: 20, promisedLimitDays: promisedDays, onlineDepth: 4, onsiteVisits: 0)
}

func wfMaterial(_ name: String, _ hashSeed: String = "a") -> CaseMaterialRef {
  CaseMaterialRef(
    name: name, materialID: "mat-\(name)-\(hashSeed)", certificateNumber: nil, sha256: Hex.sha256(Array(hashSeed.utf8)), size: 100,
    contentType: "application/pdf")
}

func wfRecord(
  state: CaseState = .pendingAcceptance, receivedOn: String = "2026-11-23", acceptedOn: String? = nil,
  departments: [String] = ["shichang"], currentStep: Int = 0
) -> CaseRecord {
  CaseRecord(
    id: "case-1", trackingCode: "TC-1", applicantID: "acct-applicant", applicantRole: .enterprise, applicantName: "老王面馆",
    phoneCheck: CaseRecord.phoneCheck(caseID: "case-1", last4: "5678"), draftID: "draft-1", item: wfItem(departments: departments),
    itemVersion: 3, form: ["shop_name": "老王面馆"], materials: [wfMaterial("营业执照"), wfMaterial("场所平面图")], state: state,
    version: 1, currentStep: currentStep,
    clock: CaseClock(receivedOn: day(receivedOn), acceptedOn: acceptedOn.map(day), promisedDays: 10), history: [],
    submittedAt: wfTime(receivedOn, hour: 9), updatedAt: wfTime(receivedOn, hour: 9))
}

let wfHandler = CaseActor(kind: .handler, accountID: "acct-worker", role: .caseworker, departmentCode: "shichang")
let wfApplicant = CaseActor(kind: .applicant, accountID: "acct-applicant", role: .enterprise, departmentCode: nil)
let wfAdmin = CaseActor(kind: .administrator, accountID: "acct-admin", role: .admin, departmentCode: nil)

func wfApply(
  _ action: CaseAction, _ record: CaseRecord, by actor: CaseActor = wfHandler, on text: String,
  calendar: WorkingCalendar = wfPlainCalendar
) throws -> CaseRecord {
  try CaseWorkflow.apply(action, to: record, by: actor, at: wfTime(text), calendar: calendar)
}

func wfPrincipal(_ id: String, _ role: Role, _ department: String? = nil) -> Principal {
  Principal(accountID: id, role: role, departmentCode: department, trustLevel: 3, sessionFamilyID: "fam-\(id)")
}

// MARK: - Workflow

@Suite struct CaseWorkflowTests {
  @Test func singleDepartmentHappyPathFromAcceptanceToDelivery() throws {
    let start = wfRecord()
    var r = start

    // Each successful step appends exactly one history row and bumps the version by one.
    func step(_ action: CaseAction, by actor: CaseActor = wfHandler, on text: String, expect state: CaseState) throws {
      let before = r
      r = try wfApply(action, r, by: actor, on: text)
      #expect(r.state == state, "\(action.event)")
      #expect(r.version == before.version + 1, "\(action.event)")
      #expect(r.history.count == before.history.count + 1, "\(action.event)")
      #expect(Array(r.history.dropLast()) == before.history, "history is append-only")
      let entry = try #require(r.history.last)
      #expect(entry.event == action.event)
      #expect(entry.state == state)
      #expect(entry.actor == actor)
      #expect(entry.at == wfTime(text))
      #expect(r.updatedAt == wfTime(text))
    }

    try step(CaseAction(event: .accept), on: "2026-11-24", expect: .accepted)
    #expect(r.clock.acceptedOn == day("2026-11-24"))
    try step(CaseAction(event: .startReview), on: "2026-11-25", expect: .underReview)

    // Suspension needs a reason.
    #expect(throws: ValidationError.self) { try wfApply(CaseAction(event: .suspend), r, on: "2026-11-26") }
    #expect(throws: ValidationError.self) { try wfApply(CaseAction(event: .suspend, reason: "   "), r, on: "2026-11-26") }
    try step(CaseAction(event: .suspend, reason: "组织现场核查"), on: "2026-11-26", expect: .suspended)
    #expect(r.clock.suspensions == [.init(from: day("2026-11-26"), until: nil)])
    #expect(r.history.last?.reason == "组织现场核查")

    try step(CaseAction(event: .resume), on: "2026-11-30", expect: .underReview)
    #expect(r.clock.suspensions == [.init(from: day("2026-11-26"), until: day("2026-11-30"))])

    // Extension: reason and approver required; only once.
    #expect(throws: ValidationError.self) { try wfApply(CaseAction(event: .extend, approver: "李局长"), r, on: "2026-12-01") }
    #expect(throws: ValidationError.self) { try wfApply(CaseAction(event: .extend, reason: "情况复杂"), r, on: "2026-12-01") }
    let dueBeforeExtension = try #require(r.clock.decisionDue(asOf: day("2026-12-01"), wfPlainCalendar))
    try step(CaseAction(event: .extend, reason: "情况复杂", approver: "李局长"), on: "2026-12-01", expect: .underReview)
    #expect(r.clock.extended)
    #expect(r.history.last?.reason == "情况复杂 (approved by 李局长)")
    #expect(
      r.clock.decisionDue(asOf: day("2026-12-01"), wfPlainCalendar)
        == wfPlainCalendar.addingWorkingDays(CaseClock.extensionDays, to: dueBeforeExtension))
    #expect(throws: PreconditionFailed.self) {
      try wfApply(CaseAction(event: .extend, reason: "再次延期", approver: "李局长"), r, on: "2026-12-02")
    }

    try step(CaseAction(event: .approve, reason: "符合条件"), on: "2026-12-03", expect: .approved)
    #expect(r.clock.decidedOn == day("2026-12-03"))
    try step(CaseAction(event: .complete), on: "2026-12-04", expect: .completed)

    // Dispatch needs the courier's tracking number.
    #expect(throws: ValidationError.self) { try wfApply(CaseAction(event: .dispatchResult), r, on: "2026-12-07") }
    try step(CaseAction(event: .dispatchResult, deliveryReference: " SF1234567890 "), on: "2026-12-07", expect: .resultDelivering)
    #expect(r.deliveryReference == "SF1234567890")

    try step(CaseAction(event: .confirmDelivery), by: wfApplicant, on: "2026-12-09", expect: .resultDelivered)
    #expect(r.state.isFinal)
    #expect(r.version == start.version + 9)
    #expect(r.history.map(\.event) == [
      .accept, .startReview, .suspend, .resume, .extend, .approve, .complete, .dispatchResult, .confirmDelivery,
    ])
    // Nothing about the case itself changed along the way.
    #expect(r.id == start.id && r.materials == start.materials && r.form == start.form && r.currentStep == 0)
  }

  @Test func aCompletedCaseCanBeConfirmedDeliveredWithoutACourierLeg() throws {
    let completed = wfRecord(state: .completed, acceptedOn: "2026-11-24")
    let delivered = try wfApply(CaseAction(event: .confirmDelivery), completed, by: wfHandler, on: "2026-12-04")
    #expect(delivered.state == .resultDelivered)
    #expect(delivered.deliveryReference == "")
    let byApplicant = try wfApply(CaseAction(event: .confirmDelivery), completed, by: wfApplicant, on: "2026-12-04")
    #expect(byApplicant.state == .resultDelivered)
  }

  @Test func illegalEventsThrowATransitionErrorNamingTheCurrentState() throws {
    let pending = wfRecord()
    for event in [CaseEvent.approve, .startReview, .complete, .confirmDelivery, .resume, .extend, .advanceStep] {
      do {
        _ = try wfApply(CaseAction(event: event, reason: "x", approver: "y"), pending, on: "2026-11-24")
        Issue.record("\(event) from pending_acceptance should have been refused")
      } catch let error as CaseTransitionError {
        #expect(error.state == .pendingAcceptance)
        #expect(error.event == event)
        #expect(error.description.contains("pending_acceptance"), "\(error.description)")
      }
    }
    // Right event, wrong actor: the applicant may not accept their own case.
    #expect(throws: CaseTransitionError.self) { try wfApply(CaseAction(event: .accept), pending, by: wfApplicant, on: "2026-11-24") }
    // The administrator reopens, nobody else.
    let completed = wfRecord(state: .completed, acceptedOn: "2026-11-24")
    #expect(throws: CaseTransitionError.self) { try wfApply(CaseAction(event: .reopen, reason: "复查"), completed, on: "2026-12-01") }
    let reopened = try wfApply(CaseAction(event: .reopen, reason: "复查"), completed, by: wfAdmin, on: "2026-12-01")
    #expect(reopened.state == .underReview)
    // Final states refuse everything, naming themselves.
    let delivered = wfRecord(state: .resultDelivered)
    do {
      _ = try wfApply(CaseAction(event: .reopen, reason: "复查"), delivered, by: wfAdmin, on: "2026-12-01")
      Issue.record("a delivered case cannot be reopened")
    } catch let error as CaseTransitionError {
      #expect(error.description.contains("result_delivered"))
    }
  }

  @Test func theExtendEventKeepsTheStateAndIsForTheHandlerOnly() throws {
    for state in [CaseState.accepted, .underReview, .suspended] {
      #expect(try CaseLifecycle.next(from: state, on: .extend, by: .handler) == state)
      #expect(throws: CaseTransitionError.self) { try CaseLifecycle.next(from: state, on: .extend, by: .applicant) }
      #expect(CaseLifecycle.events(from: state, for: .handler).contains(.extend))
    }
    for state in CaseState.allCases where ![.accepted, .underReview, .suspended].contains(state) {
      #expect(throws: CaseTransitionError.self) { try CaseLifecycle.next(from: state, on: .extend, by: .handler) }
    }
    #expect(try CaseLifecycle.next(from: .completed, on: .confirmDelivery, by: .handler) == .resultDelivered)
    #expect(try CaseLifecycle.next(from: .completed, on: .confirmDelivery, by: .applicant) == .resultDelivered)
    #expect(throws: CaseTransitionError.self) { try CaseLifecycle.next(from: .completed, on: .confirmDelivery, by: .system) }
    #expect(CaseLifecycle.events(from: .completed, for: .applicant) == [.confirmDelivery])

    // Extending while suspended keeps the case suspended and still counts as the one extension.
    let suspended = wfRecord(state: .suspended, acceptedOn: "2026-11-24")
    let extended = try wfApply(CaseAction(event: .extend, reason: "专家评审", approver: "李局长"), suspended, on: "2026-11-26")
    #expect(extended.state == .suspended && extended.clock.extended)
    #expect(throws: PreconditionFailed.self) {
      try wfApply(CaseAction(event: .extend, reason: "again", approver: "李局长"), extended, on: "2026-11-27")
    }
  }

  @Test func resumeNeedsAnOpenSuspension() throws {
    var r = wfRecord(state: .suspended, acceptedOn: "2026-11-24")
    r.clock.suspensions = [.init(from: day("2026-11-25"), until: day("2026-11-26"))]
    #expect(throws: PreconditionFailed.self) { try wfApply(CaseAction(event: .resume), r, on: "2026-11-27") }
  }

  @Test func tooManyAttachmentsAreRefused() throws {
    let r = wfRecord()
    let ids = (0...CaseWorkflow.maxAttachments).map { "m\($0)" }
    #expect(throws: ValidationError.self) { try wfApply(CaseAction(event: .accept, attachmentIDs: ids), r, on: "2026-11-24") }
    let ok = try wfApply(CaseAction(event: .accept, attachmentIDs: Array(ids.prefix(2))), r, on: "2026-11-24")
    #expect(ok.history.last?.attachmentIDs == ["m0", "m1"])
  }
}

// MARK: - Correction notice (一次性告知) and deemed acceptance

@Suite struct CaseCorrectionTests {
  @Test func theNoticeNeedsAtLeastOneMissingItemAndRecordsThemAll() throws {
    let r = wfRecord()
    #expect(throws: ValidationError.self) { try wfApply(CaseAction(event: .requestCorrection), r, on: "2026-11-24") }
    #expect(throws: ValidationError.self) {
      try wfApply(CaseAction(event: .requestCorrection, missingItems: ["营业执照", " "]), r, on: "2026-11-24")
    }
    let tooMany = (0...CaseWorkflow.maxMissingItems).map { "材料\($0)" }
    #expect(throws: ValidationError.self) {
      try wfApply(CaseAction(event: .requestCorrection, missingItems: tooMany), r, on: "2026-11-24")
    }
    let notified = try wfApply(
      CaseAction(event: .requestCorrection, reason: "材料不全", missingItems: [" 场所平面图 ", "卫生许可证明"]), r, on: "2026-11-24")
    #expect(notified.state == .correctionRequired)
    #expect(notified.clock.noticeIssuedOn == day("2026-11-24"))
    #expect(notified.history.last?.missingItems == ["场所平面图", "卫生许可证明"])
    #expect(notified.history.last?.reason == "材料不全")
  }

  @Test func theNoticeIsOneTimeOnly() throws {
    let r = wfRecord()
    let notified = try wfApply(CaseAction(event: .requestCorrection, missingItems: ["场所平面图"]), r, on: "2026-11-24")
    let supplied = try wfApply(
      CaseAction(event: .supplyCorrection, materials: [wfMaterial("场所平面图", "b")]), notified, by: wfApplicant, on: "2026-11-25")
    #expect(supplied.state == .pendingAcceptance)
    #expect(supplied.clock.suppliedOn == day("2026-11-25"))
    #expect(throws: PreconditionFailed.self) {
      try wfApply(CaseAction(event: .requestCorrection, missingItems: ["法人身份证"]), supplied, on: "2026-11-26")
    }
    // Accepting (or rejecting) is what remains.
    #expect(try wfApply(CaseAction(event: .accept), supplied, on: "2026-11-26").state == .accepted)
    #expect(try wfApply(CaseAction(event: .reject, reason: "不符合条件"), supplied, on: "2026-11-26").state == .rejected)
  }

  @Test func theNoticeIsRefusedAfterItsFiveWorkingDayDeadline() throws {
    // Received Friday 20 November: the notice is due by Friday 27 November.
    let r = wfRecord(receivedOn: "2026-11-20")
    #expect(r.clock.correctionNoticeDue(wfPlainCalendar) == day("2026-11-27"))
    let onTime = try wfApply(CaseAction(event: .requestCorrection, missingItems: ["场所平面图"]), r, on: "2026-11-27")
    #expect(onTime.state == .correctionRequired)
    for late in ["2026-11-28", "2026-11-30", "2026-12-15"] {
      #expect(throws: PreconditionFailed.self, "\(late)") {
        try wfApply(CaseAction(event: .requestCorrection, missingItems: ["场所平面图"]), r, on: late)
      }
    }
    // Late at night (23:30 CST) is still the due day.
    let lateEvening = try CaseWorkflow.apply(
      CaseAction(event: .requestCorrection, missingItems: ["场所平面图"]), to: r, by: wfHandler, at: wfTime("2026-11-27", hour: 23),
      calendar: wfPlainCalendar)
    #expect(lateEvening.clock.noticeIssuedOn == day("2026-11-27"))
  }

  @Test func theNoticeDeadlineFollowsTheHolidayCalendar() throws {
    // Received Tuesday 29 September 2026: 30 Sep (1), 8 Oct (2), 9 Oct (3), Sat 10 Oct (4), Mon 12 Oct (5).
    let r = wfRecord(receivedOn: "2026-09-29")
    #expect(r.clock.correctionNoticeDue(wfCalendar2026) == day("2026-10-12"))
    let ok = try wfApply(
      CaseAction(event: .requestCorrection, missingItems: ["场所平面图"]), r, on: "2026-10-12", calendar: wfCalendar2026)
    #expect(ok.state == .correctionRequired)
    #expect(throws: PreconditionFailed.self) {
      try wfApply(CaseAction(event: .requestCorrection, missingItems: ["场所平面图"]), r, on: "2026-10-13", calendar: wfCalendar2026)
    }
    // Without the holidays the deadline would have been 6 October.
    #expect(throws: PreconditionFailed.self) {
      try wfApply(CaseAction(event: .requestCorrection, missingItems: ["场所平面图"]), r, on: "2026-10-12", calendar: wfPlainCalendar)
    }
  }

  @Test func supplyingReplacesMaterialsOfTheSameNameAndKeepsOthers() throws {
    var r = wfRecord(state: .correctionRequired)
    r.clock.noticeIssuedOn = day("2026-11-24")
    let newPlan = wfMaterial("场所平面图", "v2")
    let extra = wfMaterial("卫生许可证明", "c")
    #expect(throws: ValidationError.self) {
      try wfApply(CaseAction(event: .supplyCorrection), r, by: wfApplicant, on: "2026-11-25")
    }
    #expect(throws: CaseTransitionError.self) {
      try wfApply(CaseAction(event: .supplyCorrection, materials: [newPlan]), r, by: wfHandler, on: "2026-11-25")
    }
    let supplied = try wfApply(
      CaseAction(event: .supplyCorrection, materials: [newPlan, extra]), r, by: wfApplicant, on: "2026-11-25")
    #expect(supplied.materials == [wfMaterial("营业执照"), newPlan, extra])
    #expect(supplied.materials.filter { $0.name == "场所平面图" }.count == 1)
    #expect(supplied.materials.first { $0.name == "场所平面图" }?.sha256 == Hex.sha256(Array("v2".utf8)))
    #expect(supplied.clock.suppliedOn == day("2026-11-25"))
    #expect(supplied.clock.noticeIssuedOn == day("2026-11-24"))
  }

  @Test func deemedAcceptanceDatesAcceptanceFromReceipt() throws {
    let r = wfRecord(receivedOn: "2026-11-20")
    #expect(r.clock.deemedAccepted(on: day("2026-11-30"), wfPlainCalendar))
    let deemed = try wfApply(CaseAction(event: .deemAccepted), r, by: .system, on: "2026-11-30")
    #expect(deemed.state == .accepted)
    #expect(deemed.clock.acceptedOn == day("2026-11-20"))
    #expect(deemed.history.last?.actor == .system)
    #expect(deemed.history.last?.reason.contains("accepted from receipt") == true)
    // The decision clock then runs from receipt, not from the day the job noticed.
    #expect(deemed.clock.decisionDue(asOf: day("2026-11-30"), wfPlainCalendar) == wfPlainCalendar.addingWorkingDays(10, to: day("2026-11-20")))
    #expect(throws: CaseTransitionError.self) { try wfApply(CaseAction(event: .deemAccepted), r, by: wfHandler, on: "2026-11-30") }
  }

  @Test func aLateAcceptanceIsDatedFromReceipt() throws {
    // Received Friday 20 November; the notice deadline was Friday 27 November.
    let r = wfRecord(receivedOn: "2026-11-20")
    #expect(try wfApply(CaseAction(event: .accept), r, on: "2026-11-27").clock.acceptedOn == day("2026-11-27"))
    #expect(try wfApply(CaseAction(event: .accept), r, on: "2026-11-30").clock.acceptedOn == day("2026-11-20"))
    // After a notice and the supply, acceptance is dated the day it happens.
    var supplied = r
    supplied.clock.noticeIssuedOn = day("2026-11-23")
    supplied.clock.suppliedOn = day("2026-12-01")
    #expect(try wfApply(CaseAction(event: .accept), supplied, on: "2026-12-02").clock.acceptedOn == day("2026-12-02"))
  }

  @Test func receiptStartsTheNoticeClock() throws {
    var r = wfRecord(state: .submitted)
    r.clock.receivedOn = nil
    let received = try wfApply(CaseAction(event: .receive), r, by: .system, on: "2026-11-20")
    #expect(received.state == .pendingAcceptance)
    #expect(received.clock.receivedOn == day("2026-11-20"))
    #expect(received.clock.nextDeadline(in: received.state, asOf: day("2026-11-20"), wfPlainCalendar) == day("2026-11-27"))
  }

  @Test func reopeningClearsTheDecision() throws {
    var r = wfRecord(state: .completed, acceptedOn: "2026-11-24")
    r.clock.decidedOn = day("2026-11-30")
    #expect(throws: ValidationError.self) { try wfApply(CaseAction(event: .reopen), r, by: wfAdmin, on: "2026-12-02") }
    let reopened = try wfApply(CaseAction(event: .reopen, reason: "复查发现错误"), r, by: wfAdmin, on: "2026-12-02")
    #expect(reopened.state == .underReview)
    #expect(reopened.clock.decidedOn == nil)
    #expect(reopened.clock.acceptedOn == day("2026-11-24"))
    #expect(reopened.history.last?.actor == wfAdmin)
  }

  @Test func anIssuedNoticeStopsDeemedAcceptance() {
    var clock = CaseClock(receivedOn: day("2026-11-20"), promisedDays: 10)
    #expect(clock.deemedAccepted(on: day("2026-11-28"), wfPlainCalendar))
    clock.noticeIssuedOn = day("2026-11-24")
    #expect(!clock.deemedAccepted(on: day("2026-11-28"), wfPlainCalendar))
    #expect(!clock.deemedAccepted(on: day("2027-06-01"), wfPlainCalendar))
    clock.suppliedOn = day("2026-11-26")
    #expect(!clock.deemedAccepted(on: day("2027-06-01"), wfPlainCalendar))
  }
}

// MARK: - Multi-department routing and involvement

@Suite struct CaseRoutingTests {
  let twoSteps = wfRecord(state: .underReview, acceptedOn: "2026-11-24", departments: ["shichang", "weijian"])

  @Test func decisionsWaitForTheOtherDepartmentsStep() throws {
    #expect(twoSteps.handlingDepartment == "shichang")
    #expect(throws: PreconditionFailed.self) { try wfApply(CaseAction(event: .approve), twoSteps, on: "2026-11-25") }
    #expect(throws: PreconditionFailed.self) { try wfApply(CaseAction(event: .deny, reason: "不符合"), twoSteps, on: "2026-11-25") }

    let weijian = CaseActor(kind: .handler, accountID: "acct-wj", role: .caseworker, departmentCode: "weijian")
    let advanced = try wfApply(CaseAction(event: .advanceStep, reason: "初审通过"), twoSteps, on: "2026-11-25")
    #expect(advanced.state == .underReview)
    #expect(advanced.currentStep == 1)
    #expect(advanced.handlingDepartment == "weijian")
    #expect(advanced.version == twoSteps.version + 1)
    #expect(advanced.history.last?.event == .advanceStep)
    #expect(advanced.history.last?.step == 1)

    #expect(throws: PreconditionFailed.self) { try wfApply(CaseAction(event: .advanceStep), advanced, by: weijian, on: "2026-11-26") }
    let approved = try wfApply(CaseAction(event: .approve), advanced, by: weijian, on: "2026-11-26")
    #expect(approved.state == .approved)
    #expect(approved.history.last?.step == 1)
  }

  @Test func consecutiveStepsOfOneDepartmentNeedNoAdvancing() throws {
    // 受理 and 审查 by shichang, then 现场核查 by weijian, then 决定 by shichang again.
    let r = wfRecord(state: .underReview, acceptedOn: "2026-11-24", departments: ["shichang", "shichang", "weijian", "shichang"])
    #expect(throws: PreconditionFailed.self) { try wfApply(CaseAction(event: .approve), r, on: "2026-11-25") }
    let step1 = try wfApply(CaseAction(event: .advanceStep), r, on: "2026-11-25")
    #expect(step1.currentStep == 1 && step1.handlingDepartment == "shichang")
    #expect(throws: PreconditionFailed.self) { try wfApply(CaseAction(event: .approve), step1, on: "2026-11-25") }
    let step2 = try wfApply(CaseAction(event: .advanceStep), step1, on: "2026-11-26")
    #expect(step2.handlingDepartment == "weijian")
    #expect(throws: PreconditionFailed.self) { try wfApply(CaseAction(event: .deny, reason: "x"), step2, on: "2026-11-26") }
    let step3 = try wfApply(CaseAction(event: .advanceStep), step2, on: "2026-11-27")
    #expect(step3.currentStep == 3 && step3.handlingDepartment == "shichang")
    #expect(try wfApply(CaseAction(event: .approve), step3, on: "2026-11-27").state == .approved)

    // Every step with the owner: the first step may decide at once.
    let oneDepartment = wfRecord(state: .underReview, acceptedOn: "2026-11-24", departments: ["shichang", "shichang", "shichang"])
    let approved = try wfApply(CaseAction(event: .approve), oneDepartment, on: "2026-11-25")
    #expect(approved.state == .approved && approved.currentStep == 0)
    let denied = try wfApply(CaseAction(event: .deny, reason: "不符合条件"), oneDepartment, on: "2026-11-25")
    #expect(denied.state == .denied && denied.clock.decidedOn == day("2026-11-25"))
  }

  @Test func aSingleStepCaseCannotAdvance() {
    let single = wfRecord(state: .underReview, acceptedOn: "2026-11-24")
    #expect(throws: PreconditionFailed.self) { try wfApply(CaseAction(event: .advanceStep), single, on: "2026-11-25") }
  }

  @Test func involvementFollowsTheCurrentStep() throws {
    let r = twoSteps
    let applicant = wfPrincipal("acct-applicant", .enterprise)
    let shichang = wfPrincipal("cw-1", .caseworker, "shichang")
    let weijian = wfPrincipal("cw-2", .caseworker, "weijian")
    let gongan = wfPrincipal("cw-3", .caseworker, "gongan")
    let noDepartment = wfPrincipal("cw-4", .caseworker, nil)
    let admin = wfPrincipal("admin-1", .admin)
    let otherCitizen = wfPrincipal("acct-other", .citizen)
    let otherEnterprise = wfPrincipal("acct-other-ent", .enterprise)

    #expect(CaseWorkflow.involvement(of: applicant, in: r) == .applicant)
    #expect(CaseWorkflow.involvement(of: shichang, in: r) == .handler)
    #expect(CaseWorkflow.involvement(of: weijian, in: r) == .otherStep)
    #expect(CaseWorkflow.involvement(of: admin, in: r) == .administrator)
    #expect(CaseWorkflow.involvement(of: gongan, in: r) == nil)
    #expect(CaseWorkflow.involvement(of: noDepartment, in: r) == nil)
    #expect(CaseWorkflow.involvement(of: otherCitizen, in: r) == nil)
    #expect(CaseWorkflow.involvement(of: otherEnterprise, in: r) == nil)

    #expect(CaseWorkflow.Involvement.applicant.actorKind == .applicant)
    #expect(CaseWorkflow.Involvement.handler.actorKind == .handler)
    #expect(CaseWorkflow.Involvement.administrator.actorKind == .administrator)
    #expect(CaseWorkflow.Involvement.otherStep.actorKind == nil)

    // After advancing, the roles swap.
    let advanced = try wfApply(CaseAction(event: .advanceStep), r, on: "2026-11-25")
    #expect(CaseWorkflow.involvement(of: shichang, in: advanced) == .otherStep)
    #expect(CaseWorkflow.involvement(of: weijian, in: advanced) == .handler)
  }
}

// MARK: - Deadlines with the 2026 calendar

@Suite struct CaseDeadlineTests {
  @Test func theOfficial2026NationalDayCalendar() {
    #expect(day("2026-10-01").isoWeekday == 4)
    #expect(day("2026-09-20").isoWeekday == 7)
    #expect(day("2026-10-10").isoWeekday == 6)
    #expect(wfCalendar2026.isWorkingDay(day("2026-09-20")))
    #expect(wfCalendar2026.isWorkingDay(day("2026-10-10")))
    #expect(!wfCalendar2026.isWorkingDay(day("2026-10-01")))
    #expect(!wfCalendar2026.isWorkingDay(day("2026-10-07")))
    #expect(wfCalendar2026.isWorkingDay(day("2026-10-08")))
    #expect(!wfCalendar2026.isWorkingDay(day("2026-09-19")))
  }

  @Test func theDecisionIsDueAcrossWeekendsHolidaysAndMakeUpDays() {
    // Accepted Friday 18 September, 10 working days: Sun 20 Sep (make-up, 1), 21–25 (2–6),
    // 28–30 (7–9), 1–7 Oct off, Thu 8 Oct (10).
    let clock = CaseClock(receivedOn: day("2026-09-17"), acceptedOn: day("2026-09-18"), promisedDays: 10)
    #expect(clock.decisionDue(asOf: day("2026-09-18"), wfCalendar2026) == day("2026-10-08"))
    // Without the holiday arrangement it would be Friday 2 October.
    #expect(clock.decisionDue(asOf: day("2026-09-18"), wfPlainCalendar) == day("2026-10-02"))
    // 12 days: Fri 9 Oct (11), Sat 10 Oct (make-up, 12).
    let twelve = CaseClock(acceptedOn: day("2026-09-18"), promisedDays: 12)
    #expect(twelve.decisionDue(asOf: day("2026-09-18"), wfCalendar2026) == day("2026-10-10"))
    #expect(twelve.workingDaysLeft(on: day("2026-09-30"), wfCalendar2026) == 3)
    #expect(twelve.workingDaysLeft(on: day("2026-10-12"), wfCalendar2026) == -1)
  }

  @Test func aSuspensionAddsItsWorkingDays() throws {
    // Suspended Tuesday 29 September, resumed Friday 9 October: 29 Sep, 30 Sep and 8 Oct were
    // working days (1–7 Oct are holidays), so the deadline moves by 3 working days.
    var r = wfRecord(state: .underReview, receivedOn: "2026-09-17", acceptedOn: "2026-09-18")
    #expect(r.clock.nextDeadline(in: .underReview, asOf: day("2026-09-28"), wfCalendar2026) == day("2026-10-08"))
    r = try wfApply(CaseAction(event: .suspend, reason: "听证"), r, on: "2026-09-29", calendar: wfCalendar2026)
    #expect(r.clock.nextDeadline(in: r.state, asOf: day("2026-09-30"), wfCalendar2026) == nil, "paused")
    // While open, the suspension keeps pushing the decision deadline out.
    #expect(r.clock.decisionDue(asOf: day("2026-09-30"), wfCalendar2026) == day("2026-10-10"))
    #expect(r.clock.decisionDue(asOf: day("2026-10-05"), wfCalendar2026) == day("2026-10-10"))
    r = try wfApply(CaseAction(event: .resume), r, on: "2026-10-09", calendar: wfCalendar2026)
    #expect(r.clock.pausedWorkingDays(through: day("2026-10-09"), wfCalendar2026) == 3)
    // 8 Oct + 3 working days: Fri 9 Oct, Sat 10 Oct (make-up), Mon 12 Oct.
    #expect(r.clock.nextDeadline(in: r.state, asOf: day("2026-10-09"), wfCalendar2026) == day("2026-10-12"))
    // A closed suspension no longer grows.
    #expect(r.clock.decisionDue(asOf: day("2026-11-30"), wfCalendar2026) == day("2026-10-12"))
    // The extension adds 10 more working days.
    r = try wfApply(CaseAction(event: .extend, reason: "复杂", approver: "局长"), r, on: "2026-10-09", calendar: wfCalendar2026)
    #expect(r.clock.nextDeadline(in: r.state, asOf: day("2026-10-09"), wfCalendar2026) == day("2026-10-26"))
  }

  @Test func aSameDaySuspensionPausesNothing() throws {
    var r = wfRecord(state: .underReview, acceptedOn: "2026-11-23")
    let due = r.clock.decisionDue(asOf: day("2026-11-25"), wfPlainCalendar)
    r = try wfApply(CaseAction(event: .suspend, reason: "核查"), r, on: "2026-11-25")
    r = try wfApply(CaseAction(event: .resume), r, on: "2026-11-25")
    #expect(r.clock.suspensions == [.init(from: day("2026-11-25"), until: day("2026-11-25"))])
    #expect(r.clock.decisionDue(asOf: day("2026-11-26"), wfPlainCalendar) == due)
  }

  @Test func theNextDeadlineDependsOnTheState() {
    let cal = wfCalendar2026
    let today = day("2026-09-28")
    var clock = CaseClock(receivedOn: day("2026-09-17"), promisedDays: 10)
    // Awaiting acceptance: the notice deadline, 5 working days after receipt (18, 20, 21, 22, 23 Sep).
    #expect(clock.nextDeadline(in: .pendingAcceptance, asOf: today, cal) == day("2026-09-23"))
    // After a correction was supplied: 5 working days after the supply (29, 30 Sep, 8, 9, 10 Oct).
    clock.noticeIssuedOn = day("2026-09-18")
    clock.suppliedOn = day("2026-09-28")
    #expect(clock.nextDeadline(in: .pendingAcceptance, asOf: today, cal) == day("2026-10-10"))
    // The applicant's turn: nothing due from the department.
    #expect(clock.nextDeadline(in: .correctionRequired, asOf: today, cal) == nil)
    // Not yet accepted: no decision deadline.
    #expect(clock.nextDeadline(in: .underReview, asOf: today, cal) == nil)
    clock.acceptedOn = day("2026-09-18")
    #expect(clock.nextDeadline(in: .accepted, asOf: today, cal) == day("2026-10-08"))
    #expect(clock.nextDeadline(in: .underReview, asOf: today, cal) == day("2026-10-08"))
    #expect(clock.nextDeadline(in: .suspended, asOf: today, cal) == nil)
    // Decided: the result is due 10 working days later (30 Sep → 8, 9, 10, 12–16, 19, 20 Oct).
    #expect(clock.nextDeadline(in: .approved, asOf: today, cal) == nil, "no decision date yet")
    clock.decidedOn = day("2026-09-30")
    #expect(clock.nextDeadline(in: .approved, asOf: today, cal) == day("2026-10-20"))
    #expect(clock.nextDeadline(in: .denied, asOf: today, cal) == day("2026-10-20"))
    for state in [CaseState.draft, .submitted, .rejected, .completed, .resultDelivering, .resultDelivered, .withdrawn] {
      #expect(clock.nextDeadline(in: state, asOf: today, cal) == nil, "\(state)")
    }
  }

  @Test func dueSoonCountsWorkingDays() {
    // From Wednesday 30 September, 2 working days reach Friday 9 October.
    #expect(CaseWorkflow.isDueSoon(day("2026-10-09"), today: day("2026-09-30"), within: 2, wfCalendar2026))
    #expect(!CaseWorkflow.isDueSoon(day("2026-10-10"), today: day("2026-09-30"), within: 2, wfCalendar2026))
    #expect(CaseWorkflow.isDueSoon(day("2026-09-01"), today: day("2026-09-30"), within: 0, wfCalendar2026), "overdue")
  }
}
