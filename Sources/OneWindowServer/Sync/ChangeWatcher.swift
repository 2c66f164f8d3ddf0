import GRPCCore
import OneWindowAPI
import OneWindowCore
import OneWindowStore

/// One Watch stream: catches up from the store, then forwards committed changes from the
/// store's feed as they commit, filtered to the caller's audiences, with heartbeats.
///
/// The feed is an optimisation over re-reading the store: each batch says which log range it
/// covers, so when a batch does not continue from the stream's position (the listener's buffer
/// overflowed, or the batch raced the catch-up), the watcher reads the gap from the store.
/// The stream's position therefore never skips a committed change.
struct ChangeWatcher {
  enum Input: Sendable {
    case changes(CommittedChanges)
    case heartbeat
  }

  let store: any SyncStore
  let principal: SyncPrincipal
  let collections: [String]?
  let settings: SyncSettings
  /// Re-checked at every heartbeat: a caller whose role or department changed is cut off.
  let stillAuthorized: @Sendable () async throws -> Bool
  let serverClock: @Sendable () -> Onewindow_V1_HlcStamp
  let shutdown: StreamShutdown

  /// Batches a slow stream may have queued before it falls back to reading the store.
  static let bufferedBatches = 1024

  func run(from cursor: SyncCursor?, response: RPCWriter<Onewindow_V1_WatchEvent>, context: ServerContext) async throws {
    let issuer = CursorIssuer(
      epoch: try await store.logState().epoch, fingerprint: principal.cursorFingerprint(collections: collections))
    let audiences = Set(principal.audiences)
    let wanted = collections.map(Set.init)
    let (inputs, continuation) = AsyncStream.makeStream(of: Input.self, bufferingPolicy: .bufferingOldest(Self.bufferedBatches))
    // Subscribe before catching up so nothing committed in between is lost.
    let token = store.feed.subscribe { continuation.yield(.changes($0)) }
    defer { store.feed.cancel(token) }
    guard let shutdownToken = shutdown.register({ continuation.finish() }) else { throw Self.shuttingDown }
    defer { shutdown.unregister(shutdownToken) }

    try await withThrowingTaskGroup(of: Void.self) { group in
      group.addTask { [heartbeat = settings.heartbeat] in
        while !Task.isCancelled {
          try await Task.sleep(for: heartbeat)
          continuation.yield(.heartbeat)
        }
      }
      defer { group.cancelAll() }
      try await withRPCCancellationHandler {
        var position = try await catchUp(
          from: cursor?.sequence ?? 0, liveOnly: cursor == nil, cursor: cursor, issuer: issuer, response: response)
        for await input in inputs {
          switch input {
          case .heartbeat:
            guard try await stillAuthorized() else {
              throw RPCError(
                code: .failedPrecondition,
                message: "cursor needs a reset (access_changed): your access changed; pull from your cursor, then watch again",
                metadata: ["reset-reason": .string(ResetReason.accessChanged.rawValue)])
            }
            // A batch dropped from a full buffer is noticed here at the latest.
            if try await store.logState().sequence > position {
              position = try await catchUp(from: position, liveOnly: false, cursor: nil, issuer: issuer, response: response)
            }
            try await response.write(event([], position: position, issuer: issuer, heartbeat: true))
          case .changes(let batch):
            if batch.upTo <= position { continue }
            if batch.after > position {
              position = try await catchUp(from: position, liveOnly: false, cursor: nil, issuer: issuer, response: response)
              continue
            }
            let visible = batch.records.filter { record in
              record.sequence > position && audiences.contains(record.audience)
                && (wanted?.contains(record.collection) ?? true)
            }
            position = batch.upTo
            if !visible.isEmpty {
              try await response.write(event(visible, position: position, issuer: issuer, heartbeat: false))
            }
          }
        }
        // The stream ended without the client going away: the server is shutting down.
        if shutdown.isClosed && !context.cancellation.isCancelled { throw Self.shuttingDown }
      } onCancelRPC: {
        continuation.finish()
      }
    }
  }

  static let shuttingDown = RPCError(code: .unavailable, message: "the server is shutting down: reconnect and watch again from your cursor")

  /// Sends everything after `sequence` from the store, page by page; returns the new position.
  private func catchUp(
    from sequence: Int64, liveOnly: Bool, cursor: SyncCursor?, issuer: CursorIssuer, response: RPCWriter<Onewindow_V1_WatchEvent>
  ) async throws -> Int64 {
    var position = sequence
    var snapshot = liveOnly
    while true {
      let page = try await store.pull(PullQuery(
        audiences: principal.audiences, collections: collections, after: position, liveOnly: snapshot,
        limit: SyncService.maxPageSize, maxBytes: SyncService.maxPageBodyBytes))
      if let reason = ResetReason.check(
        cursor, epoch: page.log.epoch, sequence: page.log.sequence, horizon: page.log.horizon, audiences: issuer.fingerprint)
      {
        throw RPCError(
          code: .failedPrecondition,
          message: "cursor needs a reset (\(reason.rawValue)): call Pull with it, follow the reset, then watch again",
          metadata: ["reset-reason": .string(reason.rawValue)])
      }
      if position > 0, page.log.horizon > position {
        throw RPCError(
          code: .failedPrecondition, message: "cursor needs a reset (cursor_expired): call Pull with it, then watch again",
          metadata: ["reset-reason": .string(ResetReason.cursorExpired.rawValue)])
      }
      position = page.position
      snapshot = false
      if !page.records.isEmpty || !page.hasMore {
        try await response.write(event(page.records, position: position, issuer: issuer, heartbeat: false))
      }
      if !page.hasMore { return position }
    }
  }

  private func event(_ records: [StoredRecord], position: Int64, issuer: CursorIssuer, heartbeat: Bool) -> Onewindow_V1_WatchEvent {
    .with {
      $0.changes = records.map(Onewindow_V1_Change.init)
      $0.cursor = SyncCursor(epoch: issuer.epoch, sequence: position, audiences: issuer.fingerprint).encoded
      $0.heartbeat = heartbeat
      $0.serverClock = serverClock()
    }
  }

}

/// What every cursor of one stream shares: the log's epoch and the caller's fingerprint.
struct CursorIssuer: Sendable {
  var epoch: UInt32
  var fingerprint: UInt32
}
