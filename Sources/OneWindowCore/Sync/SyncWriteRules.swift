#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A record as the server stores it: its state plus who owns and who sees it.
public struct StoredRecord: Sendable, Equatable {
  public var collection: String
  public var id: String
  public var ownerID: String
  public var audience: String
  public var state: RecordState
  /// The server sequence of its latest change (assigned by the store when written).
  public var sequence: Int64
  /// Bytes of its stored encoding (set by the store), for page and event size budgets.
  public var encodedSize: Int

  public init(
    collection: String, id: String, ownerID: String, audience: String, state: RecordState, sequence: Int64 = 0,
    encodedSize: Int = 0
  ) {
    self.collection = collection
    self.id = id
    self.ownerID = ownerID
    self.audience = audience
    self.state = state
    self.sequence = sequence
    self.encodedSize = encodedSize
  }
}

/// One mutation of a push, after decoding at the edge. A mutation that could not be decoded
/// (bad record id, bad value) is still carried, as `malformed`: it is rejected in order and its
/// id still counts, so one bad mutation never jams a device's queue.
public struct IncomingMutation: Sendable, Equatable {
  public enum Body: Sendable, Equatable {
    case valid(RecordMutation)
    case malformed(ValidationError)
  }

  public var mutationID: Int64
  public var collection: String
  public var recordID: String
  public var body: Body

  public init(mutationID: Int64, collection: String, recordID: String, body: Body) {
    self.mutationID = mutationID
    self.collection = collection
    self.recordID = recordID
    self.body = body
  }
}

/// What happened to one mutation; stored per (client, mutation id) so a replayed push gets the
/// same answer.
public struct MutationResult: Sendable, Equatable, Codable {
  public enum Outcome: String, Sendable, Codable { case applied, merged, conflict, rejected }
  public enum Reason: String, Sendable, Codable {
    case unknownCollection = "unknown_collection"
    case readOnly = "read_only"
    case permissionDenied = "permission_denied"
    case invalid
    case deleted
    case notFound = "not_found"
    case tooLarge = "too_large"
  }

  public var mutationID: Int64
  public var outcome: Outcome
  /// The record's version afterwards (0: it does not exist).
  public var version: Int64
  public var lostFields: [String]
  public var conflictID: String?
  public var reason: Reason?
  public var message: String?
  public var clockClamped: Bool
  /// Set when answering from the stored result of an earlier push.
  public var replayed: Bool

  public init(
    mutationID: Int64, outcome: Outcome, version: Int64, lostFields: [String] = [], conflictID: String? = nil,
    reason: Reason? = nil, message: String? = nil, clockClamped: Bool = false, replayed: Bool = false
  ) {
    self.mutationID = mutationID
    self.outcome = outcome
    self.version = version
    self.lostFields = lostFields
    self.conflictID = conflictID
    self.reason = reason
    self.message = message
    self.clockClamped = clockClamped
    self.replayed = replayed
  }

  static func rejected(_ id: Int64, _ reason: Reason, _ message: String, version: Int64 = 0) -> MutationResult {
    MutationResult(mutationID: id, outcome: .rejected, version: version, reason: reason, message: message)
  }
}

/// The effect of one mutation: its result and the records to write (in this order).
public struct WriteDecision: Sendable, Equatable {
  public var result: MutationResult
  public var writes: [StoredRecord]
}

/// The server-side write rules for one mutation, pure so they are testable alone and shared by
/// every store implementation: authorization by audience, the collection's schema and limits,
/// the HLC skew clamp, the merge, and conflict records for manual collections.
public struct SyncWriteRules: Sendable {
  public var skew: SkewPolicy

  public init(skew: SkewPolicy = SkewPolicy()) {
    self.skew = skew
  }

