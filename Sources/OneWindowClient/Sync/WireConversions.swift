import OneWindowAPI
import OneWindowCore

// The client's side of the wire: queued mutations out, conflicts in (push results decode with
// the shared conversions in OneWindowAPI).

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
