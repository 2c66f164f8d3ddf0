import Foundation
import PropertyBased
import Testing
@testable import OneWindowCore
@testable import OneWindowStore
import OneWindowTestSupport

/// A fresh database of `engine`, dropped afterwards.
func withTemporaryStore<T>(_ engine: TestEngine, _ body: (any Store) async throws -> T) async throws -> T {
  try await TestDatabase.withStore(engine, body)
}

let t0 = Date(timeIntervalSince1970: 1_800_000_000)

func spec(_ code: String, name: String = "居民身份证换领", department: String = "gongan") -> ServiceItemSpec {
  ServiceItemSpec(
    code: code, name: name, departmentCode: department, category: .administrativeConfirmation, target: .citizen,
    summary: "办理说明", acceptanceConditions: ["本市户籍居民"],
    processSteps: [ProcessStep(name: "受理", departmentCode: department, description: "")],
    statutoryLimitDays: 60, promisedLimitDays: 20, onlineDepth: 3, onsiteVisits: 1)
}

@Suite struct MigrationTests {
  @Test(arguments: TestEngine.enabled) func migratesAnEmptyDatabaseAndReopens(engine: TestEngine) async throws {
    let database = try await TestDatabase.create(engine)
    let opened = try await database.open()
    #expect(try await opened.store.appliedMigrations() == allMigrations)
    let tables = try await opened.store.inspection.tableNames()
    for table in ["accounts", "access_tokens", "refresh_tokens", "token_families", "login_codes", "outbox", "departments", "catalog_items", "sync_records", "cases", "payments"] {
      #expect(tables.contains(table), "missing table \(table)")
    }
    try await opened.close()
    // Reopening an up-to-date database applies nothing new.
    let again = try await database.open()
    #expect(try await again.store.appliedMigrations() == allMigrations)
    try await again.close()
    await database.drop()
  }
}

let allMigrations = [
  "v1-identity-catalog", "v2-sync", "v3-cases", "v4-notifications", "v5-payments", "v6-payment-checks",
  "v7-case-phone-check", "v8-account-region", "v9-audit-head", "v10-cluster", "v11-restore-epochs", "v12-audit-address",
]

@Suite struct CatalogStoreTests {
  @Test(arguments: TestEngine.enabled) func createUpdatePublishWithdrawWithVersions(engine: TestEngine) async throws {
    try await withTemporaryStore(engine) { store in
      let catalog = store.catalog
      _ = try await catalog.upsertDepartment(Department(code: "gongan", name: "市公安局"), now: t0)
      let created = try await catalog.createItem(spec("SF-GA-1"), now: t0)
      #expect(created.version == 1 && created.status == .draft)

      await #expect(throws: StoreError.alreadyExists(field: "spec.code")) {
        try await catalog.createItem(spec("SF-GA-1"), now: t0)
      }

      var changed = spec("SF-GA-1")
      changed.summary = "新的说明"
      let edit = AuditEvent(
        actorID: "admin-1", actorRole: "admin", actorDepartment: nil, action: "catalog.item_updated", targetType: "item",
        targetID: "SF-GA-1")
      let updated = try await catalog.updateItem(changed, expectedVersion: 1, now: t0, audit: edit)
      #expect(updated.version == 2)
      #expect(try await store.audit.entries(after: 0, limit: 10).map(\.action) == ["catalog.item_updated"])

      // A stale version is refused and changes nothing: neither the item nor the audit log.
      var stale = spec("SF-GA-1")
      stale.summary = "过期的修改"
      await #expect(throws: StoreError.versionConflict(current: 2)) {
        try await catalog.updateItem(stale, expectedVersion: 1, now: t0, audit: edit)
      }
      #expect(try await catalog.item(code: "SF-GA-1")?.spec.summary == "新的说明")
      #expect(try await store.audit.entries(after: 0, limit: 10).count == 1)