  /// Decides `mutation` from `clientID` by `principal` against the record's current server
  /// state. `clock` is the server's HLC (advanced by the stamps received). `newID` makes ids for
  /// conflict records.
  public func decide(
    _ mutation: IncomingMutation, current: StoredRecord?, principal: SyncPrincipal, clientID: String,
    clock: inout HybridLogicalClock, now: Date, newID: () -> String
  ) -> WriteDecision {
    let id = mutation.mutationID
    // A rejection reports the record's version only to a caller who may see the record.
    let visibleVersion = current.flatMap { principal.canSee(audience: $0.audience) && !$0.state.deleted ? $0.state.version : nil } ?? 0
    func reject(_ reason: MutationResult.Reason, _ message: String) -> WriteDecision {
      WriteDecision(result: .rejected(id, reason, message, version: visibleVersion), writes: [])
    }
    guard let spec = SyncCollections.named(mutation.collection) else {
      return reject(.unknownCollection, "collection '\(mutation.collection)' is not declared by this server")
    }
    guard spec.clientWritable else { return reject(.readOnly, "collection '\(spec.name)' is written by the server only") }
    let record: RecordMutation
    switch mutation.body {
    case .malformed(let error): return reject(.invalid, error.description)
    case .valid(let r): record = r
    }

    // Who: an existing record must be in one of the caller's audiences; a new one gets the
    // caller's audience for the collection's scope.
    let audience: String
    let ownerID: String
    if let current {
      guard principal.canSee(audience: current.audience) else {
        return reject(.permissionDenied, "record \(mutation.recordID) is not yours to change")
      }
      audience = current.audience
      ownerID = current.ownerID
    } else {
      guard let label = principal.audienceForNewRecord(in: spec) else {
        return reject(.permissionDenied, "a \(principal.role.rawValue) may not create records in '\(spec.name)'")
      }
      audience = label
      ownerID = principal.accountID
    }

    // Stamps: every stamp must be the pushing device's own (a (node, stamp) pair names exactly
    // one write), then the skew clamp.
    var clamped = false
    func admit(_ stamp: HLCStamp) -> HLCStamp {
      let (admitted, wasClamped) = skew.admit(stamp, clock: &clock, now: now)
      clamped = clamped || wasClamped
      return admitted
    }
    var admitted = record
    switch record.operation {
    case .delete(let stamp):
      guard stamp.node == clientID else { return reject(.invalid, "stamp.node must be the pushing client_id") }
      admitted.operation = .delete(admit(stamp))
    case .upsert(let changes):
      let creating = current == nil || current?.state.deleted == true
      do {
        try spec.validate(changes.mapValues(\.value), creating: creating)
      } catch {
        return reject(.invalid, error.description)
      }
      var stamped: [String: FieldChange] = [:]
      for (name, change) in changes {
        guard change.stamp.node == clientID else { return reject(.invalid, "fields.\(name).stamp.node must be the pushing client_id") }
        stamped[name] = FieldChange(value: change.value, stamp: admit(change.stamp))
      }
      admitted.operation = .upsert(stamped)
    }

    let outcome = RecordMerge.apply(admitted, to: current?.state, policy: spec.policy)
    let next = outcome.newState(comparedTo: current?.state)
    if let next, !next.deleted {
      do { try spec.validateSize(next.values) } catch { return reject(.tooLarge, error.description) }
    }
    var writes: [StoredRecord] = []
    if let next {
      writes.append(StoredRecord(collection: spec.name, id: mutation.recordID, ownerID: ownerID, audience: audience, state: next))
    }
    let version = (next ?? current?.state).map { $0.deleted ? 0 : $0.version } ?? 0
    var result: MutationResult
    switch outcome {
    case .applied:
      result = MutationResult(mutationID: id, outcome: .applied, version: version)
    case .merged(_, let lost):
      result = MutationResult(mutationID: id, outcome: .merged, version: version, lostFields: lost)
    case .rejected(.deleted(let at)):
      result = .rejected(id, .deleted, "record was deleted at version \(at), after the version \(record.baseVersion) this edit was based on")
    case .rejected(.notFound):
      result = .rejected(id, .notFound, "record \(mutation.recordID) does not exist")
    case .rejected(.empty):
      result = .rejected(id, .invalid, "an upsert must change at least one field", version: version)
    case .conflict(_, let fields):
      let names = fields.map(\.field)
      if spec.policy == .manual, let current {
        let conflict = SyncConflict(
          id: newID(), collection: spec.name, recordID: mutation.recordID, fields: fields,
          baseVersion: record.baseVersion, serverVersion: current.state.version, clientID: clientID, mutationID: id,
          createdAt: Int64((now.timeIntervalSince1970 * 1000).rounded(.down)))
        let stamp = clock.tick(now: now)
        writes.append(StoredRecord(
          collection: SyncCollections.conflicts.name, id: conflict.id, ownerID: principal.accountID,
          audience: AudienceLabel.account(principal.accountID),
          state: RecordState(fields: conflict.fields(stamp: stamp), version: 1)))
        result = MutationResult(
          mutationID: id, outcome: .conflict, version: version, conflictID: conflict.id,
          message: "concurrent edits to \(names.joined(separator: ", ")) need a person: see conflict \(conflict.id)")
      } else {
        result = MutationResult(
          mutationID: id, outcome: .conflict, version: version,
          message: "record changed since version \(record.baseVersion) (now \(current?.state.version ?? 0)); pull and edit again")
      }
    }
    result.clockClamped = clamped
    return WriteDecision(result: result, writes: writes)
  }
}

