import Foundation
import OneWindowCore

/// Where the change log stands: its epoch (random per database), the last sequence assigned,
/// and the retention horizon (the highest sequence of a compacted tombstone: a cursor below it
/// may have missed a delete and must reset).
public struct SyncLogState: Sendable, Equatable {
  public var epoch: UInt32
  public var sequence: Int64
  public var horizon: Int64

  public init(epoch: UInt32, sequence: Int64, horizon: Int64) {
    self.epoch = epoch
    self.sequence = sequence
    self.horizon = horizon
  }
}

/// One push: a device's mutations in id order, with the caller and the rules to apply.
public struct PushBatch: Sendable {
  public var clientID: String
  public var principal: SyncPrincipal
  public var mutations: [IncomingMutation]
  public var rules: SyncWriteRules
  public var now: Date

  public init(clientID: String, principal: SyncPrincipal, mutations: [IncomingMutation], rules: SyncWriteRules, now: Date) {
    self.clientID = clientID
    self.principal = principal
    self.mutations = mutations
    self.rules = rules
    self.now = now
  }
}

public struct PushOutcome: Sendable, Equatable {
  /// One per mutation processed, in order (stops before a gap).
  public var results: [MutationResult]
  public var lastMutationID: Int64
  /// The id the server expected when a mutation skipped ahead.
  public var gapExpected: Int64?
  /// Set when the database was restored from a backup and this client's ids from here up to its
  /// first mutation in this push were acknowledged before the restore: their effects are gone.
  public var lostFrom: Int64?
  public var serverClock: HLCStamp

  public init(
    results: [MutationResult], lastMutationID: Int64, gapExpected: Int64?, lostFrom: Int64? = nil, serverClock: HLCStamp
  ) {
    self.results = results
    self.lastMutationID = lastMutationID
    self.gapExpected = gapExpected
    self.lostFrom = lostFrom
    self.serverClock = serverClock
  }
}

public struct PullQuery: Sendable {
  public var audiences: [String]
  /// nil: every collection.
  public var collections: [String]?
  /// Changes with a sequence above this.
  public var after: Int64
  /// A snapshot from the start: tombstones are not needed.
  public var liveOnly: Bool
  public var limit: Int
  /// A page ends before this many bytes of record bodies (at least one record per page).
  public var maxBytes: Int
  /// When set, the page also reports this client's last processed mutation id, if the client
  /// belongs to `accountID`.
  public var clientID: String?
  public var accountID: String

  public init(
    audiences: [String], collections: [String]?, after: Int64, liveOnly: Bool, limit: Int, maxBytes: Int,
    clientID: String? = nil, accountID: String = ""
  ) {
    self.audiences = audiences
    self.collections = collections
    self.after = after
    self.liveOnly = liveOnly
    self.limit = limit
    self.maxBytes = maxBytes
    self.clientID = clientID
    self.accountID = accountID
  }
}

public struct PullPage: Sendable {
  /// In sequence order; each record at most once, in its current state.
  public var records: [StoredRecord]
  /// The position to resume after: the last record's sequence when more remain, else the log's
  /// sequence when the page was read (so invisible changes are skipped once, not rescanned).
  public var position: Int64
  public var hasMore: Bool
  /// The log as of the page's read snapshot.
  public var log: SyncLogState
  /// The client's last processed mutation id, read in the same snapshot; only on the last page
  /// (before that, some effects of processed mutations may still be in later pages).
  public var lastMutationID: Int64?

  public init(records: [StoredRecord], position: Int64, hasMore: Bool, log: SyncLogState, lastMutationID: Int64?) {
    self.records = records
    self.position = position
    self.hasMore = hasMore
    self.log = log
    self.lastMutationID = lastMutationID
  }
}

/// Records written by one committed transaction, published in commit order: `after` is the log
/// sequence before the transaction and `upTo` after it, so a listener that sees an `after` above
/// its position knows it missed something and re-reads the store.
public struct CommittedChanges: Sendable {
  public var after: Int64
  public var upTo: Int64
  public var records: [StoredRecord]

  public init(after: Int64, upTo: Int64, records: [StoredRecord]) {
    self.after = after
    self.upTo = upTo
    self.records = records
  }
}

/// Persistence for synced records, the change log and device bookkeeping. Each method is one
/// transaction. Sequence numbers are assigned inside the writing transaction from a counter row
/// that every writer updates, so commit order equals sequence order and a reader's cursor can
/// never pass a change that commits later. (SQLite has one writer. A PostgreSQL backend keeps
/// the same guarantee by updating the same single counter row in each writing transaction: the
/// row lock serializes sync writers until commit. It would publish committed changes to other
/// nodes with LISTEN/NOTIFY.)
public protocol SyncStore: Sendable {
  /// Committed changes, live, in commit order (Watch is driven from here, not by polling).
  var feed: SyncChangeFeed { get }
  /// A reading of the server's hybrid logical clock for responses (never behind any stored stamp).
  func clockReading(now: Date) -> HLCStamp
  func logState() async throws -> SyncLogState
  /// Applies a push: already-processed ids answer from stored results, the next id is decided by
  /// `batch.rules` and applied, a gap stops. Effects, results and the client's last id commit
  /// together. `permissionDenied` when the client id belongs to another account.
  func push(_ batch: PushBatch) async throws -> PushOutcome
  func pull(_ query: PullQuery) async throws -> PullPage
  /// Per collection: the checksum of the live records in `audiences`, and the log position.
  func checksums(audiences: [String], collections: [String]?) async throws -> (sums: [String: ReplicaChecksum], log: SyncLogState)
  /// Live records of one collection in one audience (conflict listings).
  func liveRecords(collection: String, audience: String) async throws -> [StoredRecord]
  /// Settles an open conflict of `principal` (`notFound` otherwise): writes the chosen values to
  /// the record (unless it was deleted meanwhile) and tombstones the conflict. Returns the record.
  func resolveConflict(id: String, principal: SyncPrincipal, resolution: ConflictResolution, now: Date) async throws -> StoredRecord?
  /// Makes a server-written public collection hold exactly `records` (id → fields): changed
  /// records get a new version, missing ones a tombstone. Returns how many records changed.
  func publish(collection: String, records: [String: [String: SyncValue]], now: Date) async throws -> Int
  /// Removes tombstones and stored push results older than `before`, raising the horizon.
  func compact(before: Date) async throws -> (tombstones: Int, results: Int)
  /// After the database was restored from a backup (`onewindow restore-finish`, with every node
  /// stopped): a new random epoch, so every device's cursor resets (even one the restored log
  /// has since overtaken), and the mark that lets clients the restore set back continue past
  /// acknowledged ids it lost (`MutationOrder.rebased`). Returns the old and the new epoch.
  func startNewEpoch(now: Date) async throws -> (old: UInt32, new: UInt32)
}
