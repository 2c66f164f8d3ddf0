import Foundation
import GRDB
import PropertyBased
import Testing
@testable import OneWindowCore
import OneWindowStore
@testable import OneWindowStoreSQLite

/// What only the SQLite engine has: its migrations' data backfills, its FTS5 expressions, WAL mode
/// and its query plans. Behaviour both engines share is in OneWindowStoreTests.
@Suite struct SQLiteFileTests {
  @Test func theDatabaseIsOneFileInWALMode() async throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ow-sqlite-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let store = try SQLiteStore(directory: dir)
    let mode = try await store.pool.read { db in try String.fetchOne(db, sql: "PRAGMA journal_mode") }
    #expect(mode == "wal")
    #expect(try await store.inspection.tableNames().contains("catalog_fts"))
    try await store.close()
    #expect(FileManager.default.fileExists(atPath: dir + "/onewindow.sqlite"))
  }
}

/// The catalog search's FTS5 expressions: every term one whole quoted phrase, joined by AND.
@Suite struct FTS5MatchTests {
  @Test func searchTermsNeverEscapeTheirPhrases() async {
    let characters = Array("身份证明护照 \"'*:()-^ANDORNOTabc\u{3000}，、%_\\")
    await propertyCheck(input: Gen.int(in: 0...(characters.count - 1)).array(of: 0...40)) { indices in
      let text = String(indices.map { characters[$0] })
      guard let query = try? SearchQuery.parse(text), let match = FTS5.match(query.terms) else { return }
      let phrases = match.components(separatedBy: " AND ")
      #expect(phrases.count == query.terms.count)
      for phrase in phrases {
        #expect(phrase.hasPrefix("\"") && phrase.hasSuffix("\"") && phrase.count >= 5)
        #expect(!phrase.dropFirst().dropLast().contains("\""))
      }
    }
  }

  @Test func noTermsNoExpression() {
    #expect(FTS5.match([]) == nil)
    #expect(FTS5.match(["身份证", "换领证"]) == "\"身份证\" AND \"换领证\"")
  }
}

@Suite struct AccountRegionMigrationTests {
  @Test func existingAccountsGetTheirRegionFromTheCoreRule() throws {
    let db = try DatabaseQueue()
    try Migrations.migrator.migrate(db, upTo: "v7-case-phone-check")
    try db.write { db in
      let insert = "INSERT INTO accounts (id, role, display_name, trust_level, id_number, credit_code, created_at, updated_at) VALUES (?, ?, ?, 1, ?, ?, 0, 0)"
      try db.execute(sql: insert, arguments: ["c1", "citizen", "王五", "11010519491231002X", nil])
      try db.execute(sql: insert, arguments: ["e1", "enterprise", "某公司", nil, "91310104MA1FL8XQ30"])
      try db.execute(sql: insert, arguments: ["s1", "admin", "管理员", nil, nil])
    }
    try Migrations.migrator.migrate(db)
    let regions = try db.read { db in
      try Row.fetchAll(db, sql: "SELECT id, region_code FROM accounts ORDER BY id").map { row -> String in
        "\(row["id"] as String)=\((row["region_code"] as String?) ?? "nil")"
      }
    }
    #expect(regions == ["c1=110105", "e1=310104", "s1=nil"])
  }
}

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
    let store = try SQLiteStore(directory: FileManager.default.temporaryDirectory.appendingPathComponent("ow-sqlite-\(UUID().uuidString)").path)
    do {
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
    try await store.close()
  }
}
