import Foundation
import OneWindowAPI
import OneWindowCore
import OneWindowStore
import SwiftProtobuf

// Wire forms of the case types. The proto enums list the core cases in the same order
// (numbered from 1), which a test pins.

extension CaseState {
  var proto: Onewindow_V1_CaseState {
    Onewindow_V1_CaseState(rawValue: (Self.allCases.firstIndex(of: self) ?? -1) + 1) ?? .unspecified
  }
}

extension CaseEvent {
  var proto: Onewindow_V1_CaseEvent {
    Onewindow_V1_CaseEvent(rawValue: (Self.allCases.firstIndex(of: self) ?? -1) + 1) ?? .unspecified
  }

  init(proto: Onewindow_V1_CaseEvent, field: String) throws(ValidationError) {
    guard proto.rawValue >= 1, proto.rawValue <= Self.allCases.count else {
      throw ValidationError(field, "is required: one of \(Self.allCases.map(\.rawValue).joined(separator: ", "))")
    }
    self = Self.allCases[proto.rawValue - 1]
  }
}

extension Onewindow_V1_CaseMaterial {
  init(_ m: CaseMaterialRef) {
    self = .with {
      $0.name = m.name
      $0.materialID = m.materialID ?? ""
      $0.certificateNumber = m.certificateNumber ?? ""
      $0.sha256 = m.sha256
      $0.size = m.size
      $0.contentType = m.contentType
    }
  }
}

extension Onewindow_V1_CaseStatusEntry {
  /// `showStaffIDs` false (the applicant's view): staff actors appear by role and department
  /// only, never as individual accounts.
  init(_ e: CaseStatusEntry, showStaffIDs: Bool) {
    self = .with {
      $0.state = e.state.proto
      $0.event = e.event.proto
      $0.at = .init(e.at)
      $0.actor = .with { a in
        a.accountID = (showStaffIDs || e.actor.kind == .applicant) ? e.actor.accountID ?? "" : ""
        a.role = e.actor.role?.proto ?? .unspecified
        a.departmentCode = e.actor.departmentCode ?? ""
      }
      $0.reason = e.reason
      $0.missingItems = e.missingItems
      $0.attachmentIds = e.attachmentIDs
      $0.step = Int32(e.step)
    }
  }
}

extension Onewindow_V1_CaseDeadlines {
  init(_ r: CaseRecord, today: CivilDate, calendar: WorkingCalendar) {
    let clock = r.clock
    self = .with {
      $0.receivedOn = clock.receivedOn?.description ?? ""
      $0.acceptedOn = clock.acceptedOn?.description ?? ""
      if r.state == .pendingAcceptance && clock.acceptedOn == nil && clock.noticeIssuedOn == nil {
        $0.correctionNoticeDue = clock.correctionNoticeDue(calendar)?.description ?? ""
      }
      if clock.decidedOn == nil, let due = clock.decisionDue(asOf: today, calendar) {
        $0.decisionDue = due.description
        $0.workingDaysLeft = Int32(clock.workingDaysLeft(on: today, calendar) ?? 0)
      }
      $0.extended = clock.extended
      $0.suspended = r.state == .suspended
      if let next = clock.nextDeadline(in: r.state, asOf: today, calendar) {
        $0.nextDue = next.description
        $0.overdue = today > next
      }
    }
  }
}

