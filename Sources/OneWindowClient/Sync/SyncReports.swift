import OneWindowCore

/// What a push did, per outcome, for people and scripts.
public struct PushReport: Sendable, Equatable, Codable {
  public struct Merged: Sendable, Equatable, Codable {
    public var mutationID: Int64
    public var record: RecordKey
    /// Fields whose edit lost to a newer one.
    public var lostFields: [String]
  }

  public struct Conflicted: Sendable, Equatable, Codable {
    public var mutationID: Int64
    public var record: RecordKey
    /// Set for manual-policy collections: the conflict to resolve.
    public var conflictID: String?
    public var message: String
  }

  public struct Rejected: Sendable, Equatable, Codable {
    public var mutationID: Int64
    public var record: RecordKey
    /// `MutationResult.Reason` raw value (`invalid`, `deleted`, …), or `unspecified`.
    public var reason: String
    public var message: String
  }

  /// Mutations sent, counting resends.
  public var sent = 0
  public var applied = 0
  public var merged: [Merged] = []
  public var conflicts: [Conflicted] = []
  public var rejected: [Rejected] = []
  /// Results the server had stored from an earlier push (the answer to it was lost).
  public var replayed = 0
  /// Edits whose stamp was too far ahead of server time and was replaced.
  public var clockClamped = 0
  /// The server's last processed mutation id of this device after the push.
  public var lastMutationID: Int64 = 0
  /// Set after the server was restored from a backup: this device's mutation ids from here up
  /// to the first one this push sent had been acknowledged before the restore and are gone
  /// (their edits must be made again). Unsent edits are never lost this way.
  public var lostFromMutationID: Int64?

  public init() {}

  mutating func add(_ result: MutationResult, for mutation: PendingMutation) {
    if result.replayed { replayed += 1 }
    if result.clockClamped { clockClamped += 1 }
    switch result.outcome {
    case .applied: applied += 1
    case .merged: merged.append(Merged(mutationID: result.mutationID, record: mutation.key, lostFields: result.lostFields))
    case .conflict:
      conflicts.append(Conflicted(
        mutationID: result.mutationID, record: mutation.key, conflictID: result.conflictID, message: result.message ?? ""))
    case .rejected:
      rejected.append(Rejected(
        mutationID: result.mutationID, record: mutation.key, reason: result.reason?.rawValue ?? "unspecified",
        message: result.message ?? ""))
    }
  }
}

/// What a pull did.
public struct PullReport: Sendable, Equatable, Codable {
  public var pages = 0
  public var upserts = 0
  public var deletes = 0
  /// Pending mutations retired because their effect arrived.
  public var acknowledged = 0
  /// Records removed at the end of a reset (no longer visible to this account).
  public var purged = 0
  /// Set when the server required a reset during this pull (or one was resumed).
  public var reset: SyncResetReason?
  /// The cursor after the pull.
  public var cursor = ""

  public init() {}

  public var changes: Int { upserts + deletes }

  mutating func add(_ page: AppliedPage) {
    pages += 1
    upserts += page.upserts
    deletes += page.deletes
    acknowledged += page.acknowledged
    purged += page.purged
    if let completed = page.completedReset { reset = completed }
  }
}

/// A push followed by a pull.
public struct SyncReport: Sendable, Equatable, Codable {
  public var push: PushReport
  public var pull: PullReport

  public init(push: PushReport, pull: PullReport) {
    self.push = push
    self.pull = pull
  }
}

/// One collection compared between the replica's server state and the server.
public struct CollectionVerification: Sendable, Equatable, Codable {
  public var collection: String
  public var localCount: Int
  public var localChecksum: String
  public var serverCount: Int64
  public var serverChecksum: String

  public var matches: Bool { Int64(localCount) == serverCount && localChecksum == serverChecksum }
}

public struct VerifyReport: Sendable, Equatable, Codable {
  public var collections: [CollectionVerification]
  /// The server cursor the checksums describe.
  public var cursor: String
  /// The replica held exactly the state the server checksummed. False when changes kept
  /// arriving between the checksum and the pull that followed it; a mismatch may then be a race.
  public var consistent: Bool

  public var allMatch: Bool { collections.allSatisfy(\.matches) }
}

/// What `SyncEngine.watch` reports as it goes.
public enum WatchActivity: Sendable, Equatable {
  /// The pull before (re)watching finished: the replica is current.
  case caughtUp(PullReport)
  /// A live event with changes was applied.
  case applied(AppliedPage)
  case heartbeat
  /// The periodic push sent queued edits.
  case pushed(PushReport)
  case pushFailed(String)
  /// The stream ended or failed; watching resumes after `after`.
  case reconnecting(after: Duration, reason: String)
}
