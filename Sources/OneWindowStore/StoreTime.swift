import Foundation

/// Times are stored as integer milliseconds since the Unix epoch on every engine (SQLite
/// INTEGER, PostgreSQL BIGINT), so a row means the same instant whichever engine wrote it.
public enum StoreTime {
  public static func ms(_ date: Date) -> Int64 { Int64((date.timeIntervalSince1970 * 1000).rounded()) }
  public static func date(_ ms: Int64) -> Date { Date(timeIntervalSince1970: Double(ms) / 1000) }
  public static func date(_ ms: Int64?) -> Date? { ms.map { date($0) } }
}
