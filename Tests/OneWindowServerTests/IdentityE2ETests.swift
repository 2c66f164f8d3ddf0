import Foundation
import GRPCCore
import OneWindowAPI
import OneWindowClientPosix
import OneWindowCore
import OneWindowServer
import Synchronization
import Testing
import OneWindowTestSupport

@Suite struct IdentityE2ETests {
  @Test(arguments: TestEngine.enabled) func codeLoginWhoAmIRefreshAndReuseRevokesTheFamily(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      let phone = "13900000001"
      let account = try await env.identity.registerCitizen(.with {
        $0.name = "王五"; $0.phone = phone; $0.idNumber = "11010519491231002X"
      })
      #expect(account.role == .citizen)
      #expect(account.trustLevel == 2)
      #expect(account.phoneMasked == "139****0001")
      #expect(account.idNumberMasked == "1101**********002X")
      #expect(!account.hasPassword_p)

      let sent = try await env.identity.requestLoginCode(.with { $0.phone = phone })
      #expect(sent.resendAfterSeconds == 60)
      let code = try #require(try await env.latestCode(for: phone))
      // The code is stored only as a hash.
      let stored = try await env.store.inspection.strings("SELECT code_hash FROM login_codes")
      #expect(stored == [OpaqueToken.hash(code)])

      let session = try await env.identity.loginWithCode(.with { $0.phone = phone; $0.code = code })
      #expect(session.account.id == account.id)
      let me = try await env.identity.whoAmI(.init(), metadata: bearer(session.accessToken))
      #expect(me.id == account.id)
      // Tokens are stored only as hashes.
      let hashes = try await env.store.inspection.strings("SELECT token_hash FROM access_tokens")
      #expect(hashes == [OpaqueToken.hash(session.accessToken)])

      // The code was single use.
      await expectRPCError(.unauthenticated) { try await env.identity.loginWithCode(.with { $0.phone = phone; $0.code = code }) }

      let refreshed = try await env.identity.refresh(.with { $0.refreshToken = session.refreshToken })
      #expect(refreshed.refreshToken != session.refreshToken)
      #expect(try await env.identity.whoAmI(.init(), metadata: bearer(refreshed.accessToken)).id == account.id)

      // Reusing the old refresh token revokes every token of this login.
      await expectRPCError(.unauthenticated) { try await env.identity.refresh(.with { $0.refreshToken = session.refreshToken }) }
      await expectRPCError(.unauthenticated) { try await env.identity.whoAmI(.init(), metadata: bearer(refreshed.accessToken)) }
      await expectRPCError(.unauthenticated) { try await env.identity.refresh(.with { $0.refreshToken = refreshed.refreshToken }) }
    }
  }

  @Test(arguments: TestEngine.enabled) func fiveWrongCodesBurnTheCode(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      let phone = "13900000002"
      _ = try await env.identity.registerCitizen(.with { $0.name = "赵六"; $0.phone = phone; $0.idNumber = "440524198001010013" })
      _ = try await env.identity.requestLoginCode(.with { $0.phone = phone })
      let code = try #require(try await env.latestCode(for: phone))
      let wrong = code == "000000" ? "111111" : "000000"
      for _ in 0..<4 {
        await expectRPCError(.unauthenticated) { try await env.identity.loginWithCode(.with { $0.phone = phone; $0.code = wrong }) }
      }
      let locked = await expectRPCError(.resourceExhausted) {
        try await env.identity.loginWithCode(.with { $0.phone = phone; $0.code = wrong })
      }
      #expect(locked?.metadata[stringValues: "retry-after"].first(where: { _ in true }) != nil)
      // Even the right code no longer works.
      await expectRPCError(.resourceExhausted) { try await env.identity.loginWithCode(.with { $0.phone = phone; $0.code = code }) }
      // A new code is rate limited for a minute, then works.
      await expectRPCError(.resourceExhausted) { try await env.identity.requestLoginCode(.with { $0.phone = phone }) }
      env.clock.advance(by: 61)
      _ = try await env.identity.requestLoginCode(.with { $0.phone = phone })
      let fresh = try #require(try await env.latestCode(for: phone))
      _ = try await env.identity.loginWithCode(.with { $0.phone = phone; $0.code = fresh })
    }
  }

  @Test(arguments: TestEngine.enabled) func codesExpireAfterFiveMinutesAndUnknownPhonesLookTheSame(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      let phone = "13900000003"
      _ = try await env.identity.registerCitizen(.with { $0.name = "孙七"; $0.phone = phone; $0.idNumber = "11010519491231002X" })
      _ = try await env.identity.requestLoginCode(.with { $0.phone = phone })
      let code = try #require(try await env.latestCode(for: phone))
      env.clock.advance(by: 301)
      await expectRPCError(.unauthenticated) { try await env.identity.loginWithCode(.with { $0.phone = phone; $0.code = code }) }

      // An unregistered phone gets the same answer, and no SMS is sent.
      let unknown = try await env.identity.requestLoginCode(.with { $0.phone = "13900009999" })
      #expect(unknown.resendAfterSeconds == 60)
      #expect(try await env.store.outbox.messages(recipient: "13900009999", limit: 5).isEmpty)
    }
  }

  @Test(arguments: TestEngine.enabled) func passwordLockoutAfterFiveFailures(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      _ = try await env.citizenSession()
      for _ in 0..<4 {
        await expectRPCError(.unauthenticated) {
          try await env.identity.loginWithPassword(.with { $0.login = "13900000001"; $0.password = "wrong-pass-1" })
        }
      }
      await expectRPCError(.resourceExhausted) {
        try await env.identity.loginWithPassword(.with { $0.login = "13900000001"; $0.password = "wrong-pass-1" })
      }
      // Locked even for the right password, until the lockout passes.
      await expectRPCError(.resourceExhausted) {
        try await env.identity.loginWithPassword(.with { $0.login = "13900000001"; $0.password = "Citizen-pass-1" })
      }
      env.clock.advance(by: 15 * 60 + 1)
      _ = try await env.identity.loginWithPassword(.with { $0.login = "13900000001"; $0.password = "Citizen-pass-1" })
      // Unknown login names get the same error as wrong passwords.
      await expectRPCError(.unauthenticated) {
        try await env.identity.loginWithPassword(.with { $0.login = "nobody"; $0.password = "Whatever-1" })
      }
    }
  }

  @Test(arguments: TestEngine.enabled) func accessTokensExpireAndLogoutRevokes(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      let session = try await env.citizenSession()
      env.clock.advance(by: 15 * 60 + 1)
      await expectRPCError(.unauthenticated) { try await env.identity.whoAmI(.init(), metadata: bearer(session.accessToken)) }
      let renewed = try await env.identity.refresh(.with { $0.refreshToken = session.refreshToken })
      _ = try await env.identity.whoAmI(.init(), metadata: bearer(renewed.accessToken))
      _ = try await env.identity.logout(.init(), metadata: bearer(renewed.accessToken))
      await expectRPCError(.unauthenticated) { try await env.identity.whoAmI(.init(), metadata: bearer(renewed.accessToken)) }
      await expectRPCError(.unauthenticated) { try await env.identity.refresh(.with { $0.refreshToken = renewed.refreshToken }) }
    }
  }

  @Test(arguments: TestEngine.enabled) func changePasswordRevokesOtherSessions(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      let first = try await env.citizenSession()
      let second = try await env.identity.loginWithPassword(.with { $0.login = "13900000001"; $0.password = "Citizen-pass-1" })
      await expectRPCError(.permissionDenied) {
        try await env.identity.changePassword(.with { $0.currentPassword = "nope-nope-1"; $0.newPassword = "Better-pass-2" }, metadata: bearer(first.accessToken))
      }
      _ = try await env.identity.changePassword(
        .with { $0.currentPassword = "Citizen-pass-1"; $0.newPassword = "Better-pass-2" }, metadata: bearer(first.accessToken))
      _ = try await env.identity.whoAmI(.init(), metadata: bearer(first.accessToken))
      await expectRPCError(.unauthenticated) { try await env.identity.whoAmI(.init(), metadata: bearer(second.accessToken)) }
      _ = try await env.identity.loginWithPassword(.with { $0.login = "13900000001"; $0.password = "Better-pass-2" })
    }
  }

  @Test(arguments: TestEngine.enabled) func enterprisesStaffAndRegistryVerification(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      let citizen = try await env.citizenSession()
      let enterprise = try await env.identity.registerEnterprise(
        .with { $0.name = "示范市测试科技有限公司"; $0.creditCode = "91350100M000100Y43"; $0.password = "Company-pass-1" },
        metadata: bearer(citizen.accessToken))
      #expect(enterprise.role == .enterprise)
      #expect(enterprise.legalRepresentativeID == citizen.account.id)
      let companyLogin = try await env.identity.loginWithPassword(.with { $0.login = "91350100m000100y43"; $0.password = "Company-pass-1" })
      #expect(companyLogin.account.id == enterprise.id)
      // Only citizens register enterprises.
      await expectRPCError(.permissionDenied) {
        try await env.identity.registerEnterprise(
          .with { $0.name = "另一家公司"; $0.creditCode = "91330100799655058B"; $0.password = "Company-pass-1" },
          metadata: bearer(companyLogin.accessToken))
      }

      let admin = try await env.adminSession()
      let verified = try await env.identity.verifyIdentity(.with { $0.accountID = citizen.account.id }, metadata: bearer(admin.accessToken))
      #expect(verified.trustLevel == 3)
      await expectRPCError(.failedPrecondition) {
        try await env.identity.verifyIdentity(.with { $0.accountID = enterprise.id }, metadata: bearer(admin.accessToken))
      }

      _ = try await env.catalog.upsertDepartment(.with { $0.department = .with { $0.code = "gongan"; $0.name = "市公安局" } }, metadata: bearer(admin.accessToken))
      let staff = try await env.identity.createStaffAccount(
        .with { $0.role = .caseworker; $0.username = "cw-test"; $0.displayName = "窗口人员"; $0.departmentCode = "gongan" },
        metadata: bearer(admin.accessToken))
      #expect(staff.generatedPassword.count == 16)
      #expect(staff.account.departmentCode == "gongan")
      let worker = try await env.identity.loginWithPassword(.with { $0.login = "cw-test"; $0.password = staff.generatedPassword })
      #expect(worker.account.role == .caseworker)
      await expectRPCError(.notFound) {
        try await env.identity.createStaffAccount(
          .with { $0.role = .caseworker; $0.username = "cw-ghost"; $0.displayName = "无部门"; $0.departmentCode = "ghost" },
          metadata: bearer(admin.accessToken))
      }

      // Ownership: a citizen reads their own account only; admins read any.
      _ = try await env.identity.getAccount(.with { $0.accountID = citizen.account.id }, metadata: bearer(citizen.accessToken))
      await expectRPCError(.permissionDenied) {
        try await env.identity.getAccount(.with { $0.accountID = worker.account.id }, metadata: bearer(citizen.accessToken))
      }
      _ = try await env.identity.getAccount(.with { $0.accountID = citizen.account.id }, metadata: bearer(admin.accessToken))
    }
  }

  @Test(arguments: TestEngine.enabled) func duplicateRegistrationIsAlreadyExists(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      _ = try await env.citizenSession()
      let error = await expectRPCError(.alreadyExists) {
        try await env.identity.registerCitizen(.with { $0.name = "重复"; $0.phone = "13900000001"; $0.idNumber = "440524198001010013" })
      }
      #expect(error?.message.contains("phone") == true)
      #expect(try await env.count("accounts") == 1)
    }
  }
}

