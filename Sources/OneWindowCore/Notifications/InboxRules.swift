#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

public enum MessagePriority: String, Sendable, Codable {
  case normal, high
}

/// What a publisher may ask of a message, validated at the edge.
public struct MessageOptions: Sendable, Equatable {
  public static let maxTTL: TimeInterval = 28 * 24 * 3600
  public static let maxCollapseKeyBytes = 64
  public static let maxScheduleAhead: TimeInterval = 365 * 24 * 3600

  public var priority: MessagePriority
  /// nil: no expiry.
  public var ttl: TimeInterval?
  public var collapseKey: String?
  /// nil: now.
  public var sendAt: Date?
  public var category: String

  public init(
    priority: MessagePriority = .normal, ttl: TimeInterval? = nil, collapseKey: String? = nil, sendAt: Date? = nil,
    category: String = "general"
  ) {
    self.priority = priority
    self.ttl = ttl
    self.collapseKey = collapseKey
    self.sendAt = sendAt
    self.category = category
  }

  public func validated(now: Date) throws(ValidationError) -> MessageOptions {
    if let ttl { guard ttl >= 1, ttl <= Self.maxTTL else { throw ValidationError("ttl", "must be 1 s to 28 days") } }
    if let collapseKey {
      guard !collapseKey.isEmpty, collapseKey.utf8.count <= Self.maxCollapseKeyBytes,
            collapseKey.unicodeScalars.allSatisfy({ $0.isASCII && $0.properties.generalCategory != .control })
      else { throw ValidationError("collapse_key", "must be 1–64 printable ASCII characters") }
    }
    if let sendAt {
      guard sendAt > now else { throw ValidationError("send_at", "must be in the future (omit it to send now)") }
      guard sendAt.timeIntervalSince(now) <= Self.maxScheduleAhead else {
        throw ValidationError("send_at", "must be within a year")
      }
    }
    guard (1...32).contains(category.utf8.count), category.utf8.allSatisfy(MessageTemplate.isNameByte) else {
      throw ValidationError("category", "must be 1–32 characters of a-z, 0-9, '-', '_' or '.'")
    }
    return self
  }

  /// When the message expires: TTL counted from when it is sent (its scheduled time, or now).
  public func expiry(now: Date) -> Date? {
    ttl.map { (sendAt ?? now).addingTimeInterval($0) }
  }
}

/// The inbox rules that do not need storage: which messages to prune past the cap.
public enum InboxRules {
  public static let defaultCap = 10_000

  public struct Entry: Sendable, Equatable {
    public var sequence: Int64
    public var priority: MessagePriority
    public var read: Bool

    public init(sequence: Int64, priority: MessagePriority, read: Bool) {
      self.sequence = sequence
      self.priority = priority
      self.read = read
    }
  }

  /// The sequences to delete so that at most `cap` remain: the oldest read messages first,
  /// then the oldest unread normal-priority ones; never an unread high-priority message (the
  /// inbox may then stay above the cap).
  public static func prune(_ entries: [Entry], cap: Int) -> [Int64] {
    var excess = entries.count - cap
    guard excess > 0 else { return [] }
    var victims: [Int64] = []
    let oldestFirst = entries.sorted { $0.sequence < $1.sequence }
    for pass in [{ (e: Entry) in e.read }, { (e: Entry) in !e.read && e.priority == .normal }] {
      for entry in oldestFirst where excess > 0 && pass(entry) {
        victims.append(entry.sequence)
        excess -= 1
      }
    }
    return victims.sorted()
  }
}
