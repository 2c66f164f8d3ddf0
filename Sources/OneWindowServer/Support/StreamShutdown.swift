import Synchronization

/// Ends long-lived server streams when the server begins a graceful shutdown: in-flight unary
/// calls finish by themselves, but a Watch would otherwise keep the server waiting forever.
final class StreamShutdown: Sendable {
  private let state = Mutex<(closed: Bool, next: UInt64, finishers: [UInt64: @Sendable () -> Void])>((false, 0, [:]))

  /// Registers `finish` (called once at shutdown). Returns nil when shutdown already began.
  func register(_ finish: @escaping @Sendable () -> Void) -> UInt64? {
    state.withLock { s in
      guard !s.closed else { return nil }
      s.next += 1
      s.finishers[s.next] = finish
      return s.next
    }
  }

  func unregister(_ token: UInt64) {
    _ = state.withLock { $0.finishers.removeValue(forKey: token) }
  }

  var isClosed: Bool { state.withLock { $0.closed } }

  func close() {
    let finishers = state.withLock { s -> [@Sendable () -> Void] in
      s.closed = true
      defer { s.finishers = [:] }
      return Array(s.finishers.values)
    }
    for finish in finishers { finish() }
  }
}
