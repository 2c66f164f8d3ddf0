import Foundation
import GRPCCore
import Logging
import OneWindowAPI
import OneWindowCore
import OneWindowStore

/// Cases: submission from a synced draft, transitions under the lifecycle table, queues, the
/// public progress query and the applicant's access log. Rules live in `CaseWorkflow`; this
/// type decodes, authorizes, loads, applies and stores.
struct CaseService: Onewindow_V1_CaseService.SimpleServiceProtocol {
  let store: any Store
  let published: PublishedCatalog
  let issuer: IssuerKeys
  let settings: CaseSettings
  let trackLimiter: PeerLimiter
  let clock: any WallClock
  let logger: Logger
  /// Called after a case change commits (wakes the case notifications).
  var caseChanged: @Sendable () -> Void = {}

  var calendar: WorkingCalendar { settings.calendar }

  // MARK: - Applicants

  func submitCase(request: Onewindow_V1_SubmitCaseRequest, context: ServerContext) async throws -> Onewindow_V1_Case {
    let p = try RequestContext.require([.citizen, .enterprise])
    try SyncLimits.validateRecordID(request.draftID, field: "draft_id")
    let key = try Self.idempotencyKey(request.idempotencyKey)
    let now = clock.now()
    if let existing = try await store.cases.caseRecord(applicantID: p.accountID, idempotencyKey: key) {
      return try replay(existing, draftID: request.draftID, now)
    }
    guard let draft = try await store.cases.draft(id: request.draftID, applicantID: p.accountID) else {
      // A concurrent retry with this key may have submitted the draft since the check above.
      if let existing = try await store.cases.caseRecord(applicantID: p.accountID, idempotencyKey: key) {
        return try replay(existing, draftID: request.draftID, now)
      }
      if let other = try await store.cases.caseRecord(applicantID: p.accountID, draftID: request.draftID) {
        throw PreconditionFailed(
          "draft \(request.draftID) was already submitted as case \(other.trackingCode) (with another idempotency key)")
      }
      throw RPCError(code: .notFound, message: "draft '\(request.draftID)' not found: push it to the case.drafts collection first")
    }
    let parsed = try CaseDraft(fields: draft.fields)
    guard let item = try await store.catalog.item(code: parsed.itemCode), item.status == .published else {
      throw PreconditionFailed("item \(parsed.itemCode) is not open for applications (not published)")
    }
    switch (item.spec.target, p.role) {
    case (.citizen, .enterprise): throw PermissionDenied("item \(item.spec.code) is for citizens; apply with a personal account")
    case (.enterprise, .citizen): throw PermissionDenied("item \(item.spec.code) is for enterprises; apply with the enterprise's account")
    default: break
    }
    let form = try DraftRules.validateForm(parsed.form, schema: item.spec.formFields)
    try DraftRules.validateMaterials(parsed.materials, item: item.spec)
    var materials: [CaseMaterialRef] = []
    for (name, choice) in parsed.materials.sorted(by: { $0.key < $1.key }) {
      materials.append(try await resolve(choice, name: name, field: "draft.materials.\(name)", owner: p.accountID, now: now))
    }
    guard let account = try await store.identity.account(id: p.accountID) else {
      throw RPCError(code: .unauthenticated, message: "the account no longer exists")
    }
    var phone = account.phone
    if phone == nil, let representative = account.legalRepresentativeID {
      phone = try await store.identity.account(id: representative)?.phone
    }
    let id = ULID.make(at: now)
    let applicant = CaseActor(kind: .applicant, accountID: p.accountID, role: p.role, departmentCode: nil)
    var record = CaseRecord(
      id: id, trackingCode: TrackingCode.make(), applicantID: p.accountID, applicantRole: p.role,
      applicantName: account.displayName, phoneCheck: CaseRecord.phoneCheck(caseID: id, last4: String((phone ?? "").suffix(4))),
      draftID: request.draftID, item: item.spec, itemVersion: item.version, form: form, materials: materials, state: .draft,
      version: 0, currentStep: 0,
      clock: CaseClock(promisedDays: item.spec.promisedLimitDays, statutoryDays: item.spec.statutoryLimitDays), history: [],
      submittedAt: now, updatedAt: now)
    record = try CaseWorkflow.apply(CaseAction(event: .submit), to: record, by: applicant, at: now, calendar: calendar)
    record = try CaseWorkflow.apply(CaseAction(event: .receive), to: record, by: .system, at: now, calendar: calendar)
    let stored = try await store.cases.submit(
      CaseSubmission(
        record: record, idempotencyKey: key, draftVersion: draft.version,
        audit: AuditEvent(p, action: "case.submit", targetType: "case", targetID: id, subjectID: p.accountID)),
      now: now, calendar: calendar)
    caseChanged()
    guard stored.id == id else { return try replay(stored, draftID: request.draftID, now) }
    logger.info("case submitted", metadata: ["case": "\(id)", "item": "\(item.spec.code)"])
    return view(stored, .applicant, now)
  }

