import Foundation
import Testing
@testable import OneWindowCore
@testable import OneWindowStore
import OneWindowTestSupport

/// Concurrency invariants of the identity store and the audit chain: each method is called 16
/// times at once on one store. On SQLite the single writer serialises them; on PostgreSQL the
/// store's locks must give the same outcome.
@Suite struct IdentityRaceTests {
  static let width = 16

  func citizen(_ phone: String, id: String) -> NewAccount {
    NewAccount(
      account: Account(id: ULID.make(at: t0), role: .citizen, displayName: "张三", phone: phone, idNumber: id, hasPassword: false, createdAt: t0),
      passwordHash: nil)
  }

  /// Runs `body` `width` times concurrently and returns the results.
  func concurrently<T: Sendable>(_ body: @escaping @Sendable (Int) async throws -> T) async throws -> [T] {
    try await withThrowingTaskGroup(of: T.self) { group in
      for i in 0..<Self.width { group.addTask { try await body(i) } }
      var out: [T] = []
      for try await value in group { out.append(value) }
      return out
    }
  }

  @Test(arguments: TestEngine.enabled) func concurrentRefreshWithOneTokenRotatesOnce(engine: TestEngine) async throws {
    try await withTemporaryStore(engine) { store in
      let id = store.identity
      let account = try await id.createAccount(citizen("13800000001", id: "11010519491231002X"))
      let first = IssuedTokens.issue(now: t0)
      _ = try await id.createSession(accountID: account.id, tokens: first, now: t0)
      let outcomes = try await concurrently { _ in
        try await id.rotateRefresh(refreshHash: first.refreshHash, replacement: IssuedTokens.issue(now: t0), now: t0)
      }
      // As SQLite serialises them: one rotates, the next is a reuse (the family is revoked),
      // and the rest find the family revoked.
      #expect(outcomes.filter { $0 == .rotated(accountID: account.id) }.count == 1)
      #expect(outcomes.filter { $0 == .reused }.count == 1)
      #expect(outcomes.filter { $0 == .invalid }.count == Self.width - 2)
      let issued = try await store.inspection.rows("SELECT COUNT(*) AS n FROM refresh_tokens", [])
      #expect(issued.first?["n"] == .int(2))  // the first token and exactly one replacement
    }
  }

  @Test(arguments: TestEngine.enabled) func concurrentWrongCodesCountEveryAttempt(engine: TestEngine) async throws {
    try await withTemporaryStore(engine) { store in
      let id = store.identity
      var policy = LoginCodePolicy()
      policy.maxAttempts = 100
      let phone = "13800000001"
      _ = try await id.issueLoginCode(phone: phone, codeHash: OpaqueToken.hash("123456"), policy: policy, now: t0)
      let checks = try await concurrently { [policy] _ in
        try await id.checkLoginCode(phone: phone, codeHash: OpaqueToken.hash("000000"), policy: policy, now: t0)
      }
      // Each attempt saw a different count: no lost update.
      let left = Set(checks.compactMap { if case .wrong(let n) = $0 { n } else { nil } })
      #expect(left == Set((100 - Self.width)..<100))
      let rows = try await store.inspection.rows("SELECT attempts FROM login_codes WHERE phone = $1", [.text(phone)])
      #expect(rows.first?["attempts"] == .int(Int64(Self.width)))
    }
  }

  @Test(arguments: TestEngine.enabled) func concurrentCodeGuessesBurnTheCodeExactly(engine: TestEngine) async throws {
    try await withTemporaryStore(engine) { store in
      let id = store.identity
      let policy = LoginCodePolicy()  // five attempts
      let phone = "13800000001"
      _ = try await id.issueLoginCode(phone: phone, codeHash: OpaqueToken.hash("123456"), policy: policy, now: t0)
      let checks = try await concurrently { _ in
        try await id.checkLoginCode(phone: phone, codeHash: OpaqueToken.hash("000000"), policy: policy, now: t0)
      }
      let wrong = checks.compactMap { if case .wrong(let n) = $0 { n } else { nil } }
      #expect(wrong.sorted() == [1, 2, 3, 4])
      #expect(checks.filter { $0 == .exhausted }.count == Self.width - 4)
      #expect(try await id.checkLoginCode(phone: phone, codeHash: OpaqueToken.hash("123456"), policy: policy, now: t0) == .exhausted)
    }
  }

