import Foundation
import OneWindowAPI
import OneWindowCore
import OneWindowStore
import SwiftProtobuf

/// The demo data set: the catalog in `Resources/demo-catalog.json` (a `CatalogBundle` in the
/// protobuf JSON mapping) and a fixed cast of demo accounts with freshly generated passwords.
public enum DemoData {
  /// Parses and validates the bundled catalog with the same rules as the admin RPCs.
  public static func catalog() throws -> (departments: [Department], items: [ServiceItemSpec]) {
    guard let url = Bundle.module.url(forResource: "demo-catalog", withExtension: "json") else {
      throw ValidationError("demo-catalog.json", "is missing from the server's resources")
    }
    return try parseBundle(Data(contentsOf: url))
  }

  /// Parses a `CatalogBundle` JSON document and validates every department and item.
  public static func parseBundle(_ json: Data) throws -> (departments: [Department], items: [ServiceItemSpec]) {
    let bundle = try Onewindow_V1_CatalogBundle(jsonUTF8Data: json)
    let departments = try bundle.departments.map { try Department.validated(code: $0.code, name: $0.name) }
    let codes = Set(departments.map(\.code))
    var seen = Set<String>()
    let items = try bundle.items.enumerated().map { i, proto in
      do {
        let spec = try ServiceItemSpec(proto: proto).validated(departments: codes)
        guard seen.insert(spec.code).inserted else { throw ValidationError("spec.code", "duplicates \(spec.code)") }
        return spec
      } catch let error as ValidationError {
        throw ValidationError("items[\(i)] (\(proto.code)) \(error.field)", error.reason)
      }
    }
    return (departments, items)
  }

  public struct Credential: Sendable {
    public var role: Role
    public var login: String
    public var password: String
    public var displayName: String
    public var note: String
  }

  public struct SeedResult: Sendable {
    public var departments: Int
    public var itemsCreated: Int
    /// Empty when accounts already existed (passwords are shown only once, at creation).
    public var credentials: [Credential]
  }

  /// Loads the catalog (published) and creates the demo accounts, unless they already exist.
  public static func seed(into store: any Store, now: Date = Date()) async throws -> SeedResult {
    let (departments, items) = try catalog()
    let created = try await store.catalog.importBundle(departments: departments, items: items, publish: true, now: now)
    if try await store.identity.credentials(login: "admin") != nil {
      return SeedResult(departments: departments.count, itemsCreated: created, credentials: [])
    }
    var credentials: [Credential] = []
    func staff(_ role: Role, _ username: String, _ name: String, _ department: String, _ note: String) async throws {
      let result = try await StaffAccounts.create(
        role: role, username: username, displayName: name, departmentCode: department, password: "",
        store: store.identity, catalog: store.catalog, now: now)
      credentials.append(Credential(role: role, login: username, password: result.generatedPassword ?? "", displayName: name, note: note))
    }
    try await staff(.admin, "admin", "平台管理员", "", "administrator")
    for d in departments {
      try await staff(.caseworker, "cw-\(d.code)", "\(d.name)窗口", d.code, "caseworker, \(d.name)")
    }
    var citizenIDs: [String] = []
    for (name, phone, first17) in [("张三", "13800000001", "11010519900307123"), ("李四", "13800000002", "31011519851122456")] {
      let password = StaffAccounts.generatePassword()
      let idNumber = first17 + String(ResidentIDNumber.checkCharacter(forFirst17: first17) ?? "0")
      let account = try await store.identity.createAccount(NewAccount(
        account: Account(
          id: ULID.make(at: now), role: .citizen, displayName: name, phone: phone, idNumber: idNumber,
          hasPassword: true, createdAt: now),
        passwordHash: try PasswordHashing.hash(password)))
      citizenIDs.append(account.id)
      credentials.append(Credential(role: .citizen, login: phone, password: password, displayName: name, note: "citizen (also logs in by SMS code)"))
    }
    let first17 = "91330100MA2H3K7Q5"
    let creditCode = first17 + String(CreditCode.checkCharacter(forFirst17: first17) ?? "0")
    let password = StaffAccounts.generatePassword()
    _ = try await store.identity.createAccount(NewAccount(
      account: Account(
        id: ULID.make(at: now), role: .enterprise, displayName: "示范市云帆科技有限公司", creditCode: creditCode,
        legalRepresentativeID: citizenIDs.first, hasPassword: true, createdAt: now),
      passwordHash: try PasswordHashing.hash(password)))
    credentials.append(Credential(role: .enterprise, login: creditCode, password: password, displayName: "示范市云帆科技有限公司", note: "enterprise, legal representative 张三"))
    return SeedResult(departments: departments.count, itemsCreated: created, credentials: credentials)
  }
}
