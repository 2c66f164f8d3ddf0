/// Who sees (and may write) the records of a collection.
public enum AudienceScope: String, Sendable, Codable, CaseIterable {
  /// One account: the record's owner.
  case `private`
  /// The caseworkers of the owner's department.
  case department
  /// Everyone, read-only (server-published data such as the catalog).
  case `public`
  /// A case's applicant and its handling caseworkers (with the cases issue).
  case `case`
}

/// The type a schema field must have. `any` accepts every value.
public enum FieldType: String, Sendable, Codable {
  case bool, int, double, string, bytes, timestamp, list, map, any

  func accepts(_ value: SyncValue) -> Bool {
    switch (self, value) {
    case (.any, _), (_, .null): true
    case (.bool, .bool), (.int, .int), (.double, .double), (.double, .int), (.string, .string), (.bytes, .bytes),
      (.timestamp, .timestamp), (.list, .list), (.map, .map): true
    default: false
    }
  }
}

public struct FieldSpec: Sendable, Equatable {
  public var name: String
  public var type: FieldType
  public var required: Bool
  /// For strings: the most characters allowed.
  public var maxLength: Int?

  public init(_ name: String, _ type: FieldType, required: Bool = false, maxLength: Int? = nil) {
    self.name = name
    self.type = type
    self.required = required
    self.maxLength = maxLength
  }
}

/// A collection's declaration: audience, conflict policy, optional schema and limits.
public struct CollectionSpec: Sendable, Equatable {
  public var name: String
  public var scope: AudienceScope
  public var policy: ConflictPolicy
  /// nil: schemaless (any field names and values within the limits).
  public var fields: [FieldSpec]?
  public var maxRecordBytes: Int
  /// Only the server writes it (published data, conflict records); devices only read.
  public var serverWritten: Bool

  public init(
    name: String, scope: AudienceScope, policy: ConflictPolicy = .fieldLWW, fields: [FieldSpec]? = nil,
    maxRecordBytes: Int = SyncLimits.maxRecordBytes, serverWritten: Bool = false
  ) {
    self.name = name
    self.scope = scope
    self.policy = policy
    self.fields = fields
    self.maxRecordBytes = maxRecordBytes
    self.serverWritten = serverWritten || scope == .public
  }

  /// Devices may push to it. Public collections are always server-written.
  public var clientWritable: Bool { !serverWritten }

  /// Checks the fields an upsert sets. `creating`: the record does not exist yet (or is a
  /// tombstone), so every required field must be present.
  public func validate(_ values: [String: SyncValue], creating: Bool) throws(ValidationError) {
    for (name, value) in values {
      try SyncLimits.validateFieldName(name, field: "fields")
      try SyncLimits.validateValue(value, field: "fields.\(name)")
    }
    guard let fields else { return }
    let known = Dictionary(fields.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    for (name, value) in values.sorted(by: { $0.key < $1.key }) {
      guard let spec = known[name] else {
        throw ValidationError("fields.\(name)", "is not a field of collection \(self.name)")
      }
      guard spec.type.accepts(value) else {
        throw ValidationError("fields.\(name)", "must be of type \(spec.type.rawValue)")
      }
      if spec.required, case .null = value {
        throw ValidationError("fields.\(name)", "is required and cannot be null")
      }
      if let max = spec.maxLength, case .string(let s) = value, s.count > max {
        throw ValidationError("fields.\(name)", "must be at most \(max) characters")
      }
    }
    if creating {
      for spec in fields where spec.required && values[spec.name] == nil {
        throw ValidationError("fields.\(spec.name)", "is required when creating a record")
      }
    }
  }

  /// Checks a whole record against the size limit (canonical encoding of all its fields).
  public func validateSize(_ values: [String: SyncValue]) throws(ValidationError) {
    let size = SyncValue.map(values).canonicalBytes().count
    guard size <= maxRecordBytes else {
      throw ValidationError("fields", "make the record \(size) bytes; the limit is \(maxRecordBytes)")
    }
  }
}

/// Every syncable collection, declared in this one place.
public enum SyncCollections {
  /// Published service guides, so the app can browse every guide offline. Server-written.
  /// Record id: the item code. Fields: code, name, department_code, item_version, and `item`, the
  /// serialized `onewindow.v1.ServiceItem` with the full guide.
  public static let catalogItems = CollectionSpec(name: "catalog.items", scope: .public, policy: .serverWins)
  /// Open manual-policy conflicts of an account, written by the server when a push collides and
  /// tombstoned when resolved, so they reach every device of the owner. Fields: see `SyncConflict`.
  public static let conflicts = CollectionSpec(name: "sync.conflicts", scope: .private, serverWritten: true)
  /// Per-account settings (language, notification choices …): any fields.
  public static let preferences = CollectionSpec(name: "preferences", scope: .private)
  /// Service items an account saved for later.
  public static let favorites = CollectionSpec(
    name: "favorites", scope: .private,
    fields: [FieldSpec("item_code", .string, required: true, maxLength: 64), FieldSpec("note", .string, maxLength: 500)])
  /// Caseworkers' on-site inspection notes, shared within a department and edited offline;
  /// concurrent edits to the same field go to a person.
  public static let siteInspections = CollectionSpec(
    name: "site.inspections", scope: .department, policy: .manual,
    fields: [
      FieldSpec("subject", .string, required: true, maxLength: 200), FieldSpec("address", .string, maxLength: 200),
      FieldSpec("findings", .string, maxLength: 10_000), FieldSpec("passed", .bool), FieldSpec("inspected_at", .timestamp),
      FieldSpec("photos", .list),
    ])

  /// Case drafts (草稿), edited offline on any device of the applicant; `SubmitCase` turns one
  /// into a case and deletes it. Fields: see `CaseDraft`.
  public static let caseDrafts = CollectionSpec(
    name: "case.drafts", scope: .private,
    fields: [
      FieldSpec("item_code", .string, required: true, maxLength: 64), FieldSpec("form", .map),
      FieldSpec("materials", .map), FieldSpec("note", .string, maxLength: 500),
    ])
  /// The applicant's cases with their current status, written by the server in the same
  /// transaction as every transition. Record id: the case id.
  public static let cases = CollectionSpec(name: "cases", scope: .private, policy: .serverWins, serverWritten: true)

  public static let all: [CollectionSpec] = [
    catalogItems, conflicts, preferences, favorites, siteInspections, caseDrafts, cases,
  ]

  public static func named(_ name: String) -> CollectionSpec? { all.first { $0.name == name } }

  /// Most entries a Pull, Watch or Verify collection filter may list (duplicates count; they
  /// are then ignored). Twice the declared collections, so a client listing each one never hits it.
  public static let maxFilterEntries = 16
}
