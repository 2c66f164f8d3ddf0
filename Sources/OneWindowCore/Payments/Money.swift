#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// An amount of money in fen (1/100 yuan). Integer minor units so sums are exact; never
/// negative, so a negative fee or refund cannot be represented; arithmetic that would overflow
/// or go below zero throws instead of trapping.
public struct Fen: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
  public let value: Int64

  public static let zero = Fen(unchecked: 0)

  public init(_ value: Int64, field: String = "amount") throws(ValidationError) {
    guard value >= 0 else { throw ValidationError(field, "must not be negative (got \(value))") }
    self.value = value
  }

  private init(unchecked value: Int64) { self.value = value }

  public init(from decoder: any Decoder) throws {
    let raw = try decoder.singleValueContainer().decode(Int64.self)
    try self.init(raw)
  }

  public func encode(to encoder: any Encoder) throws {
    var container = encoder.singleValueContainer()
    try container.encode(value)
  }

  public func adding(_ other: Fen, field: String = "amount") throws(ValidationError) -> Fen {
    let (sum, overflow) = value.addingReportingOverflow(other.value)
    guard !overflow else { throw ValidationError(field, "is too large") }
    return Fen(unchecked: sum)
  }

  public func subtracting(_ other: Fen, field: String = "amount") throws(ValidationError) -> Fen {
    // Both are non-negative, so the difference cannot overflow; only going below zero is refused.
    guard other.value <= value else {
      throw ValidationError(field, "\(other.yuan) is more than \(yuan)")
    }
    return Fen(unchecked: value - other.value)
  }

  /// Yuan with exactly two decimals, "12.30", the way amounts are shown to citizens.
  public var yuan: String {
    let fraction = value % 100
    return "\(value / 100).\(fraction < 10 ? "0" : "")\(fraction)"
  }

  public var description: String { yuan }

  public static func < (lhs: Fen, rhs: Fen) -> Bool { lhs.value < rhs.value }
}
