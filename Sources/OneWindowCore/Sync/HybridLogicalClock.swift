#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A hybrid logical clock timestamp: wall-clock milliseconds, a logical counter for events in
/// the same millisecond, and the node (client id) that made it. Total order: millis, then
/// counter, then node — so two stamps are equal only if the same node made them.
public struct HLCStamp: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
  public var millis: Int64
  public var counter: UInt16
  public var node: String

  public init(millis: Int64, counter: UInt16, node: String) {
    self.millis = millis
    self.counter = counter
    self.node = node
  }

  public static func < (a: HLCStamp, b: HLCStamp) -> Bool {
    (a.millis, a.counter, a.node) < (b.millis, b.counter, b.node)
  }

  /// `millis.counter@node`, e.g. `1800000000000.0003@device-1`.
  public var description: String { "\(millis).\(counter)@\(node)" }

  /// Whether `self` and `other` are at the same clock position (ignoring the node).
  func samePosition(as other: HLCStamp) -> Bool { millis == other.millis && counter == other.counter }
}

/// The clock itself (Kulkarni et al., "Logical Physical Clocks", 2014). A value type: the owner
/// (server or client replica) keeps it behind its own lock and persists `last`.
public struct HybridLogicalClock: Sendable, Equatable {
  public let node: String
  public private(set) var last: HLCStamp

  public init(node: String, last: HLCStamp? = nil) {
    self.node = node
    self.last = last.map { HLCStamp(millis: $0.millis, counter: $0.counter, node: node) }
      ?? HLCStamp(millis: 0, counter: 0, node: node)
  }

  static func millis(_ date: Date) -> Int64 { Int64((date.timeIntervalSince1970 * 1000).rounded(.down)) }

  /// Stamps a local event (an edit, or sending a message).
  public mutating func tick(now: Date) -> HLCStamp {
    let physical = Self.millis(now)
    if physical > last.millis {
      last = HLCStamp(millis: physical, counter: 0, node: node)
    } else {
      advanceCounter(from: last)
    }
    return last
  }

  /// Merges a stamp seen from another node, so the next local stamp orders after it.
  /// Returns the new local stamp.
  @discardableResult
  public mutating func receive(_ remote: HLCStamp, now: Date) -> HLCStamp {
    let physical = Self.millis(now)
    let top = max(physical, last.millis, remote.millis)
    if top == last.millis && top == remote.millis {
      advanceCounter(from: HLCStamp(millis: top, counter: max(last.counter, remote.counter), node: node))
    } else if top == last.millis {
      advanceCounter(from: last)
    } else if top == remote.millis {
      advanceCounter(from: HLCStamp(millis: top, counter: remote.counter, node: node))
    } else {
      last = HLCStamp(millis: top, counter: 0, node: node)
    }
    return last
  }

  /// counter + 1; on overflow the physical part moves one millisecond ahead instead.
  private mutating func advanceCounter(from base: HLCStamp) {
    if base.counter == UInt16.max {
      last = HLCStamp(millis: base.millis + 1, counter: 0, node: node)
    } else {
      last = HLCStamp(millis: base.millis, counter: base.counter + 1, node: node)
    }
  }
}

/// The server's defence against a device whose clock runs ahead: a stamp more than `maxSkew`
/// ahead of server time would otherwise win every last-writer-wins comparison for as long as
/// the skew lasts. Such a stamp is replaced by the server's own stamp at receipt (keeping the
/// origin node for tie-breaks) and flagged. A device that is behind needs no help: it advances
/// its clock from the stamps the server returns.
public struct SkewPolicy: Sendable, Equatable {
  public var maxSkew: TimeInterval

  public init(maxSkew: TimeInterval = 60) {
    self.maxSkew = maxSkew
  }

  /// The stamp to store for `stamp` arriving now, and whether it was clamped. Advances `clock`.
  public func admit(_ stamp: HLCStamp, clock: inout HybridLogicalClock, now: Date) -> (stamp: HLCStamp, clamped: Bool) {
    let limit = HybridLogicalClock.millis(now) + Int64(maxSkew * 1000)
    if stamp.millis > limit {
      let local = clock.tick(now: now)
      return (HLCStamp(millis: local.millis, counter: local.counter, node: stamp.node), true)
    }
    clock.receive(stamp, now: now)
    return (stamp, false)
  }
}
