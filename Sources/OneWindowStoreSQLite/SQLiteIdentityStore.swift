import OneWindowStore
import Foundation
import GRDB
import OneWindowCore

struct SQLiteIdentityStore: IdentityStore {
  let pool: DatabasePool

  static let accountColumns = """
    id, role, display_name, trust_level, phone, id_number, credit_code, legal_rep_id, department_code,
    username, password_hash, failed_logins, first_failure_at, locked_until, created_at
    """

  static func account(from row: Row) -> Account? {
    guard let role = Role(rawValue: row["role"]) else { return nil }
    let hash: String? = row["password_hash"]
    return Account(
      id: row["id"], role: role, displayName: row["display_name"], trustLevel: row["trust_level"],
      phone: row["phone"], idNumber: row["id_number"], creditCode: row["credit_code"],
      legalRepresentativeID: row["legal_rep_id"], departmentCode: row["department_code"],
      username: row["username"], hasPassword: hash != nil, createdAt: SQLTime.date(row["created_at"] as Int64))
  }

  func createAccount(_ new: NewAccount) async throws -> Account {
    let a = new.account
    do {
      try await pool.write { db in
        try db.execute(
          sql: """
            INSERT INTO accounts (id, role, display_name, trust_level, phone, id_number, credit_code, legal_rep_id,
              department_code, username, password_hash, created_at, updated_at, region_code)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """,
          arguments: [
            a.id, a.role.rawValue, a.displayName, a.trustLevel, a.phone, a.idNumber, a.creditCode,
            a.legalRepresentativeID, a.departmentCode, a.username, new.passwordHash,
            SQLTime.ms(a.createdAt), SQLTime.ms(a.createdAt),
            Segment.regionCode(idNumber: a.idNumber, creditCode: a.creditCode),
          ])
        if let audit = new.audit { try SQLiteAudit.append(audit, now: a.createdAt, db) }
      }
    } catch let error as DatabaseError {
      if let column = error.uniqueViolationColumn { throw StoreError.alreadyExists(field: column) }
      if error.extendedResultCode == .SQLITE_CONSTRAINT_FOREIGNKEY {
        throw StoreError.notFound("department or legal representative")
      }
      throw error
    }
    var stored = a
    stored.hasPassword = new.passwordHash != nil
    return stored
  }

  func account(id: String) async throws -> Account? {
    try await pool.read { db in
      try Row.fetchOne(db.cachedStatement(sql: "SELECT \(Self.accountColumns) FROM accounts WHERE id = ?"), arguments: [id])
        .flatMap(Self.account(from:))
    }
  }

  func credentials(login: String) async throws -> AccountCredentials? {
    try await pool.read { db in
      guard let row = try Row.fetchOne(
        db,
        sql: """
          SELECT \(Self.accountColumns) FROM accounts
          WHERE phone = ? OR credit_code = ? OR username = ?
          ORDER BY CASE role WHEN 'citizen' THEN 0 ELSE 1 END LIMIT 1
          """,
        arguments: [login, login, login]),
        let account = Self.account(from: row)
      else { return nil }
      return AccountCredentials(
        account: account, passwordHash: row["password_hash"],
        lockout: .init(
          failures: row["failed_logins"], firstFailureAt: SQLTime.date(row["first_failure_at"] as Int64?),
          lockedUntil: SQLTime.date(row["locked_until"] as Int64?)))
    }
  }

  func citizenID(phone: String) async throws -> String? {
    try await pool.read { db in
      try String.fetchOne(db, sql: "SELECT id FROM accounts WHERE phone = ? AND role = 'citizen'", arguments: [phone])
    }
  }

