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
/// earlier refresh can never overwrite a newer one. Across nodes sharing a database, a refresh
/// holds the `catalog-sync` lease and reloads the snapshot under it: a node whose snapshot
/// predates another node's write can then never publish after (and over) that node's refresh.
actor CatalogSyncPublisher {
  let published: PublishedCatalog
  let store: any SyncStore
  let coordination: (leases: any Leases, node: String)?
  let clock: any WallClock
  let logger: Logger
  private var last: Task<Void, any Error>?

  /// The lease serializing refreshes across nodes, and how long one may hold it.
  static let lease = "catalog-sync"
  static let leaseDuration: Duration = .seconds(30)

  /// `coordination`: the leases and this node's id when other nodes share the database.
  init(
    published: PublishedCatalog, store: any SyncStore, coordination: (leases: any Leases, node: String)? = nil, clock: any WallClock,
    logger: Logger
  ) {
    self.published = published
    self.store = store
    self.coordination = coordination
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
    guard let (leases, node) = coordination else { return try await publish(published.snapshot) }
    let holder = "\(node)/\(UInt64.random(in: 0...UInt64.max))"
    let deadline = ContinuousClock.now + Self.leaseDuration
    while try await !leases.acquire(Self.lease, holder: holder, for: Self.leaseDuration) {
      // Another node is refreshing; a node that died holding it is waited out.
      guard ContinuousClock.now < deadline else { throw StoreError.failedPrecondition("another node holds the catalog-sync lease") }
      try await Task.sleep(for: .milliseconds(50))
    }
    do {
      try await published.reload()
      try await publish(published.snapshot)
    } catch {
      try? await leases.release(Self.lease, holder: holder)
      throw error
    }
    try await leases.release(Self.lease, holder: holder)
  }

  private func publish(_ snapshot: PublishedCatalog.Snapshot) async throws {
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