      let published = try await catalog.setItemStatus(code: "SF-GA-1", to: .published, expectedVersion: 2, now: t0)
      #expect(published.status == .published && published.version == 3 && published.publishedAt == t0)
      await #expect(throws: StoreError.failedPrecondition("item SF-GA-1 is already published")) {
        try await catalog.setItemStatus(code: "SF-GA-1", to: .published, expectedVersion: nil, now: t0)
      }
      await #expect(throws: StoreError.notFound("item 'SF-NONE'")) {
        try await catalog.setItemStatus(code: "SF-NONE", to: .published, expectedVersion: nil, now: t0)
      }
      #expect(try await catalog.items(statuses: [.published]).map(\.spec.code) == ["SF-GA-1"])
      _ = try await catalog.setItemStatus(code: "SF-GA-1", to: .withdrawn, expectedVersion: nil, now: t0)
      #expect(try await catalog.items(statuses: [.published]).isEmpty)
      #expect(try await catalog.item(code: "SF-GA-1")?.status == .withdrawn)
    }
  }

  @Test(arguments: TestEngine.enabled) func unknownDepartmentIsRefused(engine: TestEngine) async throws {
    try await withTemporaryStore(engine) { (store) async throws in
      await #expect(throws: StoreError.self) { try await store.catalog.createItem(spec("SF-X-1", department: "nowhere"), now: t0) }
      #expect(try await store.catalog.items(statuses: [.draft]).isEmpty)
    }
  }

  @Test(arguments: TestEngine.enabled) func searchFindsPublishedItemsByChineseSubstrings(engine: TestEngine) async throws {
    try await withTemporaryStore(engine) { store in
      let catalog = store.catalog
      _ = try await catalog.importBundle(
        departments: [Department(code: "gongan", name: "市公安局"), Department(code: "minzheng", name: "市民政局")],
        items: [spec("SF-1", name: "居民身份证换领"), spec("SF-2", name: "临时居民身份证申领"), spec("SF-3", name: "结婚登记", department: "minzheng")],
        publish: true, now: t0)
      _ = try await catalog.createItem(spec("SF-4", name: "身份证挂失（草稿）"), now: t0)

      let hits = try await catalog.search(SearchQuery.parse("身份证"), limit: 10, offset: 0)
      #expect(Set(hits) == ["SF-1", "SF-2"])  // the draft is not searchable
      #expect(try await catalog.search(SearchQuery.parse("结婚"), limit: 10, offset: 0) == ["SF-3"])
      #expect(try await catalog.search(SearchQuery.parse("本市户籍"), limit: 10, offset: 0).count == 3)  // body text
      #expect(try await catalog.search(SearchQuery.parse("护照签发"), limit: 10, offset: 0).isEmpty)
      // Paging by offset.
      let first = try await catalog.search(SearchQuery.parse("身份证"), limit: 1, offset: 0)
      let second = try await catalog.search(SearchQuery.parse("身份证"), limit: 1, offset: 1)
      #expect(first.count == 1 && second.count == 1 && first != second)
      // Withdrawn items leave the index.
      _ = try await catalog.setItemStatus(code: "SF-1", to: .withdrawn, expectedVersion: nil, now: t0)
      #expect(try await catalog.search(SearchQuery.parse("身份证"), limit: 10, offset: 0) == ["SF-2"])
      // Importing again creates nothing new.
      #expect(try await catalog.importBundle(departments: [], items: [spec("SF-1")], publish: true, now: t0) == 0)
    }
  }
}

@Suite struct IdentityStoreTests {
  func citizen(_ phone: String = "13800000001", id: String = "11010519491231002X") -> NewAccount {
    NewAccount(
      account: Account(id: ULID.make(at: t0), role: .citizen, displayName: "张三", phone: phone, idNumber: id, hasPassword: false, createdAt: t0),
      passwordHash: nil)
  }

