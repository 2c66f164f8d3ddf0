import GRPCCore
import Logging
import OneWindowAPI
import OneWindowCore
import OneWindowStore

/// Service catalog: public reads from the in-memory published snapshot, administrator writes
/// to the store (then the snapshot reloads).
struct CatalogService: Onewindow_V1_CatalogService.SimpleServiceProtocol {
  let store: any CatalogStore
  let published: PublishedCatalog
  let syncPublisher: CatalogSyncPublisher
  let clock: any WallClock
  let logger: Logger

  static let maxListPageSize = 100
  static let maxSearchPageSize = 50

  func listDepartments(
    request: Onewindow_V1_ListDepartmentsRequest, context: ServerContext
  ) async throws -> Onewindow_V1_ListDepartmentsResponse {
    .with { $0.departments = published.snapshot.departments.map(Onewindow_V1_Department.init) }
  }

  func upsertDepartment(
    request: Onewindow_V1_UpsertDepartmentRequest, context: ServerContext
  ) async throws -> Onewindow_V1_Department {
    let department = try Department.validated(code: request.department.code, name: request.department.name)
    let saved = try await store.upsertDepartment(
      department, now: clock.now(), audit: AuditTrail.event("catalog.upsert_department", targetType: "department", targetID: department.code))
    try await published.reloadAfterWrite()
    await syncPublisher.refreshLoggingFailure()
    return Onewindow_V1_Department(saved)
  }

  func listItems(request: Onewindow_V1_ListItemsRequest, context: ServerContext) async throws -> Onewindow_V1_ListItemsResponse {
    let pageSize = try CatalogPaging.pageSize(Int(request.pageSize), max: Self.maxListPageSize)
    var filter = CatalogFilter(
      departmentCode: request.departmentCode.isEmpty ? nil : request.departmentCode,
      category: try ItemCategory.from(proto: request.category, field: "category"))
    if request.hasMaxOnsiteVisits {
      try Check.range(request.maxOnsiteVisits, field: "max_onsite_visits", 0...5)
      filter.maxOnsiteVisits = Int(request.maxOnsiteVisits)
    }
    if request.hasMinOnlineDepth {
      try Check.range(request.minOnlineDepth, field: "min_online_depth", 1...4)
      filter.minOnlineDepth = Int(request.minOnlineDepth)
    }
    let snapshot = published.snapshot
    if request.includeUnpublished {
      _ = try RequestContext.require([.admin])
      filter.statuses = [.draft, .published, .withdrawn]
      let all = try await store.items(statuses: filter.statuses)
      let page = try CatalogPaging.page(all, filter: filter, pageSize: pageSize, pageToken: request.pageToken)
      return .with {
        $0.items = page.elements.map { Onewindow_V1_ServiceItemSummary($0, departmentName: snapshot.departmentNames[$0.spec.departmentCode] ?? "") }
        $0.nextPageToken = page.nextPageToken
      }
    }
    let page = try CatalogPaging.page(snapshot.published, filter: filter, pageSize: pageSize, pageToken: request.pageToken)
    return .with {
      $0.items = page.elements.compactMap { snapshot.summaries[$0.spec.code] }
      $0.nextPageToken = page.nextPageToken
    }
  }

  func getItem(request: Onewindow_V1_GetItemRequest, context: ServerContext) async throws -> Onewindow_V1_ServiceItem {
    let code = try ServiceItemSpec.validateCode(request.code, field: "code")
    if let message = published.snapshot.messages[code] { return message }
    // Drafts are visible to administrators only; everyone else gets the same NOT_FOUND as for
    // a code that does not exist.
    if RequestContext.principal?.role == .admin, let item = try await store.item(code: code) {
      return Onewindow_V1_ServiceItem(item, departmentName: published.snapshot.departmentNames[item.spec.departmentCode] ?? "")
    }
    throw StoreError.notFound("item '\(code)'")
  }

