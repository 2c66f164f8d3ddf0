import Logging
import OneWindowAPI
import OneWindowCore
import OneWindowStore
import SwiftProtobuf

/// Keeps the public `catalog.items` collection equal to the published catalog, so the app can
/// browse every guide offline. Runs after every catalog write and at startup (which also repairs
/// any difference left by a crash between a catalog write and its sync publish).
///
/// Refreshes run one after another, each reading the latest installed snapshot, so a slow
/// earlier refresh can never overwrite a newer one.
actor CatalogSyncPublisher {
  let published: PublishedCatalog
  let store: any SyncStore
  let clock: any WallClock
  let logger: Logger
  private var last: Task<Void, any Error>?

  init(published: PublishedCatalog, store: any SyncStore, clock: any WallClock, logger: Logger) {
    self.published = published
    self.store = store
    self.clock = clock
    self.logger = logger
  }

  func refresh() async throws {
    let previous = last
    let task = Task {
      _ = await previous?.result
      try await self.publishSnapshot()
    }
    last = task
    try await task.value
  }

  /// Like `refresh`, but a failure is logged, not thrown: the catalog write that triggered it has
  /// committed, and the next write or restart reconciles.
  func refreshLoggingFailure() async {
    do {
      try await refresh()
    } catch {
      logger.error("publishing the catalog to sync failed", metadata: ["error": "\(String(reflecting: type(of: error)))"])
    }
  }

  /// Map entries in a fixed order, so an unchanged item encodes to the same bytes.
  static let deterministic: BinaryEncodingOptions = {
    var options = BinaryEncodingOptions()
    options.useDeterministicOrdering = true
    return options
  }()

  private func publishSnapshot() async throws {
    let snapshot = published.snapshot
    var records: [String: [String: SyncValue]] = [:]
    for item in snapshot.published {
      guard let message = snapshot.messages[item.spec.code] else { continue }
      records[item.spec.code] = [
        "code": .string(item.spec.code),
        "name": .string(item.spec.name),
        "department_code": .string(item.spec.departmentCode),
        "item_version": .int(item.version),
        "item": .bytes(try message.serializedBytes(options: Self.deterministic)),
      ]
    }
    let changed = try await store.publish(collection: SyncCollections.catalogItems.name, records: records, now: clock.now())
    if changed > 0 { logger.info("catalog published to sync", metadata: ["changed": "\(changed)"]) }
  }
}