  @Test(arguments: TestEngine.enabled) func uniqueIdentityNumbers(engine: TestEngine) async throws {
    try await withTemporaryStore(engine) { store in
      _ = try await store.identity.createAccount(citizen())
      await #expect(throws: StoreError.alreadyExists(field: "phone")) {
        try await store.identity.createAccount(citizen(id: "440524198001010013"))
      }
      await #expect(throws: StoreError.alreadyExists(field: "id_number")) {
        try await store.identity.createAccount(citizen("13800000002"))
      }
    }
  }

  @Test(arguments: TestEngine.enabled) func refreshRotationAndReuseRevokesTheFamily(engine: TestEngine) async throws {
    try await withTemporaryStore(engine) { store in
      let id = store.identity
      let account = try await id.createAccount(citizen())
      let first = IssuedTokens.issue(now: t0)
      let family = try await id.createSession(accountID: account.id, tokens: first, now: t0)
      #expect(try await id.authenticate(accessHash: first.accessHash, now: t0)?.sessionFamilyID == family)
      // Expired access token.
      #expect(try await id.authenticate(accessHash: first.accessHash, now: t0.addingTimeInterval(16 * 60)) == nil)

      let second = IssuedTokens.issue(now: t0)
      #expect(try await id.rotateRefresh(refreshHash: first.refreshHash, replacement: second, now: t0) == .rotated(accountID: account.id))
      #expect(try await id.authenticate(accessHash: second.accessHash, now: t0) != nil)
      // Using the first refresh token again: theft detected, the whole family dies.
      #expect(try await id.rotateRefresh(refreshHash: first.refreshHash, replacement: IssuedTokens.issue(now: t0), now: t0) == .reused)
      #expect(try await id.authenticate(accessHash: second.accessHash, now: t0) == nil)
      #expect(try await id.rotateRefresh(refreshHash: second.refreshHash, replacement: IssuedTokens.issue(now: t0), now: t0) == .invalid)
    }
  }

  @Test(arguments: TestEngine.enabled) func loginCodesAreSingleUseWithLimitedAttempts(engine: TestEngine) async throws {
    try await withTemporaryStore(engine) { store in
      let id = store.identity
      let policy = LoginCodePolicy()
      let phone = "13800000001"
      #expect(try await id.issueLoginCode(phone: phone, codeHash: OpaqueToken.hash("123456"), policy: policy, now: t0) == .issued(expiresAt: t0.addingTimeInterval(300)))
      #expect(try await id.issueLoginCode(phone: phone, codeHash: OpaqueToken.hash("654321"), policy: policy, now: t0.addingTimeInterval(10)) == .rateLimited(retryAfter: 50))
      #expect(try await id.checkLoginCode(phone: phone, codeHash: OpaqueToken.hash("000000"), policy: policy, now: t0) == .wrong(attemptsLeft: 4))
      #expect(try await id.checkLoginCode(phone: phone, codeHash: OpaqueToken.hash("123456"), policy: policy, now: t0) == .accepted)
      #expect(try await id.checkLoginCode(phone: phone, codeHash: OpaqueToken.hash("123456"), policy: policy, now: t0) == .noActiveCode)

      // A new code; five wrong attempts burn it, after which even the right code fails.
      let t1 = t0.addingTimeInterval(120)
      _ = try await id.issueLoginCode(phone: phone, codeHash: OpaqueToken.hash("111111"), policy: policy, now: t1)
      for left in [4, 3, 2, 1] {
        #expect(try await id.checkLoginCode(phone: phone, codeHash: OpaqueToken.hash("999999"), policy: policy, now: t1) == .wrong(attemptsLeft: left))
      }
      #expect(try await id.checkLoginCode(phone: phone, codeHash: OpaqueToken.hash("999999"), policy: policy, now: t1) == .exhausted)
      #expect(try await id.checkLoginCode(phone: phone, codeHash: OpaqueToken.hash("111111"), policy: policy, now: t1) == .exhausted)
      // Expiry.
      let t2 = t1.addingTimeInterval(120)
      _ = try await id.issueLoginCode(phone: phone, codeHash: OpaqueToken.hash("222222"), policy: policy, now: t2)
      #expect(try await id.checkLoginCode(phone: phone, codeHash: OpaqueToken.hash("222222"), policy: policy, now: t2.addingTimeInterval(301)) == .noActiveCode)
    }
  }

  @Test(arguments: TestEngine.enabled) func purgeRemovesOnlyExpiredCredentials(engine: TestEngine) async throws {
    try await withTemporaryStore(engine) { store in
      let id = store.identity
      let account = try await id.createAccount(citizen())
      let tokens = IssuedTokens.issue(now: t0)
      _ = try await id.createSession(accountID: account.id, tokens: tokens, now: t0)
      #expect(try await id.purgeExpired(now: t0) == 0)
      #expect(try await id.purgeExpired(now: t0.addingTimeInterval(31 * 24 * 3600)) >= 2)
      #expect(try await id.authenticate(accessHash: tokens.accessHash, now: t0) == nil)
    }
  }
}
