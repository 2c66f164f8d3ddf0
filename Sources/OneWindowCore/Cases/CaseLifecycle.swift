/// The states of a case (办件) from draft to delivered result, after the Administrative
/// Licensing Law's procedure (行政许可法 第三十二条, 第四十二条).
public enum CaseState: String, Sendable, Codable, CaseIterable {
  case draft
  case submitted
  /// Received; the department decides whether to accept (5 working days, then deemed accepted).
  case pendingAcceptance = "pending_acceptance"
  /// 补齐补正: the one-time notice listed every missing item; the applicant supplies them.
  case correctionRequired = "correction_required"
  case accepted
  /// 不予受理.
  case rejected
  case underReview = "under_review"
  /// 特别程序 (hearing, expert review, inspection …): the decision clock is paused.
  case suspended
  /// 准予.
  case approved
  /// 不予许可.
  case denied
  /// 办结.
  case completed
  case resultDelivering = "result_delivering"
  case resultDelivered = "result_delivered"
  case withdrawn

  /// No event leaves these states except an administrator's reopening of a completed case.
  public var isFinal: Bool {
    switch self {
    case .rejected, .resultDelivered, .withdrawn: true
    default: false
    }
  }

  /// Before a decision the applicant may still withdraw.
  public var isWithdrawable: Bool {
    switch self {
    case .draft, .submitted, .pendingAcceptance, .correctionRequired, .accepted, .underReview, .suspended: true
    default: false
    }
  }
}

/// Who may cause an event.
public enum CaseActorKind: String, Sendable, Codable {
  case applicant
  /// A caseworker of the department handling the case's current step.
  case handler
  case administrator
  /// The server itself (deemed acceptance when the 5-day notice deadline passes).
  case system
}

/// Something that happens to a case.
public enum CaseEvent: String, Sendable, Codable, CaseIterable {
  case submit
  /// The submission passed the form and material checks and reached the department.
  case receive
  case requestCorrection = "request_correction"
  case supplyCorrection = "supply_correction"
  case accept
  /// The 5-working-day notice deadline passed without a notice: accepted from receipt.
  case deemAccepted = "deem_accepted"
  case reject
  case startReview = "start_review"
  case suspend
  case resume
  /// Moves a multi-department case to its next process step (stays under review).
  case advanceStep = "advance_step"
  case approve
  case deny
  case complete
  case dispatchResult = "dispatch_result"
  case confirmDelivery = "confirm_delivery"
  case withdraw
  /// Administrators only, with a reason: a completed case goes back under review.
  case reopen
  /// The one extension of the decision deadline (+10 working days), with reason and approver.
  /// The state does not change.
  case extend
}

public struct CaseTransitionError: Error, Equatable, Sendable, CustomStringConvertible {
  public var state: CaseState
  public var event: CaseEvent
  public var actor: CaseActorKind
  public var reason: String

  public var description: String { reason }
}

/// The transition table: the one place that says which event may move a case from which state,
/// by whom, and where to. Anything not listed is refused with the current state named.
public enum CaseLifecycle {
  public struct Rule: Sendable, Equatable {
    public var from: CaseState
    public var event: CaseEvent
    public var to: CaseState
    public var actors: Set<CaseActorKind>
  }

  public static let rules: [Rule] = {
    var rules: [Rule] = []
    func add(_ from: [CaseState], _ event: CaseEvent, _ to: CaseState, _ actors: Set<CaseActorKind>) {
      for state in from { rules.append(Rule(from: state, event: event, to: to, actors: actors)) }
    }
    add([.draft], .submit, .submitted, [.applicant])
    add([.submitted], .receive, .pendingAcceptance, [.system])
    add([.pendingAcceptance], .requestCorrection, .correctionRequired, [.handler])
    add([.correctionRequired], .supplyCorrection, .pendingAcceptance, [.applicant])
    add([.pendingAcceptance], .accept, .accepted, [.handler])
    add([.pendingAcceptance], .deemAccepted, .accepted, [.system])
    add([.pendingAcceptance, .correctionRequired], .reject, .rejected, [.handler])
    add([.accepted], .startReview, .underReview, [.handler])
    add([.accepted, .underReview], .suspend, .suspended, [.handler])
    add([.suspended], .resume, .underReview, [.handler])
    add([.underReview], .advanceStep, .underReview, [.handler])
    add([.underReview], .approve, .approved, [.handler])
    add([.underReview], .deny, .denied, [.handler])
    add([.approved, .denied], .complete, .completed, [.handler])
    add([.completed], .dispatchResult, .resultDelivering, [.handler])
    add([.resultDelivering], .confirmDelivery, .resultDelivered, [.handler, .applicant])
    // Pickup at the window or an e-licence: delivered without a courier leg.
    add([.completed], .confirmDelivery, .resultDelivered, [.handler, .applicant])
    add(CaseState.allCases.filter(\.isWithdrawable), .withdraw, .withdrawn, [.applicant])
    add([.completed], .reopen, .underReview, [.administrator])
    for state in [CaseState.accepted, .underReview, .suspended] { add([state], .extend, state, [.handler]) }
    return rules
  }()

  private static let index: [String: Rule] = Dictionary(
    rules.map { ("\($0.from.rawValue)|\($0.event.rawValue)", $0) }, uniquingKeysWith: { a, _ in a })

  /// The state after `event` by `actor` in `state`, or why not.
  public static func next(from state: CaseState, on event: CaseEvent, by actor: CaseActorKind) throws(CaseTransitionError) -> CaseState {
    guard let rule = index["\(state.rawValue)|\(event.rawValue)"] else {
      let allowed = rules.filter { $0.from == state }.map(\.event.rawValue)
      let hint = allowed.isEmpty ? "no further action is possible" : "possible now: \(allowed.joined(separator: ", "))"
      throw CaseTransitionError(
        state: state, event: event, actor: actor, reason: "a case in state \(state.rawValue) cannot \(event.rawValue) (\(hint))")
    }
    guard rule.actors.contains(actor) else {
      throw CaseTransitionError(
        state: state, event: event, actor: actor,
        reason: "\(event.rawValue) in state \(state.rawValue) is for the \(rule.actors.map(\.rawValue).sorted().joined(separator: " or "))")
    }
    return rule.to
  }

  /// The events possible from `state` for `actor` (what a client should offer).
  public static func events(from state: CaseState, for actor: CaseActorKind) -> [CaseEvent] {
    rules.filter { $0.from == state && $0.actors.contains(actor) }.map(\.event)
  }
}
