import Foundation
import GRPCCore
import OneWindowAPI
import OneWindowClientPosix
import OneWindowCore
import Testing

/// Every RPC validates at the edge: INVALID_ARGUMENT naming the field, and nothing written.
@Suite struct BadInputE2ETests {
  @Test func registrationRejectsBadFieldsAndWritesNothing() async throws {
    try await TestEnvironment.run { (env) async throws in
      let valid = Onewindow_V1_RegisterCitizenRequest.with { $0.name = "王五"; $0.phone = "13900000001"; $0.idNumber = "11010519491231002X" }
      let cases: [(String, (inout Onewindow_V1_RegisterCitizenRequest) -> Void)] = [
        ("id_number", { $0.idNumber = "110105194912310021" }),        // wrong check character
        ("id_number", { $0.idNumber = "11010519491231002" }),         // wrong length
        ("phone", { $0.phone = "1234" }),
        ("name", { $0.name = "" }),
        ("name", { $0.name = String(repeating: "名", count: 51) }),
        ("password", { $0.password = "short1" }),
        ("name", { $0.name = "bad\u{0000}name" }),
      ]
      for (field, mutate) in cases {
        var request = valid
        mutate(&request)
        let error = await expectRPCError(.invalidArgument) { try await env.identity.registerCitizen(request) }
        #expect(error?.message.hasPrefix(field) == true, "message '\(error?.message ?? "")' should name \(field)")
      }
      #expect(try await env.count("accounts") == 0)
    }
  }

  @Test func identityAndCatalogRequestsAreValidated() async throws {
    try await TestEnvironment.run { (env) async throws in
      let admin = try await env.adminSession()
      let auth = bearer(admin.accessToken)
      let accountsBefore = try await env.count("accounts")

      await expectRPCError(.invalidArgument) {
        try await env.identity.createStaffAccount(.with { $0.role = .UNRECOGNIZED(99); $0.username = "someone"; $0.displayName = "x" }, metadata: auth)
      }
      await expectRPCError(.invalidArgument) {
        try await env.identity.createStaffAccount(.with { $0.role = .citizen; $0.username = "someone"; $0.displayName = "x" }, metadata: auth)
      }
      await expectRPCError(.invalidArgument) {
        try await env.identity.createStaffAccount(.with { $0.role = .admin; $0.username = "X"; $0.displayName = "x" }, metadata: auth)
      }
      await expectRPCError(.invalidArgument) { try await env.identity.getAccount(.with { $0.accountID = "../etc/passwd" }, metadata: auth) }
      await expectRPCError(.notFound) { try await env.identity.getAccount(.with { $0.accountID = ULID.make() }, metadata: auth) }
      await expectRPCError(.invalidArgument) { try await env.identity.requestLoginCode(.with { $0.phone = "not a phone" }) }
      await expectRPCError(.invalidArgument) { try await env.identity.loginWithCode(.with { $0.phone = "13900000001"; $0.code = "12ab56" }) }
      await expectRPCError(.invalidArgument) { try await env.identity.loginWithPassword(.with { $0.login = ""; $0.password = "x" }) }
      #expect(try await env.count("accounts") == accountsBefore)
      #expect(try await env.count("login_codes") == 0)

      await expectRPCError(.invalidArgument) { try await env.catalog.listItems(.with { $0.pageToken = "%%%not-a-token" }) }
      await expectRPCError(.invalidArgument) { try await env.catalog.listItems(.with { $0.pageSize = 1000 }) }
      await expectRPCError(.invalidArgument) { try await env.catalog.listItems(.with { $0.category = .UNRECOGNIZED(42) }) }
      await expectRPCError(.invalidArgument) { try await env.catalog.listItems(.with { $0.maxOnsiteVisits = -1 }) }
      await expectRPCError(.invalidArgument) { try await env.catalog.searchItems(.with { $0.query = "" }) }
      await expectRPCError(.invalidArgument) { try await env.catalog.searchItems(.with { $0.query = String(repeating: "证", count: 65) }) }
      await expectRPCError(.invalidArgument) { try await env.catalog.searchItems(.with { $0.query = "身份证"; $0.pageToken = "bogus" }) }
      await expectRPCError(.invalidArgument) { try await env.catalog.getItem(.with { $0.code = "" }) }
      await expectRPCError(.invalidArgument) {
        try await env.catalog.upsertDepartment(.with { $0.department = .with { $0.code = "Bad Code"; $0.name = "x" } }, metadata: auth)
      }

      _ = try await env.catalog.upsertDepartment(.with { $0.department = .with { $0.code = "gongan"; $0.name = "市公安局" } }, metadata: auth)
      await expectRPCError(.invalidArgument) { try await env.catalog.createItem(.init(), metadata: auth) }
      let badSpecs: [(String, (inout Onewindow_V1_ServiceItemSpec) -> Void)] = [
        ("spec.department_code", { $0.departmentCode = "nowhere" }),
        ("spec.category", { $0.category = .unspecified }),
        ("spec.target", { $0.target = .UNRECOGNIZED(7) }),
        ("spec.promised_limit_days", { $0.promisedLimitDays = 61 }),
        ("spec.process_steps", { $0.processSteps = [] }),
        ("spec.materials[0].form", { $0.materials[0].form = .unspecified }),
        ("spec.fees[0].amount_fen", { $0.fees[0].amountFen = -5 }),
        ("spec.code", { $0.code = "含中文" }),
        ("spec.form_schema.fields[0].type", { $0.formSchema.fields[0].type = .UNRECOGNIZED(99) }),
      ]
      for (field, mutate) in badSpecs {
        var spec = itemSpec()
        mutate(&spec)
        let error = await expectRPCError(.invalidArgument) { try await env.catalog.createItem(.with { $0.spec = spec }, metadata: auth) }
        #expect(error?.message.hasPrefix(field) == true, "message '\(error?.message ?? "")' should name \(field)")
      }
      await expectRPCError(.invalidArgument) {
        try await env.catalog.updateItem(.with { $0.spec = itemSpec(); $0.expectedVersion = 0 }, metadata: auth)
      }
      await expectRPCError(.notFound) {
        try await env.catalog.updateItem(.with { $0.spec = itemSpec(code: "SF-MISSING"); $0.expectedVersion = 1 }, metadata: auth)
      }
      await expectRPCError(.notFound) { try await env.catalog.publishItem(.with { $0.code = "SF-MISSING" }, metadata: auth) }
      #expect(try await env.count("catalog_items") == 0)
    }
  }
}
