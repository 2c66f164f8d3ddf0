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
  enum Standing: Sendable { case authorized, accessChanged, loggedOut }

  /// Re-checked at every heartbeat: a caller who logged out, or whose role or department
  /// changed, is cut off.
  let stillAuthorized: @Sendable () async throws -> Standing
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
            switch try await stillAuthorized() {
            case .authorized: break
            case .loggedOut: throw RPCError(code: .unauthenticated, message: "this login has ended (logged out or revoked): log in again")
            case .accessChanged:
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
            // One transaction can be large (a 1000-mutation push): send it in events within the
            // page limits. An intermediate event's cursor is its last record's sequence, which
            // is safe to resume from; the last one carries the transaction's end.
            let chunks = Self.chunks(visible)
            for (i, chunk) in chunks.enumerated() {
              let end = i == chunks.count - 1 ? batch.upTo : (chunk.last?.sequence ?? position)
              try await response.write(event(chunk, position: end, issuer: issuer, heartbeat: false))
            }
            position = batch.upTo
          }
        }
        // The stream ended because the server is shutting down (gRPC also marks the RPC cancelled
        // then, so cancellation cannot tell it from a client leaving; a gone client ignores this).
        if shutdown.isClosed { throw Self.shuttingDown }
      } onCancelRPC: {
        continuation.finish()
      }
    }
  }

  /// Splits records into events of at most a page's count and body bytes.
  static func chunks(_ records: [StoredRecord]) -> [[StoredRecord]] {
    var chunks: [[StoredRecord]] = []
    var current: [StoredRecord] = []
    var bytes = 0
    for record in records {
      if !current.isEmpty && (current.count == SyncService.maxPageSize || bytes + record.encodedSize > SyncService.maxPageBodyBytes) {
        chunks.append(current)
        current = []
        bytes = 0
      }
      current.append(record)
      bytes += record.encodedSize
    }
    if !current.isEmpty { chunks.append(current) }
    return chunks
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
