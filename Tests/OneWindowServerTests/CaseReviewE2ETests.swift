import Foundation
import GRPCCore
import OneWindowAPI
import OneWindowClientPosix
import OneWindowCore
import OneWindowServer
import Testing
import OneWindowTestSupport

/// Edge cases found in review: malformed paging, key reuse, correction materials, reopening,
/// staff identities in the applicant's view, and parallel guessing of tracking queries.
@Suite struct CaseReviewE2ETests {
  @Test(arguments: TestEngine.enabled) func anOutOfRangePageTokenIsInvalidNotACrash(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      let w = try await CaseWorld.make(env)
      _ = try await w.submitCase()
      for body in ["c:9223372036854775807|x", "c:-5|x", "c:12", "q:1"] {
        await expectRPCError(.invalidArgument) {
          try await env.caseAPI.listMyCases(
            .with { $0.pageToken = Base64URL.encode(Array(body.utf8)) }, metadata: bearer(w.citizen))
        }
      }
      #expect(try await env.caseAPI.listMyCases(.init(), metadata: bearer(w.citizen)).cases.count == 1)
    }
  }

  @Test(arguments: TestEngine.enabled) func anIdempotencyKeyBelongsToOneDraft(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      let w = try await CaseWorld.make(env)
      let key = "reused-key-0001"
      _ = try await w.submitCase(key: key)
      let material = try await env.upload(w.citizen, pdfBytes("second"))
      let other = try await env.pushDraft(
        w.citizen, itemCode: CaseWorld.itemCode, form: ["shop_name": .string("另一家")], materials: ["营业执照": material.materialID])
      let error = await expectRPCError(.failedPrecondition) {
        try await env.caseAPI.submitCase(.with { $0.draftID = other; $0.idempotencyKey = key }, metadata: bearer(w.citizen))
      }
      #expect(error?.message.contains("idempotency key already used") == true)
      // The draft is untouched and submits under a new key.
      let fresh = try await env.caseAPI.submitCase(.with { $0.draftID = other; $0.idempotencyKey = "fresh-key-0002" }, metadata: bearer(w.citizen))
      #expect(fresh.form["shop_name"] == "另一家")
    }
  }

  @Test(arguments: TestEngine.enabled) func suppliedMaterialsMustBeOnTheItemsList(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      let w = try await CaseWorld.make(env)
      let (submitted, _) = try await w.submitCase()
      try await w.act(w.d1, submitted.id, .requestCorrection, missingItems: ["营业执照副本"])
      let material = try await env.upload(w.citizen, pdfBytes("supplied"))
      func supply(_ materials: [String: String]) async throws -> Onewindow_V1_Case {
        try await env.caseAPI.actOnCase(
          .with { $0.caseID = submitted.id; $0.event = .supplyCorrection; $0.materials = materials }, metadata: bearer(w.citizen))
      }
      await expectRPCError(.invalidArgument) { try await supply(["不存在的材料": material.materialID]) }
      await expectRPCError(.invalidArgument) { try await supply(["营业执照": "cert:OW2026-AAAA-BBBB-CCCC"]) }
      await expectRPCError(.invalidArgument) { try await supply([:]) }
      let supplied = try await supply(["营业执照": material.materialID])
      #expect(supplied.state == .pendingAcceptance)
      #expect(supplied.materials.map(\.materialID) == [material.materialID])
    }
  }

  @Test(arguments: TestEngine.enabled) func reopeningRevokesTheCertificateAndReapprovalIssuesANewOne(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      let w = try await CaseWorld.make(env)
      let (submitted, _) = try await w.submitCase()
      let completed = try await w.complete(submitted.id)
      let first = completed.certificateNumber
      #expect(!first.isEmpty)
      let reopened = try await w.act(w.admin, submitted.id, .reopen, reason: "申请人补充材料显示许可条件有误")
      #expect(reopened.state == .underReview && reopened.certificateNumber.isEmpty)
      let check = try await env.certificateAPI.verifyCertificate(.with { $0.number = first })
      #expect(check.result == .revoked)
      #expect(check.certificate.revocationReason.hasPrefix("case reopened"))
      let approved = try await w.act(w.d2, submitted.id, .approve)
      #expect(!approved.certificateNumber.isEmpty && approved.certificateNumber != first)
      #expect(try await env.certificateAPI.verifyCertificate(.with { $0.number = approved.certificateNumber }).result == .valid)
      let audit = try await env.auditAPI.verifyAuditChain(.init(), metadata: bearer(w.admin))
      #expect(audit.intact)
    }
  }

  @Test(arguments: TestEngine.enabled) func theApplicantSeesStaffByRoleAndDepartmentOnly(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      let w = try await CaseWorld.make(env)
      let (submitted, _) = try await w.submitCase()
      try await w.act(w.d1, submitted.id, .accept)
      let mine = try await w.getCase(w.citizen, submitted.id)
      let accept = try #require(mine.history.last)
      #expect(accept.event == .accept && accept.actor.role == .caseworker && accept.actor.departmentCode == CaseWorld.d1)
      #expect(accept.actor.accountID.isEmpty)
      #expect(mine.history.first?.actor.accountID == w.citizenID)
      // Staff see who acted.
      #expect(try await w.getCase(w.d1, submitted.id).history.last?.actor.accountID.isEmpty == false)
    }
  }

  @Test(arguments: TestEngine.enabled) func parallelGuessesCannotOutrunTheTrackingBrake(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      let w = try await CaseWorld.make(env)
      let (submitted, _) = try await w.submitCase()
      let codes = try await withThrowingTaskGroup(of: RPCError.Code?.self) { group in
        for i in 0..<40 {
          group.addTask {
            do {
              _ = try await env.caseAPI.trackCase(.with {
                $0.trackingCode = submitted.trackingCode
                $0.phoneLast4 = String(format: "%04d", 1000 + i)  // all wrong: the phone ends in 0001
              })
              return nil
            } catch let error as RPCError {
              return error.code
            }
          }
        }
        var codes: [RPCError.Code?] = []
        for try await code in group { codes.append(code) }
        return codes
      }
      #expect(codes.filter { $0 == .notFound }.count == 10)
      #expect(codes.filter { $0 == .resourceExhausted }.count == 30)
      #expect(!codes.contains(where: { $0 == nil }))
    }
  }

  @Test(arguments: TestEngine.enabled) func concurrentSubmitsWithOneKeyMakeOneCase(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      let w = try await CaseWorld.make(env)
      let material = try await env.upload(w.citizen, pdfBytes("race"))
      let draft = try await env.pushDraft(
        w.citizen, itemCode: CaseWorld.itemCode, form: ["shop_name": .string("并发")], materials: ["营业执照": material.materialID])
      let ids = try await withThrowingTaskGroup(of: String.self) { group in
        for _ in 0..<8 {
          group.addTask {
            try await env.caseAPI.submitCase(.with { $0.draftID = draft; $0.idempotencyKey = "race-key-0001" }, metadata: bearer(w.citizen)).id
          }
        }
        var ids = Set<String>()
        for try await id in group { ids.insert(id) }
        return ids
      }
      #expect(ids.count == 1)
      #expect(try await env.count("cases") == 1)
    }
  }

  @Test(arguments: TestEngine.enabled) func theDeemedAcceptanceJobAndACaseworkerRacingLeaveOneAcceptance(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      var w = try await CaseWorld.make(env, start: cst("2026-11-20T10:00:00+08:00"))
      let (submitted, _) = try await w.submitCase()
      env.setClock(cst("2026-11-30T09:00:00+08:00"))  // past the notice deadline (11-27)
      try await w.relogin()
      let worker = w
      async let job = env.app.caseClock.runOnce()
      async let manual: Onewindow_V1_Case? = try? worker.act(worker.d1, submitted.id, .accept)
      let (deemed, accepted) = try await (job, manual)
      let final = try await w.getCase(w.d1, submitted.id)
      #expect(final.state == .accepted)
      // Exactly one acceptance row, by whichever won; either way dated from receipt.
      #expect(final.history.filter { $0.event == .accept || $0.event == .deemAccepted }.count == 1)
      #expect(deemed + (accepted == nil ? 0 : 1) == 1)
      #expect(final.deadlines.acceptedOn == "2026-11-20")
    }
  }

  @Test(arguments: TestEngine.enabled) func aCaseworkersAttachmentReachesTheApplicantButNotOthers(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      let w = try await CaseWorld.make(env)
      let (submitted, _) = try await w.submitCase()
      let notice = try await env.upload(w.d1, pdfBytes("补正告知书"), fileName: "补正告知书.pdf")
      _ = try await env.caseAPI.actOnCase(
        .with {
          $0.caseID = submitted.id
          $0.event = .requestCorrection
          $0.missingItems = ["营业执照副本"]
          $0.attachmentIds = [notice.materialID]
        }, metadata: bearer(w.d1))
      let (info, data) = try await env.download(w.citizen, notice.materialID)
      #expect(info.fileName == "补正告知书.pdf" && Array(data) == pdfBytes("补正告知书"))
      let other = try await w.otherCitizen().accessToken
      await expectRPCError(.notFound) { try await env.download(other, notice.materialID) }
      await expectRPCError(.notFound) { try await env.download(w.d3, notice.materialID) }
      // Someone else's upload cannot be attached.
      let foreign = try await env.upload(other, pdfBytes("foreign"))
      await expectRPCError(.invalidArgument) {
        try await env.caseAPI.actOnCase(
          .with { $0.caseID = submitted.id; $0.event = .accept; $0.attachmentIds = [foreign.materialID] }, metadata: bearer(w.d1))
      }
    }
  }

  @Test(arguments: TestEngine.enabled) func myCasesPageNewestFirst(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      let w = try await CaseWorld.make(env)
      var submitted: [String] = []
      for i in 0..<5 {
        env.clock.advance(by: 1)
        submitted.append(try await w.submitCase(shopName: "店\(i)").case.id)
      }
      var seen: [String] = []
      var token = ""
      repeat {
        let page = try await env.caseAPI.listMyCases(.with { $0.pageSize = 2; $0.pageToken = token }, metadata: bearer(w.citizen))
        #expect(page.cases.count <= 2)
        seen += page.cases.map(\.id)
        token = page.nextPageToken
      } while !token.isEmpty
      #expect(seen == submitted.reversed())
    }
  }
}
