import OneWindowAPI
import OneWindowCore

/// Identifies one record across collections.
public struct RecordKey: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
  public var collection: String
  public var id: String

  public init(collection: String, id: String) {
    self.collection = collection
    self.id = id
  }

  public static func < (a: RecordKey, b: RecordKey) -> Bool { (a.collection, a.id) < (b.collection, b.id) }

  public var description: String { "\(collection)/\(id)" }
}

/// A record as the app sees it: the server's state with the device's unsynced edits on top.
public struct LocalRecord: Sendable, Equatable {
  public var collection: String
  public var id: String
  public var fields: [String: SyncValue]
  /// The server version the local state builds on; 0 when the server has not sent it yet.
  public var version: Int64
  /// Local edits to this record that the server has not yet confirmed in a pull or watch.
  public var pendingMutations: Int

  public init(collection: String, id: String, fields: [String: SyncValue], version: Int64, pendingMutations: Int) {
    self.collection = collection
    self.id = id
    self.fields = fields
    self.version = version
    self.pendingMutations = pendingMutations
  }

  public var key: RecordKey { RecordKey(collection: collection, id: id) }
}

/// One queued local edit. Its id is fixed at creation and never reused, so the server can
/// apply it exactly once however often it is resent.
public struct PendingMutation: Sendable, Equatable {
  public enum Operation: Sendable, Equatable {
    /// Only the fields the edit changed, each with its own HLC stamp.
    case upsert([String: FieldChange])
    case delete(HLCStamp)
  }

  public var mutationID: Int64
  public var collection: String
  public var recordID: String
  /// The server version the edit was made against (0: the device had never seen the record).
  public var baseVersion: Int64
  public var operation: Operation
  /// Unix milliseconds of the edit.
  public var createdAt: Int64
  /// The server's record version after processing it, once a push has been answered: the edit
  /// is no longer sent and only stays in the local view until that version arrives by pull or
  /// watch (so the view does not flicker back to the old state in between). `Int64.max` when
  /// the answer carried no version; then a pull's `last_mutation_id` retires it.
  public var acknowledgedVersion: Int64?

  public init(
    mutationID: Int64, collection: String, recordID: String, baseVersion: Int64, operation: Operation,
    createdAt: Int64, acknowledgedVersion: Int64? = nil
  ) {
    self.mutationID = mutationID
    self.collection = collection
    self.recordID = recordID
    self.baseVersion = baseVersion
    self.operation = operation
    self.createdAt = createdAt
    self.acknowledgedVersion = acknowledgedVersion
  }

  public var key: RecordKey { RecordKey(collection: collection, id: recordID) }
  /// The server has processed it (a push was answered).
  public var acknowledged: Bool { acknowledgedVersion != nil }
}

/// Why the server told the replica to start over (see `ResetReason` in sync.proto).
public enum SyncResetReason: String, Sendable, Codable, Equatable {
  case cursorExpired = "cursor_expired"
  case epochChanged = "epoch_changed"
  case accessChanged = "access_changed"
  /// A reason this SDK does not know yet; the reset is the same.
  case unknown

  /// nil for "no reset".
  public init?(wire: Onewindow_V1_ResetReason) {
    switch wire {
    case .unspecified: return nil
    case .cursorExpired: self = .cursorExpired
    case .epochChanged: self = .epochChanged
    case .accessChanged: self = .accessChanged
    case .UNRECOGNIZED: self = .unknown
    }
  }
}

/// Where the replica stands, for status displays and tests.
public struct ReplicaStatus: Sendable, Equatable {
  public var clientID: String
  /// Empty until the first pull page is applied.
  public var cursor: String
  /// The id the next local edit gets.
  public var nextMutationID: Int64
  /// Queued edits not yet processed by the server.
  public var unsentMutations: Int
  /// Edits the server processed whose effect has not arrived yet.
  public var acknowledgedMutations: Int
  /// Set while a reset snapshot is being pulled (it resumes after an interruption).
  public var resetting: SyncResetReason?
  public var serverRecords: Int
  public var localRecords: Int
}
