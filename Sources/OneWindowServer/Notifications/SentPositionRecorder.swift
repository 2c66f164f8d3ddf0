import OneWindowStore
import Synchronization

/// Collects how far closed streams sent (for the next stream's delivery counts) and writes them
/// in one transaction a moment later, so ten thousand streams closing at once (a network
/// blip) cost one write instead of ten thousand. Best effort: a crash only undercounts
/// redeliveries.
final class SentPositionRecorder: Sendable {
  private let store: any NotificationStore
  private let delay: Duration
  private let pending = Mutex<(positions: [SentPositions], scheduled: Bool)>(([], false))

  init(store: any NotificationStore, delay: Duration = .milliseconds(500)) {
    self.store = store
    self.delay = delay
  }

  func record(_ positions: SentPositions) {
    let schedule = pending.withLock { p -> Bool in
      p.positions.append(positions)
      defer { p.scheduled = true }
      return !p.scheduled
    }
    guard schedule else { return }
    Task { [self] in
      try? await Task.sleep(for: delay)
      await flush()
    }
  }

  /// Writes what is pending now.
  func flush() async {
    let batch = pending.withLock { p -> [SentPositions] in
      defer { p = ([], false) }
      return p.positions
    }
    guard !batch.isEmpty else { return }
    try? await store.recordSent(batch)
  }
}
