import OneWindowCore

/// Why a replica or engine operation failed. Local-edit errors are thrown before anything is
/// queued, so a caller can show them and has nothing to undo.
public enum SyncClientError: Error, Equatable, Sendable, CustomStringConvertible {
  /// The collection is not declared by this build of the SDK.
  case unknownCollection(String)
  /// The collection is written by the server only (published data, conflict records).
  case readOnly(String)
  /// A record id, field name or value breaks the collection's rules.
  case invalid(ValidationError)
  /// The record is not in the local view.
  case notFound(collection: String, id: String)
  /// The replica file holds something this code cannot read back; it is not a state the code
  /// writes, so the file was damaged or edited by hand.
  case corruptReplica(String)
  /// The server expects mutation `expected`, but the replica no longer holds it (it was dropped
  /// as processed). Happens when the server lost state it had acknowledged (a restored backup);
  /// the queue cannot be replayed, because mutation ids must never change once created.
  case mutationMissing(expected: Int64, oldestHeld: Int64?)
  /// A push made no progress twice in a row: the server processed nothing and named no gap.
  case pushStalled(lastProcessed: Int64)
  /// The server answered something the protocol rules out (for example a reset of an empty cursor).
  case protocolViolation(String)

  public var description: String {
    switch self {
    case .unknownCollection(let name): "collection '\(name)' is not declared"
    case .readOnly(let name): "collection '\(name)' is written by the server only"
    case .invalid(let error): error.description
    case .notFound(let collection, let id): "no record \(id) in \(collection)"
    case .corruptReplica(let what): "the local replica is damaged: \(what)"
    case .mutationMissing(let expected, let oldest):
      "the server expects mutation \(expected), which this replica no longer holds"
        + (oldest.map { " (oldest queued: \($0))" } ?? " (the queue is empty)")
        + "; the server has lost acknowledged edits (restored backup?)"
    case .pushStalled(let last): "the server processed no mutation after \(last) and named no gap"
    case .protocolViolation(let what): "the server broke the sync protocol: \(what)"
    }
  }
}
