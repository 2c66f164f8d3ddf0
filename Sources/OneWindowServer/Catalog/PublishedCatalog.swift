import Logging
import Synchronization
import OneWindowAPI
import OneWindowCore
import OneWindowStore

/// Read-mostly cache of what the public sees: published (and withdrawn, for reads by code) items
/// with their wire messages prebuilt, so public reads never touch the database. Every catalog
/// write reloads it after committing. Reloads are ticketed: a slower reload that started earlier
/// never replaces a newer snapshot.
///
/// Several nodes: a node that wrote rings the catalog doorbell (`reloadAfterWrite`); the others
/// reload when they hear it, when their doorbell listener reconnects, and every
/// `pollInterval` in case a doorbell was lost (the writer died between commit and ring).
final class PublishedCatalog: Sendable {
  struct Snapshot: Sendable {
    /// Published items sorted by code (listings).
    var published: [ServiceItem] = []
    /// Published and withdrawn items by code (reads).
    var messages: [String: Onewindow_V1_ServiceItem] = [:]
    var summaries: [String: Onewindow_V1_ServiceItemSummary] = [:]
    var departments: [Department] = []
    var departmentNames: [String: String] = [:]
  }

  private let store: any CatalogStore
  private let doorbells: any Doorbells
  private let logger: Logger
  private let state = Mutex<(installed: UInt64, issued: UInt64, snapshot: Snapshot)>((0, 0, Snapshot()))
  private let following = Mutex<(token: UInt64, poll: Task<Void, Never>?)?>(nil)

  /// How often a node sharing its database reloads without a doorbell.
  static let pollInterval: Duration = .seconds(30)

  init(store: any CatalogStore, doorbells: any Doorbells = SilentDoorbells(), logger: Logger = Logger(label: "onewindow")) {
    self.store = store
    self.doorbells = doorbells
    self.logger = logger
  }

  /// Reloads after a catalog write committed on this node, and tells the other nodes.
  func reloadAfterWrite() async throws {
    try await reload()
    if doorbells.isShared { await doorbells.ring(.catalog, "") }
  }

  /// Starts following other nodes' catalog writes (nothing to follow on the embedded engine).
  func follow() {
    guard doorbells.isShared else { return }
    let token = doorbells.observe(.catalog) { [weak self] _ in
      Task { await self?.reloadLoggingFailure() }
    }
    let poll = Task { [weak self] in
      while !Task.isCancelled {
        try? await Task.sleep(for: Self.pollInterval)
        guard !Task.isCancelled else { return }
        await self?.reloadLoggingFailure()
      }
    }
    following.withLock { $0 = (token, poll) }
  }

  /// Stops following (server shutdown).
  func stopFollowing() {
    guard let f = following.withLock({ f -> (token: UInt64, poll: Task<Void, Never>?)? in defer { f = nil }; return f }) else { return }
    doorbells.cancel(f.token)
    f.poll?.cancel()
  }

  private func reloadLoggingFailure() async {
    do {
      try await reload()
    } catch {
      logger.warning("reloading the published catalog failed; the next doorbell or poll retries",
        metadata: ["error": "\(String(reflecting: type(of: error)))"])
    }
  }

  var snapshot: Snapshot { state.withLock { $0.snapshot } }

  func reload() async throws {
    let ticket = state.withLock { s -> UInt64 in
      s.issued += 1
      return s.issued
    }
    let departments = try await store.departments()
    let items = try await store.items(statuses: [.published, .withdrawn])
    var next = Snapshot()
    next.departments = departments
    next.departmentNames = Dictionary(departments.map { ($0.code, $0.name) }, uniquingKeysWith: { a, _ in a })
    for item in items {
      let department = next.departmentNames[item.spec.departmentCode] ?? ""
      next.messages[item.spec.code] = Onewindow_V1_ServiceItem(item, departmentName: department)
      next.summaries[item.spec.code] = Onewindow_V1_ServiceItemSummary(item, departmentName: department)
      if item.status == .published { next.published.append(item) }
    }
    state.withLock { s in
      if ticket > s.installed {
        s.installed = ticket
        s.snapshot = next
      }
    }
  }
}
