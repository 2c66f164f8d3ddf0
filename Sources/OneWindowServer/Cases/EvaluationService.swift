import Foundation
import GRPCCore
import Logging
import OneWindowAPI
import OneWindowCore
import OneWindowStore

/// 好差评: ratings by applicants, rectification and appeals by departments, review by
/// administrators, published statistics.
struct EvaluationService: Onewindow_V1_EvaluationService.SimpleServiceProtocol {
  let store: any Store
  let published: PublishedCatalog
  let settings: CaseSettings
  let clock: any WallClock
  let logger: Logger

  func rateCase(request: Onewindow_V1_RateCaseRequest, context: ServerContext) async throws -> Onewindow_V1_Evaluation {
    let p = try RequestContext.require([.citizen, .enterprise])
    guard let record = try await store.cases.caseRecord(idOrCode: request.caseID), record.applicantID == p.accountID else {
      throw StoreError.notFound("case '\(request.caseID)'")
    }
    let now = clock.now()
    let evaluation = try EvaluationRules.rate(
      record, level: Int(request.level), indicators: request.indicators.mapValues { Int($0) }, text: request.text, now: now,
      calendar: settings.calendar, rectificationDays: settings.rectificationDays)
    let stored = try await store.evaluations.rate(
      evaluation,
      audit: AuditEvent(p, action: "evaluation.rate", targetType: "case", targetID: record.id, subjectID: p.accountID,
                        reason: "level \(evaluation.level)"),
      now: now)
    return Onewindow_V1_Evaluation(stored)
  }

  func getEvaluation(request: Onewindow_V1_GetEvaluationRequest, context: ServerContext) async throws -> Onewindow_V1_Evaluation {
    let p = try RequestContext.requirePrincipal()
    return Onewindow_V1_Evaluation(try await visible(request.caseID, p))
  }

  func listRectifications(
    request: Onewindow_V1_ListRectificationsRequest, context: ServerContext
  ) async throws -> Onewindow_V1_ListRectificationsResponse {
    let p = try RequestContext.require([.caseworker, .admin])
    var department: String? = request.departmentCode.isEmpty ? nil : request.departmentCode
    if p.role == .caseworker {
      guard let own = p.departmentCode, department == nil || department == own else {
        throw PermissionDenied("caseworkers see their own department's rectifications only")
      }
      department = own
    }
    let list = try await store.evaluations.rectifications(department: department, pendingOnly: request.pendingOnly)
    return .with { $0.evaluations = list.map(Onewindow_V1_Evaluation.init) }
  }

  func respondToEvaluation(
    request: Onewindow_V1_RespondToEvaluationRequest, context: ServerContext
  ) async throws -> Onewindow_V1_Evaluation {
    let p = try RequestContext.require([.caseworker])
    return try await change(request.caseID, p, action: "evaluation.respond") { e, now in
      try EvaluationRules.respond(e, response: request.response, now: now)
    }
  }

  func appealEvaluation(request: Onewindow_V1_AppealEvaluationRequest, context: ServerContext) async throws -> Onewindow_V1_Evaluation {
    let p = try RequestContext.require([.caseworker])
    return try await change(request.caseID, p, action: "evaluation.appeal") { e, _ in
      try EvaluationRules.appeal(e, reason: request.reason)
    }
  }

  func reviewAppeal(request: Onewindow_V1_ReviewAppealRequest, context: ServerContext) async throws -> Onewindow_V1_Evaluation {
    let p = try RequestContext.require([.admin])
    return try await change(request.caseID, p, action: request.invalidate ? "evaluation.invalidate" : "evaluation.uphold") { e, _ in
      try EvaluationRules.review(e, invalidate: request.invalidate, note: request.note)
    }
  }

  func getEvaluationStats(
    request: Onewindow_V1_GetEvaluationStatsRequest, context: ServerContext
  ) async throws -> Onewindow_V1_GetEvaluationStatsResponse {
    let all = try await store.evaluations.all()
    let today = CivilDate(clock.now())
    let snapshot = published.snapshot
    func rows(_ key: (Evaluation) -> String, name: (String) -> String) -> [Onewindow_V1_EvaluationStats] {
      Dictionary(grouping: all, by: key).sorted(by: { $0.key < $1.key }).map { key, group in
        let s = EvaluationRules.stats(group, today: today)
        return .with {
          $0.key = key
          $0.name = name(key)
          $0.count = Int32(s.count)
          $0.average = s.average
          $0.badShare = s.badShare
          $0.rectifiedOnTimeRate = s.rectifiedOnTimeRate
          $0.pendingRectifications = Int32(s.pendingRectifications)
        }
      }
    }
    return .with {
      $0.departments = rows(\.departmentCode) { snapshot.departmentNames[$0] ?? $0 }
      $0.items = rows(\.itemCode) { snapshot.summaries[$0]?.name ?? $0 }
    }
  }

  // MARK: - Helpers

  /// The evaluation if `p` is the applicant, a caseworker of the rated department or an
  /// administrator; NOT_FOUND otherwise.
  func visible(_ idOrCode: String, _ p: Principal) async throws -> Evaluation {
    let notFound = StoreError.notFound("evaluation of case '\(idOrCode)'")
    guard let record = try await store.cases.caseRecord(idOrCode: idOrCode),
          let e = try await store.evaluations.evaluation(caseID: record.id)
    else {
      throw notFound
    }
    switch p.role {
    case .admin: return e
    case .caseworker where p.departmentCode == e.departmentCode: return e
    default:
      guard e.applicantID == p.accountID else { throw notFound }
      return e
    }
  }

  func change(
    _ caseID: String, _ p: Principal, action: String, _ rule: (Evaluation, Date) throws -> Evaluation
  ) async throws -> Onewindow_V1_Evaluation {
    let current = try await visible(caseID, p)
    let now = clock.now()
    let next = try rule(current, now)
    let stored = try await store.evaluations.update(
      next, expectedVersion: current.version,
      audit: AuditEvent(p, action: action, targetType: "case", targetID: current.caseID, subjectID: current.applicantID),
      now: now)
    return Onewindow_V1_Evaluation(stored)
  }
}
