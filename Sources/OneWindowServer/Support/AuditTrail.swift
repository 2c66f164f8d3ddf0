import Foundation
import OneWindowCore
import OneWindowStore

/// Audit entries for administrative actions outside cases (catalog publishing, role and
/// department changes), appended right after the change by the caller of the RPC.
struct AuditTrail: Sendable {
  let audit: any AuditStore
  let clock: any WallClock

  func record(_ action: String, targetType: String, targetID: String, subjectID: String? = nil, reason: String = "") async throws {
    guard let p = RequestContext.principal else { return }
    try await audit.append(
      AuditEvent(p, action: action, targetType: targetType, targetID: targetID, subjectID: subjectID, reason: reason),
      now: clock.now())
  }
}
