#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

extension WorkingCalendar {
  /// The State Council's arrangement for 2026 (国务院办公厅关于2026年部分节假日安排的通知,
  /// 2025-11-04). Later years are published each November; until they are built in, operators
  /// pass them with `--holiday-calendar`.
  public static let china2026: WorkingCalendar = {
    func days(_ ranges: [(String, String)]) -> Set<CivilDate> {
      var out = Set<CivilDate>()
      for (first, last) in ranges {
        guard let a = CivilDate(first), let b = CivilDate(last) else { continue }
        var day = a
        while day <= b { out.insert(day); day = day.adding(days: 1) }
      }
      return out
    }
    let holidays = days([
      ("2026-01-01", "2026-01-03"),  // 元旦
      ("2026-02-15", "2026-02-23"),  // 春节
      ("2026-04-04", "2026-04-06"),  // 清明节
      ("2026-05-01", "2026-05-05"),  // 劳动节
      ("2026-06-19", "2026-06-21"),  // 端午节
      ("2026-09-25", "2026-09-27"),  // 中秋节
      ("2026-10-01", "2026-10-07"),  // 国庆节
    ])
    let workdays = days([
      ("2026-01-04", "2026-01-04"), ("2026-02-14", "2026-02-14"), ("2026-02-28", "2026-02-28"),
      ("2026-05-09", "2026-05-09"), ("2026-09-20", "2026-09-20"), ("2026-10-10", "2026-10-10"),
    ])
    return WorkingCalendar(holidays: holidays, makeUpWorkdays: workdays, years: [2026])
  }()

  /// Reads a calendar file: `{"years": [2027], "holidays": ["2027-01-01", …], "workdays": [...]}`.
  /// Dates outside the listed years are refused (a typo would silently shift deadlines).
  public init(json: [UInt8]) throws(ValidationError) {
    struct File: Decodable {
      var years: [Int]
      var holidays: [String]
      var workdays: [String]?
    }
    let file: File
    do { file = try JSONDecoder().decode(File.self, from: Data(json)) } catch {
      throw ValidationError("holiday calendar", "must be JSON like {\"years\": [2027], \"holidays\": [\"2027-01-01\"], \"workdays\": []}")
    }
    guard !file.years.isEmpty, file.years.allSatisfy({ (2000...2100).contains($0) }) else {
      throw ValidationError("holiday calendar.years", "must list the years the file covers (2000–2100)")
    }
    func parse(_ texts: [String], _ field: String) throws(ValidationError) -> Set<CivilDate> {
      var out = Set<CivilDate>()
      for text in texts {
        guard let day = CivilDate(text), file.years.contains(day.components.year) else {
          throw ValidationError("holiday calendar.\(field)", "\(text) is not a date YYYY-MM-DD in the listed years")
        }
        out.insert(day)
      }
      return out
    }
    self.init(holidays: try parse(file.holidays, "holidays"), makeUpWorkdays: try parse(file.workdays ?? [], "workdays"), years: Set(file.years))
  }

  /// This calendar with `other`'s years added (other's dates win for years both list).
  public func merging(_ other: WorkingCalendar) -> WorkingCalendar {
    let keep = { (day: CivilDate) in !other.years.contains(day.components.year) }
    return WorkingCalendar(
      holidays: holidays.filter(keep).union(other.holidays), makeUpWorkdays: makeUpWorkdays.filter(keep).union(other.makeUpWorkdays),
      years: years.union(other.years))
  }
}
