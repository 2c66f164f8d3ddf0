#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A calendar day (no time, no zone), for working-day arithmetic. Legal clocks count days in
/// China Standard Time (UTC+8 all year, no daylight saving).
public struct CivilDate: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
  /// Days since 1970-01-01.
  public let dayNumber: Int

  public init(dayNumber: Int) {
    self.dayNumber = dayNumber
  }

  /// nil for an impossible date (2026-02-30).
  public init?(year: Int, month: Int, day: Int) {
    guard (1...12).contains(month), day >= 1, day <= Self.daysIn(month: month, year: year) else { return nil }
    // Howard Hinnant's days_from_civil.
    let y = month <= 2 ? year - 1 : year
    let era = (y >= 0 ? y : y - 399) / 400
    let yoe = y - era * 400
    let mp = (month + 9) % 12
    let doy = (153 * mp + 2) / 5 + day - 1
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
    dayNumber = era * 146_097 + doe - 719_468
  }

  /// Parses `YYYY-MM-DD`.
  public init?(_ text: String) {
    let parts = text.split(separator: "-", omittingEmptySubsequences: false)
    guard parts.count == 3, parts[0].count == 4, parts[1].count == 2, parts[2].count == 2,
          let y = Int(parts[0]), let m = Int(parts[1]), let d = Int(parts[2])
    else { return nil }
    self.init(year: y, month: m, day: d)
  }

  /// The day `date` falls on in China Standard Time.
  public init(_ date: Date) {
    let seconds = Int((date.timeIntervalSince1970 + 8 * 3600).rounded(.down))
    dayNumber = Int((Double(seconds) / 86_400).rounded(.down))
  }

  public var components: (year: Int, month: Int, day: Int) {
    // Howard Hinnant's civil_from_days.
    let z = dayNumber + 719_468
    let era = (z >= 0 ? z : z - 146_096) / 146_097
    let doe = z - era * 146_097
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
    let mp = (5 * doy + 2) / 153
    let day = doy - (153 * mp + 2) / 5 + 1
    let month = mp < 10 ? mp + 3 : mp - 9
    return (yoe + era * 400 + (month <= 2 ? 1 : 0), month, day)
  }

  /// 1 = Monday … 7 = Sunday (ISO 8601).
  public var isoWeekday: Int { ((dayNumber % 7 + 7) % 7 + 3) % 7 + 1 }

  public var isWeekend: Bool { isoWeekday >= 6 }

  public func adding(days: Int) -> CivilDate { CivilDate(dayNumber: dayNumber + days) }

  public static func < (a: CivilDate, b: CivilDate) -> Bool { a.dayNumber < b.dayNumber }

  public var description: String {
    let (y, m, d) = components
    return "\(y)-\(m < 10 ? "0" : "")\(m)-\(d < 10 ? "0" : "")\(d)"
  }

  static func daysIn(month: Int, year: Int) -> Int {
    switch month {
    case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
    case 4, 6, 9, 11: 30
    default: 31
    }
  }
}

/// Which days count for legal clocks: Monday to Friday, minus public holidays, plus the weekend
/// days declared working days to make up for them (调休). The State Council publishes each
/// year's dates; operators load the current and next year's.
public struct WorkingCalendar: Sendable, Equatable {
  public var holidays: Set<CivilDate>
  public var makeUpWorkdays: Set<CivilDate>
  /// The years whose official arrangement this calendar holds (outside them only weekends count).
  public var years: Set<Int>

  public init(holidays: Set<CivilDate> = [], makeUpWorkdays: Set<CivilDate> = [], years: Set<Int> = []) {
    self.holidays = holidays
    self.makeUpWorkdays = makeUpWorkdays
    self.years = years
  }

  public func isWorkingDay(_ day: CivilDate) -> Bool {
    if makeUpWorkdays.contains(day) { return true }
    if holidays.contains(day) { return false }
    return !day.isWeekend
  }

  /// The `n`th working day after `day` (n ≥ 0; the 0th is `day` itself if it works, else the
  /// next working day). "Within 5 working days of receipt" ends on `addingWorkingDays(5, to: receipt)`.
  public func addingWorkingDays(_ n: Int, to day: CivilDate) -> CivilDate {
    var current = day
    if n == 0 {
      while !isWorkingDay(current) { current = current.adding(days: 1) }
      return current
    }
    var left = n
    while left > 0 {
      current = current.adding(days: 1)
      if isWorkingDay(current) { left -= 1 }
    }
    return current
  }

  /// Working days from `today` until `due`: positive ahead, 0 on the day, negative when past.
  public func workingDaysLeft(from today: CivilDate, until due: CivilDate) -> Int {
    today <= due ? workingDays(after: today, through: due) : -workingDays(after: due, through: today)
  }

  /// Working days in the half-open range (start, end]: how many working days passed between two
  /// dates (0 when end ≤ start).
  public func workingDays(after start: CivilDate, through end: CivilDate) -> Int {
    guard end > start else { return 0 }
    var count = 0
    var day = start.adding(days: 1)
    while day <= end {
      if isWorkingDay(day) { count += 1 }
      day = day.adding(days: 1)
    }
    return count
  }
}