  func recordLoginFailure(accountID: String, policy: LoginLockoutPolicy, now: Date) async throws -> LoginLockoutPolicy.State {
    try await pool.write { db in
      guard let row = try Row.fetchOne(
        db, sql: "SELECT failed_logins, first_failure_at, locked_until FROM accounts WHERE id = ?", arguments: [accountID])
      else { throw StoreError.notFound("account") }
      let current = LoginLockoutPolicy.State(
        failures: row["failed_logins"], firstFailureAt: SQLTime.date(row["first_failure_at"] as Int64?),
        lockedUntil: SQLTime.date(row["locked_until"] as Int64?))
      let next = policy.recordingFailure(current, now: now)
      try db.execute(
        sql: "UPDATE accounts SET failed_logins = ?, first_failure_at = ?, locked_until = ? WHERE id = ?",
        arguments: [next.failures, next.firstFailureAt.map(SQLTime.ms), next.lockedUntil.map(SQLTime.ms), accountID])
      return next
    }
  }

  func clearLoginFailures(accountID: String) async throws {
    try await pool.write { db in
      try db.execute(
        sql: """
          UPDATE accounts SET failed_logins = 0, first_failure_at = NULL, locked_until = NULL
          WHERE id = ? AND (failed_logins <> 0 OR locked_until IS NOT NULL)
          """,
        arguments: [accountID])
    }
  }

  func changePassword(accountID: String, newHash: String, keepFamily: String?, now: Date) async throws {
    try await pool.write { db in
      try db.execute(
        sql: "UPDATE accounts SET password_hash = ?, updated_at = ? WHERE id = ?",
        arguments: [newHash, SQLTime.ms(now), accountID])
      guard db.changesCount == 1 else { throw StoreError.notFound("account") }
      try db.execute(
        sql: "UPDATE token_families SET revoked_at = ? WHERE account_id = ? AND revoked_at IS NULL AND id <> ?",
        arguments: [SQLTime.ms(now), accountID, keepFamily ?? ""])
    }
  }

  func setTrustLevel(accountID: String, level: Int, now: Date, audit: AuditEvent?) async throws -> Account {
    try await pool.write { db in
      try db.execute(
        sql: "UPDATE accounts SET trust_level = ?, updated_at = ? WHERE id = ?",
        arguments: [level, SQLTime.ms(now), accountID])
      guard db.changesCount == 1,
            let account = try Row.fetchOne(db, sql: "SELECT \(Self.accountColumns) FROM accounts WHERE id = ?", arguments: [accountID])
              .flatMap(Self.account(from:))
      else { throw StoreError.notFound("account") }
      if let audit { try SQLiteAudit.append(audit, now: now, db) }
      return account
    }
  }

  func moveCaseworker(accountID: String, departmentCode: String, now: Date, audit: AuditEvent?) async throws -> Account {
    try await pool.write { db in
      guard let role = try String.fetchOne(db, sql: "SELECT role FROM accounts WHERE id = ?", arguments: [accountID]) else {
        throw StoreError.notFound("account")
      }
      guard role == Role.caseworker.rawValue else { throw StoreError.failedPrecondition("only caseworkers belong to a department") }
      guard try Bool.fetchOne(db, sql: "SELECT 1 FROM departments WHERE code = ?", arguments: [departmentCode]) == true else {
        throw StoreError.notFound("department")
      }
      try db.execute(
        sql: "UPDATE accounts SET department_code = ?, updated_at = ? WHERE id = ?",
        arguments: [departmentCode, SQLTime.ms(now), accountID])
      guard let account = try Row.fetchOne(db, sql: "SELECT \(Self.accountColumns) FROM accounts WHERE id = ?", arguments: [accountID])
        .flatMap(Self.account(from:))
      else { throw StoreError.notFound("account") }
      if let audit { try SQLiteAudit.append(audit, now: now, db) }
      return account
    }
  }

