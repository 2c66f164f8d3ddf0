import Foundation
import GRPCCore
import OneWindowAPI
import OneWindowClientPosix
import OneWindowCore
@testable import OneWindowServer
import Testing
import OneWindowTestSupport

@Suite struct AuthorizationE2ETests {
  @Test(arguments: TestEngine.enabled) func citizensCannotCallAdminRPCsAndAnonymousCallsNeedTokens(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      let citizen = try await env.citizenSession()
      let auth = bearer(citizen.accessToken)
      await expectRPCError(.permissionDenied) { try await env.catalog.createItem(.with { $0.spec = itemSpec() }, metadata: auth) }
      await expectRPCError(.permissionDenied) {
        try await env.catalog.upsertDepartment(.with { $0.department = .with { $0.code = "x1"; $0.name = "X" } }, metadata: auth)
      }
      await expectRPCError(.permissionDenied) {
        try await env.identity.createStaffAccount(.with { $0.role = .admin; $0.username = "evil"; $0.displayName = "x" }, metadata: auth)
      }
      await expectRPCError(.permissionDenied) { try await env.catalog.listItems(.with { $0.includeUnpublished = true }, metadata: auth) }
      // No token.
      await expectRPCError(.unauthenticated) { try await env.identity.whoAmI(.init()) }
      await expectRPCError(.unauthenticated) { try await env.catalog.createItem(.with { $0.spec = itemSpec() }) }
      // Garbage and well-formed-but-unknown tokens, even on public RPCs.
      await expectRPCError(.unauthenticated) { try await env.identity.whoAmI(.init(), metadata: ["authorization": "Bearer nonsense"]) }
      await expectRPCError(.unauthenticated) { try await env.identity.whoAmI(.init(), metadata: ["authorization": "Basic abc"]) }
      let forged = OpaqueToken.generate(prefix: OpaqueToken.accessPrefix)
      await expectRPCError(.unauthenticated) { try await env.catalog.listItems(.init(), metadata: bearer(forged)) }
      // A refresh token is not an access token.
      await expectRPCError(.unauthenticated) { try await env.identity.whoAmI(.init(), metadata: bearer(citizen.refreshToken)) }
      #expect(try await env.count("catalog_items") == 0)
      #expect(try await env.count("departments") == 0)
    }
  }

  @Test func everyRegisteredMethodHasAnAccessRule() {
    let services: [[MethodDescriptor]] = [
      Onewindow_V1_IdentityService.Method.descriptors,
      Onewindow_V1_CatalogService.Method.descriptors,
      Grpc_Health_V1_Health.Method.descriptors,
      Onewindow_V1_SyncService.Method.descriptors,
      Onewindow_V1_CaseService.Method.descriptors,
      Onewindow_V1_MaterialService.Method.descriptors,
      Onewindow_V1_CertificateService.Method.descriptors,
      Onewindow_V1_EvaluationService.Method.descriptors,
      Onewindow_V1_AuditService.Method.descriptors,
      Onewindow_V1_InboxService.Method.descriptors,
      Onewindow_V1_NotifyService.Method.descriptors,
      Onewindow_V1_PaymentService.Method.descriptors,
    ]
    for method in services.flatMap({ $0 }) {
      #expect(AccessPolicy.access(for: method) != nil, "no access rule for \(method)")
    }
    #expect(AccessPolicy.table.count == services.flatMap { $0 }.count)
  }
}
