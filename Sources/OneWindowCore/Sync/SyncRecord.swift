/// How concurrent edits to a collection are resolved.
public enum ConflictPolicy: String, Sendable, Codable, CaseIterable {
  /// Per field, the higher HLC stamp wins (ties by node); fields not edited are untouched.
  case fieldLWW = "field_lww"
  /// An edit based on a stale version is refused as a conflict.
  case serverWins = "server_wins"
  /// Concurrent edits to the same field create a conflict record for a person to resolve.
  case manual
}

/// One field of a stored record with the metadata merges need.
public struct FieldState: Sendable, Equatable, Codable {
  public var value: SyncValue
  public var stamp: HLCStamp
  /// The record version at which this field last changed.
  public var changedAt: Int64

  public init(value: SyncValue, stamp: HLCStamp, changedAt: Int64) {
    self.value = value
    self.stamp = stamp
    self.changedAt = changedAt
  }
}

/// The server's state of one record (its fields and tombstone), as merges see it.
public struct RecordState: Sendable, Equatable, Codable {
  public var fields: [String: FieldState]
  /// Increments on every change; 1 after creation.
  public var version: Int64
  public var deleted: Bool
  /// The stamp of the delete, for a tombstone.
  public var deletedStamp: HLCStamp?

  public init(fields: [String: FieldState], version: Int64, deleted: Bool = false, deletedStamp: HLCStamp? = nil) {
    self.fields = fields
    self.version = version
    self.deleted = deleted
    self.deletedStamp = deletedStamp
  }

  /// The live values, as a client replica holds them.
  public var values: [String: SyncValue] { fields.mapValues(\.value) }
}

/// A field edit carried by a mutation.
public struct FieldChange: Sendable, Equatable, Codable {
  public var value: SyncValue
  public var stamp: HLCStamp

  public init(value: SyncValue, stamp: HLCStamp) {
    self.value = value
    self.stamp = stamp
  }
}

/// What a client asks for one record.
public struct RecordMutation: Sendable, Equatable {
  public enum Operation: Sendable, Equatable {
    /// Only the fields that changed.
    case upsert([String: FieldChange])
    case delete(HLCStamp)
  }

  public var operation: Operation
  /// The record version the client last saw; 0 when it has never seen the record.
  public var baseVersion: Int64

  public init(operation: Operation, baseVersion: Int64) {
    self.operation = operation
    self.baseVersion = baseVersion
  }
}
