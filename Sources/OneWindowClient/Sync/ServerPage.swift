import OneWindowAPI
import OneWindowCore

/// One record change from the server, decoded and checked: the record's whole current state
/// (fields with their stamps), or a tombstone.
public struct ServerChange: Sendable, Equatable {
  public enum Kind: Sendable, Equatable {
    case upsert(values: [String: SyncValue], stamps: [String: HLCStamp])
    case delete
  }

  public var key: RecordKey
  public var version: Int64
  public var ownerID: String
  public var kind: Kind

  public init(key: RecordKey, version: Int64, ownerID: String, kind: Kind) {
    self.key = key
    self.version = version
    self.ownerID = ownerID
    self.kind = kind
  }

  /// Refuses a change the replica could not store faithfully (unknown kind, a field without
  /// a stamp, values nested beyond the limit) rather than storing a guess.
  public init(_ change: Onewindow_V1_Change) throws {
    let key = RecordKey(collection: change.collection, id: change.recordID)
    guard !key.collection.isEmpty, !key.id.isEmpty else {
      throw SyncClientError.protocolViolation("a change without collection or record id")
    }
    switch change.kind {
    case .upsert:
      var values: [String: SyncValue] = [:]
      var stamps: [String: HLCStamp] = [:]
      do {
        for (name, value) in change.fields {
          guard let stamp = change.stamps[name] else {
            throw SyncClientError.protocolViolation("change \(key) has no stamp for field \(name)")
          }
          values[name] = try value.domain(field: "fields.\(name)")
          stamps[name] = try stamp.domain(field: "stamps.\(name)")
        }
      } catch let error as ValidationError {
        throw SyncClientError.protocolViolation("change \(key): \(error.description)")
      }
      self.init(key: key, version: change.version, ownerID: change.ownerID, kind: .upsert(values: values, stamps: stamps))
    case .delete:
      self.init(key: key, version: change.version, ownerID: change.ownerID, kind: .delete)
    case .unspecified, .UNRECOGNIZED:
      throw SyncClientError.protocolViolation("change \(key) has an unknown kind \(change.kind.rawValue)")
    }
  }
}

/// A batch of server changes to apply to the replica in one transaction with its cursor: a
/// Pull page or a Watch event.
public struct ServerPage: Sendable, Equatable {
  public enum Source: Sendable, Equatable {
    /// A Pull page; `hasMore` false ends the pull (and completes a reset snapshot).
    case pull(hasMore: Bool)
    /// A Watch event: never ends a reset, and is refused while one is in progress.
    case watch
  }

  public var source: Source
  public var changes: [ServerChange]
  /// The cursor after this page.
  public var cursor: String
  /// The device's last mutation id the server processed (0: not reported). Its effects are in
  /// this page or earlier ones.
  public var lastMutationID: Int64
  public var serverClock: HLCStamp?

  public init(source: Source, changes: [ServerChange], cursor: String, lastMutationID: Int64 = 0, serverClock: HLCStamp? = nil) {
    self.source = source
    self.changes = changes
    self.cursor = cursor
    self.lastMutationID = lastMutationID
    self.serverClock = serverClock
  }

  public init(_ response: Onewindow_V1_PullResponse) throws {
    self.init(
      source: .pull(hasMore: response.hasMore_p), changes: try response.changes.map(ServerChange.init),
      cursor: response.cursor, lastMutationID: response.lastMutationID,
      serverClock: try Self.clock(response.hasServerClock ? response.serverClock : nil))
  }

  public init(_ event: Onewindow_V1_WatchEvent) throws {
    self.init(
      source: .watch, changes: try event.changes.map(ServerChange.init), cursor: event.cursor,
      serverClock: try Self.clock(event.hasServerClock ? event.serverClock : nil))
  }

  static func clock(_ stamp: Onewindow_V1_HlcStamp?) throws -> HLCStamp? {
    guard let stamp else { return nil }
    do { return try stamp.domain(field: "server_clock") } catch {
      throw SyncClientError.protocolViolation(error.description)
    }
  }
}

/// What applying a page did.
public enum PageOutcome: Sendable, Equatable {
  case applied(AppliedPage)
  /// The stored cursor is no longer the one the page was requested after (another engine or
  /// process applied pages meanwhile); nothing was changed. Request again from `current`.
  case cursorMoved(current: String)
  /// A Watch event arrived while a reset snapshot is incomplete; nothing was changed. Pull.
  case resetInProgress
}

public struct AppliedPage: Sendable, Equatable {
  public var upserts = 0
  public var deletes = 0
  /// Pending mutations retired because the server state now holds their effect.
  public var acknowledged = 0
  /// Records removed by the end of a reset because the snapshot no longer contained them.
  public var purged = 0
  /// The reset this page completed, if any.
  public var completedReset: SyncResetReason?
  /// Records whose server state changed, sorted.
  public var changed: [RecordKey] = []

  public init() {}
}
