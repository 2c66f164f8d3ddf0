import GRPCCore
import OneWindowAPI
import OneWindowCore

/// Live sync: catch up with a pull, then apply Watch events as they come, reconnecting on
/// transport failures and resetting (through a pull) when the server ends the stream with
/// FAILED_PRECONDITION.
extension SyncEngine {
  /// Runs until the calling task is cancelled. With `pushEvery`, the queue is also pushed at
  /// the start and then at that interval while it is not empty, so edits made meanwhile (by
  /// this app or another process on the same replica) reach the server; their effects come
  /// back as watch events.
  ///
  /// Throws only for failures a retry cannot fix: refused credentials or permissions, a
  /// damaged replica, or a protocol violation.
  public func watch(
    pushEvery: Duration? = nil, onEvent: @escaping @Sendable (WatchActivity) async -> Void
  ) async throws {
    try await withThrowingTaskGroup(of: Void.self) { group in
      if let pushEvery {
        group.addTask { await self.pushPeriodically(every: pushEvery, onEvent: onEvent) }
      }
      group.addTask { try await self.watchLoop(onEvent: onEvent) }
      // The watch loop ends first (the pusher only stops when cancelled); stop the pusher too.
      defer { group.cancelAll() }
      try await group.next()
    }
  }

  /// Codes worth retrying: the server or the network may recover.
  static func isTransient(_ code: RPCError.Code) -> Bool {
    switch code {
    case .unavailable, .unknown, .internalError, .deadlineExceeded, .resourceExhausted, .aborted, .cancelled: true
    default: false
    }
  }

  private func watchLoop(onEvent: @escaping @Sendable (WatchActivity) async -> Void) async throws {
    var failures = 0
    while !Task.isCancelled {
      let started = ContinuousClock.now
      var reason: String
      do {
        await onEvent(.caughtUp(try await pull()))
        try await stream(onEvent: onEvent)
        reason = "the server ended the stream"
      } catch {
        if Task.isCancelled || error is CancellationError { return }
        switch error {
        case let restart as WatchRestart: reason = restart.reason
        case let rpc as RPCError where rpc.code == .failedPrecondition: reason = "the server requires a reset"
        case let rpc as RPCError where Self.isTransient(rpc.code): reason = Self.describe(rpc)
        default: throw error
        }
      }
      // A stream that lived a while was healthy: start the backoff over. The first retry is
      // immediate (a reset or a server restart needs no wait); repeated failures back off.
      if ContinuousClock.now - started > .seconds(10) { failures = 0 }
      failures += 1
      let delay = failures == 1 ? Duration.zero : backoff(failures - 1)
      await onEvent(.reconnecting(after: delay, reason: reason))
      do { try await Task.sleep(for: delay) } catch { return }
    }
  }

  /// One line for people: `CODE: message` for RPC errors.
  static func describe(_ error: any Error) -> String {
    if let rpc = error as? RPCError { return "\(rpc.code.canonicalName): \(rpc.message)" }
    return String(describing: error)
  }

  func backoff(_ attempt: Int) -> Duration {
    var delay = options.reconnectDelay
    for _ in 1..<max(1, attempt) where delay < options.maxReconnectDelay { delay *= 2 }
    return min(delay, options.maxReconnectDelay)
  }

  /// One Watch call from the stored cursor; each event is applied with its cursor in one
  /// transaction. Returns when the server ends the stream.
  private func stream(onEvent: @escaping @Sendable (WatchActivity) async -> Void) async throws {
    let cursor = try await replica.cursor()
    var callOptions = options.callOptions
    callOptions.timeout = nil  // a watch is meant to stay open
    let request = Onewindow_V1_WatchRequest.with {
      $0.cursor = cursor
      $0.collections = options.collections
    }
    let replica = replica
    try await client.watch(request, metadata: try await metadata(), options: callOptions) { response in
      var expected = cursor
      for try await event in response.messages {
        let page = try ServerPage(event)
        guard !page.cursor.isEmpty else {
          // A heartbeat without a position: only the clock moves (an empty cursor would mean
          // "from the beginning").
          if let clock = page.serverClock { try await replica.receive(serverClock: clock) }
          await onEvent(.heartbeat)
          continue
        }
        switch try await replica.apply(page, after: expected) {
        case .applied(let applied):
          expected = page.cursor
          await onEvent(page.changes.isEmpty ? .heartbeat : .applied(applied))
        case .cursorMoved:
          throw WatchRestart(reason: "another sync moved the replica's cursor")
        case .resetInProgress:
          throw WatchRestart(reason: "a reset is in progress")
        }
      }
    }
  }

  private func pushPeriodically(every interval: Duration, onEvent: @escaping @Sendable (WatchActivity) async -> Void) async {
    while !Task.isCancelled {
      do {
        if try await !replica.unsent(limit: 1).isEmpty {
          await onEvent(.pushed(try await push()))
        }
      } catch {
        if Task.isCancelled { return }
        await onEvent(.pushFailed(Self.describe(error)))
      }
      do { try await Task.sleep(for: interval) } catch { return }
    }
  }
}

/// Ends one Watch call so the loop pulls and watches again.
struct WatchRestart: Error {
  var reason: String
}
