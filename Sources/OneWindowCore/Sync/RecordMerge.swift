/// A field where a manual-policy edit collided with a concurrent one.
public struct FieldConflict: Sendable, Equatable {
  public var field: String
  /// The server's current value (nil: the field does not exist on the server).
  public var server: SyncValue?
  public var client: SyncValue

  public init(field: String, server: SyncValue?, client: SyncValue) {
    self.field = field
    self.server = server
    self.client = client
  }
}

public enum MergeRejection: Sendable, Equatable {
  /// The record was deleted at `version`, after the version the edit was based on. Deletes win.
  case deleted(version: Int64)
  /// A delete of a record that does not exist.
  case notFound
  /// An upsert with no fields.
  case empty
}

public enum MergeOutcome: Sendable, Equatable {
  /// Every edited field was taken.
  case applied(RecordState)
  /// Some fields lost to newer edits (`lost`, sorted); the others were taken. When every field
  /// lost, the state is the current one, unchanged.
  case merged(RecordState, lost: [String])
  /// The policy found a conflict. `server_wins`: nothing applied (state nil). `manual`: the
  /// non-conflicting fields applied (the state), the conflicting ones listed for a person.
  case conflict(RecordState?, fields: [FieldConflict])
  case rejected(MergeRejection)

  /// The state to store, or nil when the record does not change.
  public func newState(comparedTo current: RecordState?) -> RecordState? {
    let state: RecordState?
    switch self {
    case .applied(let s), .merged(let s, _): state = s
    case .conflict(let s, _): state = s
    case .rejected: state = nil
    }
    return state == current ? nil : state
  }
}

/// The merge rules: pure, deterministic, the same on the server and in tests.
///
/// - A new record takes every field (version 1).
/// - Deletes win over concurrent edits, under every policy: a delete always applies, and an
///   upsert based on a version older than the tombstone is rejected. A client that has seen the
///   tombstone (base version ≥ the tombstone's) may re-create the record. An edit based on a
///   version of a record the server no longer has (tombstone compacted) is rejected too.
/// - `field_lww`: per field the higher stamp wins; fields not in the mutation are untouched.
/// - `server_wins`: an upsert based on a version older than a change by another device is a conflict.
/// - `manual`: a field changed on the server after the base version by another device, to a
///   value other than the client's, is a conflict; the other fields apply.
/// - A device's own earlier writes never conflict with its later queued edits (same stamp node).
public enum RecordMerge {
  public static func apply(_ mutation: RecordMutation, to current: RecordState?, policy: ConflictPolicy) -> MergeOutcome {
    switch mutation.operation {
    case .delete(let stamp):
      guard let current else { return .rejected(.notFound) }
      if current.deleted { return .applied(current) }  // idempotent
      return .applied(RecordState(fields: [:], version: current.version + 1, deleted: true, deletedStamp: stamp))

    case .upsert(let changes):
      guard !changes.isEmpty else { return .rejected(.empty) }
      guard let current else {
        // An edit of a version the server no longer has: the record was deleted and its
        // tombstone compacted. Deletes win; the edit must not resurrect it.
        if mutation.baseVersion > 0 { return .rejected(.deleted(version: mutation.baseVersion)) }
        return .applied(create(changes, version: 1))
      }
      if current.deleted {
        guard mutation.baseVersion >= current.version else { return .rejected(.deleted(version: current.version)) }
        return .applied(create(changes, version: current.version + 1))
      }
      switch policy {
      case .fieldLWW: return lastWriterWins(changes, current)
      case .serverWins: return serverWins(changes, current, base: mutation.baseVersion)
      case .manual: return manual(changes, current, base: mutation.baseVersion)
      }
    }
  }

  static func create(_ changes: [String: FieldChange], version: Int64) -> RecordState {
    RecordState(fields: changes.mapValues { FieldState(value: $0.value, stamp: $0.stamp, changedAt: version) }, version: version)
  }

  static func lastWriterWins(_ changes: [String: FieldChange], _ current: RecordState) -> MergeOutcome {
    var next = current
    next.version += 1
    var lost: [String] = []
    for (name, change) in changes {
      if let existing = current.fields[name], change.stamp <= existing.stamp {
        lost.append(name)
      } else {
        next.fields[name] = FieldState(value: change.value, stamp: change.stamp, changedAt: next.version)
      }
    }
    if lost.isEmpty { return .applied(next) }
    return .merged(lost.count == changes.count ? current : next, lost: lost.sorted())
  }

  /// Whether a field changed after `base` by another node than `node`. A device's own queued
  /// edits, all based on the version it last pulled, are ordered by its clock, not concurrent.
  static func changedByOthers(_ field: FieldState, since base: Int64, node: String) -> Bool {
    field.changedAt > base && field.stamp.node != node
  }

  static func serverWins(_ changes: [String: FieldChange], _ current: RecordState, base: Int64) -> MergeOutcome {
    let node = changes.first?.value.stamp.node ?? ""
    let stale = base < current.version && current.fields.values.contains { changedByOthers($0, since: base, node: node) }
    guard !stale else {
      let fields = changes.keys.sorted().map { name in
        FieldConflict(field: name, server: current.fields[name]?.value, client: changes[name]?.value ?? .null)
      }
      return .conflict(nil, fields: fields)
    }
    var next = current
    next.version += 1
    for (name, change) in changes {
      next.fields[name] = FieldState(value: change.value, stamp: change.stamp, changedAt: next.version)
    }
    return .applied(next)
  }

  static func manual(_ changes: [String: FieldChange], _ current: RecordState, base: Int64) -> MergeOutcome {
    var next = current
    next.version += 1
    var conflicts: [FieldConflict] = []
    for name in changes.keys.sorted() {
      guard let change = changes[name] else { continue }
      if let existing = current.fields[name], changedByOthers(existing, since: base, node: change.stamp.node),
         existing.value != change.value
      {
        conflicts.append(FieldConflict(field: name, server: existing.value, client: change.value))
      } else {
        next.fields[name] = FieldState(value: change.value, stamp: change.stamp, changedAt: next.version)
      }
    }
    if conflicts.isEmpty { return .applied(next) }
    return .conflict(conflicts.count == changes.count ? current : next, fields: conflicts)
  }
}
