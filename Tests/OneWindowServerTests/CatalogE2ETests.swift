import Foundation
import GRPCCore
import OneWindowAPI
import OneWindowClientPosix
import OneWindowCore
import OneWindowServer
import Testing
import OneWindowTestSupport

func itemSpec(code: String = "SF-E2E-0001", name: String = "居民身份证换领") -> Onewindow_V1_ServiceItemSpec {
  .with {
    $0.code = code
    $0.name = name
    $0.departmentCode = "gongan"
    $0.category = .administrativeConfirmation
    $0.target = .citizen
    $0.summary = "居民身份证有效期满换领新证"
    $0.acceptanceConditions = ["本市户籍居民", "身份证有效期满或即将期满"]
    $0.materials = [.with { $0.name = "居民户口簿"; $0.form = .original; $0.copies = 1; $0.ecertSubstitutable = true; $0.required = true }]
    $0.processSteps = [.with { $0.name = "受理"; $0.departmentCode = "gongan" }, .with { $0.name = "制证"; $0.departmentCode = "gongan" }]
    $0.statutoryLimitDays = 60
    $0.promisedLimitDays = 20
    $0.fees = [.with { $0.name = "工本费"; $0.amountFen = 2000 }]
    $0.onlineDepth = 3
    $0.onsiteVisits = 1
    $0.formSchema.fields = [.with { $0.name = "reason"; $0.label = "换领原因"; $0.type = .choice; $0.required = true; $0.options = ["有效期满", "损坏"] }]
  }
}