@Suite struct PeerLimitE2ETests {
  /// A valid resident ID number with the given 3-digit sequence.
  func idNumber(_ sequence: Int) -> String {
    let first17 = "11010519900307" + String(format: "%03d", sequence)
    return first17 + String(ResidentIDNumber.checkCharacter(forFirst17: first17) ?? "0")
  }

  @Test(arguments: TestEngine.enabled) func codeRequestsAndRegistrationsAreLimitedPerAddress(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      for i in 0..<30 {
        _ = try await env.identity.requestLoginCode(.with { $0.phone = "1370000" + String(format: "%04d", i) })
      }
      let limited = await expectRPCError(.resourceExhausted) {
        try await env.identity.requestLoginCode(.with { $0.phone = "13799999999" })
      }
      #expect(limited?.message.contains("from this address") == true)
      #expect(try await env.count("login_codes") == 30)

      for i in 0..<20 {
        _ = try await env.identity.registerCitizen(.with {
          $0.name = "测试\(i)"; $0.phone = "1360000" + String(format: "%04d", i); $0.idNumber = idNumber(i)
        })
      }
      await expectRPCError(.resourceExhausted) {
        try await env.identity.registerCitizen(.with { $0.name = "多余"; $0.phone = "13699999999"; $0.idNumber = idNumber(99) })
      }
      #expect(try await env.count("accounts") == 20)
      // The windows pass.
      env.clock.advance(by: 3601)
      _ = try await env.identity.requestLoginCode(.with { $0.phone = "13799999999" })
      _ = try await env.identity.registerCitizen(.with { $0.name = "多余"; $0.phone = "13699999999"; $0.idNumber = idNumber(99) })
    }
  }
}

