import Foundation
import GRDB
import OneWindowCore

/// The local view of a record: the server's state with the record's pending mutations
/// re-applied in mutation-id order. Recomputing it after every pulled page is the rebase:
/// local edits always sit on top of the newest server state.
enum RecordView {
  /// The view's fields, or nil when the record does not exist locally.
  ///
  /// Upserts overlay their fields; a delete removes the record. An upsert that finds no record
  /// is shown only if it is a creation the server will accept: based on version 0 and not
  /// after a delete. Any other upsert of a missing record edits one that was deleted (by a
  /// queued local delete, or on the server after the device saw it: `base_version > 0` but no
  /// server row) and the server refuses it because deletes win — so the view hides it rather
  /// than resurrecting a record with only the edited fields.
  ///
  /// Known gap: a record this device created, pushed, and then queued further edits to before
  /// pulling (base version 0) which another device deleted meanwhile reappears with the edited
  /// fields until the push answer (REJECTED, deleted) removes the edit.
  static func compute(server: [String: SyncValue]?, pending: [PendingMutation]) -> [String: SyncValue]? {
    var values = server
    var deleted = false
    for mutation in pending.sorted(by: { $0.mutationID < $1.mutationID }) {
      switch mutation.operation {
      case .delete:
        values = nil
        deleted = true
      case .upsert(let changes):
        if values == nil {
          guard !deleted, mutation.baseVersion == 0, server == nil else { continue }
          values = [:]
        }
        for (name, change) in changes { values?[name] = change.value }
      }
    }
    return values
  }

  /// Recomputes and stores the view of `key`.
  static func refresh(_ db: Database, _ key: RecordKey) throws {
    let server = try ReplicaRows.serverRecord(db, key)
    let pending = try ReplicaRows.pending(db, key)
    guard let values = compute(server: server?.values, pending: pending) else {
      try db.execute(sql: "DELETE FROM records WHERE collection = ? AND id = ?", arguments: [key.collection, key.id])
      return
    }
    try db.execute(
      sql: "INSERT OR REPLACE INTO records (collection, id, fields, version, pending) VALUES (?, ?, ?, ?, ?)",
      arguments: [key.collection, key.id, ReplicaCodec.encode(values: values), server?.version ?? 0, pending.count])
  }

  /// Recomputes every view (after a reset purge, when many records may have gone).
  static func rebuildAll(_ db: Database) throws {
    let keys = try Row.fetchAll(db, sql: """
      SELECT collection, id FROM server_records
      UNION SELECT collection, record_id FROM pending
      UNION SELECT collection, id FROM records
      """
    ).map { RecordKey(collection: try $0.decode(String.self, atIndex: 0), id: try $0.decode(String.self, atIndex: 1)) }
    for key in keys { try refresh(db, key) }
  }

  /// Drops acknowledged mutations of `key` whose effect the server state now shows, so they
  /// stop overlaying it. An upsert's effect is visible once the server row reaches the version
  /// the push answered; a delete's once the row is gone. Returns how many were dropped.
  @discardableResult
  static func retireVisible(_ db: Database, _ key: RecordKey) throws -> Int {
    let acknowledged = try ReplicaRows.pending(db, key).filter(\.acknowledged)
    guard !acknowledged.isEmpty else { return 0 }
    let serverVersion = try ReplicaRows.serverVersion(db, key)
    var retired = 0
    for mutation in acknowledged {
      guard let version = mutation.acknowledgedVersion, version != Int64.max else { continue }
      let visible: Bool
      if case .delete = mutation.operation {
        visible = serverVersion == nil
      } else if version == 0 {
        visible = serverVersion == nil  // the answer said the record does not exist
      } else {
        visible = (serverVersion ?? -1) >= version
      }
      if visible {
        try db.execute(sql: "DELETE FROM pending WHERE mutation_id = ?", arguments: [mutation.mutationID])
        retired += 1
      }
    }
    return retired
  }
}
