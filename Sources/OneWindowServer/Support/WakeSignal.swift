import Synchronization

/// Wakes a background loop early (new work was committed) instead of waiting for its next
/// timed pass. Kicks while the loop is busy collapse into one. One waiter at a time.
final class WakeSignal: Sendable {
  private struct State {
    var pending = false
    var generation: UInt64 = 0
    var timedOut = false
    var waiter: CheckedContinuation<Void, Never>?
  }

  private let state = Mutex(State())

  init() {}

  func kick() {
    let waiter = state.withLock { s in
      let w = s.waiter
      s.waiter = nil
      if w == nil { s.pending = true }
      return w
    }
    waiter?.resume()
  }

  /// Returns after a kick or `timeout`, whichever comes first (at once if a kick is pending),
  /// or when the calling task is cancelled.
  func wait(upTo timeout: Duration) async {
    let generation: UInt64? = state.withLock { s in
      if s.pending {
        s.pending = false
        return nil
      }
      s.generation &+= 1
      s.timedOut = false
      return s.generation
    }
    guard let generation else { return }
    let timer = Task {
      guard (try? await Task.sleep(for: timeout)) != nil else { return }
      self.expire(generation)
    }
    defer { timer.cancel() }
    await withTaskCancellationHandler {
      await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
        let resumeNow = state.withLock { s -> Bool in
          if s.pending || s.timedOut || Task.isCancelled {
            s.pending = false
            return true
          }
          s.waiter = c
          return false
        }
        if resumeNow { c.resume() }
      }
    } onCancel: {
      self.expire(generation)
    }
  }

  private func expire(_ generation: UInt64) {
    let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
      guard s.generation == generation else { return nil }
      s.timedOut = true
      let w = s.waiter
      s.waiter = nil
      return w
    }
    waiter?.resume()
  }
}
