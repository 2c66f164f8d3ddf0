import Foundation
import GRDB
import Testing
@testable import OneWindowCore
@testable import OneWindowStore

@Suite struct CaseTrackingCheckStoreTests {
  /// A case row as v3 wrote it: the phone check only inside the JSON body.
  static func insertCase(_ db: Database, id: String, trackingCode: String, body: String) throws {
    try db.execute(
      sql: "INSERT OR IGNORE INTO accounts (id, role, display_name, trust_level, created_at, updated_at) VALUES ('acct-1', 'citizen', '张三', 1, 0, 0)")
    try db.execute(
      sql: """
        INSERT INTO cases (id, tracking_code, applicant_id, draft_id, idempotency_key, item_code, state, version,
          handling_department, body, submitted_at, updated_at)
        VALUES (?, ?, 'acct-1', ?, ?, 'ITEM-1', 'accepted', 1, 'gongan', ?, 0, 0)
        """,
      arguments: [id, trackingCode, "d-\(id)", "k-\(id)", body])
  }

  @Test func theMigrationTakesThePhoneCheckOfExistingCasesFromTheirBody() throws {
    let db = try DatabaseQueue()
    try Migrations.migrator.migrate(db, upTo: "v5-payments")
    let check = CaseRecord.phoneCheck(caseID: "case-1", last4: "0001")
    try db.write { db in try Self.insertCase(db, id: "case-1", trackingCode: "T-1", body: #"{"phoneCheck":"\#(check)","id":"case-1"}"#) }
    try Migrations.migrator.migrate(db)
    let stored = try db.read { db in try String.fetchOne(db, sql: "SELECT phone_check FROM cases WHERE id = 'case-1'") }
    #expect(stored == check)
  }

  /// The lookup reads the covering index only, never the row with its body.
  @Test func trackingCheckReadsOneIndexEntry() async throws {
    try await withTemporaryStore { store in
      let check = CaseRecord.phoneCheck(caseID: "case-1", last4: "0001")
      try await store.pool.write { db in
        try Self.insertCase(db, id: "case-1", trackingCode: "T-1", body: "{}")
        try db.execute(sql: "UPDATE cases SET phone_check = ? WHERE id = 'case-1'", arguments: [check])
      }
      #expect(try await store.cases.trackingCheck(trackingCode: "T-1") == CaseTrackingCheck(caseID: "case-1", phoneCheck: check))
      #expect(try await store.cases.trackingCheck(trackingCode: "T-2") == nil)
      let plan = try await store.pool.read { db in
        try Row.fetchAll(
          db, sql: "EXPLAIN QUERY PLAN SELECT id, phone_check FROM cases INDEXED BY cases_tracking_check WHERE tracking_code = ?",
          arguments: ["T-1"])
          .map { $0["detail"] as String }.joined(separator: "; ")
      }
      #expect(plan.contains("COVERING INDEX cases_tracking_check"), "plan: \(plan)")
    }
  }
}