  func issueLoginCode(phone: String, codeHash: String, policy: LoginCodePolicy, now: Date) async throws -> LoginCodeIssue {
    try await pool.write { db in
      let dayAgo = SQLTime.ms(now.addingTimeInterval(-24 * 3600))
      let previous = try Int64.fetchAll(
        db, sql: "SELECT created_at FROM login_codes WHERE phone = ? AND created_at > ?", arguments: [phone, dayAgo]
      ).map(SQLTime.date)
      if let wait = policy.retryAfter(previousIssues: previous, now: now) {
        return .rateLimited(retryAfter: wait)
      }
      // A new code supersedes any earlier one.
      try db.execute(
        sql: "UPDATE login_codes SET closed_at = ? WHERE phone = ? AND closed_at IS NULL",
        arguments: [SQLTime.ms(now), phone])
      let expires = now.addingTimeInterval(policy.validity)
      try db.execute(
        sql: "INSERT INTO login_codes (phone, code_hash, created_at, expires_at) VALUES (?, ?, ?, ?)",
        arguments: [phone, codeHash, SQLTime.ms(now), SQLTime.ms(expires)])
      return .issued(expiresAt: expires)
    }
  }

  func withdrawLoginCode(phone: String, codeHash: String) async throws {
    try await pool.write { db in
      try db.execute(
        sql: "DELETE FROM login_codes WHERE phone = ? AND code_hash = ? AND closed_at IS NULL AND attempts = 0",
        arguments: [phone, codeHash])
    }
  }

  func checkLoginCode(phone: String, codeHash: String, policy: LoginCodePolicy, now: Date) async throws -> LoginCodeCheck {
    try await pool.write { db in
      guard let row = try Row.fetchOne(
        db,
        sql: """
          SELECT id, code_hash, attempts, expires_at, closed_at FROM login_codes
          WHERE phone = ? ORDER BY id DESC LIMIT 1
          """,
        arguments: [phone])
      else { return .noActiveCode }
      let id: Int64 = row["id"]
      let attempts: Int = row["attempts"]
      if attempts >= policy.maxAttempts { return .exhausted }
      let closed: Int64? = row["closed_at"]
      if closed != nil || (row["expires_at"] as Int64) <= SQLTime.ms(now) { return .noActiveCode }
      if ConstantTime.equal(Array((row["code_hash"] as String).utf8), Array(codeHash.utf8)) {
        try db.execute(sql: "UPDATE login_codes SET closed_at = ? WHERE id = ?", arguments: [SQLTime.ms(now), id])
        return .accepted
      }
      let used = attempts + 1
      try db.execute(sql: "UPDATE login_codes SET attempts = ? WHERE id = ?", arguments: [used, id])
      return used >= policy.maxAttempts ? .exhausted : .wrong(attemptsLeft: policy.maxAttempts - used)
    }
  }

  func createSession(accountID: String, tokens: IssuedTokens, now: Date) async throws -> String {
    let family = ULID.make(at: now)
    try await pool.write { db in
      try db.execute(
        sql: "INSERT INTO token_families (id, account_id, created_at) VALUES (?, ?, ?)",
        arguments: [family, accountID, SQLTime.ms(now)])
      try Self.insertTokens(db, family: family, tokens: tokens)
    }
    return family
  }

  static func insertTokens(_ db: Database, family: String, tokens: IssuedTokens) throws {
    try db.execute(
      sql: "INSERT INTO access_tokens (token_hash, family_id, expires_at) VALUES (?, ?, ?)",
      arguments: [tokens.accessHash, family, SQLTime.ms(tokens.accessExpiresAt)])
    try db.execute(
      sql: "INSERT INTO refresh_tokens (token_hash, family_id, expires_at) VALUES (?, ?, ?)",
      arguments: [tokens.refreshHash, family, SQLTime.ms(tokens.refreshExpiresAt)])
  }

  func authenticate(accessHash: String, now: Date) async throws -> Principal? {
    try await pool.read { db in
      let statement = try db.cachedStatement(sql: """
        SELECT a.id, a.role, a.department_code, a.trust_level, f.id AS family_id
        FROM access_tokens t
        JOIN token_families f ON f.id = t.family_id
        JOIN accounts a ON a.id = f.account_id
        WHERE t.token_hash = ? AND t.expires_at > ? AND f.revoked_at IS NULL
        """)
      guard let row = try Row.fetchOne(statement, arguments: [accessHash, SQLTime.ms(now)]),
            let role = Role(rawValue: row["role"])
      else { return nil }
      return Principal(
        accountID: row["id"], role: role, departmentCode: row["department_code"],
        trustLevel: row["trust_level"], sessionFamilyID: row["family_id"])
    }
  }

