import Foundation
import GRPCCore
import OneWindowAPI
import OneWindowClientPosix
import OneWindowCore
import OneWindowServer
import Testing
import OneWindowTestSupport

/// 9. Who may see and do what with a case, its materials, certificate and evaluation.
@Suite struct CaseAuthorizationE2ETests {
  /// A's finished, rated case with its certificate.
  struct Fixture {
    var world: CaseWorld
    var caseID: String
    var trackingCode: String
    var materialID: String
    var certificate: String
    var version: Int64
  }

  static func fixture(_ env: TestEnvironment) async throws -> Fixture {
    let w = try await CaseWorld.make(env)
    let (c, materialID) = try await w.submitCase(shopName: "甲的小店")
    let done = try await w.complete(c.id)
    _ = try await env.evaluationAPI.rateCase(.with { $0.caseID = c.id; $0.level = 2 }, metadata: bearer(w.citizen))
    return Fixture(
      world: w, caseID: c.id, trackingCode: c.trackingCode, materialID: materialID, certificate: done.certificateNumber,
      version: done.version)
  }

  /// Fails with `code` and reveals nothing of A's case in the message (it may echo what the
  /// caller sent, such as the certificate number).
  func expectHidden<T>(
    _ code: RPCError.Code, _ f: Fixture, _ body: () async throws -> T, sourceLocation: SourceLocation = #_sourceLocation
  ) async {
    let error = await expectRPCError(code, body, sourceLocation: sourceLocation)
    for secret in ["王五", "甲的小店", CaseWorld.citizenPhone, "11010519491231002X", f.world.citizenID] {
      #expect(error?.message.contains(secret) != true, "\(error?.message ?? "") reveals \(secret)", sourceLocation: sourceLocation)
    }
  }

