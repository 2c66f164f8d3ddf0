/// The legal clocks of one case, computed by one pure function from what happened to it.
///
/// - The one-time correction notice (一次性告知) is due within 5 working days of receipt; if none
///   is issued by then, the case counts as accepted from receipt (行政许可法 第三十二条).
/// - The decision is due within the item's promised limit of working days from acceptance (never
///   beyond the statutory limit, default 20), plus one approved extension (default 10), plus the
///   working days spent suspended (特别程序 pauses the clock; resuming recomputes the deadline).
public struct CaseClock: Sendable, Equatable, Codable {
  public struct Suspension: Sendable, Equatable, Codable {
    public var from: CivilDate
    /// nil while still suspended.
    public var until: CivilDate?

    public init(from: CivilDate, until: CivilDate?) {
      self.from = from
      self.until = until
    }
  }

  public static let correctionNoticeDays = 5
  public static let defaultStatutoryDays = 20
  public static let extensionDays = 10

  public var receivedOn: CivilDate?
  public var acceptedOn: CivilDate?
  /// The item's promised limit (承诺时限) in working days.
  public var promisedDays: Int
  /// The statutory limit (法定时限) in working days.
  public var statutoryDays: Int
  public var extended: Bool
  public var suspensions: [Suspension]
  /// The day the one-time correction notice went out (it stops the deemed-acceptance rule).
  public var noticeIssuedOn: CivilDate?
  /// The day the applicant supplied what the notice listed.
  public var suppliedOn: CivilDate?
  /// The day of the decision (准予 / 不予许可); the result is due 10 working days later.
  public var decidedOn: CivilDate?

  public init(
    receivedOn: CivilDate? = nil, acceptedOn: CivilDate? = nil, promisedDays: Int, statutoryDays: Int = defaultStatutoryDays,
    extended: Bool = false, suspensions: [Suspension] = []
  ) {
    self.receivedOn = receivedOn
    self.acceptedOn = acceptedOn
    self.promisedDays = promisedDays
    self.statutoryDays = statutoryDays
    self.extended = extended
    self.suspensions = suspensions
  }

  /// The last day to issue the one-time correction notice.
  public func correctionNoticeDue(_ calendar: WorkingCalendar) -> CivilDate? {
    receivedOn.map { calendar.addingWorkingDays(Self.correctionNoticeDays, to: $0) }
  }

  /// Whether the notice deadline has passed on `today` with the case still awaiting acceptance:
  /// the background job then records deemed acceptance, dated the day of receipt.
  public func deemedAccepted(on today: CivilDate, _ calendar: WorkingCalendar) -> Bool {
    guard acceptedOn == nil, noticeIssuedOn == nil, let due = correctionNoticeDue(calendar) else { return false }
    return today > due
  }

  /// The working days allowed for the decision: the promised limit capped by the statutory one,
  /// plus the extension.
  public var decisionDays: Int { min(promisedDays, statutoryDays) + (extended ? Self.extensionDays : 0) }

  /// Working days the clock stood still, counting an open suspension up to `today`.
  public func pausedWorkingDays(through today: CivilDate, _ calendar: WorkingCalendar) -> Int {
    suspensions.reduce(0) { total, s in
      // Suspended from `from` (inclusive) to `until` (the resumption day, exclusive).
      let end = (s.until ?? today.adding(days: 1)).adding(days: -1)
      return total + calendar.workingDays(after: s.from.adding(days: -1), through: end)
    }
  }

  /// The decision deadline as of `today` (an open suspension keeps pushing it out).
  public func decisionDue(asOf today: CivilDate, _ calendar: WorkingCalendar) -> CivilDate? {
    guard let acceptedOn else { return nil }
    return calendar.addingWorkingDays(decisionDays + pausedWorkingDays(through: today, calendar), to: acceptedOn)
  }

  /// Working days left until the decision deadline (negative when overdue); nil before acceptance.
  public func workingDaysLeft(on today: CivilDate, _ calendar: WorkingCalendar) -> Int? {
    decisionDue(asOf: today, calendar).map { calendar.workingDaysLeft(from: today, until: $0) }
  }

  /// Working days to issue the result (certificate or decision letter) after the decision
  /// (行政许可法 第四十四条).
  public static let resultIssueDays = 10

  /// The deadline that matters for a case in `state` as of `today`, or nil when nothing is
  /// due from the department (the applicant's turn, paused, or finished). Queues sort by it.
  public func nextDeadline(in state: CaseState, asOf today: CivilDate, _ calendar: WorkingCalendar) -> CivilDate? {
    switch state {
    case .pendingAcceptance:
      if let suppliedOn { return calendar.addingWorkingDays(Self.correctionNoticeDays, to: suppliedOn) }
      return correctionNoticeDue(calendar)
    case .accepted, .underReview:
      return decisionDue(asOf: today, calendar)
    case .approved, .denied:
      return decidedOn.map { calendar.addingWorkingDays(Self.resultIssueDays, to: $0) }
    case .draft, .submitted, .correctionRequired, .rejected, .suspended, .completed, .resultDelivering,
      .resultDelivered, .withdrawn:
      return nil
    }
  }
}
