import Foundation
import GRDB
import OneWindowCore

/// Reading and writing the replica's rows inside a GRDB access. Every accessor throws on a row
/// it cannot decode instead of trapping.
enum ReplicaRows {
  /// A `server_records` row.
  struct ServerRecord: Sendable, Equatable {
    var version: Int64
    var ownerID: String
    var values: [String: SyncValue]
    var stamps: [String: HLCStamp]
  }

  static func serverRecord(_ db: Database, _ key: RecordKey) throws -> ServerRecord? {
    guard let row = try Row.fetchOne(
      db, sql: "SELECT version, owner_id, fields, stamps FROM server_records WHERE collection = ? AND id = ?",
      arguments: [key.collection, key.id])
    else { return nil }
    return ServerRecord(
      version: try row.decode(Int64.self, forColumn: "version"),
      ownerID: try row.decode(String.self, forColumn: "owner_id"),
      values: try ReplicaCodec.decodeValues(try row.decode(Data.self, forColumn: "fields"), "server record \(key)"),
      stamps: try ReplicaCodec.decodeStamps(try row.decode(Data.self, forColumn: "stamps"), "server record \(key)"))
  }

  static func serverVersion(_ db: Database, _ key: RecordKey) throws -> Int64? {
    try Int64.fetchOne(
      db, sql: "SELECT version FROM server_records WHERE collection = ? AND id = ?", arguments: [key.collection, key.id])
  }

  static let pendingColumns = "mutation_id, collection, record_id, base_version, op, fields, created_at, acked_version"

  static func pending(_ row: Row) throws -> PendingMutation {
    let id = try row.decode(Int64.self, forColumn: "mutation_id")
    return PendingMutation(
      mutationID: id,
      collection: try row.decode(String.self, forColumn: "collection"),
      recordID: try row.decode(String.self, forColumn: "record_id"),
      baseVersion: try row.decode(Int64.self, forColumn: "base_version"),
      operation: try ReplicaCodec.decodeOperation(
        op: try row.decode(String.self, forColumn: "op"), body: try row.decode(Data.self, forColumn: "fields"), mutationID: id),
      createdAt: try row.decode(Int64.self, forColumn: "created_at"),
      acknowledgedVersion: try row.decode(Int64?.self, forColumn: "acked_version"))
  }

  /// The pending mutations of one record, oldest first.
  static func pending(_ db: Database, _ key: RecordKey) throws -> [PendingMutation] {
    try Row.fetchAll(
      db, sql: "SELECT \(pendingColumns) FROM pending WHERE collection = ? AND record_id = ? ORDER BY mutation_id",
      arguments: [key.collection, key.id]
    ).map(pending)
  }

  static func insert(_ m: PendingMutation, _ db: Database) throws {
    let (op, body) = ReplicaCodec.encode(operation: m.operation)
    try db.execute(
      sql: """
        INSERT INTO pending (mutation_id, collection, record_id, base_version, op, fields, created_at, acked_version)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?)
        """,
      arguments: [m.mutationID, m.collection, m.recordID, m.baseVersion, op, body, m.createdAt, m.acknowledgedVersion])
  }

  static func localRecord(_ row: Row) throws -> LocalRecord {
    let collection = try row.decode(String.self, forColumn: "collection")
    let id = try row.decode(String.self, forColumn: "id")
    return LocalRecord(
      collection: collection, id: id,
      fields: try ReplicaCodec.decodeValues(try row.decode(Data.self, forColumn: "fields"), "record \(collection)/\(id)"),
      version: try row.decode(Int64.self, forColumn: "version"),
      pendingMutations: try row.decode(Int.self, forColumn: "pending"))
  }

  static func localRecord(_ db: Database, _ key: RecordKey) throws -> LocalRecord? {
    try Row.fetchOne(
      db, sql: "SELECT collection, id, fields, version, pending FROM records WHERE collection = ? AND id = ?",
      arguments: [key.collection, key.id]
    ).map(localRecord)
  }
}
