import Foundation
import GRPCCore
import OneWindowAPI
import OneWindowCore
import OneWindowStore

/// Walks the whole audit chain in pages; shared by the RPC and `onewindow audit verify`.
public enum AuditVerification {
  public struct Result: Sendable {
    public var checked: Int
    public var firstBreak: AuditChain.Break?
  }

  public static func run(_ audit: any AuditStore, pageSize: Int = 5000) async throws -> Result {
    var verifier = AuditChain.Verifier()
    while true {
      let page = try await audit.entries(after: verifier.lastSequence, limit: pageSize)
      if page.isEmpty { return Result(checked: verifier.checked, firstBreak: nil) }
      for entry in page {
        if let broken = verifier.check(entry) { return Result(checked: verifier.checked, firstBreak: broken) }
      }
    }
  }
}

struct AuditService: Onewindow_V1_AuditService.SimpleServiceProtocol {
  let store: any Store

  func verifyAuditChain(
    request: Onewindow_V1_VerifyAuditChainRequest, context: ServerContext
  ) async throws -> Onewindow_V1_VerifyAuditChainResponse {
    let result = try await AuditVerification.run(store.audit)
    return .with {
      $0.intact = result.firstBreak == nil
      $0.entriesChecked = Int64(result.checked)
      $0.firstBrokenSequence = result.firstBreak?.sequence ?? 0
      $0.problem = result.firstBreak?.description ?? ""
    }
  }

  func listAuditEntries(
    request: Onewindow_V1_ListAuditEntriesRequest, context: ServerContext
  ) async throws -> Onewindow_V1_ListAuditEntriesResponse {
    let size = try Paging.pageSize(request.pageSize, default: 50, max: 200)
    var before: Int64?
    if !request.pageToken.isEmpty {
      guard let n = Int64(try Paging.token(request.pageToken, prefix: "a")) else { throw Paging.badToken }
      before = n
    }
    let entries = try await store.audit.entries(
      targetID: request.targetID.isEmpty ? nil : request.targetID, subjectID: request.subjectID.isEmpty ? nil : request.subjectID,
      beforeSequence: before, limit: size + 1)
    return .with {
      $0.entries = entries.prefix(size).map(Onewindow_V1_AuditEntry.init)
      if entries.count > size, let last = entries.prefix(size).last {
        $0.nextPageToken = Paging.makeToken("a", "\(last.sequence)")
      }
    }
  }
}
