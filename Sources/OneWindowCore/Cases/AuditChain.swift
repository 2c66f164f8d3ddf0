#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Crypto

/// One entry of the audit log (权力公开): who did what to which thing, when and why. Entries
/// form a hash chain: each carries the SHA-256 of its predecessor, so editing or deleting a
/// row breaks every hash after it.
public struct AuditEntry: Sendable, Equatable {
  public var sequence: Int64
  public var at: Date
  /// nil for the system.
  public var actorID: String?
  /// The actor's role (`system` for the server itself).
  public var actorRole: String
  public var actorDepartment: String?
  /// E.g. `case.accept`, `case.viewed`, `catalog.publish`, `certificate.revoke`.
  public var action: String
  public var targetType: String
  public var targetID: String
  /// The citizen or enterprise whose data this is, so they can list who touched it.
  public var subjectID: String?
  public var reason: String
  /// The address the action came from (`ipv4:…`, behind trusted proxies the caller's); nil for
  /// the system's own actions and for entries written before addresses were kept.
  public var clientAddress: String?
  public var previousHash: String
  public var hash: String

  public init(
    sequence: Int64, at: Date, actorID: String?, actorRole: String, actorDepartment: String?, action: String,
    targetType: String, targetID: String, subjectID: String?, reason: String, clientAddress: String? = nil,
    previousHash: String, hash: String
  ) {
    self.sequence = sequence; self.at = at; self.actorID = actorID; self.actorRole = actorRole
    self.actorDepartment = actorDepartment; self.action = action; self.targetType = targetType
    self.targetID = targetID; self.subjectID = subjectID; self.reason = reason; self.clientAddress = clientAddress
    self.previousHash = previousHash; self.hash = hash
  }
}

/// The address of the call being handled (`ipv4:10.1.2.3`; behind trusted proxies, the caller's),
/// set by the server for each RPC, so per-address limits and audit entries use the same one.
public enum CallerAddress {
  @TaskLocal public static var current: String?
}

/// What an action appends to the audit log (the store adds sequence and hashes).
public struct AuditEvent: Sendable, Equatable {
  public var actorID: String?
  public var actorRole: String
  public var actorDepartment: String?
  public var action: String
  public var targetType: String
  public var targetID: String
  public var subjectID: String?
  public var reason: String
  /// Where the call came from: by default the address of the call being handled
  /// (`CallerAddress.current`), nil for the system's own jobs.
  public var clientAddress: String?

  public init(
    actorID: String?, actorRole: String, actorDepartment: String?, action: String, targetType: String, targetID: String,
    subjectID: String? = nil, reason: String = "", clientAddress: String? = CallerAddress.current
  ) {
    self.actorID = actorID; self.actorRole = actorRole; self.actorDepartment = actorDepartment; self.action = action
    self.targetType = targetType; self.targetID = targetID; self.subjectID = subjectID; self.reason = reason
    self.clientAddress = clientAddress
  }

  public init(_ principal: Principal, action: String, targetType: String, targetID: String, subjectID: String? = nil, reason: String = "") {
    self.init(
      actorID: principal.accountID, actorRole: principal.role.rawValue, actorDepartment: principal.departmentCode,
      action: action, targetType: targetType, targetID: targetID, subjectID: subjectID, reason: reason)
  }

  public init(_ actor: CaseActor, action: String, targetType: String, targetID: String, subjectID: String?, reason: String) {
    self.init(
      actorID: actor.accountID, actorRole: actor.role?.rawValue ?? "system", actorDepartment: actor.departmentCode,
      action: action, targetType: targetType, targetID: targetID, subjectID: subjectID, reason: reason)
  }
}

public enum AuditChain {
  /// The previous hash of the first entry.
  public static let genesis = String(repeating: "0", count: 64)

  /// SHA-256 (hex) over the entry's fields and the previous hash in a fixed order, each written
  /// as its UTF-8 length in decimal, ':', and its UTF-8 bytes (length prefixes make the encoding
  /// unambiguous whatever the fields contain).
  /// An entry with a client address is hashed as `ow-audit-2`, with the address before the
  /// previous hash; one without keeps `ow-audit-1`, so entries written before addresses were kept
  /// still verify.
  public static func hash(
    sequence: Int64, atMillis: Int64, actorID: String?, actorRole: String, actorDepartment: String?, action: String,
    targetType: String, targetID: String, subjectID: String?, reason: String, clientAddress: String? = nil,
    previousHash: String
  ) -> String {
    let fields = [
      String(sequence), String(atMillis), actorID ?? "", actorRole, actorDepartment ?? "", action, targetType, targetID,
      subjectID ?? "", reason,
    ]
    let parts = clientAddress.map { ["ow-audit-2"] + fields + [$0, previousHash] } ?? (["ow-audit-1"] + fields + [previousHash])
    let text = parts.map { "\($0.utf8.count):\($0)" }.joined()
    return Hex.sha256(Array(text.utf8))
  }

  public static func hash(of e: AuditEntry) -> String {
    hash(
      sequence: e.sequence, atMillis: Int64((e.at.timeIntervalSince1970 * 1000).rounded()), actorID: e.actorID,
      actorRole: e.actorRole, actorDepartment: e.actorDepartment, action: e.action, targetType: e.targetType,
      targetID: e.targetID, subjectID: e.subjectID, reason: e.reason, clientAddress: e.clientAddress,
      previousHash: e.previousHash)
  }

  public enum Break: Sendable, Equatable, CustomStringConvertible {
    /// The entry's content does not match its hash (edited).
    case alteredEntry(sequence: Int64)
    /// The entry does not point at its predecessor's hash (a row deleted or inserted).
    case brokenLink(sequence: Int64)
    /// Sequence numbers skip (rows deleted).
    case missingEntries(after: Int64, found: Int64)

    public var sequence: Int64 {
      switch self {
      case .alteredEntry(let s), .brokenLink(let s): s
      case .missingEntries(_, let found): found
      }
    }

    public var description: String {
      switch self {
      case .alteredEntry(let s): "entry \(s) was altered: its content does not match its hash"
      case .brokenLink(let s): "entry \(s) does not follow its predecessor (an entry was removed or inserted)"
      case .missingEntries(let after, let found): "entries \(after + 1)…\(found - 1) are missing"
      }
    }
  }

  /// Walks entries in sequence order, starting after `previous` (sequence and hash of the last
  /// entry already verified; nil to start at the beginning). Returns the first break.
  public struct Verifier: Sendable {
    public private(set) var lastSequence: Int64
    public private(set) var lastHash: String
    public private(set) var checked = 0

    public init(afterSequence: Int64 = 0, hash: String = AuditChain.genesis) {
      lastSequence = afterSequence
      lastHash = hash
    }

    public mutating func check(_ entry: AuditEntry) -> Break? {
      if entry.sequence != lastSequence + 1 { return .missingEntries(after: lastSequence, found: entry.sequence) }
      if entry.previousHash != lastHash { return .brokenLink(sequence: entry.sequence) }
      if AuditChain.hash(of: entry) != entry.hash { return .alteredEntry(sequence: entry.sequence) }
      lastSequence = entry.sequence
      lastHash = entry.hash
      checked += 1
      return nil
    }
  }
}