  @Test(arguments: TestEngine.enabled) func anotherCitizenGetsNotFoundForEverythingOfACase(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      let f = try await Self.fixture(env)
      let b = try await f.world.otherCitizen().accessToken
      let auth = bearer(b)

      await expectHidden(.notFound, f) { try await env.caseAPI.getCase(.with { $0.caseID = f.caseID }, metadata: auth) }
      await expectHidden(.notFound, f) { try await env.caseAPI.getCase(.with { $0.caseID = f.trackingCode }, metadata: auth) }
      await expectHidden(.notFound, f) {
        try await env.caseAPI.actOnCase(.with { $0.caseID = f.caseID; $0.event = .withdraw }, metadata: auth)
      }
      await expectHidden(.notFound, f) {
        try await env.caseAPI.actOnCase(.with { $0.caseID = f.caseID; $0.event = .confirmDelivery }, metadata: auth)
      }
      await expectHidden(.notFound, f) { try await env.download(b, f.materialID) }
      await expectHidden(.notFound, f) {
        try await env.certificateAPI.getCertificate(.with { $0.number = f.certificate }, metadata: auth)
      }
      await expectHidden(.notFound, f) {
        try await env.evaluationAPI.rateCase(.with { $0.caseID = f.caseID; $0.level = 1 }, metadata: auth)
      }
      await expectHidden(.notFound, f) { try await env.evaluationAPI.getEvaluation(.with { $0.caseID = f.caseID }, metadata: auth) }
      await expectHidden(.notFound, f) { try await env.caseAPI.listCaseAccess(.with { $0.caseID = f.caseID }, metadata: auth) }

      // Staff-only RPCs are refused by role.
      await expectHidden(.permissionDenied, f) { try await env.caseAPI.listQueue(.init(), metadata: auth) }
      await expectHidden(.permissionDenied, f) {
        try await env.certificateAPI.revokeCertificate(.with { $0.number = f.certificate; $0.reason = "x" }, metadata: auth)
      }
      await expectHidden(.permissionDenied, f) { try await env.evaluationAPI.listRectifications(.init(), metadata: auth) }
      await expectHidden(.permissionDenied, f) {
        try await env.evaluationAPI.respondToEvaluation(.with { $0.caseID = f.caseID; $0.response = "x" }, metadata: auth)
      }
      await expectHidden(.permissionDenied, f) {
        try await env.evaluationAPI.appealEvaluation(.with { $0.caseID = f.caseID; $0.reason = "x" }, metadata: auth)
      }
      await expectHidden(.permissionDenied, f) {
        try await env.evaluationAPI.reviewAppeal(.with { $0.caseID = f.caseID; $0.invalidate = true; $0.note = "x" }, metadata: auth)
      }
      await expectHidden(.permissionDenied, f) { try await env.auditAPI.verifyAuditChain(.init(), metadata: auth) }
      await expectHidden(.permissionDenied, f) {
        try await env.auditAPI.listAuditEntries(.with { $0.subjectID = f.world.citizenID }, metadata: auth)
      }

      // B's own views are empty, and A's case is untouched.
      #expect(try await env.caseAPI.listMyCases(.init(), metadata: auth).cases.isEmpty)
      #expect(try await env.certificateAPI.listMyCertificates(.init(), metadata: auth).certificates.isEmpty)
      #expect(try await env.caseAPI.listCaseAccess(.init(), metadata: auth).entries.isEmpty)
      #expect(try await env.pullChanges(b, collections: ["cases"]).isEmpty)
      let mine = try await f.world.getCase(f.world.citizen, f.caseID)
      #expect(mine.version == f.version && mine.state == .completed)
      #expect(try await env.evaluationAPI.getEvaluation(.with { $0.caseID = f.caseID }, metadata: bearer(f.world.citizen)).level == 2)
    }
  }

  @Test(arguments: TestEngine.enabled) func aCaseworkerOfAnUnrelatedDepartmentGetsNotFound(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      let f = try await Self.fixture(env)
      let w = f.world
      let auth = bearer(w.d3)
      await expectHidden(.notFound, f) { try await w.getCase(w.d3, f.caseID) }
      await expectHidden(.notFound, f) { try await w.getCase(w.d3, f.trackingCode) }
      await expectHidden(.notFound, f) { try await w.act(w.d3, f.caseID, .complete) }
      await expectHidden(.notFound, f) { try await env.download(w.d3, f.materialID) }
      await expectHidden(.notFound, f) { try await env.certificateAPI.getCertificate(.with { $0.number = f.certificate }, metadata: auth) }
      await expectHidden(.notFound, f) {
        try await env.certificateAPI.revokeCertificate(.with { $0.number = f.certificate; $0.reason = "越权" }, metadata: auth)
      }
      await expectHidden(.notFound, f) { try await env.evaluationAPI.getEvaluation(.with { $0.caseID = f.caseID }, metadata: auth) }
      #expect(try await env.evaluationAPI.listRectifications(.init(), metadata: auth).evaluations.isEmpty)
      // Caseworkers do not apply.
      await expectRPCError(.permissionDenied) {
        try await env.caseAPI.submitCase(.with { $0.draftID = UUID().uuidString.lowercased(); $0.idempotencyKey = "key-12345678" }, metadata: auth)
      }
      // Both departments with a step may read the case and its material; the certificate is the issuer's (D2).
      #expect(try await w.getCase(w.d1, f.caseID).id == f.caseID)
      #expect(try await w.getCase(w.d2, f.caseID).id == f.caseID)
      #expect(try await env.download(w.d1, f.materialID).data.starts(with: Array("%PDF-".utf8)))
      #expect(try await env.certificateAPI.getCertificate(.with { $0.number = f.certificate }, metadata: bearer(w.d2)).number == f.certificate)
      #expect(try await w.getCase(w.admin, f.caseID).id == f.caseID)
    }
  }

  @Test(arguments: TestEngine.enabled) func unauthenticatedCallsToNonPublicRPCsAreRefused(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      let f = try await Self.fixture(env)
      let id = f.caseID
      await expectHidden(.unauthenticated, f) {
        try await env.caseAPI.submitCase(.with { $0.draftID = UUID().uuidString.lowercased(); $0.idempotencyKey = "key-12345678" })
      }
      await expectHidden(.unauthenticated, f) { try await env.caseAPI.getCase(.with { $0.caseID = id }) }
      await expectHidden(.unauthenticated, f) { try await env.caseAPI.listMyCases(.init()) }
      await expectHidden(.unauthenticated, f) { try await env.caseAPI.actOnCase(.with { $0.caseID = id; $0.event = .withdraw }) }
      await expectHidden(.unauthenticated, f) { try await env.caseAPI.listQueue(.init()) }
      await expectHidden(.unauthenticated, f) { try await env.caseAPI.listCaseAccess(.with { $0.caseID = id }) }
      await expectHidden(.unauthenticated, f) { try await env.upload("", pdfBytes("anonymous")) }
      await expectHidden(.unauthenticated, f) { try await env.download("", f.materialID) }
      await expectHidden(.unauthenticated, f) { try await env.certificateAPI.listMyCertificates(.init()) }
      await expectHidden(.unauthenticated, f) { try await env.certificateAPI.getCertificate(.with { $0.number = f.certificate }) }
      await expectHidden(.unauthenticated, f) {
        try await env.certificateAPI.revokeCertificate(.with { $0.number = f.certificate; $0.reason = "x" })
      }
      await expectHidden(.unauthenticated, f) { try await env.evaluationAPI.rateCase(.with { $0.caseID = id; $0.level = 1 }) }
      await expectHidden(.unauthenticated, f) { try await env.evaluationAPI.getEvaluation(.with { $0.caseID = id }) }
      await expectHidden(.unauthenticated, f) { try await env.evaluationAPI.listRectifications(.init()) }
      await expectHidden(.unauthenticated, f) {
        try await env.evaluationAPI.respondToEvaluation(.with { $0.caseID = id; $0.response = "x" })
      }
      await expectHidden(.unauthenticated, f) { try await env.evaluationAPI.appealEvaluation(.with { $0.caseID = id; $0.reason = "x" }) }
      await expectHidden(.unauthenticated, f) {
        try await env.evaluationAPI.reviewAppeal(.with { $0.caseID = id; $0.invalidate = true; $0.note = "x" })
      }
      await expectHidden(.unauthenticated, f) { try await env.auditAPI.verifyAuditChain(.init()) }
      await expectHidden(.unauthenticated, f) { try await env.auditAPI.listAuditEntries(.init()) }
      // A forged token is no better than none.
      await expectHidden(.unauthenticated, f) {
        try await env.caseAPI.getCase(.with { $0.caseID = id }, metadata: bearer("owa_forged-token-value"))
      }
      // The public RPCs answer without a login.
      #expect(try await env.certificateAPI.getIssuerKeys(.init()).keys.count == 1)
      #expect(try await env.certificateAPI.verifyCertificate(.with { $0.number = f.certificate }).result == .valid)
      #expect(try await env.evaluationAPI.getEvaluationStats(.init()).departments.contains { $0.key == CaseWorld.d2 })
      #expect(try await env.caseAPI.trackCase(.with { $0.trackingCode = f.trackingCode; $0.phoneLast4 = "0001" }).state == .completed)
    }
  }

  @Test(arguments: TestEngine.enabled) func theApplicantSeesWhichDepartmentsReadTheCaseButNotWho(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      let w = try await CaseWorld.make(env)
      let (c, materialID) = try await w.submitCase()
      _ = try await w.getCase(w.citizen, c.id)  // the applicant's own reads are not listed
      _ = try await w.getCase(w.d1, c.id)
      _ = try await w.getCase(w.d2, c.trackingCode)
      _ = try await env.download(w.d2, materialID)
      try await w.act(w.d1, c.id, .accept)

      let access = try await env.caseAPI.listCaseAccess(.with { $0.caseID = c.id }, metadata: bearer(w.citizen))
      let viewed = access.entries.filter { $0.action == "case.viewed" }
      #expect(viewed.count == 2)
      #expect(viewed.allSatisfy { $0.actorRole == .caseworker && $0.caseID == c.id && $0.trackingCode == c.trackingCode })
      #expect(Set(viewed.map(\.actorDepartmentCode)) == [CaseWorld.d1, CaseWorld.d2])
      #expect(Set(viewed.map(\.actorDepartmentName)) == [CaseWorld.d1Name, CaseWorld.d2Name])
      #expect(access.entries.contains { $0.action == "material.downloaded" && $0.actorDepartmentCode == CaseWorld.d2 })
      #expect(access.entries.contains { $0.action == "case.accept" && $0.actorRole == .caseworker && $0.actorDepartmentCode == CaseWorld.d1 })
      #expect(access.entries.contains { $0.action == "case.submit" && $0.actorRole == .citizen })
      // Newest first.
      #expect(access.entries.first?.action == "case.accept")

      // Departments and roles only: no staff account ids, usernames or names.
      let json = try access.jsonString()
      for token in [w.d1, w.d2] {
        let account = try await env.identity.whoAmI(.init(), metadata: bearer(token))
        #expect(!json.contains(account.id))
        #expect(!json.contains(account.username))
        #expect(!json.contains(account.displayName))
      }
      // The unfiltered list of all the applicant's cases holds the same entries.
      let all = try await env.caseAPI.listCaseAccess(.init(), metadata: bearer(w.citizen))
      #expect(all.entries.map(\.action) == access.entries.map(\.action))
      // Paging.
      let page = try await env.caseAPI.listCaseAccess(.with { $0.caseID = c.id; $0.pageSize = 2 }, metadata: bearer(w.citizen))
      let rest = try await env.caseAPI.listCaseAccess(
        .with { $0.caseID = c.id; $0.pageSize = 50; $0.pageToken = page.nextPageToken }, metadata: bearer(w.citizen))
      #expect(page.entries.count == 2)
      #expect((page.entries + rest.entries).map(\.action) == access.entries.map(\.action))
    }
  }
}
