import GRDB
import OneWindowCore

/// Local edits: each one is validated against the collection's declaration, stamped with the
/// device's HLC, queued as exactly one mutation with the next id, and reflected in the view —
/// all in one transaction, without any network.
extension SyncReplica {
  /// Sets `fields` on the record, creating it if the view has no such record. Only fields whose
  /// value differs from the view are queued, each with its own HLC stamp. Returns the queued
  /// mutation, or nil when nothing changed.
  @discardableResult
  public func put(collection: String, id: String, fields: [String: SyncValue]) async throws -> PendingMutation? {
    let spec = try Self.writableSpec(collection)
    try Self.validateID(id)
    guard !fields.isEmpty else { throw SyncClientError.invalid(ValidationError("fields", "set at least one field")) }
    let key = RecordKey(collection: collection, id: id)
    let node = clientID
    let now = clock.now()
    let createdAt = nowMillis
    return try await pool.write { db -> PendingMutation? in
      let current = try ReplicaRows.localRecord(db, key)
      let serverVersion = try ReplicaRows.serverVersion(db, key)
      if current == nil {
        // The view lacks the record, but the server had it or edits are queued: it was deleted.
        // The server refuses to re-create a deleted record from an older version (deletes win).
        let queued = try Int.fetchOne(
          db, sql: "SELECT COUNT(*) FROM pending WHERE collection = ? AND record_id = ?", arguments: [collection, id]) ?? 0
        guard serverVersion == nil, queued == 0 else {
          throw SyncClientError.invalid(ValidationError("record_id", "\(id) was deleted; create a new record with a new id"))
        }
      }
      let changed = fields.filter { current?.fields[$0.key] != $0.value }
      guard !changed.isEmpty else { return nil }
      do throws(ValidationError) {
        try spec.validate(changed, creating: current == nil)
        try spec.validateSize((current?.fields ?? [:]).merging(changed) { _, new in new })
      } catch {
        throw SyncClientError.invalid(error)
      }
      var hlc = try Meta.clock(db, node: node)
      var changes: [String: FieldChange] = [:]
      for name in changed.keys.sorted() {
        guard let value = changed[name] else { continue }
        changes[name] = FieldChange(value: value, stamp: hlc.tick(now: now))
      }
      try Meta.store(hlc, db)
      return try Self.enqueue(
        db, key: key, baseVersion: serverVersion ?? 0, operation: .upsert(changes), createdAt: createdAt)
    }
  }

  /// Deletes the record from the view and queues the delete.
  @discardableResult
  public func delete(collection: String, id: String) async throws -> PendingMutation {
    _ = try Self.writableSpec(collection)
    try Self.validateID(id)
    let key = RecordKey(collection: collection, id: id)
    let node = clientID
    let now = clock.now()
    let createdAt = nowMillis
    return try await pool.write { db in
      guard try ReplicaRows.localRecord(db, key) != nil else { throw SyncClientError.notFound(collection: collection, id: id) }
      var hlc = try Meta.clock(db, node: node)
      let stamp = hlc.tick(now: now)
      try Meta.store(hlc, db)
      return try Self.enqueue(
        db, key: key, baseVersion: try ReplicaRows.serverVersion(db, key) ?? 0, operation: .delete(stamp),
        createdAt: createdAt)
    }
  }

  /// Queues one mutation with the next id (never reused: ids only grow) and refreshes the view.
  private static func enqueue(
    _ db: Database, key: RecordKey, baseVersion: Int64, operation: PendingMutation.Operation, createdAt: Int64
  ) throws -> PendingMutation {
    let id = try Meta.int(db, "next_mutation_id")
    let mutation = PendingMutation(
      mutationID: id, collection: key.collection, recordID: key.id, baseVersion: baseVersion, operation: operation,
      createdAt: createdAt)
    try ReplicaRows.insert(mutation, db)
    try Meta.set(db, "next_mutation_id", id + 1)
    try RecordView.refresh(db, key)
    return mutation
  }

  static func writableSpec(_ collection: String) throws -> CollectionSpec {
    guard let spec = SyncCollections.named(collection) else { throw SyncClientError.unknownCollection(collection) }
    guard spec.clientWritable else { throw SyncClientError.readOnly(collection) }
    return spec
  }

  static func validateID(_ id: String) throws {
    do throws(ValidationError) { try SyncLimits.validateRecordID(id) } catch { throw SyncClientError.invalid(error) }
  }
}
