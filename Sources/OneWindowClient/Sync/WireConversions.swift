import OneWindowAPI
import OneWindowCore

// The client's side of the wire: queued mutations out, push results and conflicts in.

extension Onewindow_V1_Mutation {
  /// The queued edit as pushed: only its changed fields, each with its stamp.
  public init(_ pending: PendingMutation) {
    self.init()
    mutationID = pending.mutationID
    collection = pending.collection
    recordID = pending.recordID
    baseVersion = pending.baseVersion
    switch pending.operation {
    case .upsert(let changes):
      upsert = .with { upsert in
        upsert.fields = changes.mapValues { change in
          .with {
            $0.value = Onewindow_V1_Value(change.value)
            $0.stamp = Onewindow_V1_HlcStamp(change.stamp)
          }
        }
      }
    case .delete(let stamp):
      delete = .with { $0.stamp = Onewindow_V1_HlcStamp(stamp) }
    }
  }
}

extension MutationResult {
  /// The core's form of a push result; nil for an outcome this SDK does not know (the
  /// mutation still counts as processed when its id is within `last_mutation_id`).
  public init?(wire: Onewindow_V1_MutationResult) {
    let outcome: Outcome
    switch wire.outcome {
    case .applied: outcome = .applied
    case .merged: outcome = .merged
    case .conflict: outcome = .conflict
    case .rejected: outcome = .rejected
    case .unspecified, .UNRECOGNIZED: return nil
    }
    self.init(
      mutationID: wire.mutationID, outcome: outcome, version: wire.version, lostFields: wire.lostFields,
      conflictID: wire.conflictID.isEmpty ? nil : wire.conflictID, reason: Reason(wire: wire.reason),
      message: wire.message.isEmpty ? nil : wire.message, clockClamped: wire.clockClamped, replayed: wire.replayed)
  }
}

extension SyncConflict {
  /// A conflict as ListConflicts sends it.
  public init(wire: Onewindow_V1_Conflict) throws {
    var fields: [FieldConflict] = []
    for entry in wire.fields {
      do {
        let server = entry.serverHasValue ? try entry.serverValue.domain(field: "\(entry.field).server") : nil
        fields.append(FieldConflict(field: entry.field, server: server, client: try entry.clientValue.domain(field: "\(entry.field).client")))
      } catch {
        throw SyncClientError.protocolViolation("conflict \(wire.id): \(error.description)")
      }
    }
    self.init(
      id: wire.id, collection: wire.collection, recordID: wire.recordID, fields: fields, baseVersion: wire.baseVersion,
      serverVersion: wire.serverVersion, clientID: wire.clientID, mutationID: wire.mutationID,
      createdAt: wire.createdAtMillis)
  }
}
