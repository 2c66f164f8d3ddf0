import Foundation
import PropertyBased
import Testing
@testable import OneWindowCore

func day(_ text: String) -> CivilDate {
  guard let d = CivilDate(text) else { preconditionFailure("bad test date \(text)") }
  return d
}

@Suite struct CaseLifecycleTests {
  @Test func theHappyPathFromDraftToDeliveredResult() throws {
    let steps: [(CaseEvent, CaseActorKind, CaseState)] = [
      (.submit, .applicant, .submitted), (.receive, .system, .pendingAcceptance), (.requestCorrection, .handler, .correctionRequired),
      (.supplyCorrection, .applicant, .pendingAcceptance), (.accept, .handler, .accepted), (.startReview, .handler, .underReview),
      (.suspend, .handler, .suspended), (.resume, .handler, .underReview), (.advanceStep, .handler, .underReview),
      (.approve, .handler, .approved), (.complete, .handler, .completed), (.dispatchResult, .handler, .resultDelivering),
      (.confirmDelivery, .applicant, .resultDelivered),
    ]
    var state = CaseState.draft
    for (event, actor, expected) in steps {
      state = try CaseLifecycle.next(from: state, on: event, by: actor)
      #expect(state == expected)
    }
    #expect(state.isFinal)
  }

  @Test func everyEventOutsideTheTableIsRefusedNamingTheCurrentState() {
    let listed = Set(CaseLifecycle.rules.map { "\($0.from.rawValue)|\($0.event.rawValue)" })
    var refused = 0
    for state in CaseState.allCases {
      for event in CaseEvent.allCases where !listed.contains("\(state.rawValue)|\(event.rawValue)") {
        for actor in [CaseActorKind.applicant, .handler, .administrator, .system] {
          #expect(throws: CaseTransitionError.self) { try CaseLifecycle.next(from: state, on: event, by: actor) }
          do {
            _ = try CaseLifecycle.next(from: state, on: event, by: actor)
          } catch {
            #expect(error.description.contains("state \(state.rawValue)"))
          }
        }
        refused += 1
      }
    }
    #expect(refused > 150)
  }

  @Test func onlyTheNamedActorsMayCauseAnEvent() {
    #expect(throws: CaseTransitionError.self) { try CaseLifecycle.next(from: .pendingAcceptance, on: .accept, by: .applicant) }
    #expect(throws: CaseTransitionError.self) { try CaseLifecycle.next(from: .completed, on: .reopen, by: .handler) }
    #expect(throws: CaseTransitionError.self) { try CaseLifecycle.next(from: .underReview, on: .withdraw, by: .handler) }
    #expect(throws: CaseTransitionError.self) { try CaseLifecycle.next(from: .pendingAcceptance, on: .deemAccepted, by: .handler) }
    #expect(throws: Never.self) { try CaseLifecycle.next(from: .completed, on: .reopen, by: .administrator) }
  }

  @Test func withdrawalOnlyBeforeADecision() {
    for state in CaseState.allCases {
      let allowed = (try? CaseLifecycle.next(from: state, on: .withdraw, by: .applicant)) != nil
      #expect(allowed == [.draft, .submitted, .pendingAcceptance, .correctionRequired, .accepted, .underReview, .suspended].contains(state), "\(state)")
    }
    #expect(CaseLifecycle.events(from: .rejected, for: .applicant).isEmpty)
    #expect(CaseLifecycle.events(from: .withdrawn, for: .administrator).isEmpty)
  }
}

@Suite struct WorkingCalendarTests {
  @Test func civilDatesRoundTripAndKnowTheirWeekday() async {
    #expect(day("2026-11-23").dayNumber == 20780 && day("2026-11-23").isoWeekday == 1)
    #expect(day("1970-01-01").dayNumber == 0 && day("1970-01-01").isoWeekday == 4)
    #expect(CivilDate("2026-02-29") == nil && CivilDate("2024-02-29") != nil && CivilDate("2026-13-01") == nil)
    // 2026-11-22 16:30 UTC is already the 23rd in Beijing.
    #expect(CivilDate(Date(timeIntervalSince1970: 1_795_365_000)) == day("2026-11-23"))
    await propertyCheck(input: Gen.int(in: -50_000...100_000)) { n in
      let d = CivilDate(dayNumber: n)
      let (y, m, dd) = d.components
      #expect(CivilDate(year: y, month: m, day: dd) == d)
      #expect(CivilDate(d.description) == d)
      #expect(d.adding(days: 7).isoWeekday == d.isoWeekday)
    }
  }

  /// National Day week: 1–7 October off, Saturday 10 October a make-up working day.
  let nationalDay = WorkingCalendar(
    holidays: Set((1...7).map { day("2026-10-0\($0)") }), makeUpWorkdays: [day("2026-10-10")])

