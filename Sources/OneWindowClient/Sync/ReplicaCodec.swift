import Foundation
import OneWindowCore

/// The replica's blob formats. Values use the core's canonical encoding, which is exact for
/// every `SyncValue` (doubles by bit pattern, bytes vs strings, timestamps vs ints, nesting) and
/// is what checksums hash, so a stored record is checksummed without re-encoding surprises.
/// Decoding is strict: a damaged blob is an error, never a crash.
enum ReplicaCodec {
  /// A record's field values: the canonical encoding of the map of fields.
  static func encode(values: [String: SyncValue]) -> Data {
    Data(SyncValue.map(values).canonicalBytes())
  }

  static func decodeValues(_ data: Data, _ what: @autoclosure () -> String) throws -> [String: SyncValue] {
    guard let value = try? RecordCodec.decodeValue(Array(data)), case .map(let values) = value else {
      throw SyncClientError.corruptReplica("the fields of \(what()) cannot be decoded")
    }
    return values
  }

  /// Per-field stamps, stored as a canonical map of `[millis, counter, node]` lists so one
  /// decoder serves every blob.
  static func encode(stamps: [String: HLCStamp]) -> Data {
    let map = stamps.mapValues { SyncValue.list([.int($0.millis), .int(Int64($0.counter)), .string($0.node)]) }
    return Data(SyncValue.map(map).canonicalBytes())
  }

  static func decodeStamps(_ data: Data, _ what: @autoclosure () -> String) throws -> [String: HLCStamp] {
    var stamps: [String: HLCStamp] = [:]
    for (name, value) in try decodeValues(data, what()) {
      guard case .list(let parts) = value, parts.count == 3, case .int(let millis) = parts[0],
            case .int(let counter) = parts[1], let c = UInt16(exactly: counter), case .string(let node) = parts[2]
      else { throw SyncClientError.corruptReplica("the stamp of field \(name) of \(what()) cannot be decoded") }
      stamps[name] = HLCStamp(millis: millis, counter: c, node: node)
    }
    return stamps
  }

  /// A queued mutation's body (values with their stamps, or the delete stamp) in the core's
  /// record format.
  static func encode(operation: PendingMutation.Operation) -> (op: String, body: Data) {
    switch operation {
    case .upsert(let changes):
      let fields = changes.mapValues { FieldState(value: $0.value, stamp: $0.stamp, changedAt: 0) }
      return ("upsert", Data(RecordCodec.encode(RecordState(fields: fields, version: 0))))
    case .delete(let stamp):
      return ("delete", Data(RecordCodec.encode(RecordState(fields: [:], version: 0, deleted: true, deletedStamp: stamp))))
    }
  }

  static func decodeOperation(op: String, body: Data, mutationID: Int64) throws -> PendingMutation.Operation {
    let corrupt = SyncClientError.corruptReplica("queued mutation \(mutationID) cannot be decoded")
    guard let state = try? RecordCodec.decode(Array(body), version: 0, deleted: op == "delete") else { throw corrupt }
    switch op {
    case "upsert": return .upsert(state.fields.mapValues { FieldChange(value: $0.value, stamp: $0.stamp) })
    case "delete":
      guard let stamp = state.deletedStamp else { throw corrupt }
      return .delete(stamp)
    default: throw corrupt
    }
  }
}