/// A manual-policy conflict, stored as a record of the owner's `sync.conflicts` collection.
public struct SyncConflict: Sendable, Equatable {
  public var id: String
  public var collection: String
  public var recordID: String
  public var fields: [FieldConflict]
  public var baseVersion: Int64
  public var serverVersion: Int64
  public var clientID: String
  public var mutationID: Int64
  /// Unix milliseconds.
  public var createdAt: Int64

  public init(
    id: String, collection: String, recordID: String, fields: [FieldConflict], baseVersion: Int64, serverVersion: Int64,
    clientID: String, mutationID: Int64, createdAt: Int64
  ) {
    self.id = id
    self.collection = collection
    self.recordID = recordID
    self.fields = fields
    self.baseVersion = baseVersion
    self.serverVersion = serverVersion
    self.clientID = clientID
    self.mutationID = mutationID
    self.createdAt = createdAt
  }

  /// The record fields: `collection`, `record_id`, `base_version`, `server_version`,
  /// `client_id`, `mutation_id`, `created_at`, and `fields`: a map from field name to
  /// `{client: value, server: value}` (`server` absent when the server had no value).
  func fields(stamp: HLCStamp) -> [String: FieldState] {
    var conflicted: [String: SyncValue] = [:]
    for f in fields {
      var entry: [String: SyncValue] = ["client": f.client]
      if let server = f.server { entry["server"] = server }
      conflicted[f.field] = .map(entry)
    }
    let values: [String: SyncValue] = [
      "collection": .string(collection), "record_id": .string(recordID), "base_version": .int(baseVersion),
      "server_version": .int(serverVersion), "client_id": .string(clientID), "mutation_id": .int(mutationID),
      "created_at": .timestamp(createdAt), "fields": .map(conflicted),
    ]
    return values.mapValues { FieldState(value: $0, stamp: stamp, changedAt: 1) }
  }

  /// Reads a conflict back from its record; nil if the record is not a conflict.
  public init?(id: String, values: [String: SyncValue]) {
    guard case .string(let collection)? = values["collection"], case .string(let recordID)? = values["record_id"],
          case .int(let base)? = values["base_version"], case .int(let server)? = values["server_version"],
          case .string(let clientID)? = values["client_id"], case .int(let mutationID)? = values["mutation_id"],
          case .timestamp(let createdAt)? = values["created_at"], case .map(let entries)? = values["fields"]
    else { return nil }
    var fields: [FieldConflict] = []
    for name in entries.keys.sorted() {
      guard case .map(let entry)? = entries[name], let client = entry["client"] else { return nil }
      fields.append(FieldConflict(field: name, server: entry["server"], client: client))
    }
    self.init(
      id: id, collection: collection, recordID: recordID, fields: fields, baseVersion: base, serverVersion: server,
      clientID: clientID, mutationID: mutationID, createdAt: createdAt)
  }
}

/// How a person settles a conflict.
public struct ConflictResolution: Sendable, Equatable {
  public enum Choice: Sendable, Equatable { case server, client }
  /// Per conflicting field; fields not named keep the server's value.
  public var choices: [String: Choice]
  /// Per field, a value to write instead (overrides choices).
  public var values: [String: SyncValue]

  public init(choices: [String: Choice] = [:], values: [String: SyncValue] = [:]) {
    self.choices = choices
    self.values = values
  }

  /// The values to write to the record: the client's for fields chosen so, and the supplied
  /// ones. Empty when every field keeps the server's value. Fields outside the conflict are refused.
  public func writes(for conflict: SyncConflict) throws(ValidationError) -> [String: SyncValue] {
    let byName = Dictionary(conflict.fields.map { ($0.field, $0) }, uniquingKeysWith: { a, _ in a })
    var out: [String: SyncValue] = [:]
    for (name, choice) in choices {
      guard let field = byName[name] else { throw ValidationError("choices.\(name)", "is not a field of this conflict") }
      if choice == .client { out[name] = field.client }
    }
    for (name, value) in values {
      guard byName[name] != nil else { throw ValidationError("values.\(name)", "is not a field of this conflict") }
      out[name] = value
    }
    if let spec = SyncCollections.named(conflict.collection) {
      try spec.validate(out, creating: false)
    }
    return out
  }

  /// Applies the resolution to the record: the written fields get the server's fresh stamp at
  /// the next version. Returns nil when nothing changes.
  public func apply(to record: RecordState, writes: [String: SyncValue], stamp: HLCStamp) -> RecordState? {
    let changed = writes.filter { record.fields[$0.key]?.value != $0.value }
    guard !changed.isEmpty, !record.deleted else { return nil }
    var next = record
    next.version += 1
    for (name, value) in changed { next.fields[name] = FieldState(value: value, stamp: stamp, changedAt: next.version) }
    return next
  }
}