@Suite struct CatalogE2ETests {
  @Test(arguments: TestEngine.enabled) func adminPublishesAndCitizensFindByThreeCharacterSubstring(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      let admin = try await env.adminSession()
      let auth = bearer(admin.accessToken)
      _ = try await env.catalog.upsertDepartment(.with { $0.department = .with { $0.code = "gongan"; $0.name = "市公安局" } }, metadata: auth)

      let draft = try await env.catalog.createItem(.with { $0.spec = itemSpec() }, metadata: auth)
      #expect(draft.status == .draft && draft.version == 1)
      #expect(draft.departmentName == "市公安局")

      // Drafts are invisible to the public (listing, reading and search).
      #expect(try await env.catalog.listItems(.init()).items.isEmpty)
      await expectRPCError(.notFound) { try await env.catalog.getItem(.with { $0.code = "SF-E2E-0001" }) }
      #expect(try await env.catalog.searchItems(.with { $0.query = "身份证" }).items.isEmpty)
      // …but administrators see them.
      #expect(try await env.catalog.getItem(.with { $0.code = "SF-E2E-0001" }, metadata: auth).status == .draft)
      #expect(try await env.catalog.listItems(.with { $0.includeUnpublished = true }, metadata: auth).items.count == 1)

      let published = try await env.catalog.publishItem(.with { $0.code = "SF-E2E-0001"; $0.expectedVersion = 1 }, metadata: auth)
      #expect(published.status == .published && published.version == 2)

      let citizen = try await env.citizenSession()
      let hits = try await env.catalog.searchItems(.with { $0.query = "身份证" }, metadata: bearer(citizen.accessToken))
      #expect(hits.items.map(\.code) == ["SF-E2E-0001"])
      #expect(hits.items.first?.totalFeeFen == 2000)
      // Anonymous too, and a 2-character query falls back to a substring scan.
      #expect(try await env.catalog.searchItems(.with { $0.query = "换领" }).items.map(\.code) == ["SF-E2E-0001"])
      #expect(try await env.catalog.searchItems(.with { $0.query = "户口簿" }).items.count == 1)  // material names are indexed
      let full = try await env.catalog.getItem(.with { $0.code = "SF-E2E-0001" })
      #expect(full.spec == itemSpec())

      // A stale update is ABORTED and changes nothing.
      var edited = itemSpec()
      edited.summary = "第一次修改"
      let updated = try await env.catalog.updateItem(.with { $0.spec = edited; $0.expectedVersion = 2 }, metadata: auth)
      #expect(updated.version == 3)
      var stale = itemSpec()
      stale.summary = "基于旧版本的修改"
      let conflict = await expectRPCError(.aborted) {
        try await env.catalog.updateItem(.with { $0.spec = stale; $0.expectedVersion = 2 }, metadata: auth)
      }
      #expect(conflict?.message.contains("version 3") == true)
      #expect(try await env.catalog.getItem(.with { $0.code = "SF-E2E-0001" }).spec.summary == "第一次修改")

      // Withdrawn: out of listings and search, still readable by code.
      _ = try await env.catalog.withdrawItem(.with { $0.code = "SF-E2E-0001" }, metadata: auth)
      #expect(try await env.catalog.listItems(.init()).items.isEmpty)
      #expect(try await env.catalog.searchItems(.with { $0.query = "身份证" }).items.isEmpty)
      #expect(try await env.catalog.getItem(.with { $0.code = "SF-E2E-0001" }).status == .withdrawn)
      await expectRPCError(.notFound) { try await env.catalog.getItem(.with { $0.code = "SF-NOPE" }) }
    }
  }

  @Test(arguments: TestEngine.enabled) func demoCatalogLoadsListsFiltersAndPages(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      let seeded = try await DemoData.seed(into: env.store)
      #expect(seeded.itemsCreated >= 50)
      #expect(seeded.departments >= 8)
      #expect(seeded.credentials.contains { $0.role == .admin })
      #expect(seeded.credentials.filter { $0.role == .citizen }.count == 2)
      #expect(seeded.credentials.contains { $0.role == .enterprise })
      // Demo credentials work.
      let admin = try #require(seeded.credentials.first { $0.role == .admin })
      let session = try await env.identity.loginWithPassword(.with { $0.login = admin.login; $0.password = admin.password })
      // The server's published cache is reloaded by any catalog write; do one.
      _ = try await env.catalog.upsertDepartment(.with { $0.department = .with { $0.code = "gongan"; $0.name = "示范市公安局" } }, metadata: bearer(session.accessToken))

      let departments = try await env.catalog.listDepartments(.init()).departments
      #expect(departments.count >= 8)

      var codes: [String] = []
      var token = ""
      repeat {
        let page = try await env.catalog.listItems(.with { $0.pageSize = 7; $0.pageToken = token })
        #expect(page.items.count <= 7)
        codes += page.items.map(\.code)
        token = page.nextPageToken
      } while !token.isEmpty && codes.count < 1000
      #expect(codes.count == seeded.itemsCreated)
      #expect(codes == codes.sorted())
      #expect(Set(codes).count == codes.count)

      let police = try await env.catalog.listItems(.with { $0.departmentCode = "gongan"; $0.pageSize = 100 })
      #expect(!police.items.isEmpty && police.items.allSatisfy { $0.departmentCode == "gongan" })
      let noVisit = try await env.catalog.listItems(.with { $0.maxOnsiteVisits = 0; $0.pageSize = 100 })
      #expect(noVisit.items.allSatisfy { $0.onsiteVisits == 0 })
      let licences = try await env.catalog.listItems(.with { $0.category = .administrativeLicense; $0.pageSize = 100 })
      #expect(!licences.items.isEmpty && licences.items.allSatisfy { $0.category == .administrativeLicense })

      let idCard = try await env.catalog.searchItems(.with { $0.query = "身份证" })
      #expect(idCard.items.contains { $0.name.contains("居民身份证换领") })
      // Search pages do not overlap.
      let p1 = try await env.catalog.searchItems(.with { $0.query = "申请"; $0.pageSize = 3 })
      #expect(p1.items.count == 3)
      try #require(!p1.nextPageToken.isEmpty, "申请 matches more than 3 demo items, so there must be a second page")
      let p2 = try await env.catalog.searchItems(.with { $0.query = "申请"; $0.pageSize = 3; $0.pageToken = p1.nextPageToken })
      #expect(!p2.items.isEmpty)
      #expect(Set(p1.items.map(\.code)).isDisjoint(with: p2.items.map(\.code)))
    }
  }

  @Test func demoCatalogFilePassesEveryValidationRule() throws {
    let (departments, items) = try DemoData.catalog()
    #expect(departments.count >= 8)
    #expect(items.count >= 50)
    #expect(Set(items.map(\.departmentCode)).count >= 8)
    #expect(items.contains { $0.processSteps.map(\.departmentCode).count > 1 && Set($0.processSteps.map(\.departmentCode)).count > 1 })
  }
}