  /// A retried submission: the case the key produced, if the key was used for this draft.
  func replay(_ existing: CaseRecord, draftID: String, _ now: Date) throws -> Onewindow_V1_Case {
    guard existing.draftID == draftID else {
      throw PreconditionFailed(
        "idempotency key already used for another draft (case \(existing.trackingCode)); use a new key for a new submission")
    }
    return view(existing, .applicant, now)
  }

  func getCase(request: Onewindow_V1_GetCaseRequest, context: ServerContext) async throws -> Onewindow_V1_Case {
    let p = try RequestContext.requirePrincipal()
    let (record, involvement) = try await visibleCase(request.caseID, p)
    let now = clock.now()
    if involvement != .applicant {
      try await store.audit.append(
        AuditEvent(p, action: "case.viewed", targetType: "case", targetID: record.id, subjectID: record.applicantID), now: now)
    }
    return view(record, involvement, now)
  }

  func listMyCases(request: Onewindow_V1_ListMyCasesRequest, context: ServerContext) async throws -> Onewindow_V1_ListCasesResponse {
    let p = try RequestContext.require([.citizen, .enterprise])
    let size = try Paging.pageSize(request.pageSize, default: 20, max: 100)
    var after: (Date, String)?
    if !request.pageToken.isEmpty {
      let parts = try Paging.token(request.pageToken, prefix: "c").split(separator: "|", maxSplits: 1)
      guard parts.count == 2, let ms = Int64(parts[0]), (0...4_102_444_800_000).contains(ms) else { throw Paging.badToken }
      after = (Date(timeIntervalSince1970: Double(ms) / 1000), String(parts[1]))
    }
    let cases = try await store.cases.cases(applicantID: p.accountID, limit: size + 1, after: after)
    let now = clock.now()
    return .with {
      $0.cases = cases.prefix(size).map { view($0, .applicant, now) }
      if cases.count > size, let last = cases.prefix(size).last {
        $0.nextPageToken = Paging.makeToken("c", "\(Int64((last.submittedAt.timeIntervalSince1970 * 1000).rounded()))|\(last.id)")
      }
    }
  }

  // MARK: - Transitions