  @Test(arguments: TestEngine.enabled) func concurrentLoginFailuresAllCount(engine: TestEngine) async throws {
    try await withTemporaryStore(engine) { store in
      let id = store.identity
      let a = try await id.createAccount(citizen("13800000001", id: "11010519491231002X"))
      let b = try await id.createAccount(citizen("13800000002", id: "440524198001010013"))
      var lenient = LoginLockoutPolicy()
      lenient.maxFailures = 100
      let counted = try await concurrently { [lenient] _ in
        try await id.recordLoginFailure(accountID: a.id, policy: lenient, now: t0)
      }
      #expect(counted.map(\.failures).sorted() == Array(1...Self.width))
      #expect(try await id.credentials(login: "13800000001")?.lockout.failures == Self.width)

      // The default policy locks at every fifth failure: 16 failures lock three times and leave one.
      let strict = LoginLockoutPolicy()
      let states = try await concurrently { _ in try await id.recordLoginFailure(accountID: b.id, policy: strict, now: t0) }
      #expect(states.filter { $0.lockedUntil != nil }.count == Self.width / strict.maxFailures)
      let final = try await id.credentials(login: "13800000002")?.lockout
      #expect(final?.failures == Self.width % strict.maxFailures)
    }
  }

  @Test(arguments: TestEngine.enabled) func concurrentCodeIssuesRespectTheRateLimit(engine: TestEngine) async throws {
    try await withTemporaryStore(engine) { store in
      let id = store.identity
      // One per minute: of 16 simultaneous requests exactly one gets a code.
      let perMinute = try await concurrently { i in
        try await id.issueLoginCode(phone: "13800000001", codeHash: OpaqueToken.hash(String(i)), policy: LoginCodePolicy(), now: t0)
      }
      #expect(perMinute.filter { if case .issued = $0 { true } else { false } }.count == 1)

      // No interval, ten a day: exactly ten.
      var daily = LoginCodePolicy()
      daily.minInterval = 0
      let perDay = try await concurrently { [daily] i in
        try await id.issueLoginCode(phone: "13800000002", codeHash: OpaqueToken.hash(String(i)), policy: daily, now: t0)
      }
      #expect(perDay.filter { if case .issued = $0 { true } else { false } }.count == daily.maxPerDay)
      let stored = try await store.inspection.rows(
        "SELECT COUNT(*) AS n FROM login_codes WHERE phone = $1", [.text("13800000002")])
      #expect(stored.first?["n"] == .int(Int64(daily.maxPerDay)))
      // Each new code closed the previous one: one open code per phone.
      let open = try await store.inspection.rows(
        "SELECT COUNT(*) AS n FROM login_codes WHERE phone = $1 AND closed_at IS NULL", [.text("13800000002")])
      #expect(open.first?["n"] == .int(1))
    }
  }

  @Test(arguments: TestEngine.enabled) func concurrentAuditAppendsKeepOneChain(engine: TestEngine) async throws {
    try await withTemporaryStore(engine) { store in
      let account = try await store.identity.createAccount(citizen("13800000001", id: "11010519491231002X"))
      // Direct appends and appends inside other stores' writes, interleaved.
      _ = try await concurrently { i in
        let event = AuditEvent(
          actorID: "admin-1", actorRole: "admin", actorDepartment: nil, action: "race.\(i)", targetType: "account",
          targetID: account.id)
        if i % 2 == 0 {
          try await store.audit.append(event, now: t0.addingTimeInterval(Double(i)))
        } else {
          _ = try await store.identity.setTrustLevel(accountID: account.id, level: i, now: t0, audit: event)
        }
      }
      let entries = try await store.audit.entries(after: 0, limit: 100)
      #expect(entries.map(\.sequence) == (1...Int64(Self.width)).map { $0 })
      #expect(Set(entries.map(\.action)).count == Self.width)
      var verifier = AuditChain.Verifier()
      for entry in entries {
        let broken = verifier.check(entry)
        #expect(broken == nil, "\(broken?.description ?? "")")
      }
    }
  }
}

