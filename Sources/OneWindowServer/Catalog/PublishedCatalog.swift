import Synchronization
import OneWindowAPI
import OneWindowCore
import OneWindowStore

/// Read-mostly cache of what the public sees: published (and withdrawn, for reads by code) items
/// with their wire messages prebuilt, so public reads never touch the database. Every catalog
/// write reloads it after committing. Reloads are ticketed: a slower reload that started earlier
/// never replaces a newer snapshot.
///
/// Single-process only: a multi-node deployment (PostgreSQL) would reload on a change
/// notification (LISTEN/NOTIFY) instead of after its own writes.
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
  private let state = Mutex<(installed: UInt64, issued: UInt64, snapshot: Snapshot)>((0, 0, Snapshot()))

  init(store: any CatalogStore) {
    self.store = store
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