  func actOnCase(request: Onewindow_V1_ActOnCaseRequest, context: ServerContext) async throws -> Onewindow_V1_Case {
    let p = try RequestContext.requirePrincipal()
    let event = try CaseEvent(proto: request.event, field: "event")
    guard ![.submit, .receive, .deemAccepted].contains(event) else {
      throw ValidationError("event", "\(event.rawValue) is done by the server, not requested")
    }
    guard request.expectedVersion >= 0 else { throw ValidationError("expected_version", "must not be negative") }
    try Check.count(request.materials, field: "materials", max: 50)
    try Check.count(request.attachmentIds, field: "attachment_ids", max: CaseWorkflow.maxAttachments)
    var action = CaseAction(
      event: event, reason: request.reason, missingItems: request.missingItems, approver: request.approver,
      deliveryReference: request.deliveryReference, attachmentIDs: request.attachmentIds)
    var now = clock.now()
    var supplied: [String: CaseDraft.MaterialChoice] = [:]
    for (name, value) in request.materials {
      supplied[name] = value.hasPrefix(CaseDraft.certificatePrefix)
        ? .certificate(number: String(value.dropFirst(CaseDraft.certificatePrefix.count))) : .upload(materialID: value)
    }
    for (i, id) in request.attachmentIds.enumerated() {
      guard let m = try await store.materials.material(id: id), m.ownerID == p.accountID else {
        throw ValidationError("attachment_ids[\(i)]", "is not a material you uploaded")
      }
    }
    // Optimistic concurrency: apply the rules to what was read and store only if the case is
    // still at that version. On a lost race re-read once more: the rules then judge the new
    // state (so a second "accept" fails naming the state the first one produced).
    for attempt in 1...3 {
      now = clock.now()
      let (record, involvement) = try await visibleCase(request.caseID, p)
      guard let kind = involvement.actorKind else {
        throw PermissionDenied(
          "the case is at step \(record.currentStep + 1), handled by department \(record.handlingDepartment); your department cannot act on it now")
      }
      if request.expectedVersion != 0 && request.expectedVersion != record.version {
        throw StoreError.versionConflict(current: record.version)
      }
      if event == .supplyCorrection && attempt == 1 {
        // Supplied materials follow the item's list, as at submission.
        try DraftRules.validateSupplied(supplied, item: record.item)
        for (name, choice) in supplied.sorted(by: { $0.key < $1.key }) {
          action.materials.append(try await resolve(choice, name: name, field: "materials.\(name)", owner: p.accountID, now: now))
        }
      }
      let actor = CaseActor(kind: kind, accountID: p.accountID, role: p.role, departmentCode: p.departmentCode)
      var updated = try CaseWorkflow.apply(action, to: record, by: actor, at: now, calendar: calendar)
      if event == .complete { try await requireFeesSettled(record) }
      var certificate: StoredCertificate?
      if event == .approve, let template = record.item.certificate {
        certificate = try await issueCertificate(template, for: updated, now: now)
        updated.certificateNumber = certificate?.payload.number
      }
      // A reopened case no longer stands on its old decision: its certificate is revoked (and
      // a new approval issues a new one).
      var superseded: String?
      if event == .reopen, let old = record.certificateNumber {
        superseded = old
        updated.certificateNumber = nil
      }
      let audit = AuditEvent(
        actor, action: "case.\(event.rawValue)", targetType: "case", targetID: record.id, subjectID: record.applicantID,
        reason: updated.history.last?.reason ?? "")
      do {
        let stored = try await store.cases.update(
          updated, expectedVersion: record.version,
          effects: CaseEffects(
            audit: audit, certificate: certificate, revokedCertificate: superseded, today: CivilDate(now), calendar: calendar),
          now: now)
        caseChanged()
        return view(stored, involvement, now)
      } catch StoreError.versionConflict(let current) where request.expectedVersion == 0 && attempt < 3 {
        logger.debug("case changed concurrently; re-reading", metadata: ["case": "\(record.id)", "version": "\(current)"])
        continue
      }
    }
    throw RPCError(code: .aborted, message: "the case is changing too quickly; read it again and retry")
  }

  /// A case whose item charges fees completes only once its fee order is paid or waived.
  func requireFeesSettled(_ record: CaseRecord) async throws {
    guard record.item.totalFeeFen > 0 else { return }
    let order = try await store.payments.order(caseID: record.id)
    guard let order, order.state.isSettled else {
      let due = (try? Fen(record.item.totalFeeFen).yuan) ?? "\(record.item.totalFeeFen) fen"
      throw PreconditionFailed(
        "case \(record.trackingCode) cannot complete: its fees (\(order.map { $0.fees.total.yuan } ?? due) yuan) are "
          + (order == nil ? "not ordered yet" : "not paid") + "; the applicant pays them, or a caseworker waives them (CreateOrder, then AdjustFee)")
    }
  }

  /// Builds and signs the certificate an approval issues.
  func issueCertificate(_ template: CertificateTemplate, for record: CaseRecord, now: Date) async throws -> StoredCertificate {
    let applicant = try await store.identity.account(id: record.applicantID)
    let holderID = applicant?.creditCode ?? applicant?.idNumber ?? ""
    let issued = CivilDate(now)
    let department = published.snapshot.departmentNames[record.handlingDepartment] ?? record.handlingDepartment
    var fields: [String: String] = [:]
    for name in template.fields { if let value = record.form[name] { fields[name] = value } }
    let payload = CertificatePayload(
      number: SignedCertificate.makeNumber(year: issued.components.year), type: template.type,
      holderName: record.applicantName, holderIDMasked: Redact.idNumber(holderID),
      issuerDepartmentCode: record.handlingDepartment, issuerDepartmentName: department, issuedOn: issued,
      expiresOn: SignedCertificate.expiry(issuedOn: issued, years: template.validityYears), fields: fields,
      trackingCode: record.trackingCode, keyID: issuer.keyID)
    let signed = try SignedCertificate.sign(payload, with: issuer.signingKey)
    return StoredCertificate(payload: payload, signed: signed, holderID: record.applicantID, caseID: record.id, createdAt: now)
  }

  // MARK: - Queues