/// Catalog search ranking and matching, the same on every engine. The suite asserts this order:
/// items whose NAME contains every query term come first, then the others; within each group
/// the order is the engine's (bm25 on SQLite, trigram similarity on PostgreSQL) and is not
/// asserted, except that ties end in code order.
extension CatalogStoreTests {
  static let searchItems: [ServiceItemSpec] = {
    // SF-0's short guide is dense with 身份证 and SF-2's long guide lacks it, so SQLite's bm25
    // alone ranks SF-0 above SF-2; SF-0's code sorts first, so code order alone would too. It
    // must still come after the items with 身份证 in their name.
    var bodyOnly = spec("SF-0", name: "户口迁移")
    bodyOnly.acceptanceConditions = [String(repeating: "身份证", count: 10)]
    var longGuide = spec("SF-2", name: "临时居民身份证申领")
    longGuide.summary = String(repeating: "办理说明", count: 80)
    var ascii = spec("SF-5", name: "ABC证明 100%办结")
    ascii.summary = "a_c 户口"
    return [
      bodyOnly, spec("SF-1", name: "居民身份证换领"), longGuide,
      spec("SF-3", name: "结婚登记", department: "minzheng"), ascii,
    ]
  }()

  static let searchQueries = [
    "身份证", "居民身份证", "证", "户口", "换 身份证", "结婚", "本市户籍", "护照签发", "abc", "ABC", "Ab", "%", "100%", "a_c", "a%c",
    "证 户口", "民",
  ]

  @Test(arguments: TestEngine.enabled) func searchRanksNameMatchesFirst(engine: TestEngine) async throws {
    try await withTemporaryStore(engine) { store in
      let catalog = store.catalog
      _ = try await catalog.importBundle(
        departments: [Department(code: "gongan", name: "市公安局"), Department(code: "minzheng", name: "市民政局")],
        items: Self.searchItems, publish: true, now: t0)
      func search(_ text: String) async throws -> [String] {
        try await catalog.search(SearchQuery.parse(text), limit: 10, offset: 0)
      }
      // A 3-character term finds it inside a longer name; the name hits come before SF-0.
      let identity = try await search("身份证")
      #expect(Set(identity.prefix(2)) == ["SF-1", "SF-2"])
      #expect(identity.last == "SF-0" && identity.count == 3)
      #expect(try await search("居民身份证").prefix(2).sorted() == ["SF-1", "SF-2"])
      // 1–2 character terms, alone and with a long one.
      #expect(try await search("结婚") == ["SF-3"])
      #expect(try await search("换 身份证") == ["SF-1"])
      #expect(try await search("户口") == ["SF-0", "SF-5"])  // SF-0 by name, SF-5 by its guide
      let single = try await search("证")
      #expect(Set(single.prefix(3)) == ["SF-1", "SF-2", "SF-5"] && single.last == "SF-0")
      // Long terms ignore ASCII case (as FTS5's trigram tokenizer); wildcards are literal.
      #expect(try await search("abc") == ["SF-5"])
      #expect(try await search("a_c") == ["SF-5"])
      #expect(try await search("a%c").isEmpty)
      #expect(try await search("100%") == ["SF-5"])
    }
  }