  func rotateRefresh(refreshHash: String, replacement: IssuedTokens, now: Date) async throws -> RefreshOutcome {
    try await pool.write { db in
      guard let row = try Row.fetchOne(
        db,
        sql: """
          SELECT r.family_id, r.expires_at, r.used_at, f.revoked_at, f.account_id
          FROM refresh_tokens r JOIN token_families f ON f.id = r.family_id
          WHERE r.token_hash = ?
          """,
        arguments: [refreshHash])
      else { return .invalid }
      let family: String = row["family_id"]
      if (row["revoked_at"] as Int64?) != nil || (row["expires_at"] as Int64) <= SQLTime.ms(now) { return .invalid }
      if (row["used_at"] as Int64?) != nil {
        // Reuse of a rotated token means it leaked: revoke every token of this login.
        try db.execute(sql: "UPDATE token_families SET revoked_at = ? WHERE id = ?", arguments: [SQLTime.ms(now), family])
        return .reused
      }
      try db.execute(sql: "UPDATE refresh_tokens SET used_at = ? WHERE token_hash = ?", arguments: [SQLTime.ms(now), refreshHash])
      try Self.insertTokens(db, family: family, tokens: replacement)
      return .rotated(accountID: row["account_id"])
    }
  }

  func revokeFamily(_ familyID: String, now: Date) async throws {
    try await pool.write { db in
      try db.execute(
        sql: "UPDATE token_families SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
        arguments: [SQLTime.ms(now), familyID])
    }
  }

  func isSessionActive(familyID: String) async throws -> Bool {
    try await pool.read { db in
      try Bool.fetchOne(
        db, sql: "SELECT 1 FROM token_families WHERE id = ? AND revoked_at IS NULL", arguments: [familyID]) == true
    }
  }

  func purgeExpired(now: Date) async throws -> Int {
    try await pool.write { db in
      let t = SQLTime.ms(now)
      var removed = 0
      try db.execute(sql: "DELETE FROM access_tokens WHERE expires_at <= ?", arguments: [t])
      removed += db.changesCount
      try db.execute(sql: "DELETE FROM refresh_tokens WHERE expires_at <= ?", arguments: [t])
      removed += db.changesCount
      // A family with no live refresh token can never be used again.
      try db.execute(sql: """
        DELETE FROM token_families
        WHERE NOT EXISTS (SELECT 1 FROM refresh_tokens r WHERE r.family_id = token_families.id)
        """)
      removed += db.changesCount
      // Keep a day of codes: the issuing rate limit counts them.
      try db.execute(sql: "DELETE FROM login_codes WHERE created_at <= ?", arguments: [SQLTime.ms(now.addingTimeInterval(-24 * 3600))])
      removed += db.changesCount
      return removed
    }
  }
}

struct SQLiteOutboxStore: OutboxStore {
  let pool: DatabasePool

  func append(channel: String, recipient: String, body: String, now: Date) async throws {
    try await pool.write { db in
      try db.execute(
        sql: "INSERT INTO outbox (channel, recipient, body, created_at) VALUES (?, ?, ?, ?)",
        arguments: [channel, recipient, body, SQLTime.ms(now)])
    }
  }

  func messages(recipient: String, limit: Int) async throws -> [OutboxMessage] {
    try await pool.read { db in
      try Row.fetchAll(
        db, sql: "SELECT id, channel, recipient, body, created_at FROM outbox WHERE recipient = ? ORDER BY id DESC LIMIT ?",
        arguments: [recipient, limit]
      ).map {
        OutboxMessage(
          id: $0["id"], channel: $0["channel"], recipient: $0["recipient"], body: $0["body"],
          createdAt: SQLTime.date($0["created_at"] as Int64))
      }
    }
  }
}