  func searchItems(
    request: Onewindow_V1_SearchItemsRequest, context: ServerContext
  ) async throws -> Onewindow_V1_SearchItemsResponse {
    let query = try SearchQuery.parse(request.query)
    let pageSize = try CatalogPaging.pageSize(Int(request.pageSize), max: Self.maxSearchPageSize)
    var offset = 0
    if !request.pageToken.isEmpty {
      guard let bytes = Base64URL.decode(request.pageToken), let text = String(validating: bytes, as: UTF8.self),
            text.hasPrefix("o:"), let n = Int(text.dropFirst(2)), (1...10_000).contains(n)
      else { throw ValidationError("page_token", "is malformed; pass the next_page_token of the previous page") }
      offset = n
    }
    // One extra row tells whether another page exists.
    let codes = try await store.search(query, limit: pageSize + 1, offset: offset)
    let snapshot = published.snapshot
    return .with {
      $0.items = codes.prefix(pageSize).compactMap { snapshot.summaries[$0] }
      if codes.count > pageSize { $0.nextPageToken = Base64URL.encode(Array("o:\(offset + pageSize)".utf8)) }
    }
  }

  func createItem(request: Onewindow_V1_CreateItemRequest, context: ServerContext) async throws -> Onewindow_V1_ServiceItem {
    guard request.hasSpec else { throw ValidationError("spec", "is required") }
    let spec = try await validated(request.spec)
    let item = try await store.createItem(
      spec, now: clock.now(), audit: AuditTrail.event("catalog.item_created", targetType: "item", targetID: spec.code))
    return try await written(item, "created")
  }

  func updateItem(request: Onewindow_V1_UpdateItemRequest, context: ServerContext) async throws -> Onewindow_V1_ServiceItem {
    guard request.hasSpec else { throw ValidationError("spec", "is required") }
    guard request.expectedVersion > 0 else {
      throw ValidationError("expected_version", "is required: pass the version you last read")
    }
    let spec = try await validated(request.spec)
    let item = try await store.updateItem(
      spec, expectedVersion: request.expectedVersion, now: clock.now(),
      audit: AuditTrail.event("catalog.item_updated", targetType: "item", targetID: spec.code))
    return try await written(item, "updated")
  }

  func publishItem(request: Onewindow_V1_ChangeItemStatusRequest, context: ServerContext) async throws -> Onewindow_V1_ServiceItem {
    try await changeStatus(request, to: .published)
  }

  func withdrawItem(request: Onewindow_V1_ChangeItemStatusRequest, context: ServerContext) async throws -> Onewindow_V1_ServiceItem {
    try await changeStatus(request, to: .withdrawn)
  }

  func changeStatus(_ request: Onewindow_V1_ChangeItemStatusRequest, to status: ItemStatus) async throws -> Onewindow_V1_ServiceItem {
    let code = try ServiceItemSpec.validateCode(request.code, field: "code")
    guard request.expectedVersion >= 0 else { throw ValidationError("expected_version", "must not be negative") }
    let item = try await store.setItemStatus(
      code: code, to: status, expectedVersion: request.expectedVersion == 0 ? nil : request.expectedVersion, now: clock.now(),
      audit: AuditTrail.event("catalog.item_\(status.rawValue)", targetType: "item", targetID: code))
    return try await written(item, status.rawValue)
  }

  func validated(_ proto: Onewindow_V1_ServiceItemSpec) async throws -> ServiceItemSpec {
    let departments = Set(try await store.departments().map(\.code))
    return try ServiceItemSpec(proto: proto).validated(departments: departments)
  }

  func written(_ item: ServiceItem, _ what: String) async throws -> Onewindow_V1_ServiceItem {
    try await published.reloadAfterWrite()
    await syncPublisher.refreshLoggingFailure()
    logger.info("catalog item \(what)", metadata: ["code": "\(item.spec.code)", "version": "\(item.version)"])
    return Onewindow_V1_ServiceItem(item, departmentName: published.snapshot.departmentNames[item.spec.departmentCode] ?? "")
  }
}
