import Foundation
import OneWindowAPI
import OneWindowCore
import Synchronization
import Testing
@testable import OneWindowClient

/// A wall clock the test moves by hand.
final class TestClock: WallClock {
  private let current: Mutex<Date>

  init(_ start: Date = Date(timeIntervalSince1970: 1_800_000_000)) { current = Mutex(start) }

  func now() -> Date { current.withLock { $0 } }

  func advance(_ seconds: TimeInterval) { current.withLock { $0 += seconds } }
}

/// A replica file in its own temporary directory, removed afterwards.
struct TemporaryReplica {
  let directory: URL
  let clock = TestClock()
  var path: String { directory.appendingPathComponent("replica.sqlite").path }

  init() throws {
    directory = FileManager.default.temporaryDirectory.appendingPathComponent("ow-replica-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
  }

  func open() throws -> SyncReplica { try SyncReplica(path: path, clock: clock) }

  func remove() { try? FileManager.default.removeItem(at: directory) }
}

/// Runs `body` with a fresh replica, closing and deleting it afterwards.
func withReplica<T>(_ body: (SyncReplica, TemporaryReplica) async throws -> T) async throws -> T {
  let file = try TemporaryReplica()
  defer { file.remove() }
  let replica = try file.open()
  do {
    let result = try await body(replica, file)
    try? await replica.close()
    return result
  } catch {
    try? await replica.close()
    throw error
  }
}

let serverStamp = HLCStamp(millis: 1_700_000_000_000, counter: 0, node: "server")

/// A pulled upsert: the record's whole state, every field stamped by the server.
func upsert(
  _ collection: String, _ id: String, version: Int64, _ fields: [String: SyncValue], owner: String = "acct-1"
) -> Onewindow_V1_Change {
  Onewindow_V1_Change(
    collection: collection, id: id, ownerID: owner,
    state: RecordState(fields: fields.mapValues { FieldState(value: $0, stamp: serverStamp, changedAt: version) }, version: version))
}

func tombstone(_ collection: String, _ id: String, version: Int64) -> Onewindow_V1_Change {
  Onewindow_V1_Change(
    collection: collection, id: id, ownerID: "acct-1",
    state: RecordState(fields: [:], version: version, deleted: true, deletedStamp: serverStamp))
}

func pullPage(
  _ changes: [Onewindow_V1_Change], cursor: String, hasMore: Bool = false, lastMutationID: Int64 = 0
) -> Onewindow_V1_PullResponse {
  .with {
    $0.changes = changes
    $0.cursor = cursor
    $0.hasMore_p = hasMore
    $0.lastMutationID = lastMutationID
    $0.serverClock = Onewindow_V1_HlcStamp(serverStamp)
  }
}

extension SyncReplica {
  /// Applies a hand-made Pull page after the stored cursor, as the engine does.
  @discardableResult
  func applyPull(_ response: Onewindow_V1_PullResponse, sourceLocation: SourceLocation = #_sourceLocation) async throws -> AppliedPage {
    let outcome = try await apply(ServerPage(response), after: try await cursor())
    guard case .applied(let applied) = outcome else {
      Issue.record("page not applied: \(outcome)", sourceLocation: sourceLocation)
      return AppliedPage()
    }
    return applied
  }

  func fields(_ collection: String, _ id: String) async throws -> [String: SyncValue]? {
    try await get(collection: collection, id: id)?.fields
  }
}

let favorites = SyncCollections.favorites.name
let preferences = SyncCollections.preferences.name

func newID() -> String { ULID.make() }