/// Fails the first send (a gateway outage), then delivers by remembering the code.
final class FlakyCodeSender: LoginCodeSender {
  private let state = Mutex<(failuresLeft: Int, delivered: [String])>((1, []))

  func send(code: String, to phone: PhoneNumber) async throws {
    let fail = state.withLock { s -> Bool in
      if s.failuresLeft > 0 { s.failuresLeft -= 1; return true }
      s.delivered.append(code)
      return false
    }
    if fail { throw CancellationError() }
  }

  var lastDelivered: String? { state.withLock { $0.delivered.last } }
}

@Suite struct CodeDeliveryE2ETests {
  @Test(arguments: TestEngine.enabled) func aFailedSendLeavesNoCodeAndCanBeRetriedAtOnce(engine: TestEngine) async throws {
    let sender = FlakyCodeSender()
    try await TestEnvironment.run(engine: engine, codeSender: sender) { (env) async throws in
      let phone = "13900000041"
      _ = try await env.identity.registerCitizen(.with { $0.name = "吴九"; $0.phone = phone; $0.idNumber = "11010519491231002X" })
      await expectRPCError(.unavailable) { try await env.identity.requestLoginCode(.with { $0.phone = phone }) }
      #expect(try await env.count("login_codes") == 0)
      // No 60-second wait: the failed attempt was withdrawn.
      _ = try await env.identity.requestLoginCode(.with { $0.phone = phone })
      let code = try #require(sender.lastDelivered)
      _ = try await env.identity.loginWithCode(.with { $0.phone = phone; $0.code = code })
    }
  }
}
