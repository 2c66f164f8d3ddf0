import Crypto

/// Audience labels stored with every record: whose devices receive it. A caller sees exactly
/// the records whose label is in its `SyncPrincipal.audiences`.
public enum AudienceLabel {
  public static let everyone = "public"
  public static func account(_ id: String) -> String { "account:\(id)" }
  public static func department(_ code: String) -> String { "department:\(code)" }
}

/// The caller as the sync rules see it: whose records it may read and write.
public struct SyncPrincipal: Sendable, Equatable {
  public var accountID: String
  public var role: Role
  public var departmentCode: String?

  public init(accountID: String, role: Role, departmentCode: String?) {
    self.accountID = accountID
    self.role = role
    self.departmentCode = departmentCode
  }

  public init(_ principal: Principal) {
    self.init(accountID: principal.accountID, role: principal.role, departmentCode: principal.departmentCode)
  }

  /// Every audience whose records this caller receives, sorted.
  public var audiences: [String] {
    var labels = [AudienceLabel.everyone, AudienceLabel.account(accountID)]
    if role == .caseworker, let departmentCode { labels.append(AudienceLabel.department(departmentCode)) }
    return labels.sorted()
  }

  /// A fingerprint of `audiences` and the collection filter, carried in cursors. When it
  /// changes, the replica may hold records the caller can no longer see (moved department), or
  /// lack records of a newly requested collection from before the cursor: it must be reset.
  public func cursorFingerprint(collections: [String]?) -> UInt32 {
    let filter = (collections ?? []).sorted().joined(separator: ",")
    let digest = SHA256.hash(data: Array((audiences.joined(separator: "\n") + "\n|" + filter).utf8))
    return digest.prefix(4).reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
  }

  /// The audience of a record this caller creates in `spec`; nil when it may not create one
  /// (public and case collections are written by the server; department records need a
  /// caseworker with a department).
  public func audienceForNewRecord(in spec: CollectionSpec) -> String? {
    switch spec.scope {
    case .private: AudienceLabel.account(accountID)
    case .department: role == .caseworker ? departmentCode.map(AudienceLabel.department) : nil
    case .public, .case: nil
    }
  }

  public func canSee(audience: String) -> Bool { audiences.contains(audience) }
}

/// Device ids: 8–64 characters of ASCII letters, digits, '-' and '_'. They are HLC node names,
/// so "server" (the server's own node) is refused.
public enum SyncClientID {
  public static let serverNode = "server"

  public static func validate(_ id: String, field: String = "client_id") throws(ValidationError) {
    let scalars = Array(id.unicodeScalars)
    guard (8...64).contains(scalars.count),
          scalars.allSatisfy({ $0.isASCIILetter || ("0"..."9").contains($0) || $0 == "-" || $0 == "_" })
    else { throw ValidationError(field, "must be 8–64 characters of letters, digits, '-' and '_'") }
  }
}
