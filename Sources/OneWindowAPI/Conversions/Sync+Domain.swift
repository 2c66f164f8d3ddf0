import Foundation
import OneWindowCore

// Conversions between the sync wire messages and the core's domain values, shared by the server
// and the client SDK so both read and write the protocol the same way.

extension Onewindow_V1_Value {
  public init(_ value: SyncValue) {
    self.init()
    switch value {
    case .null: kind = .nullValue(true)
    case .bool(let b): kind = .boolValue(b)
    case .int(let i): kind = .intValue(i)
    case .double(let d): kind = .doubleValue(d)
    case .string(let s): kind = .stringValue(s)
    case .bytes(let b): kind = .bytesValue(Data(b))
    case .timestamp(let t): kind = .timestampMillis(t)
    case .list(let items): kind = .listValue(.with { $0.values = items.map(Onewindow_V1_Value.init) })
    case .map(let entries): kind = .mapValue(.with { $0.entries = entries.mapValues(Onewindow_V1_Value.init) })
    }
  }

  /// The domain value; nesting deeper than `SyncLimits.maxDepth` is refused before recursing
  /// further, so hostile input cannot exhaust the stack.
  public func domain(field: String = "value", depth: Int = 0) throws(ValidationError) -> SyncValue {
    guard depth <= SyncLimits.maxDepth else { throw ValidationError(field, "nests deeper than \(SyncLimits.maxDepth) levels") }
    switch kind {
    case .none, .nullValue: return .null
    case .boolValue(let b): return .bool(b)
    case .intValue(let i): return .int(i)
    case .doubleValue(let d): return .double(d)
    case .stringValue(let s): return .string(s)
    case .bytesValue(let b): return .bytes(Array(b))
    case .timestampMillis(let t): return .timestamp(t)
    case .listValue(let list):
      var items: [SyncValue] = []
      items.reserveCapacity(list.values.count)
      for (i, item) in list.values.enumerated() { items.append(try item.domain(field: "\(field)[\(i)]", depth: depth + 1)) }
      return .list(items)
    case .mapValue(let map):
      var entries: [String: SyncValue] = [:]
      for (key, item) in map.entries { entries[key] = try item.domain(field: "\(field).\(key)", depth: depth + 1) }
      return .map(entries)
    }
  }
}

extension Onewindow_V1_HlcStamp {
  public init(_ stamp: HLCStamp) {
    self.init()
    millis = stamp.millis
    counter = UInt32(stamp.counter)
    node = stamp.node
  }

  public func domain(field: String = "stamp") throws(ValidationError) -> HLCStamp {
    guard millis >= 0 else { throw ValidationError(field, "millis must not be negative") }
    guard let c = UInt16(exactly: counter) else { throw ValidationError(field, "counter must be at most 65535") }
    return HLCStamp(millis: millis, counter: c, node: node)
  }
}

extension Onewindow_V1_Change {
  /// A record change as Pull and Watch send it: the whole current state, or a tombstone.
  public init(collection: String, id: String, ownerID: String, state: RecordState) {
    self.init()
    self.collection = collection
    recordID = id
    version = state.version
    self.ownerID = ownerID
    if state.deleted {
      kind = .delete
    } else {
      kind = .upsert
      fields = state.fields.mapValues { Onewindow_V1_Value($0.value) }
      stamps = state.fields.mapValues { Onewindow_V1_HlcStamp($0.stamp) }
    }
  }
}

extension MutationResult.Reason {
  public var wire: Onewindow_V1_MutationResult.RejectReason {
    switch self {
    case .unknownCollection: .unknownCollection
    case .readOnly: .readOnly
    case .permissionDenied: .permissionDenied
    case .invalid: .invalid
    case .deleted: .deleted
    case .notFound: .notFound
    case .tooLarge: .tooLarge
    }
  }

  public init?(wire: Onewindow_V1_MutationResult.RejectReason) {
    switch wire {
    case .unknownCollection: self = .unknownCollection
    case .readOnly: self = .readOnly
    case .permissionDenied: self = .permissionDenied
    case .invalid: self = .invalid
    case .deleted: self = .deleted
    case .notFound: self = .notFound
    case .tooLarge: self = .tooLarge
    default: return nil
    }
  }
}

extension Onewindow_V1_MutationResult {
  public init(_ result: MutationResult) {
    self.init()
    mutationID = result.mutationID
    version = result.version
    lostFields = result.lostFields
    conflictID = result.conflictID ?? ""
    message = result.message ?? ""
    clockClamped = result.clockClamped
    replayed = result.replayed
    switch result.outcome {
    case .applied: outcome = .applied
    case .merged: outcome = .merged
    case .conflict: outcome = .conflict
    case .rejected: outcome = .rejected
    }
    if let reason = result.reason { self.reason = reason.wire }
  }
}

extension IncomingMutation {
  /// Decodes one mutation. Problems are carried as `malformed` rather than thrown: the mutation
  /// is then rejected in order and its id still counts, so a bad edit cannot jam the queue.
  public init(wire m: Onewindow_V1_Mutation) {
    func body() throws(ValidationError) -> RecordMutation {
      try SyncLimits.validateRecordID(m.recordID)
      guard m.baseVersion >= 0 else { throw ValidationError("base_version", "must not be negative") }
      switch m.op {
      case .upsert(let upsert):
        var changes: [String: FieldChange] = [:]
        for (name, edit) in upsert.fields {
          try SyncLimits.validateFieldName(name, field: "fields")
          guard edit.hasStamp else { throw ValidationError("fields.\(name).stamp", "is required") }
          changes[name] = FieldChange(
            value: try edit.value.domain(field: "fields.\(name)"), stamp: try edit.stamp.domain(field: "fields.\(name).stamp"))
        }
        return RecordMutation(operation: .upsert(changes), baseVersion: m.baseVersion)
      case .delete(let delete):
        guard delete.hasStamp else { throw ValidationError("delete.stamp", "is required") }
        return RecordMutation(operation: .delete(try delete.stamp.domain(field: "delete.stamp")), baseVersion: m.baseVersion)
      case .none:
        throw ValidationError("op", "set upsert or delete")
      }
    }
    let decoded: IncomingMutation.Body
    do { decoded = .valid(try body()) } catch { decoded = .malformed(error) }
    self.init(mutationID: m.mutationID, collection: m.collection, recordID: m.recordID, body: decoded)
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

extension Onewindow_V1_Conflict {
  public init(_ c: SyncConflict) {
    self.init()
    id = c.id
    collection = c.collection
    recordID = c.recordID
    baseVersion = c.baseVersion
    serverVersion = c.serverVersion
    clientID = c.clientID
    mutationID = c.mutationID
    createdAtMillis = c.createdAt
    fields = c.fields.map { f in
      .with {
        $0.field = f.field
        $0.clientValue = Onewindow_V1_Value(f.client)
        if let server = f.server {
          $0.serverValue = Onewindow_V1_Value(server)
          $0.serverHasValue = true
        }
      }
    }
  }
}
