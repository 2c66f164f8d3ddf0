import OneWindowCore

/// Audit entries for administrative RPCs outside cases (catalog publishing, account
/// administration). The store appends them in the same transaction as the change.
enum AuditTrail {
  /// The entry for the current RPC's caller; nil outside an authenticated RPC.
  static func event(
    _ action: String, targetType: String, targetID: String, subjectID: String? = nil, reason: String = ""
  ) -> AuditEvent? {
    RequestContext.principal.map {
      AuditEvent($0, action: action, targetType: targetType, targetID: targetID, subjectID: subjectID, reason: reason)
    }
  }
}
