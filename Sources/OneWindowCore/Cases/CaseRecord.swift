#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Who did something to a case, as the status history and the audit log record it.
public struct CaseActor: Sendable, Equatable, Codable {
  public var kind: CaseActorKind
  /// nil for the system.
  public var accountID: String?
  public var role: Role?
  public var departmentCode: String?

  public init(kind: CaseActorKind, accountID: String?, role: Role?, departmentCode: String?) {
    self.kind = kind
    self.accountID = accountID
    self.role = role
    self.departmentCode = departmentCode
  }

  public static let system = CaseActor(kind: .system, accountID: nil, role: nil, departmentCode: nil)
}

/// One material in a case's bag (申办一袋): an uploaded file or an e-certificate of the applicant
/// given instead of a file.
public struct CaseMaterialRef: Sendable, Equatable, Codable {
  /// The item's material name (or the attachment's file name for status attachments).
  public var name: String
  public var materialID: String?
  public var certificateNumber: String?
  public var sha256: String
  public var size: Int64
  public var contentType: String

  public init(name: String, materialID: String?, certificateNumber: String?, sha256: String, size: Int64, contentType: String) {
    self.name = name
    self.materialID = materialID
    self.certificateNumber = certificateNumber
    self.sha256 = sha256
    self.size = size
    self.contentType = contentType
  }
}

/// An immutable row of a case's status history.
public struct CaseStatusEntry: Sendable, Equatable, Codable {
  public var state: CaseState
  public var event: CaseEvent
  public var at: Date
  public var actor: CaseActor
  public var reason: String
  /// The one-time correction notice: every missing item.
  public var missingItems: [String]
  /// Material ids of documents attached to this step (notices, decision letters …).
  public var attachmentIDs: [String]
  /// The process step the case was at.
  public var step: Int

  public init(
    state: CaseState, event: CaseEvent, at: Date, actor: CaseActor, reason: String = "", missingItems: [String] = [],
    attachmentIDs: [String] = [], step: Int
  ) {
    self.state = state
    self.event = event
    self.at = at
    self.actor = actor
    self.reason = reason
    self.missingItems = missingItems
    self.attachmentIDs = attachmentIDs
    self.step = step
  }
}

/// A case (办件) with everything the rules need: the item version frozen at submission, the
/// form, the material bag, the state, the legal clock and the history.
public struct CaseRecord: Sendable, Equatable, Codable {
  public var id: String
  public var trackingCode: String
  public var applicantID: String
  public var applicantRole: Role
  public var applicantName: String
  /// `CaseRecord.phoneCheck(caseID:last4:)` of the applicant's phone, for the public query.
  public var phoneCheck: String
  public var draftID: String
  /// The guide as it was when the case was submitted; later edits of the item do not apply.
  public var item: ServiceItemSpec
  public var itemVersion: Int64
  public var form: [String: String]
  public var materials: [CaseMaterialRef]
  public var state: CaseState
  /// Increments with every transition (optimistic concurrency).
  public var version: Int64
  /// Index into `item.processSteps`; its department handles the case now.
  public var currentStep: Int
  public var clock: CaseClock
  public var history: [CaseStatusEntry]
  public var certificateNumber: String?
  /// The courier's tracking number when the result is sent.
  public var deliveryReference: String
  public var evaluated: Bool
  public var submittedAt: Date
  public var updatedAt: Date

  public init(
    id: String, trackingCode: String, applicantID: String, applicantRole: Role, applicantName: String, phoneCheck: String,
    draftID: String, item: ServiceItemSpec, itemVersion: Int64, form: [String: String], materials: [CaseMaterialRef],
    state: CaseState, version: Int64, currentStep: Int, clock: CaseClock, history: [CaseStatusEntry],
    certificateNumber: String? = nil, deliveryReference: String = "", evaluated: Bool = false, submittedAt: Date, updatedAt: Date
  ) {
    self.id = id; self.trackingCode = trackingCode; self.applicantID = applicantID; self.applicantRole = applicantRole
    self.applicantName = applicantName; self.phoneCheck = phoneCheck; self.draftID = draftID; self.item = item
    self.itemVersion = itemVersion; self.form = form; self.materials = materials; self.state = state
    self.version = version; self.currentStep = currentStep; self.clock = clock; self.history = history
    self.certificateNumber = certificateNumber; self.deliveryReference = deliveryReference; self.evaluated = evaluated
    self.submittedAt = submittedAt; self.updatedAt = updatedAt
  }

  /// The department handling the current step.
  public var handlingDepartment: String {
    item.processSteps.indices.contains(currentStep) ? item.processSteps[currentStep].departmentCode : item.departmentCode
  }

  /// Every department with a step in this case (their caseworkers may read it).
  public var departments: Set<String> { Set(item.processSteps.map(\.departmentCode)).union([item.departmentCode]) }

  /// The check value stored for the public progress query: SHA-256 of the case id and the last
  /// four phone digits, so the digits are not stored as such.
  public static func phoneCheck(caseID: String, last4: String) -> String {
    Hex.sha256(Array("\(caseID)|\(last4)".utf8))
  }
}

/// What the public progress query checks before it loads a case: the case id and its stored
/// phone check (a store reads both from one indexed row, without the case's body or history).
public struct CaseTrackingCheck: Sendable, Equatable {
  public var caseID: String
  public var phoneCheck: String

  public init(caseID: String, phoneCheck: String) {
    self.caseID = caseID
    self.phoneCheck = phoneCheck
  }

  /// Stands in for a code with no case: a ULID-shaped id (so the digest input has the usual
  /// length) and a stored value no SHA-256 hex digest equals (`z` is not a hex digit).
  static let absent = CaseTrackingCheck(caseID: "00000000000000000000000000", phoneCheck: String(repeating: "z", count: 64))

  /// Whether `last4` are the applicant's digits. A missing case (nil) does the same work as a
  /// present one: the digest of a stand-in id, compared byte by byte without an early exit, so
  /// the time taken does not tell an existing tracking code from a missing one.
  public static func matches(_ stored: CaseTrackingCheck?, last4: String) -> Bool {
    let check = stored ?? absent
    let given = CaseRecord.phoneCheck(caseID: check.caseID, last4: last4)
    return ConstantTime.equal(Array(check.phoneCheck.utf8), Array(given.utf8)) && stored != nil
  }
}
