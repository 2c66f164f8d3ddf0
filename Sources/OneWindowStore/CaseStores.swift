import Foundation
import OneWindowCore

// MARK: - Cases

/// A validated submission, ready to store.
public struct CaseSubmission: Sendable {
  public var record: CaseRecord
  public var idempotencyKey: String
  /// The draft's sync version that was validated: the submission fails if it changed since.
  public var draftVersion: Int64
  public var audit: AuditEvent

  public init(record: CaseRecord, idempotencyKey: String, draftVersion: Int64, audit: AuditEvent) {
    self.record = record
    self.idempotencyKey = idempotencyKey
    self.draftVersion = draftVersion
    self.audit = audit
  }
}

/// What a transition writes besides the case itself, in the same transaction.
public struct CaseEffects: Sendable {
  public var audit: AuditEvent
  /// A certificate issued by this transition (approval of an item with a template).
  public var certificate: StoredCertificate?
  /// A certificate the transition revokes (the case was reopened).
  public var revokedCertificate: String?
  public var today: CivilDate
  public var calendar: WorkingCalendar

  public init(
    audit: AuditEvent, certificate: StoredCertificate? = nil, revokedCertificate: String? = nil, today: CivilDate,
    calendar: WorkingCalendar
  ) {
    self.audit = audit
    self.certificate = certificate
    self.revokedCertificate = revokedCertificate
    self.today = today
    self.calendar = calendar
  }
}

/// A page of a department's queue with its counters.
public struct CaseQueuePage: Sendable {
  public var cases: [CaseRecord]
  public var overdue: Int
  public var dueSoon: Int

  public init(cases: [CaseRecord], overdue: Int, dueSoon: Int) {
    self.cases = cases
    self.overdue = overdue
    self.dueSoon = dueSoon
  }
}

public protocol CaseStore: Sendable {
  /// Stores a new case (history, outbox event, audit, the applicant's `cases` sync record) and
  /// deletes its draft record, in one transaction. A replay of the applicant's idempotency key
  /// returns the stored case. `failedPrecondition` when the draft changed or is gone.
  func submit(_ submission: CaseSubmission, now: Date, calendar: WorkingCalendar) async throws -> CaseRecord
  /// The draft record of `applicantID` (fields and version), or nil.
  func draft(id: String, applicantID: String) async throws -> (fields: [String: SyncValue], version: Int64)?
  /// The case an idempotency key already produced, if any.
  func caseRecord(applicantID: String, idempotencyKey: String) async throws -> CaseRecord?
  /// The case a draft was submitted as, if any.
  func caseRecord(applicantID: String, draftID: String) async throws -> CaseRecord?
  func caseRecord(id: String) async throws -> CaseRecord?
  func caseRecord(trackingCode: String) async throws -> CaseRecord?
  /// The case id and phone check of the case with this tracking code, or nil: a read of one
  /// indexed entry of small values, never the case's body or history, so the public query
  /// can check the phone digits in the same time whether or not the code exists.
  func trackingCheck(trackingCode: String) async throws -> CaseTrackingCheck?
  /// The applicant's cases, newest first, after the (submitted_at, id) of the previous page.
  func cases(applicantID: String, limit: Int, after: (Date, String)?) async throws -> [CaseRecord]
  /// Stores `updated` if the case is still at `expectedVersion` (else `versionConflict`), with
  /// its new status rows, an outbox event per row, the audit entry and any certificate.
  func update(_ updated: CaseRecord, expectedVersion: Int64, effects: CaseEffects, now: Date) async throws -> CaseRecord
  /// Cases at `department`'s step awaiting it, by deadline (paused ones last).
  func queue(department: String, today: CivilDate, dueSoonBy: CivilDate, filter: QueueSelection, limit: Int, offset: Int)
    async throws -> CaseQueuePage
  /// Cases pending acceptance received on or before `day` (deemed-acceptance candidates).
  func pendingAcceptance(receivedOnOrBefore day: CivilDate) async throws -> [CaseRecord]
  /// Cases with a running deadline from `from` to `until` (inclusive), earliest first, without
  /// their history (deadline reminders).
  func casesDue(from: CivilDate, until: CivilDate, limit: Int) async throws -> [CaseRecord]
}

public enum QueueSelection: Sendable {
  case all, overdue, dueSoon
}

// MARK: - Materials

public struct StoredMaterial: Sendable, Equatable {
  public var id: String
  public var ownerID: String
  public var fileName: String
  public var contentType: String
  public var size: Int64
  public var sha256: String
  public var uploadedAt: Date

  public init(id: String, ownerID: String, fileName: String, contentType: String, size: Int64, sha256: String, uploadedAt: Date) {
    self.id = id; self.ownerID = ownerID; self.fileName = fileName; self.contentType = contentType
    self.size = size; self.sha256 = sha256; self.uploadedAt = uploadedAt
  }
}

public protocol MaterialStore: Sendable {
  func save(_ material: StoredMaterial) async throws
  func material(id: String) async throws -> StoredMaterial?
  /// The cases a material belongs to (for download authorization).
  func cases(containing materialID: String) async throws -> [CaseRecord]
  /// Whether `ownerID` already uploaded this content.
  func owns(ownerID: String, sha256: String) async throws -> Bool
}

// MARK: - Certificates

public struct StoredCertificate: Sendable, Equatable {
  public var payload: CertificatePayload
  public var signed: String
  public var holderID: String
  public var caseID: String
  public var revokedAt: Date?
  public var revocationReason: String
  public var createdAt: Date

  public init(
    payload: CertificatePayload, signed: String, holderID: String, caseID: String, revokedAt: Date? = nil,
    revocationReason: String = "", createdAt: Date
  ) {
    self.payload = payload; self.signed = signed; self.holderID = holderID; self.caseID = caseID
    self.revokedAt = revokedAt; self.revocationReason = revocationReason; self.createdAt = createdAt
  }
}

public protocol CertificateStore: Sendable {
  func certificate(number: String) async throws -> StoredCertificate?
  /// Newest first.
  func certificates(holderID: String) async throws -> [StoredCertificate]
  /// `failedPrecondition` when already revoked.
  func revoke(number: String, reason: String, audit: AuditEvent, now: Date) async throws -> StoredCertificate
}

// MARK: - Evaluations

public protocol EvaluationStore: Sendable {
  /// Stores the case's one evaluation and marks the case evaluated. `failedPrecondition` when
  /// the case was already rated.
  func rate(_ evaluation: Evaluation, audit: AuditEvent, now: Date) async throws -> Evaluation
  func evaluation(caseID: String) async throws -> Evaluation?
  /// Stores `updated` if it is still at `expectedVersion` (else `versionConflict`).
  func update(_ updated: Evaluation, expectedVersion: Int64, audit: AuditEvent, now: Date) async throws -> Evaluation
  /// Bad ratings of a department (nil: all), oldest deadline first.
  func rectifications(department: String?, pendingOnly: Bool) async throws -> [Evaluation]
  /// Every evaluation, for statistics.
  func all() async throws -> [Evaluation]
}

// MARK: - Audit

public protocol AuditStore: Sendable {
  /// Appends one entry (reads of personal data; writes append theirs in their own transaction).
  func append(_ event: AuditEvent, now: Date) async throws
  /// Entries after `sequence`, oldest first (for verification).
  func entries(after sequence: Int64, limit: Int) async throws -> [AuditEntry]
  /// Newest first, optionally of one target or subject, before `beforeSequence`.
  func entries(targetID: String?, subjectID: String?, beforeSequence: Int64?, limit: Int) async throws -> [AuditEntry]
}