  func listQueue(request: Onewindow_V1_ListQueueRequest, context: ServerContext) async throws -> Onewindow_V1_ListQueueResponse {
    let p = try RequestContext.require([.caseworker, .admin])
    let department: String
    if p.role == .admin {
      guard !request.departmentCode.isEmpty else {
        throw ValidationError("department_code", "is required for administrators: name the department whose queue to list")
      }
      department = request.departmentCode
    } else {
      guard let own = p.departmentCode else { throw PermissionDenied("your account has no department") }
      if !request.departmentCode.isEmpty && request.departmentCode != own {
        throw PermissionDenied("caseworkers see their own department's queue only")
      }
      department = own
    }
    let size = try Paging.pageSize(request.pageSize, default: 50, max: 100)
    let offset = request.pageToken.isEmpty ? 0 : (Int(try Paging.token(request.pageToken, prefix: "q")) ?? -1)
    guard (0...100_000).contains(offset) else { throw Paging.badToken }
    let days = request.dueSoonDays == 0 ? 3 : Int(request.dueSoonDays)
    try Check.range(days, field: "due_soon_days", 1...60)
    let now = clock.now()
    let today = CivilDate(now)
    let selection: QueueSelection
    switch request.filter {
    case .unspecified, .all: selection = .all
    case .overdue: selection = .overdue
    case .dueSoon: selection = .dueSoon
    case .UNRECOGNIZED(let n): throw ValidationError("filter", "has unknown value \(n)")
    }
    let page = try await store.cases.queue(
      department: department, today: today, dueSoonBy: calendar.addingWorkingDays(days, to: today), filter: selection,
      limit: size + 1, offset: offset)
    return .with {
      $0.entries = page.cases.prefix(size).map { r in
        .with {
          $0.caseID = r.id
          $0.trackingCode = r.trackingCode
          $0.itemCode = r.item.code
          $0.itemName = r.item.name
          $0.applicantName = r.applicantName
          $0.state = r.state.proto
          $0.version = r.version
          if let due = r.clock.nextDeadline(in: r.state, asOf: today, calendar) {
            $0.dueOn = due.description
            $0.overdue = today > due
            $0.workingDaysLeft = Int32(calendar.workingDaysLeft(from: today, until: due))
          }
          $0.stepName = r.item.processSteps.indices.contains(r.currentStep) ? r.item.processSteps[r.currentStep].name : ""
          $0.submittedAt = .init(r.submittedAt)
        }
      }
      if page.cases.count > size { $0.nextPageToken = Paging.makeToken("q", "\(offset + size)") }
      $0.overdueCount = Int32(page.overdue)
      $0.dueSoonCount = Int32(page.dueSoon)
    }
  }

  // MARK: - Public progress query

  func trackCase(request: Onewindow_V1_TrackCaseRequest, context: ServerContext) async throws -> Onewindow_V1_TrackCaseResponse {
    let now = clock.now()
    // Counted before the lookup (so parallel guesses cannot all pass), refunded on success.
    let ticket = try await trackLimiter.admit(context, now: now)
    let notFound = RPCError(code: .notFound, message: "no case matches this tracking code and phone number; check both")
    guard request.phoneLast4.count == 4, request.phoneLast4.allSatisfy({ $0.isASCII && $0.isNumber }) else {
      throw ValidationError("phone_last4", "must be the last 4 digits of the applicant's mobile number")
    }
    // An existing code with wrong digits must take as long as a missing code, or timing would
    // tell which codes exist: both read one small index entry and compare a digest in constant
    // time; the case itself is loaded only once the digits matched.
    var check: CaseTrackingCheck?
    if let code = try? TrackingCode.normalize(request.trackingCode) {
      check = try await store.cases.trackingCheck(trackingCode: code)
    }
    guard CaseTrackingCheck.matches(check, last4: request.phoneLast4), let check,
          let record = try await store.cases.caseRecord(id: check.caseID)
    else {
      // A wrong code and a wrong phone answer alike, and both stay counted.
      throw notFound
    }
    try await trackLimiter.refund(ticket)
    let names = published.snapshot.departmentNames
    let today = CivilDate(now)
    return .with {
      $0.trackingCode = record.trackingCode
      $0.itemName = record.item.name
      $0.state = record.state.proto
      $0.timeline = record.history.map { e in
        .with {
          $0.state = e.state.proto
          $0.at = .init(e.at)
          let step = record.item.processSteps.indices.contains(e.step) ? record.item.processSteps[e.step] : nil
          $0.stepName = step?.name ?? ""
          $0.departmentName = step.map { names[$0.departmentCode] ?? $0.departmentCode } ?? ""
        }
      }
      if record.clock.decidedOn == nil, let due = record.clock.decisionDue(asOf: today, calendar) {
        $0.decisionDue = due.description
      }
    }
  }