  @Test func holidaysAndMakeUpDaysCount() {
    #expect(!nationalDay.isWorkingDay(day("2026-10-05")))
    #expect(nationalDay.isWorkingDay(day("2026-10-10")))  // a Saturday
    #expect(!nationalDay.isWorkingDay(day("2026-10-11")))  // a Sunday
    // From Tuesday 29 September: 30 Sep (1), 8 Oct (2), 9 Oct (3), Sat 10 Oct (4), Mon 12 Oct (5).
    #expect(nationalDay.addingWorkingDays(5, to: day("2026-09-29")) == day("2026-10-12"))
    #expect(nationalDay.workingDays(after: day("2026-09-29"), through: day("2026-10-12")) == 5)
    #expect(nationalDay.addingWorkingDays(0, to: day("2026-10-03")) == day("2026-10-08"))
  }
}

@Suite struct CaseClockTests {
  let calendar = WorkingCalendar()

  @Test func theCorrectionNoticeIsDueFiveWorkingDaysAfterReceiptThenTheCaseIsDeemedAccepted() {
    let clock = CaseClock(receivedOn: day("2026-11-20"), promisedDays: 10)  // a Friday
    #expect(clock.correctionNoticeDue(calendar) == day("2026-11-27"))
    #expect(!clock.deemedAccepted(on: day("2026-11-27"), calendar))
    #expect(clock.deemedAccepted(on: day("2026-11-28"), calendar))
    var accepted = clock
    accepted.acceptedOn = day("2026-11-24")
    #expect(!accepted.deemedAccepted(on: day("2026-12-31"), calendar))
  }

  @Test func theDecisionClockPausesWhileSuspendedAndTheExtensionAddsTenDays() {
    var clock = CaseClock(receivedOn: day("2026-11-20"), acceptedOn: day("2026-11-23"), promisedDays: 10)
    #expect(clock.decisionDue(asOf: day("2026-11-23"), calendar) == day("2026-12-07"))
    // Suspended Wednesday 25th, resumed Friday 27th: two working days paused.
    clock.suspensions = [.init(from: day("2026-11-25"), until: day("2026-11-27"))]
    #expect(clock.decisionDue(asOf: day("2026-12-01"), calendar) == day("2026-12-09"))
    // An open suspension keeps pushing the deadline out day by day.
    clock.suspensions.append(.init(from: day("2026-12-01"), until: nil))
    #expect(clock.decisionDue(asOf: day("2026-12-02"), calendar) == day("2026-12-11"))
    clock.suspensions.removeLast()
    clock.extended = true
    #expect(clock.decisionDue(asOf: day("2026-12-01"), calendar) == day("2026-12-23"))
    #expect(clock.workingDaysLeft(on: day("2026-12-21"), calendar) == 2)
    #expect(clock.workingDaysLeft(on: day("2026-12-28"), calendar) == -3)
  }

  @Test func thePromiseNeverExceedsTheStatutoryLimit() {
    #expect(CaseClock(promisedDays: 30, statutoryDays: 20).decisionDays == 20)
    #expect(CaseClock(promisedDays: 5).decisionDays == 5)
    #expect(CaseClock(promisedDays: 5).decisionDue(asOf: day("2026-11-23"), calendar) == nil)
  }
}

@Suite struct TrackingCodeTests {
  @Test func codesAreWellFormedAndNormalizeAsTyped() throws {
    var random = SystemRandomNumberGenerator()
    let code = TrackingCode.make(using: &random)
    #expect(code.count == 21)
    #expect(try TrackingCode.normalize(code) == code)
    #expect(try TrackingCode.normalize(code.lowercased().replacingOccurrences(of: "-", with: " ")) == code)
    #expect(throws: ValidationError.self) { try TrackingCode.normalize("SHORT") }
    let codes = Set((0..<10_000).map { _ in TrackingCode.make(using: &random) })
    #expect(codes.count == 10_000)
  }

  @Test func everySingleTypoAndNeighbourSwapIsCaught() async {
    await propertyCheck(input: Gen.int(in: 0...15), Gen.int(in: 0...31), Gen.int(in: 0...65_535)) { position, replacement, seed in
      var random = Xorshift(seed: UInt64(seed) + 1)
      let code = Array(TrackingCode.make(using: &random).filter { $0 != "-" }.utf8)
      var typo = code
      let new = TrackingCode.randomAlphabet[replacement]
      guard typo[position] != new else { return }
      typo[position] = new
      #expect(throws: ValidationError.self) { try TrackingCode.normalize(String(decoding: typo, as: UTF8.self)) }
      var swapped = code
      guard swapped[position] != swapped[position + 1] else { return }
      swapped.swapAt(position, position + 1)
      #expect(throws: ValidationError.self) { try TrackingCode.normalize(String(decoding: swapped, as: UTF8.self)) }
    }
  }
}

struct Xorshift: RandomNumberGenerator {
  var state: UInt64
  init(seed: UInt64) { state = seed }
  mutating func next() -> UInt64 {
    state ^= state << 13
    state ^= state >> 7
    state ^= state << 17
    return state
  }
}