  /// Every engine returns the same set of items for the same query.
  @Test func searchFindsTheSameItemsOnEveryEngine() async throws {
    var results: [TestEngine: [String: Set<String>]] = [:]
    for engine in TestEngine.enabled {
      results[engine] = try await withTemporaryStore(engine) { store in
        _ = try await store.catalog.importBundle(
          departments: [Department(code: "gongan", name: "市公安局"), Department(code: "minzheng", name: "市民政局")],
          items: Self.searchItems, publish: true, now: t0)
        var found: [String: Set<String>] = [:]
        for text in Self.searchQueries {
          found[text] = Set(try await store.catalog.search(SearchQuery.parse(text), limit: 50, offset: 0))
        }
        return found
      }
    }
    let baseline = results[.sqlite] ?? [:]
    #expect(baseline["身份证"] == ["SF-0", "SF-1", "SF-2"])
    for (engine, found) in results where engine != .sqlite {
      for text in Self.searchQueries {
        #expect(found[text] == baseline[text], "\(engine) differs from SQLite for \(text)")
      }
    }
  }
}

/// Materials, certificates, evaluations and audit reads: the paths that need no case, on every
/// engine (the case paths are covered through the case store and the end-to-end tests).
@Suite struct CaseRecordsStoreTests {
  @Test(arguments: TestEngine.enabled) func materialsAuditAndMissingRecords(engine: TestEngine) async throws {
    try await withTemporaryStore(engine) { store in
      let owner = try await store.identity.createAccount(IdentityRaceTests().citizen("13800000001", id: "11010519491231002X"))
      let material = StoredMaterial(
        id: "mat-1", ownerID: owner.id, fileName: "身份证.jpg", contentType: "image/jpeg", size: 1234, sha256: "ab12",
        uploadedAt: t0)
      try await store.materials.save(material)
      #expect(try await store.materials.material(id: "mat-1") == material)
      #expect(try await store.materials.material(id: "mat-2") == nil)
      #expect(try await store.materials.owns(ownerID: owner.id, sha256: "ab12"))
      #expect(try await store.materials.owns(ownerID: owner.id, sha256: "cd34") == false)
      #expect(try await store.materials.cases(containing: "mat-1").isEmpty)

      #expect(try await store.certificates.certificate(number: "C-1") == nil)
      #expect(try await store.certificates.certificates(holderID: owner.id).isEmpty)
      let audit = AuditEvent(actorID: "admin-1", actorRole: "admin", actorDepartment: nil, action: "x", targetType: "case", targetID: "c")
      await #expect(throws: StoreError.notFound("certificate 'C-1'")) {
        try await store.certificates.revoke(number: "C-1", reason: "错误", audit: audit, now: t0)
      }
      #expect(try await store.evaluations.evaluation(caseID: "case-1") == nil)
      #expect(try await store.evaluations.rectifications(department: nil, pendingOnly: false).isEmpty)
      #expect(try await store.evaluations.rectifications(department: "gongan", pendingOnly: true).isEmpty)
      #expect(try await store.evaluations.all().isEmpty)
      // A failed write leaves no audit entry.
      #expect(try await store.audit.entries(after: 0, limit: 10).isEmpty)

      for (i, target) in ["a", "b", "a"].enumerated() {
        try await store.audit.append(
          AuditEvent(actorID: "admin-1", actorRole: "admin", actorDepartment: nil, action: "read.\(i)", targetType: "account",
                     targetID: target, subjectID: i == 2 ? owner.id : nil, reason: "核查"),
          now: t0.addingTimeInterval(Double(i)))
      }
      #expect(try await store.audit.entries(after: 1, limit: 10).map(\.sequence) == [2, 3])
      #expect(try await store.audit.entries(targetID: "a", subjectID: nil, beforeSequence: nil, limit: 10).map(\.sequence) == [3, 1])
      #expect(try await store.audit.entries(targetID: "a", subjectID: nil, beforeSequence: 3, limit: 10).map(\.sequence) == [1])
      #expect(try await store.audit.entries(targetID: nil, subjectID: owner.id, beforeSequence: nil, limit: 10).map(\.sequence) == [3])
      #expect(try await store.audit.entries(targetID: "a", subjectID: owner.id, beforeSequence: nil, limit: 1).map(\.reason) == ["核查"])
      let last = try await store.audit.entries(after: 2, limit: 1).first
      #expect(last.map { AuditChain.hash(of: $0) } == last?.hash && last?.at == t0.addingTimeInterval(2))
    }
  }
}