  // MARK: - Access log

  func listCaseAccess(
    request: Onewindow_V1_ListCaseAccessRequest, context: ServerContext
  ) async throws -> Onewindow_V1_ListCaseAccessResponse {
    let p = try RequestContext.require([.citizen, .enterprise])
    let size = try Paging.pageSize(request.pageSize, default: 50, max: 200)
    var before: Int64?
    if !request.pageToken.isEmpty {
      guard let n = Int64(try Paging.token(request.pageToken, prefix: "a")) else { throw Paging.badToken }
      before = n
    }
    var target: String?
    if !request.caseID.isEmpty {
      let (record, _) = try await visibleCase(request.caseID, p)
      target = record.id
    }
    let entries = try await store.audit.entries(targetID: target, subjectID: p.accountID, beforeSequence: before, limit: size + 1)
    let names = published.snapshot.departmentNames
    var trackingCodes: [String: String] = [:]
    var out: [Onewindow_V1_CaseAccessEntry] = []
    for e in entries.prefix(size) where e.targetType == "case" || e.targetType == "material" {
      if trackingCodes[e.targetID] == nil, e.targetType == "case" {
        trackingCodes[e.targetID] = try await store.cases.caseRecord(id: e.targetID)?.trackingCode ?? ""
      }
      out.append(.with {
        $0.caseID = e.targetType == "case" ? e.targetID : ""
        $0.trackingCode = trackingCodes[e.targetID] ?? ""
        $0.action = e.action
        $0.actorRole = Role(rawValue: e.actorRole)?.proto ?? .unspecified
        $0.actorDepartmentCode = e.actorDepartment ?? ""
        $0.actorDepartmentName = e.actorDepartment.flatMap { names[$0] } ?? ""
        $0.at = .init(e.at)
      })
    }
    return .with {
      $0.entries = out
      if entries.count > size, let last = entries.prefix(size).last { $0.nextPageToken = Paging.makeToken("a", "\(last.sequence)") }
    }
  }

  // MARK: - Helpers

  /// The case by id or tracking code, if `p` may see it; NOT_FOUND otherwise (the same answer
  /// as for a case that does not exist).
  func visibleCase(_ idOrCode: String, _ p: Principal) async throws -> (CaseRecord, CaseWorkflow.Involvement) {
    let record = try await store.cases.caseRecord(idOrCode: idOrCode)
    guard let record, let involvement = CaseWorkflow.involvement(of: p, in: record) else {
      throw StoreError.notFound("case '\(idOrCode.trimmingWhitespace())'")
    }
    return (record, involvement)
  }

  /// An uploaded material of `owner`, or one of the owner's valid e-certificates.
  func resolve(_ choice: CaseDraft.MaterialChoice, name: String, field: String, owner: String, now: Date) async throws -> CaseMaterialRef {
    switch choice {
    case .upload(let id):
      guard let m = try await store.materials.material(id: id), m.ownerID == owner else {
        throw ValidationError(field, "material '\(id)' is not among your uploads; upload it with MaterialService.UploadMaterial")
      }
      return CaseMaterialRef(name: name, materialID: m.id, certificateNumber: nil, sha256: m.sha256, size: m.size, contentType: m.contentType)
    case .certificate(let number):
      guard let c = try await store.certificates.certificate(number: number), c.holderID == owner else {
        throw ValidationError(field, "certificate '\(number)' is not one of yours")
      }
      guard c.status(today: CivilDate(now)) == .valid else {
        throw ValidationError(field, "certificate \(number) is revoked or expired; upload the document instead")
      }
      return CaseMaterialRef(name: name, materialID: nil, certificateNumber: number, sha256: "", size: 0, contentType: "")
    }
  }

  func view(_ record: CaseRecord, _ involvement: CaseWorkflow.Involvement, _ now: Date) -> Onewindow_V1_Case {
    Onewindow_V1_Case(record, involvement: involvement, today: CivilDate(now), calendar: calendar)
  }

  static func idempotencyKey(_ raw: String) throws(ValidationError) -> String {
    guard (8...64).contains(raw.utf8.count),
          raw.utf8.allSatisfy({ Base64URL.isAlphabet($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: ":") })
    else { throw ValidationError("idempotency_key", "must be 8–64 characters of letters, digits, '-', '_', '.' or ':' (e.g. a UUID)") }
    return raw
  }
}
