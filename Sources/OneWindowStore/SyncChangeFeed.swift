import Foundation
import Synchronization

/// An in-process broadcaster of committed sync changes. The store publishes after each commit,
/// in commit order; each listener gets its own callback. Callbacks must be quick and never
/// block (they typically yield into an `AsyncStream`).
public final class SyncChangeFeed: Sendable {
  public typealias Listener = @Sendable (CommittedChanges) -> Void

  private let listeners = Mutex<(next: UInt64, byID: [UInt64: Listener])>((0, [:]))

  public init() {}

  /// Registers a listener; keep the token to cancel it.
  public func subscribe(_ listener: @escaping Listener) -> UInt64 {
    listeners.withLock { state in
      state.next += 1
      state.byID[state.next] = listener
      return state.next
    }
  }

  public func cancel(_ token: UInt64) {
    _ = listeners.withLock { $0.byID.removeValue(forKey: token) }
  }

  public var listenerCount: Int { listeners.withLock { $0.byID.count } }

  public func publish(_ changes: CommittedChanges) {
    let current = listeners.withLock { Array($0.byID.values) }
    for listener in current { listener(changes) }
  }
}
