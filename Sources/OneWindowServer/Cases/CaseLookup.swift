import OneWindowCore
import OneWindowStore

extension CaseStore {
  /// A case by its id or its tracking code (as people type it): the one way every RPC that
  /// takes a `case_id` reads it. INVALID_ARGUMENT when the text is neither.
  func caseRecord(idOrCode: String) async throws -> CaseRecord? {
    let text = idOrCode.trimmingWhitespace()
    guard !text.isEmpty else { throw ValidationError("case_id", "is required (a case id or tracking code)") }
    if ULID.isValid(text) { return try await caseRecord(id: text) }
    guard let code = try? TrackingCode.normalize(text) else {
      throw ValidationError("case_id", "must be a case id or a tracking code like 7K3M-9QXT-2B8N-4WZP-3")
    }
    return try await caseRecord(trackingCode: code)
  }
}
