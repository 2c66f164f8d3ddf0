import Foundation
import GRPCCore
import OneWindowAPI
import OneWindowClientPosix
import OneWindowCore
import OneWindowServer
import Testing
import OneWindowTestSupport

@Suite struct CasesE2ETests {
  /// 1. A two-department licence from upload to delivered result, with the certificate it issues.
  @Test(arguments: TestEngine.enabled) func caseLifecycleAcrossTwoDepartmentsIssuesAVerifiableCertificate(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      let w = try await CaseWorld.make(env)
      let pdf = pdfBytes("licence")
      #expect(pdf.starts(with: Array("%PDF-".utf8)))
      let material = try await env.upload(w.citizen, pdf, chunkSize: 16)
      #expect(material.size == Int64(pdf.count) && material.sha256 == Hex.sha256(pdf) && !material.deduplicated)
      let draft = try await env.pushDraft(
        w.citizen, itemCode: CaseWorld.itemCode, form: ["shop_name": .string("老王面馆"), "open_date": .string("2026-12-01")],
        materials: ["营业执照": material.materialID])
      let key = "submit-\(UUID().uuidString)"
      let submitted = try await env.caseAPI.submitCase(.with { $0.draftID = draft; $0.idempotencyKey = key }, metadata: bearer(w.citizen))
      #expect(submitted.state == .pendingAcceptance)
      #expect((try? TrackingCode.normalize(submitted.trackingCode)) == submitted.trackingCode)
      #expect(submitted.history.map(\.state) == [.submitted, .pendingAcceptance])
      #expect(submitted.history.map(\.event) == [.submit, .receive])
      #expect(submitted.itemCode == CaseWorld.itemCode && submitted.itemName == CaseWorld.itemName)
      #expect(submitted.form == ["shop_name": "老王面馆", "open_date": "2026-12-01"])
      #expect(submitted.materials.map(\.materialID) == [material.materialID])
      #expect(submitted.handlingDepartment == CaseWorld.d1 && submitted.currentStep == 0)
      #expect(submitted.deadlines.receivedOn == "2026-11-16")
      #expect(submitted.deadlines.correctionNoticeDue == "2026-11-23")
      #expect(submitted.availableEvents == [.withdraw])
      // The same idempotency key returns the same case (the draft is gone by now).
      let again = try await env.caseAPI.submitCase(.with { $0.draftID = draft; $0.idempotencyKey = key }, metadata: bearer(w.citizen))
      #expect(again.id == submitted.id && again.trackingCode == submitted.trackingCode && again.version == submitted.version)
      #expect(try await env.pullChanges(w.citizen, collections: ["case.drafts"]).isEmpty)
      let id = submitted.id

      // Step 1 belongs to D1: D2 may read the case but not act on it.
      let early = await expectRPCError(.permissionDenied) { try await w.act(w.d2, id, .accept) }
      #expect(early?.message.contains(CaseWorld.d1) == true)
      #expect(try await w.getCase(w.d2, id).availableEvents.isEmpty)
      #expect(try await w.getCase(w.d1, id).availableEvents.contains(.accept))
      let accepted = try await w.act(w.d1, id, .accept)
      #expect(accepted.state == .accepted && accepted.deadlines.acceptedOn == "2026-11-16")
      // Promised 10 working days from 2026-11-16.
      #expect(accepted.deadlines.decisionDue == "2026-11-30")
      #expect(try await w.act(w.d1, id, .startReview).state == .underReview)
      let advanced = try await w.act(w.d1, id, .advanceStep)
      #expect(advanced.state == .underReview && advanced.currentStep == 1 && advanced.handlingDepartment == CaseWorld.d2)
      await expectRPCError(.permissionDenied) { try await w.act(w.d1, id, .suspend, reason: "现场核查") }

      // Step 2 at D2: a paused clock, one extension, the decision.
      let suspended = try await w.act(w.d2, id, .suspend, reason: "组织现场核查")
      #expect(suspended.state == .suspended && suspended.deadlines.suspended)
      #expect(try await w.act(w.d2, id, .resume).state == .underReview)
      let extended = try await w.act(w.d2, id, .extend, reason: "需专家论证", approver: "张局长")
      #expect(extended.state == .underReview && extended.deadlines.extended)
      #expect(extended.deadlines.decisionDue == "2026-12-14")  // 10 + 10 working days (the pause lasted 0 working days)
      #expect(!extended.availableEvents.contains(.extend))
      let approved = try await w.act(w.d2, id, .approve)
      #expect(approved.state == .approved)
      let number = approved.certificateNumber
      #expect(number.hasPrefix("OW2026-"))
      #expect(try await w.act(w.d2, id, .complete).state == .completed)
      let delivered = try await w.act(w.citizen, id, .confirmDelivery)
      #expect(delivered.state == .resultDelivered)
      #expect(delivered.availableEvents.isEmpty)

      // The history: one row per transition, in order, immutable.
      let final = try await w.getCase(w.citizen, id)
      #expect(final.history.map(\.event) == [
        .submit, .receive, .accept, .startReview, .advanceStep, .suspend, .resume, .extend, .approve, .complete, .confirmDelivery,
      ])
      #expect(final.history.map(\.state) == [
        .submitted, .pendingAcceptance, .accepted, .underReview, .underReview, .suspended, .underReview, .underReview, .approved,
        .completed, .resultDelivered,
      ])
      #expect(final.history.map(\.step) == [0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1])
      #expect(final.history[2].actor.role == .caseworker && final.history[2].actor.departmentCode == CaseWorld.d1)
      #expect(final.history[5].reason == "组织现场核查")
      #expect(final.history[7].reason.contains("需专家论证") && final.history[7].reason.contains("张局长"))
      #expect(final.history[10].actor.role == .citizen && final.history[10].actor.accountID == w.citizenID)
      #expect(final.version == 11)
      #expect(try await env.count("case_status_history") == 11)

      // The applicant's read-only `cases` sync collection follows.
      let synced = try await env.pullChanges(w.citizen, collections: ["cases"])
      let record = try #require(synced.last { $0.recordID == id })
      #expect(record.fields["state"]?.stringValue == "result_delivered")
      #expect(record.fields["tracking_code"]?.stringValue == submitted.trackingCode)
      #expect(record.fields["version"]?.intValue == 11)
      let myCases = try await env.caseAPI.listMyCases(.init(), metadata: bearer(w.citizen))
      #expect(myCases.cases.map(\.id) == [id])

      // The certificate: the holder's, and verifiable by anyone (online and from its signed form).
      let certificate = try await env.certificateAPI.getCertificate(.with { $0.number = number }, metadata: bearer(w.citizen))
      #expect(certificate.type == CaseWorld.certificateType)
      #expect(certificate.fields == ["shop_name": "老王面馆"])
      #expect(certificate.holderName == "王五")
      #expect(certificate.holderID != "11010519491231002X" && certificate.holderID.contains("*"))
      #expect(certificate.issuerDepartmentCode == CaseWorld.d2 && certificate.issuerDepartmentName == CaseWorld.d2Name)
      #expect(certificate.issuedOn == "2026-11-16" && certificate.expiresOn == "2031-11-15")
      #expect(certificate.trackingCode == submitted.trackingCode)
      #expect(certificate.status == .valid && certificate.signed.hasPrefix("OWC1."))
      let mine = try await env.certificateAPI.listMyCertificates(.init(), metadata: bearer(w.citizen))
      #expect(mine.certificates.map(\.number) == [number])
      let byNumber = try await env.certificateAPI.verifyCertificate(.with { $0.number = number })
      #expect(byNumber.result == .valid && byNumber.certificate.number == number)
      let bySignature = try await env.certificateAPI.verifyCertificate(.with { $0.signed = certificate.signed })
      #expect(bySignature.result == .valid && bySignature.certificate.fields == certificate.fields)
      let keys = try await env.certificateAPI.getIssuerKeys(.init())
      #expect(keys.keys.count == 1)
      #expect(keys.keys.first?.publicKey.count == 32)
      #expect(keys.keys.first?.keyID == certificate.keyID)
    }
  }

  /// 2. What the lifecycle table refuses, and the details some events require.
  @Test(arguments: TestEngine.enabled) func illegalTransitionsMissingReasonsAndStaleVersionsAreRefused(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      let w = try await CaseWorld.make(env)
      let (c, _) = try await w.submitCase()
      #expect(c.version == 2)

      let early = await expectRPCError(.failedPrecondition) { try await w.act(w.d1, c.id, .approve) }
      #expect(early?.message.contains("pending_acceptance") == true)
      #expect(early?.message.contains("accept") == true)  // the possible events are named
      let noReason = await expectRPCError(.invalidArgument) { try await w.act(w.d1, c.id, .reject) }
      #expect(noReason?.message.contains("reason") == true)
      await expectRPCError(.invalidArgument) { try await w.act(w.d1, c.id, .unspecified) }
      await expectRPCError(.invalidArgument) { try await w.act(w.d1, c.id, .deemAccepted) }
      await expectRPCError(.invalidArgument) { try await w.act(w.d1, c.id, .requestCorrection) }  // no missing items
      let stale = await expectRPCError(.aborted) { try await w.act(w.d1, c.id, .accept, expectedVersion: 1) }
      #expect(stale?.message.contains("version 2") == true)
      // Nothing changed; acting on the version read works.
      #expect(try await w.getCase(w.citizen, c.id).version == 2)
      #expect(try await w.act(w.d1, c.id, .accept, expectedVersion: 2).version == 3)

      try await w.act(w.d1, c.id, .startReview)
      try await w.act(w.d1, c.id, .extend, reason: "材料复杂", approver: "李处长")
      let twice = await expectRPCError(.failedPrecondition) {
        try await w.act(w.d1, c.id, .extend, reason: "再次延期", approver: "李处长")
      }
      #expect(twice?.message.contains("already extended") == true)
      await expectRPCError(.invalidArgument) { try await w.act(w.d1, c.id, .suspend) }
      // Deciding at step 1 of 2 (step 2 is another department's) is refused.
      await expectRPCError(.failedPrecondition) { try await w.act(w.d1, c.id, .approve) }
      try await w.act(w.d1, c.id, .advanceStep)
      try await w.act(w.d2, c.id, .approve)
      let late = await expectRPCError(.failedPrecondition) { try await w.act(w.citizen, c.id, .withdraw) }
      #expect(late?.message.contains("approved") == true)
      await expectRPCError(.failedPrecondition) { try await w.act(w.d2, c.id, .approve) }
      let final = try await w.getCase(w.citizen, c.id)
      #expect(final.state == .approved)
      #expect(final.history.map(\.event) == [.submit, .receive, .accept, .startReview, .extend, .advanceStep, .approve])
    }
  }

  /// 3. 行政许可法 第三十二条: no notice within 5 working days of receipt means accepted from receipt.
  @Test(arguments: TestEngine.enabled) func deemedAcceptanceAfterFiveWorkingDaysWithoutNotice(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      // Friday 2026-11-20: the notice is due by Friday 2026-11-27.
      var w = try await CaseWorld.make(env, start: cst("2026-11-20T10:00:00+08:00"))
      let (a, _) = try await w.submitCase(shopName: "甲店")
      let (b, _) = try await w.submitCase(shopName: "乙店")
      #expect(a.deadlines.receivedOn == "2026-11-20" && a.deadlines.correctionNoticeDue == "2026-11-27")
      #expect(try await env.app.caseClock.runOnce() == 0)

      env.setClock(cst("2026-11-26T09:00:00+08:00"))
      #expect(try await env.app.caseClock.runOnce() == 0)
      env.setClock(cst("2026-11-27T17:00:00+08:00"))
      #expect(try await env.app.caseClock.runOnce() == 0)
      try await w.relogin()
      // On the last day the one-time notice is still in time (it stops the clock for case b).
      let noticed = try await w.act(w.d1, b.id, .requestCorrection, missingItems: ["营业执照副本", "卫生许可证明"])
      #expect(noticed.state == .correctionRequired)
      #expect(noticed.history.last?.missingItems == ["营业执照副本", "卫生许可证明"])

      env.setClock(cst("2026-11-30T09:00:00+08:00"))
      try await w.relogin()
      // Past the deadline the notice is too late…
      let tooLate = await expectRPCError(.failedPrecondition) {
        try await w.act(w.d1, a.id, .requestCorrection, missingItems: ["营业执照副本"])
      }
      #expect(tooLate?.message.contains("2026-11-27") == true)
      // …and the job records the acceptance, dated the day of receipt.
      #expect(try await env.app.caseClock.runOnce() == 1)
      #expect(try await env.app.caseClock.runOnce() == 0)
      let deemed = try await w.getCase(w.citizen, a.id)
      #expect(deemed.state == .accepted)
      #expect(deemed.deadlines.acceptedOn == deemed.deadlines.receivedOn)
      #expect(deemed.deadlines.acceptedOn == "2026-11-20")
      #expect(deemed.deadlines.decisionDue == "2026-12-04")  // 10 working days from 2026-11-20
      let row = try #require(deemed.history.last)
      #expect(row.event == .deemAccepted && row.state == .accepted)
      #expect(row.actor.accountID.isEmpty && row.actor.role == .unspecified)
      #expect(!row.reason.isEmpty)
      await expectRPCError(.failedPrecondition) {
        try await w.act(w.d1, a.id, .requestCorrection, missingItems: ["营业执照副本"])
      }
      #expect(try await w.getCase(w.citizen, b.id).state == .correctionRequired)
    }
  }

  /// 3b. The department's queue: earliest deadline first, paused cases last; the overdue filter.
  @Test(arguments: TestEngine.enabled) func queueSortsByDeadlineAndFiltersOverdue(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      // Monday 2026-11-02.
      var w = try await CaseWorld.make(env, start: cst("2026-11-02T09:00:00+08:00"))
      let (c, _) = try await w.submitCase(shopName: "丙店")
      try await w.act(w.d1, c.id, .accept)  // decision due 10 working days later: 2026-11-16
      let (d, _) = try await w.submitCase(shopName: "丁店")
      try await w.act(w.d1, d.id, .accept)
      try await w.act(w.d1, d.id, .suspend, reason: "听证")  // paused: no deadline
      let (a, _) = try await w.submitCase(shopName: "甲店")  // notice due 2026-11-09
      env.setClock(cst("2026-11-04T09:00:00+08:00"))
      try await w.relogin()
      let (b, _) = try await w.submitCase(shopName: "乙店")  // notice due 2026-11-11
      env.setClock(cst("2026-11-10T09:00:00+08:00"))
      try await w.relogin()

      let queue = try await env.caseAPI.listQueue(.init(), metadata: bearer(w.d1))
      #expect(queue.entries.map(\.caseID) == [a.id, b.id, c.id, d.id])
      #expect(queue.entries.map(\.dueOn) == ["2026-11-09", "2026-11-11", "2026-11-16", ""])
      #expect(queue.entries.map(\.overdue) == [true, false, false, false])
      #expect(queue.entries.map(\.state) == [.pendingAcceptance, .pendingAcceptance, .accepted, .suspended])
      #expect(queue.entries.first?.workingDaysLeft == -1)
      #expect(queue.entries.first?.stepName == "受理")
      #expect(queue.overdueCount == 1)

      let overdue = try await env.caseAPI.listQueue(.with { $0.filter = .overdue }, metadata: bearer(w.d1))
      #expect(overdue.entries.map(\.caseID) == [a.id])
      let soon = try await env.caseAPI.listQueue(.with { $0.filter = .dueSoon; $0.dueSoonDays = 1 }, metadata: bearer(w.d1))
      #expect(soon.entries.map(\.caseID) == [a.id, b.id])
      // Pages keep the order.
      let first = try await env.caseAPI.listQueue(.with { $0.pageSize = 3 }, metadata: bearer(w.d1))
      let second = try await env.caseAPI.listQueue(.with { $0.pageSize = 3; $0.pageToken = first.nextPageToken }, metadata: bearer(w.d1))
      #expect(first.entries.map(\.caseID) + second.entries.map(\.caseID) == [a.id, b.id, c.id, d.id])
      // D2 has nothing yet; a caseworker cannot list another department's queue.
      #expect(try await env.caseAPI.listQueue(.init(), metadata: bearer(w.d2)).entries.isEmpty)
      await expectRPCError(.permissionDenied) {
        try await env.caseAPI.listQueue(.with { $0.departmentCode = CaseWorld.d1 }, metadata: bearer(w.d2))
      }
      let forAdmin = try await env.caseAPI.listQueue(.with { $0.departmentCode = CaseWorld.d1 }, metadata: bearer(w.admin))
      #expect(forAdmin.entries.count == 4)
    }
  }

  /// 4. Two caseworkers of the same department accept the same case at once: exactly one wins.
  @Test(arguments: TestEngine.enabled) func concurrentAcceptsByTwoCaseworkersLetExactlyOneWin(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      let w = try await CaseWorld.make(env)
      for round in 0..<5 {
        let (c, _) = try await w.submitCase(shopName: "并发\(round)")
        let outcomes = await withTaskGroup(of: Result<Onewindow_V1_Case, RPCError>.self) { group in
          for token in [w.d1, w.d1b] {
            group.addTask {
              do { return .success(try await w.act(token, c.id, .accept)) } catch let e as RPCError { return .failure(e) } catch {
                return .failure(RPCError(code: .unknown, message: "\(error)"))
              }
            }
          }
          var all: [Result<Onewindow_V1_Case, RPCError>] = []
          for await outcome in group { all.append(outcome) }
          return all
        }
        let winners = outcomes.compactMap { try? $0.get() }
        let losers = outcomes.compactMap { outcome -> RPCError? in
          if case .failure(let e) = outcome { return e }
          return nil
        }
        #expect(winners.count == 1, "round \(round): \(losers.map(\.message))")
        #expect(losers.count == 1)
        for loser in losers {
          #expect([.failedPrecondition, .aborted].contains(loser.code), "round \(round): \(loser.code) \(loser.message)")
        }
        let final = try await w.getCase(w.citizen, c.id)
        #expect(final.state == .accepted && final.version == 3)
        #expect(final.history.filter { $0.event == .accept }.count == 1)
      }
    }
  }

  /// 6. The public progress query (查询一单): timeline without personal data; uniform failures; a brake.
  @Test(arguments: TestEngine.enabled) func trackCaseShowsTheTimelineAndBrakesGuessing(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      let w = try await CaseWorld.make(env)
      let (c, _) = try await w.submitCase()
      try await w.bringToSecondStep(c.id)

      // Typed without dashes and in lower case still matches.
      let typed = c.trackingCode.replacing("-", with: "").lowercased()
      let tracked = try await env.caseAPI.trackCase(.with { $0.trackingCode = typed; $0.phoneLast4 = "0001" })
      #expect(tracked.trackingCode == c.trackingCode && tracked.itemName == CaseWorld.itemName)
      #expect(tracked.state == .underReview)
      #expect(tracked.timeline.map(\.state) == [.submitted, .pendingAcceptance, .accepted, .underReview, .underReview])
      #expect(tracked.timeline.last?.stepName == "审查决定" && tracked.timeline.last?.departmentName == CaseWorld.d2Name)
      #expect(tracked.timeline.first?.departmentName == CaseWorld.d1Name)
      #expect(tracked.decisionDue == "2026-11-30")
      let json = try tracked.jsonString()
      for secret in ["王五", CaseWorld.citizenPhone, "11010519491231002X", w.citizenID, c.id] {
        #expect(!json.contains(secret), "the public answer contains \(secret)")
      }

      let otherCode = TrackingCode.make()
      let wrongCode = await expectRPCError(.notFound) {
        try await env.caseAPI.trackCase(.with { $0.trackingCode = otherCode; $0.phoneLast4 = "0001" })
      }
      let wrongPhone = await expectRPCError(.notFound) {
        try await env.caseAPI.trackCase(.with { $0.trackingCode = c.trackingCode; $0.phoneLast4 = "0002" })
      }
      #expect(wrongCode?.message == wrongPhone?.message)
      #expect(wrongCode?.message.contains(c.trackingCode) == false)
      // 2 failures so far; 8 more reach the limit of 10.
      for i in 0..<8 {
        await expectRPCError(.notFound) {
          try await env.caseAPI.trackCase(.with { $0.trackingCode = TrackingCode.make(); $0.phoneLast4 = String(format: "%04d", i) })
        }
      }
      let braked = await expectRPCError(.resourceExhausted) {
        try await env.caseAPI.trackCase(.with { $0.trackingCode = c.trackingCode; $0.phoneLast4 = "0001" })
      }
      #expect(braked?.message.contains("retry after") == true)
      // The window slides: later the right answer comes back.
      env.clock.advance(by: 601)
      #expect(try await env.caseAPI.trackCase(.with { $0.trackingCode = c.trackingCode; $0.phoneLast4 = "0001" }).state == .underReview)
    }
  }

  /// 7. A tampered certificate fails verification; revocation shows; the audit chain detects edits.
  @Test(arguments: TestEngine.enabled) func tamperedCertificatesRevocationAndTheAuditChain(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      let w = try await CaseWorld.make(env)
      let (c, _) = try await w.submitCase(shopName: "老王面馆")
      let completed = try await w.complete(c.id)
      let number = completed.certificateNumber
      let certificate = try await env.certificateAPI.getCertificate(.with { $0.number = number }, metadata: bearer(w.citizen))

      // Change one character of the signed payload (the shop's name), keep the signature.
      let parts = certificate.signed.split(separator: ".").map(String.init)
      try #require(parts.count == 3)
      let payload = String(decoding: try #require(Base64URL.decode(parts[1])), as: UTF8.self)
      #expect(payload.contains("老王面馆"))
      let forged = payload.replacing("老王面馆", with: "老李面馆")
      let tampered = [parts[0], Base64URL.encode(Array(forged.utf8)), parts[2]].joined(separator: ".")
      let bad = try await env.certificateAPI.verifyCertificate(.with { $0.signed = tampered })
      #expect(bad.result == .badSignature)
      #expect(!bad.hasCertificate)
      // A flipped character of the signature is caught too.
      var signature = Array(parts[2])
      signature[10] = signature[10] == "A" ? "B" : "A"
      let flipped = [parts[0], parts[1], String(signature)].joined(separator: ".")
      #expect(try await env.certificateAPI.verifyCertificate(.with { $0.signed = flipped }).result == .badSignature)
      #expect(try await env.certificateAPI.verifyCertificate(.with { $0.signed = "OWC1.abc" }).result == .malformed)
      #expect(try await env.certificateAPI.verifyCertificate(.with { $0.number = "OW2026-0000-0000-0000" }).result == .notFound)

      // Revocation by the issuing department (D2); D1 may not.
      await expectRPCError(.notFound) {
        try await env.certificateAPI.revokeCertificate(.with { $0.number = number; $0.reason = "x" }, metadata: bearer(w.d1))
      }
      await expectRPCError(.invalidArgument) {
        try await env.certificateAPI.revokeCertificate(.with { $0.number = number }, metadata: bearer(w.d2))
      }
      let revoked = try await env.certificateAPI.revokeCertificate(
        .with { $0.number = number; $0.reason = "经营场所不符合要求" }, metadata: bearer(w.d2))
      #expect(revoked.status == .revoked && revoked.revocationReason == "经营场所不符合要求")
      let check = try await env.certificateAPI.verifyCertificate(.with { $0.number = number })
      #expect(check.result == .revoked)
      #expect(try await env.certificateAPI.verifyCertificate(.with { $0.signed = certificate.signed }).result == .revoked)
      await expectRPCError(.failedPrecondition) {
        try await env.certificateAPI.revokeCertificate(.with { $0.number = number; $0.reason = "再次" }, metadata: bearer(w.d2))
      }

      // The audit chain: intact, then one edited row is named.
      let intact = try await env.auditAPI.verifyAuditChain(.init(), metadata: bearer(w.admin))
      #expect(intact.intact && intact.firstBrokenSequence == 0)
      #expect(intact.entriesChecked == Int64(try await env.count("audit_log")))
      #expect(intact.entriesChecked >= 8)
      let entries = try await env.auditAPI.listAuditEntries(.with { $0.targetID = c.id }, metadata: bearer(w.admin))
      #expect(entries.entries.map(\.action).contains("case.approve"))
      #expect(entries.entries.map(\.sequence) == entries.entries.map(\.sequence).sorted(by: >))
      try await env.store.inspection.execute("UPDATE audit_log SET reason = 'x' WHERE seq = 2")
      let broken = try await env.auditAPI.verifyAuditChain(.init(), metadata: bearer(w.admin))
      #expect(!broken.intact)
      #expect(broken.firstBrokenSequence == 2)
      #expect(!broken.problem.isEmpty)
    }
  }

  /// 8. 好差评: one rating per finished case; a bad one opens rectification, response, appeal, review.
  @Test(arguments: TestEngine.enabled) func evaluationRectificationAppealAndStatistics(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      let w = try await CaseWorld.make(env)
      let (bad, _) = try await w.submitCase(shopName: "差评店")
      let (good, _) = try await w.submitCase(shopName: "好评店")
      try await w.bringToSecondStep(bad.id)
      await expectRPCError(.failedPrecondition) {
        try await env.evaluationAPI.rateCase(.with { $0.caseID = bad.id; $0.level = 1 }, metadata: bearer(w.citizen))
      }
      try await w.act(w.d2, bad.id, .approve)
      try await w.act(w.d2, bad.id, .complete)
      try await w.complete(good.id)

      await expectRPCError(.invalidArgument) {
        try await env.evaluationAPI.rateCase(.with { $0.caseID = bad.id; $0.level = 6 }, metadata: bearer(w.citizen))
      }
      let rated = try await env.evaluationAPI.rateCase(
        .with {
          $0.caseID = bad.id
          $0.level = 1
          $0.indicators = ["overall": 1, "efficiency": 2]
          $0.text = "等待时间太长"
        }, metadata: bearer(w.citizen))
      #expect(rated.status == .rectifying)
      #expect(rated.departmentCode == CaseWorld.d2)
      #expect(rated.rectificationDue == "2026-11-30")  // 10 working days from 2026-11-16
      await expectRPCError(.failedPrecondition) {
        try await env.evaluationAPI.rateCase(.with { $0.caseID = bad.id; $0.level = 5 }, metadata: bearer(w.citizen))
      }
      #expect(try await w.getCase(w.citizen, bad.id).evaluated)
      let fine = try await env.evaluationAPI.rateCase(.with { $0.caseID = good.id; $0.level = 4 }, metadata: bearer(w.citizen))
      #expect(fine.status == .closed && fine.rectificationDue.isEmpty)

      let tasks = try await env.evaluationAPI.listRectifications(.with { $0.pendingOnly = true }, metadata: bearer(w.d2))
      #expect(tasks.evaluations.map(\.caseID) == [bad.id])
      #expect(try await env.evaluationAPI.listRectifications(.init(), metadata: bearer(w.d1)).evaluations.isEmpty)
      await expectRPCError(.permissionDenied) {
        try await env.evaluationAPI.respondToEvaluation(.with { $0.caseID = bad.id; $0.response = "x" }, metadata: bearer(w.citizen))
      }
      await expectRPCError(.notFound) {
        try await env.evaluationAPI.respondToEvaluation(.with { $0.caseID = bad.id; $0.response = "x" }, metadata: bearer(w.d1))
      }
      let responded = try await env.evaluationAPI.respondToEvaluation(
        .with { $0.caseID = bad.id; $0.response = "已优化审查流程，缩短等待时间" }, metadata: bearer(w.d2))
      #expect(responded.status == .rectified && responded.respondedOnTime)
      let seen = try await env.evaluationAPI.getEvaluation(.with { $0.caseID = bad.id }, metadata: bearer(w.citizen))
      #expect(seen.response == "已优化审查流程，缩短等待时间" && seen.status == .rectified)
      #expect(try await env.evaluationAPI.listRectifications(.with { $0.pendingOnly = true }, metadata: bearer(w.d2)).evaluations.isEmpty)

      let before = try await env.evaluationAPI.getEvaluationStats(.init())
      let d2Before = try #require(before.departments.first { $0.key == CaseWorld.d2 })
      #expect(d2Before.count == 2 && d2Before.average == 2.5 && d2Before.badShare == 0.5)
      #expect(d2Before.name == CaseWorld.d2Name)

      let appealed = try await env.evaluationAPI.appealEvaluation(
        .with { $0.caseID = bad.id; $0.reason = "评价内容与办件无关" }, metadata: bearer(w.d2))
      #expect(appealed.status == .appealed)
      await expectRPCError(.permissionDenied) {
        try await env.evaluationAPI.reviewAppeal(.with { $0.caseID = bad.id; $0.invalidate = true; $0.note = "x" }, metadata: bearer(w.d2))
      }
      let reviewed = try await env.evaluationAPI.reviewAppeal(
        .with { $0.caseID = bad.id; $0.invalidate = true; $0.note = "经核实为恶意差评" }, metadata: bearer(w.admin))
      #expect(reviewed.status == .invalidated && reviewed.reviewNote == "经核实为恶意差评")

      let after = try await env.evaluationAPI.getEvaluationStats(.init())
      let d2After = try #require(after.departments.first { $0.key == CaseWorld.d2 })
      #expect(d2After.count == 1 && d2After.average == 4 && d2After.badShare == 0 && d2After.pendingRectifications == 0)
      let itemAfter = try #require(after.items.first { $0.key == CaseWorld.itemCode })
      #expect(itemAfter.count == 1 && itemAfter.name == CaseWorld.itemName)
    }
  }
}
