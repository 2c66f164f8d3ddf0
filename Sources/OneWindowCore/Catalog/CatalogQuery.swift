/// Filtering and cursor pagination of item listings: one pure function used for the public
/// (cached) listing and the administrators' full listing alike.
public struct CatalogFilter: Sendable, Equatable {
  public var departmentCode: String?
  public var category: ItemCategory?
  public var maxOnsiteVisits: Int?
  public var minOnlineDepth: Int?
  public var statuses: Set<ItemStatus>

  public init(
    departmentCode: String? = nil, category: ItemCategory? = nil, maxOnsiteVisits: Int? = nil,
    minOnlineDepth: Int? = nil, statuses: Set<ItemStatus> = [.published]
  ) {
    self.departmentCode = departmentCode; self.category = category; self.maxOnsiteVisits = maxOnsiteVisits
    self.minOnlineDepth = minOnlineDepth; self.statuses = statuses
  }

  public func matches(_ item: ServiceItem) -> Bool {
    guard statuses.contains(item.status) else { return false }
    if let d = departmentCode, item.spec.departmentCode != d { return false }
    if let c = category, item.spec.category != c { return false }
    if let v = maxOnsiteVisits, item.spec.onsiteVisits > v { return false }
    if let o = minOnlineDepth, item.spec.onlineDepth < o { return false }
    return true
  }
}

/// One page of a listing ordered by item code. The page token is the last code of the previous
/// page (base64url), so pages stay stable while items are added or withdrawn.
public struct Page<Element: Sendable>: Sendable {
  public var elements: [Element]
  public var nextPageToken: String
}

public enum CatalogPaging {
  public static let defaultPageSize = 20

  public static func pageSize(_ requested: Int, max: Int, field: String = "page_size") throws(ValidationError) -> Int {
    if requested == 0 { return min(defaultPageSize, max) }
    try Check.range(requested, field: field, 1...max)
    return requested
  }

  /// `items` must be sorted by code.
  public static func page(
    _ items: [ServiceItem], filter: CatalogFilter, pageSize: Int, pageToken: String
  ) throws(ValidationError) -> Page<ServiceItem> {
    var after: String?
    if !pageToken.isEmpty {
      guard let bytes = Base64URL.decode(pageToken), let code = String(validating: bytes, as: UTF8.self),
            !code.isEmpty
      else { throw ValidationError("page_token", "is malformed; pass the next_page_token of the previous page") }
      after = code
    }
    var start = items.startIndex
    if let after {
      start = items.partitionPoint { $0.spec.code > after }
    }
    var out: [ServiceItem] = []
    var index = start
    while index < items.endIndex, out.count < pageSize {
      if filter.matches(items[index]) { out.append(items[index]) }
      index += 1
    }
    // Another page exists only if a later item still matches.
    let hasMore = items[index...].contains(where: filter.matches)
    let next = hasMore ? out.last.map { Base64URL.encode(Array($0.spec.code.utf8)) } ?? "" : ""
    return Page(elements: out, nextPageToken: next)
  }
}

extension Array {
  /// First index whose element satisfies `belongs` (which must be false…then true over the array).
  func partitionPoint(where belongs: (Element) -> Bool) -> Int {
    var low = 0
    var high = count
    while low < high {
      let mid = (low + high) / 2
      if belongs(self[mid]) { high = mid } else { low = mid + 1 }
    }
    return low
  }
}
