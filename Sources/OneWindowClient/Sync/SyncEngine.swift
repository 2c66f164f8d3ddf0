import GRPCCore
import OneWindowAPI
import OneWindowCore

/// Moves changes between a `SyncReplica` and a OneWindow server: pushes the queue of local
/// edits, pulls server changes (rebasing the queue on top), watches live, verifies checksums.
///
/// Generic over the gRPC transport, so it runs wherever a `ClientTransport` does (HTTP/2 over
/// NIO on Linux and macOS, another transport on iOS). Credentials come from `metadata`, called
/// before every RPC so it can hand out a freshly refreshed token.
public struct SyncEngine<Transport: ClientTransport>: Sendable {
  public struct Options: Sendable {
    /// Collections to sync; empty: every collection the account can see.
    public var collections: [String]
    /// Changes per Pull page (1–1000).
    public var pageSize: Int32
    /// Mutations per Push (the server takes up to 1000).
    public var pushBatchSize: Int
    /// For unary calls; the default has a 30 s deadline so a stuck server cannot hang a sync.
    public var callOptions: CallOptions
    /// Watch reconnects after failures, doubling from the first to the second.
    public var reconnectDelay: Duration
    public var maxReconnectDelay: Duration

    public init(
      collections: [String] = [], pageSize: Int32 = 1000, pushBatchSize: Int = 500, callOptions: CallOptions? = nil,
      reconnectDelay: Duration = .seconds(1), maxReconnectDelay: Duration = .seconds(30)
    ) {
      self.collections = collections
      self.pageSize = pageSize
      self.pushBatchSize = pushBatchSize
      self.callOptions = callOptions ?? {
        var options = CallOptions.defaults
        options.timeout = .seconds(30)
        return options
      }()
      self.reconnectDelay = reconnectDelay
      self.maxReconnectDelay = maxReconnectDelay
    }
  }

  public let replica: SyncReplica
  public let client: Onewindow_V1_SyncService.Client<Transport>
  public var options: Options
  let metadata: @Sendable () async throws -> Metadata

  public init(
    replica: SyncReplica, client: Onewindow_V1_SyncService.Client<Transport>, options: Options = Options(),
    metadata: @escaping @Sendable () async throws -> Metadata
  ) {
    self.replica = replica
    self.client = client
    self.options = options
    self.metadata = metadata
  }

  /// Push, then pull (Replicache's order: the pull then brings back the pushed effects along
  /// with everyone else's changes, and retires the pushed mutations).
  public func sync() async throws -> SyncReport {
    let push = try await push()
    let pull = try await pull()
    return SyncReport(push: push, pull: pull)
  }

  /// Sends the queued mutations in id order, in batches, until none is left unsent.
  ///
  /// Every mutation up to the answer's `last_mutation_id` is processed, whatever its outcome.
  /// On a gap the server names the id it expected; the queue is resent from there, which must
  /// be the oldest unsent mutation — if the replica no longer holds it, the server lost
  /// acknowledged edits and `SyncClientError.mutationMissing` is thrown.
  public func push() async throws -> PushReport {
    var report = PushReport()
    var stalls = 0
    while true {
      try Task.checkCancellation()
      let batch = try await replica.unsent(limit: max(1, options.pushBatchSize))
      guard let first = batch.first else { break }
      let request = Onewindow_V1_PushRequest.with {
        $0.clientID = replica.clientID
        $0.mutations = batch.map(Onewindow_V1_Mutation.init)
      }
      let response = try await client.push(request, metadata: try await metadata(), options: options.callOptions)
      report.sent += batch.count
      let sent = Dictionary(batch.map { ($0.mutationID, $0) }, uniquingKeysWith: { a, _ in a })
      let results = response.results.compactMap(MutationResult.init(wire:))
      for result in results {
        if let mutation = sent[result.mutationID] { report.add(result, for: mutation) }
      }
      try await replica.recordPush(
        sent: batch, results: results, lastMutationID: response.lastMutationID,
        serverClock: try ServerPage.clock(response.hasServerClock ? response.serverClock : nil))
      report.lastMutationID = response.lastMutationID
      if response.lostFromID != 0 { report.lostFromMutationID = report.lostFromMutationID ?? response.lostFromID }

      if response.gapExpectedID != 0 {
        let oldest = try await replica.unsent(limit: 1).first?.mutationID
        guard oldest == response.gapExpectedID else {
          throw SyncClientError.mutationMissing(expected: response.gapExpectedID, oldestHeld: oldest)
        }
      }
      // Progress: the server processed at least the first mutation sent (or, after a gap, the
      // next loop resends from an earlier id). Twice without progress is a server fault.
      if response.lastMutationID >= first.mutationID {
        stalls = 0
      } else {
        stalls += 1
        guard stalls < 2 else { throw SyncClientError.pushStalled(lastProcessed: response.lastMutationID) }
      }
    }
    return report
  }

  /// Pulls pages until the server has nothing more, each applied in one transaction with its
  /// cursor. On a reset the replica starts over from a snapshot (see `SyncReplica.beginReset`),
  /// resuming one that an earlier pull left unfinished.
  public func pull() async throws -> PullReport {
    var report = PullReport()
    report.reset = try await replica.resetInProgress()
    var cursor = try await replica.cursor()
    var moved = 0
    while true {
      try Task.checkCancellation()
      let request = Onewindow_V1_PullRequest.with {
        $0.cursor = cursor
        $0.collections = options.collections
        $0.limit = options.pageSize
        $0.clientID = replica.clientID
      }
      let response = try await client.pull(request, metadata: try await metadata(), options: options.callOptions)
      if let reason = SyncResetReason(wire: response.reset) {
        guard !cursor.isEmpty else { throw SyncClientError.protocolViolation("a reset was requested for an empty cursor") }
        if let clock = try ServerPage.clock(response.hasServerClock ? response.serverClock : nil) {
          try await replica.receive(serverClock: clock)
        }
        try await replica.beginReset(reason, collections: options.collections)
        report.reset = reason
        cursor = ""
        continue
      }
      let page = try ServerPage(response)
      if response.hasMore_p, page.changes.isEmpty, page.cursor == cursor {
        throw SyncClientError.protocolViolation("a page with more to come made no progress")
      }
      switch try await replica.apply(page, after: cursor) {
      case .applied(let applied):
        report.add(applied)
        cursor = page.cursor
        guard response.hasMore_p else {
          report.cursor = cursor
          return report
        }
      case .cursorMoved(let current):
        // Another engine or process is pulling into the same replica; continue from its cursor.
        moved += 1
        guard moved < 5 else { throw SyncClientError.protocolViolation("the replica cursor keeps moving during a pull") }
        cursor = current
      case .resetInProgress:
        throw SyncClientError.protocolViolation("a pull page was refused as a watch event")
      }
    }
  }
}
