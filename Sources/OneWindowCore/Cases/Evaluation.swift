#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// 好差评: the applicant's one rating of a case (一事一评) and what follows a bad one.
///
/// `closed` (rating ≥ 3) · `rectifying` (≤ 2: the handling department must respond by the
/// deadline) → `rectified` · `rectifying | rectified` → `appealed` (the department says the
/// rating is malicious) → back to where it was (the administrator upholds the rating) or
/// `invalidated` (excluded from statistics).
public enum EvaluationStatus: String, Sendable, Codable, CaseIterable {
  case closed, rectifying, rectified, appealed, invalidated
}

public struct Evaluation: Sendable, Equatable, Codable {
  public var caseID: String
  public var trackingCode: String
  public var applicantID: String
  public var departmentCode: String
  public var itemCode: String
  /// 1 非常不满意 … 5 非常满意.
  public var level: Int
  public var indicators: [String: Int]
  public var text: String
  public var status: EvaluationStatus
  public var createdAt: Date
  public var rectificationDue: CivilDate?
  public var response: String
  public var respondedAt: Date?
  public var respondedOnTime: Bool?
  public var appealReason: String
  /// The status to return to when an appeal is rejected.
  public var statusBeforeAppeal: EvaluationStatus?
  public var reviewNote: String
  public var version: Int64

  public init(
    caseID: String, trackingCode: String, applicantID: String, departmentCode: String, itemCode: String, level: Int,
    indicators: [String: Int], text: String, status: EvaluationStatus, createdAt: Date, rectificationDue: CivilDate?,
    response: String = "", respondedAt: Date? = nil, respondedOnTime: Bool? = nil, appealReason: String = "",
    statusBeforeAppeal: EvaluationStatus? = nil, reviewNote: String = "", version: Int64 = 1
  ) {
    self.caseID = caseID; self.trackingCode = trackingCode; self.applicantID = applicantID
    self.departmentCode = departmentCode; self.itemCode = itemCode; self.level = level; self.indicators = indicators
    self.text = text; self.status = status; self.createdAt = createdAt; self.rectificationDue = rectificationDue
    self.response = response; self.respondedAt = respondedAt; self.respondedOnTime = respondedOnTime
    self.appealReason = appealReason; self.statusBeforeAppeal = statusBeforeAppeal; self.reviewNote = reviewNote
    self.version = version
  }

  public var isBad: Bool { level <= EvaluationRules.badLevel }
}

public enum EvaluationRules {
  public static let levelNames = [1: "非常不满意", 2: "不满意", 3: "基本满意", 4: "满意", 5: "非常满意"]
  /// Ratings at or below this open a rectification task.
  public static let badLevel = 2
  public static let defaultRectificationDays = 10
  /// The national online indicators (整体满意度, 办事效率, 办事指南精确度, 办事便捷度, 平台操作性).
  public static let indicators = ["overall", "efficiency", "guide_accuracy", "convenience", "usability"]

  /// States after which the applicant may rate: completed (and later) or not accepted.
  public static func canRate(_ state: CaseState) -> Bool {
    switch state {
    case .completed, .resultDelivering, .resultDelivered, .rejected: true
    default: false
    }
  }

  /// A new evaluation of `record` by its applicant.
  public static func rate(
    _ record: CaseRecord, level: Int, indicators: [String: Int], text: String, now: Date, calendar: WorkingCalendar,
    rectificationDays: Int = defaultRectificationDays
  ) throws -> Evaluation {
    guard canRate(record.state) else {
      throw PreconditionFailed("a case can be rated once it is completed or not accepted; this one is \(record.state.rawValue)")
    }
    if record.evaluated { throw PreconditionFailed("this case was already rated: one evaluation per case (一事一评)") }
    try Check.range(level, field: "level", 1...5)
    try Check.count(indicators, field: "indicators", max: Self.indicators.count)
    for (name, value) in indicators.sorted(by: { $0.key < $1.key }) {
      guard Self.indicators.contains(name) else {
        throw ValidationError("indicators.\(name)", "is not an indicator; use \(Self.indicators.joined(separator: ", "))")
      }
      try Check.range(value, field: "indicators.\(name)", 1...5)
    }
    let text = try Check.optionalText(text, field: "text", max: 1000)
    let bad = level <= badLevel
    return Evaluation(
      caseID: record.id, trackingCode: record.trackingCode, applicantID: record.applicantID,
      departmentCode: record.handlingDepartment, itemCode: record.item.code, level: level, indicators: indicators, text: text,
      status: bad ? .rectifying : .closed, createdAt: now,
      rectificationDue: bad ? calendar.addingWorkingDays(rectificationDays, to: CivilDate(now)) : nil)
  }

  /// The department's written response to a bad rating.
  public static func respond(_ e: Evaluation, response: String, now: Date) throws -> Evaluation {
    guard e.status == .rectifying else {
      throw PreconditionFailed("only a rating under rectification can be answered; this one is \(e.status.rawValue)")
    }
    var next = e
    next.response = try Check.text(response, field: "response", max: 2000)
    next.respondedAt = now
    next.respondedOnTime = e.rectificationDue.map { CivilDate(now) <= $0 } ?? true
    next.status = .rectified
    next.version += 1
    return next
  }

  /// The department asks an administrator to invalidate a malicious rating.
  public static func appeal(_ e: Evaluation, reason: String) throws -> Evaluation {
    guard e.isBad, e.status == .rectifying || e.status == .rectified else {
      throw PreconditionFailed("only a bad rating (≤ 2) that is not already appealed or invalidated can be appealed")
    }
    guard e.appealReason.isEmpty else {
      throw PreconditionFailed("this rating was already appealed once and the appeal was decided")
    }
    var next = e
    next.appealReason = try Check.text(reason, field: "reason", max: 1000)
    next.statusBeforeAppeal = e.status
    next.status = .appealed
    next.version += 1
    return next
  }

  /// The administrator's decision on an appeal: invalidate the rating, or uphold it (it goes
  /// back to rectification or stays rectified).
  public static func review(_ e: Evaluation, invalidate: Bool, note: String) throws -> Evaluation {
    guard e.status == .appealed else {
      throw PreconditionFailed("there is no pending appeal on this rating (it is \(e.status.rawValue))")
    }
    var next = e
    next.reviewNote = try Check.text(note, field: "note", max: 1000)
    next.status = invalidate ? .invalidated : (e.statusBeforeAppeal ?? .rectifying)
    next.version += 1
    return next
  }

  /// Statistics over evaluations (invalidated ones excluded).
  public struct Stats: Sendable, Equatable {
    public var count = 0
    public var average = 0.0
    public var badShare = 0.0
    /// Of the bad ratings whose deadline has passed or which were answered: answered in time.
    public var rectifiedOnTimeRate = 0.0
    public var pendingRectifications = 0
  }

  public static func stats(_ evaluations: [Evaluation], today: CivilDate) -> Stats {
    let valid = evaluations.filter { $0.status != .invalidated }
    var s = Stats()
    s.count = valid.count
    guard !valid.isEmpty else { return s }
    s.average = Double(valid.map(\.level).reduce(0, +)) / Double(valid.count)
    let bad = valid.filter(\.isBad)
    s.badShare = Double(bad.count) / Double(valid.count)
    let judged = bad.filter { $0.respondedAt != nil || ($0.rectificationDue.map { today > $0 } ?? false) }
    s.pendingRectifications = bad.filter { $0.respondedAt == nil }.count
    if !judged.isEmpty {
      s.rectifiedOnTimeRate = Double(judged.filter { $0.respondedOnTime == true }.count) / Double(judged.count)
    }
    return s
  }
}