extension Onewindow_V1_Case {
  /// The case as `involvement` sees it (the applicant and staff see the same fields; what each
  /// may do differs).
  init(_ r: CaseRecord, involvement: CaseWorkflow.Involvement, today: CivilDate, calendar: WorkingCalendar) {
    self = .with {
      $0.id = r.id
      $0.trackingCode = r.trackingCode
      $0.itemCode = r.item.code
      $0.itemName = r.item.name
      $0.itemVersion = r.itemVersion
      $0.applicantID = r.applicantID
      $0.applicantName = r.applicantName
      $0.state = r.state.proto
      $0.version = r.version
      $0.form = r.form
      $0.materials = r.materials.map(Onewindow_V1_CaseMaterial.init)
      $0.steps = r.item.processSteps.map { s in
        .with { $0.name = s.name; $0.departmentCode = s.departmentCode; $0.description_p = s.description }
      }
      $0.currentStep = Int32(r.currentStep)
      $0.handlingDepartment = r.handlingDepartment
      $0.deadlines = .init(r, today: today, calendar: calendar)
      $0.history = r.history.map { Onewindow_V1_CaseStatusEntry($0, showStaffIDs: involvement != .applicant) }
      if let kind = involvement.actorKind {
        $0.availableEvents = CaseWorkflow.availableEvents(r, for: kind).map(\.proto)
      }
      $0.certificateNumber = r.certificateNumber ?? ""
      $0.deliveryReference = r.deliveryReference
      $0.evaluated = r.evaluated
      $0.submittedAt = .init(r.submittedAt)
      $0.updatedAt = .init(r.updatedAt)
    }
  }
}

extension Onewindow_V1_Certificate {
  init(_ c: StoredCertificate, today: CivilDate) {
    let p = c.payload
    self = .with {
      $0.number = p.number
      $0.type = p.type
      $0.holderName = p.holderName
      $0.holderID = p.holderIDMasked
      $0.issuerDepartmentCode = p.issuerDepartmentCode
      $0.issuerDepartmentName = p.issuerDepartmentName
      $0.issuedOn = p.issuedOn.description
      $0.expiresOn = p.expiresOn?.description ?? ""
      $0.fields = p.fields
      $0.trackingCode = p.trackingCode
      $0.keyID = p.keyID
      $0.signed = c.signed
      $0.status = c.status(today: today)
      if let revoked = c.revokedAt { $0.revokedAt = .init(revoked) }
      $0.revocationReason = c.revocationReason
    }
  }
}

extension StoredCertificate {
  func status(today: CivilDate) -> Onewindow_V1_CertificateStatus {
    if revokedAt != nil { return .revoked }
    if let expires = payload.expiresOn, today > expires { return .expired }
    return .valid
  }
}

extension Onewindow_V1_Evaluation {
  init(_ e: Evaluation) {
    self = .with {
      $0.caseID = e.caseID
      $0.trackingCode = e.trackingCode
      $0.departmentCode = e.departmentCode
      $0.itemCode = e.itemCode
      $0.level = Int32(e.level)
      $0.indicators = e.indicators.mapValues { Int32($0) }
      $0.text = e.text
      $0.status = e.status.proto
      $0.createdAt = .init(e.createdAt)
      $0.rectificationDue = e.rectificationDue?.description ?? ""
      $0.response = e.response
      if let at = e.respondedAt { $0.respondedAt = .init(at) }
      $0.respondedOnTime = e.respondedOnTime ?? false
      $0.appealReason = e.appealReason
      $0.reviewNote = e.reviewNote
      $0.version = e.version
    }
  }
}

extension EvaluationStatus {
  var proto: Onewindow_V1_EvaluationStatus {
    switch self {
    case .closed: .closed
    case .rectifying: .rectifying
    case .rectified: .rectified
    case .appealed: .appealed
    case .invalidated: .invalidated
    }
  }
}

extension Onewindow_V1_AuditEntry {
  init(_ e: AuditEntry) {
    self = .with {
      $0.sequence = e.sequence
      $0.at = .init(e.at)
      $0.actorID = e.actorID ?? ""
      $0.actorRole = e.actorRole
      $0.actorDepartmentCode = e.actorDepartment ?? ""
      $0.action = e.action
      $0.targetType = e.targetType
      $0.targetID = e.targetID
      $0.subjectID = e.subjectID ?? ""
      $0.reason = e.reason
      $0.clientAddress = e.clientAddress ?? ""
      $0.previousHash = e.previousHash
      $0.hash = e.hash
    }
  }
}
