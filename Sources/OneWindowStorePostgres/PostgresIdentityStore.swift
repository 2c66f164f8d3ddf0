import Foundation
import Logging
import OneWindowCore
import OneWindowStore
import PostgresNIO

/// Accounts, login codes and sessions on PostgreSQL; behaves as `SQLiteIdentityStore`.
struct PostgresIdentityStore: IdentityStore {
  let pool: PostgresPool
  var logger: Logger { pool.logger }

  static let accountColumns = """
    id, role, display_name, trust_level, phone, id_number, credit_code, legal_rep_id, department_code,
    username, password_hash, failed_logins, first_failure_at, locked_until, created_at
    """

  static func account(from row: PostgresRandomAccessRow) throws -> Account? {
    guard let role = Role(rawValue: try row["role"].decode(String.self)) else { return nil }
    let hash = try row["password_hash"].decode(String?.self)
    return Account(
      id: try row["id"].decode(String.self), role: role, displayName: try row["display_name"].decode(String.self),
      trustLevel: Int(try row["trust_level"].decode(Int64.self)),
      phone: try row["phone"].decode(String?.self), idNumber: try row["id_number"].decode(String?.self),
      creditCode: try row["credit_code"].decode(String?.self),
      legalRepresentativeID: try row["legal_rep_id"].decode(String?.self),
      departmentCode: try row["department_code"].decode(String?.self),
      username: try row["username"].decode(String?.self), hasPassword: hash != nil,
      createdAt: PGTime.date(try row["created_at"].decode(Int64.self)))
  }

  static func loadAccount(_ conn: PostgresConnection, id: String, logger: Logger) async throws -> Account? {
    let query = PostgresQuery(unsafeSQL: "SELECT \(accountColumns) FROM accounts WHERE id = $1", binds: binds(id))
    return try await conn.rows(query, logger: logger).first.flatMap { try account(from: $0) }
  }

  static func binds(_ values: String...) -> PostgresBindings {
    var binds = PostgresBindings(capacity: values.count)
    for value in values { binds.append(value) }
    return binds
  }

  func createAccount(_ new: NewAccount) async throws -> Account {
    let a = new.account
    let region = Segment.regionCode(idNumber: a.idNumber, creditCode: a.creditCode)
    do {
      try await pool.write { conn in
        try await conn.run(
          """
          INSERT INTO accounts (id, role, display_name, trust_level, phone, id_number, credit_code, legal_rep_id,
            department_code, username, password_hash, created_at, updated_at, region_code)
          VALUES (\(a.id), \(a.role.rawValue), \(a.displayName), \(Int64(a.trustLevel)), \(a.phone), \(a.idNumber),
            \(a.creditCode), \(a.legalRepresentativeID), \(a.departmentCode), \(a.username), \(new.passwordHash),
            \(PGTime.ms(a.createdAt)), \(PGTime.ms(a.createdAt)), \(region))
          """, logger: logger)
        if let audit = new.audit { try await PostgresAudit.append(conn, audit, now: a.createdAt, logger: logger) }
      }
    } catch let error where error.postgres?.isUniqueViolation == true {
      throw StoreError.alreadyExists(field: Self.uniqueField(error.postgres?.constraintName))
    } catch let error where error.postgres?.isForeignKeyViolation == true {
      throw StoreError.notFound("department or legal representative")
    }
    var stored = a
    stored.hasPassword = new.passwordHash != nil
    return stored
  }

  /// The column a violated accounts constraint protects (`accounts_phone_key` → `phone`), as
  /// SQLite names it in its message.
  static func uniqueField(_ constraint: String?) -> String {
    guard let constraint else { return "id" }
    if constraint == "accounts_pkey" { return "id" }
    var name = Substring(constraint)
    if name.hasPrefix("accounts_") { name = name.dropFirst("accounts_".count) }
    if name.hasSuffix("_key") { name = name.dropLast("_key".count) }
    return String(name)
  }

  func account(id: String) async throws -> Account? {
    try await pool.read { conn in try await Self.loadAccount(conn, id: id, logger: logger) }
  }

  func credentials(login: String) async throws -> AccountCredentials? {
    try await pool.read { conn in
      let query = PostgresQuery(
        unsafeSQL: """
          SELECT \(Self.accountColumns) FROM accounts
          WHERE phone = $1 OR credit_code = $1 OR username = $1
          ORDER BY CASE role WHEN 'citizen' THEN 0 ELSE 1 END LIMIT 1
          """,
        binds: Self.binds(login))
      guard let row = try await conn.rows(query, logger: logger).first, let account = try Self.account(from: row) else {
        return nil
      }
      return AccountCredentials(
        account: account, passwordHash: try row["password_hash"].decode(String?.self),
        lockout: .init(
          failures: Int(try row["failed_logins"].decode(Int64.self)),
          firstFailureAt: PGTime.date(try row["first_failure_at"].decode(Int64?.self)),
          lockedUntil: PGTime.date(try row["locked_until"].decode(Int64?.self))))
    }
  }

  func citizenID(phone: String) async throws -> String? {
    try await pool.read { conn in
      try await conn.all("SELECT id FROM accounts WHERE phone = \(phone) AND role = 'citizen'", as: String.self, logger: logger)
        .first
    }
  }

  func recordLoginFailure(accountID: String, policy: LoginLockoutPolicy, now: Date) async throws -> LoginLockoutPolicy.State {
    try await pool.write { conn in
      // Row lock: concurrent failures of one account must each count (no lost update).
      guard let row = try await conn.rows(
        "SELECT failed_logins, first_failure_at, locked_until FROM accounts WHERE id = \(accountID) FOR UPDATE",
        logger: logger
      ).first
      else { throw StoreError.notFound("account") }
      let current = LoginLockoutPolicy.State(
        failures: Int(try row["failed_logins"].decode(Int64.self)),
        firstFailureAt: PGTime.date(try row["first_failure_at"].decode(Int64?.self)),
        lockedUntil: PGTime.date(try row["locked_until"].decode(Int64?.self)))
      let next = policy.recordingFailure(current, now: now)
      try await conn.run(
        """
        UPDATE accounts SET failed_logins = \(Int64(next.failures)), first_failure_at = \(next.firstFailureAt.map(PGTime.ms)),
          locked_until = \(next.lockedUntil.map(PGTime.ms))
        WHERE id = \(accountID)
        """, logger: logger)
      return next
    }
  }

  func clearLoginFailures(accountID: String) async throws {
    try await pool.write { conn in
      try await conn.run(
        """
        UPDATE accounts SET failed_logins = 0, first_failure_at = NULL, locked_until = NULL
        WHERE id = \(accountID) AND (failed_logins <> 0 OR locked_until IS NOT NULL)
        """, logger: logger)
    }
  }

  func changePassword(accountID: String, newHash: String, keepFamily: String?, now: Date) async throws {
    try await pool.write { conn in
      let changed = try await conn.run(
        "UPDATE accounts SET password_hash = \(newHash), updated_at = \(PGTime.ms(now)) WHERE id = \(accountID) RETURNING 1",
        logger: logger)
      guard changed == 1 else { throw StoreError.notFound("account") }
      try await conn.run(
        """
        UPDATE token_families SET revoked_at = \(PGTime.ms(now))
        WHERE account_id = \(accountID) AND revoked_at IS NULL AND id <> \(keepFamily ?? "")
        """, logger: logger)
    }
  }

  func setTrustLevel(accountID: String, level: Int, now: Date, audit: AuditEvent?) async throws -> Account {
    try await pool.write { conn in
      let changed = try await conn.run(
        "UPDATE accounts SET trust_level = \(Int64(level)), updated_at = \(PGTime.ms(now)) WHERE id = \(accountID) RETURNING 1",
        logger: logger)
      guard changed == 1, let account = try await Self.loadAccount(conn, id: accountID, logger: logger) else {
        throw StoreError.notFound("account")
      }
      if let audit { try await PostgresAudit.append(conn, audit, now: now, logger: logger) }
      return account
    }
  }

  func moveCaseworker(accountID: String, departmentCode: String, now: Date, audit: AuditEvent?) async throws -> Account {
    try await pool.write { conn in
      // Row lock: the role check and the move act on the same account state.
      guard let role = try await conn.all(
        "SELECT role FROM accounts WHERE id = \(accountID) FOR UPDATE", as: String.self, logger: logger
      ).first
      else { throw StoreError.notFound("account") }
      guard role == Role.caseworker.rawValue else { throw StoreError.failedPrecondition("only caseworkers belong to a department") }
      guard try await conn.run("SELECT 1 FROM departments WHERE code = \(departmentCode)", logger: logger) > 0 else {
        throw StoreError.notFound("department")
      }
      try await conn.run(
        "UPDATE accounts SET department_code = \(departmentCode), updated_at = \(PGTime.ms(now)) WHERE id = \(accountID)",
        logger: logger)
      guard let account = try await Self.loadAccount(conn, id: accountID, logger: logger) else {
        throw StoreError.notFound("account")
      }
      if let audit { try await PostgresAudit.append(conn, audit, now: now, logger: logger) }
      return account
    }
  }

  /// Serialises the code operations of one phone: the rate limit counts codes that may not
  /// exist yet, so there is no row to lock.
  static func lockPhone(_ conn: PostgresConnection, _ phone: String, logger: Logger) async throws {
    try await conn.advisoryLock("login_codes:" + phone, logger: logger)
  }

  func issueLoginCode(phone: String, codeHash: String, policy: LoginCodePolicy, now: Date) async throws -> LoginCodeIssue {
    try await pool.write { conn in
      // Advisory lock per phone: two concurrent issues must not both pass the rate limit.
      try await Self.lockPhone(conn, phone, logger: logger)
      let dayAgo = PGTime.ms(now.addingTimeInterval(-24 * 3600))
      let previous = try await conn.all(
        "SELECT created_at FROM login_codes WHERE phone = \(phone) AND created_at > \(dayAgo)", as: Int64.self, logger: logger
      ).map { PGTime.date($0) }
      if let wait = policy.retryAfter(previousIssues: previous, now: now) {
        return .rateLimited(retryAfter: wait)
      }
      // A new code supersedes any earlier one.
      try await conn.run(
        "UPDATE login_codes SET closed_at = \(PGTime.ms(now)) WHERE phone = \(phone) AND closed_at IS NULL", logger: logger)
      let expires = now.addingTimeInterval(policy.validity)
      try await conn.run(
        """
        INSERT INTO login_codes (phone, code_hash, created_at, expires_at)
        VALUES (\(phone), \(codeHash), \(PGTime.ms(now)), \(PGTime.ms(expires)))
        """, logger: logger)
      return .issued(expiresAt: expires)
    }
  }

  func withdrawLoginCode(phone: String, codeHash: String) async throws {
    try await pool.write { conn in
      try await conn.run(
        "DELETE FROM login_codes WHERE phone = \(phone) AND code_hash = \(codeHash) AND closed_at IS NULL AND attempts = 0",
        logger: logger)
    }
  }

  func checkLoginCode(phone: String, codeHash: String, policy: LoginCodePolicy, now: Date) async throws -> LoginCodeCheck {
    try await pool.write { conn in
      // Advisory lock per phone (as issuing): concurrent wrong guesses must each count, and a
      // check must not race a new code superseding this one.
      try await Self.lockPhone(conn, phone, logger: logger)
      guard let row = try await conn.rows(
        """
        SELECT id, code_hash, attempts, expires_at, closed_at FROM login_codes
        WHERE phone = \(phone) ORDER BY id DESC LIMIT 1
        """, logger: logger
      ).first
      else { return .noActiveCode }
      let id = try row["id"].decode(Int64.self)
      let attempts = Int(try row["attempts"].decode(Int64.self))
      if attempts >= policy.maxAttempts { return .exhausted }
      let closed = try row["closed_at"].decode(Int64?.self)
      let expires = try row["expires_at"].decode(Int64.self)
      if closed != nil || expires <= PGTime.ms(now) { return .noActiveCode }
      if ConstantTime.equal(Array(try row["code_hash"].decode(String.self).utf8), Array(codeHash.utf8)) {
        try await conn.run("UPDATE login_codes SET closed_at = \(PGTime.ms(now)) WHERE id = \(id)", logger: logger)
        return .accepted
      }
      let used = attempts + 1
      try await conn.run("UPDATE login_codes SET attempts = \(Int64(used)) WHERE id = \(id)", logger: logger)
      return used >= policy.maxAttempts ? .exhausted : .wrong(attemptsLeft: policy.maxAttempts - used)
    }
  }

  func createSession(accountID: String, tokens: IssuedTokens, now: Date) async throws -> String {
    let family = ULID.make(at: now)
    try await pool.write { conn in
      try await conn.run(
        "INSERT INTO token_families (id, account_id, created_at) VALUES (\(family), \(accountID), \(PGTime.ms(now)))",
        logger: logger)
      try await Self.insertTokens(conn, family: family, tokens: tokens, logger: logger)
    }
    return family
  }

  static func insertTokens(_ conn: PostgresConnection, family: String, tokens: IssuedTokens, logger: Logger) async throws {
    try await conn.run(
      """
      INSERT INTO access_tokens (token_hash, family_id, expires_at)
      VALUES (\(tokens.accessHash), \(family), \(PGTime.ms(tokens.accessExpiresAt)))
      """, logger: logger)
    try await conn.run(
      """
      INSERT INTO refresh_tokens (token_hash, family_id, expires_at)
      VALUES (\(tokens.refreshHash), \(family), \(PGTime.ms(tokens.refreshExpiresAt)))
      """, logger: logger)
  }

  func authenticate(accessHash: String, now: Date) async throws -> Principal? {
    // Every authenticated call runs this: one statement, no transaction around it.
    guard let row = try await pool.rows(
        """
        SELECT a.id, a.role, a.department_code, a.trust_level, f.id AS family_id
        FROM access_tokens t
        JOIN token_families f ON f.id = t.family_id
        JOIN accounts a ON a.id = f.account_id
        WHERE t.token_hash = \(accessHash) AND t.expires_at > \(PGTime.ms(now)) AND f.revoked_at IS NULL
        """
      ).first,
      let role = Role(rawValue: try row["role"].decode(String.self))
    else { return nil }
    return Principal(
      accountID: try row["id"].decode(String.self), role: role, departmentCode: try row["department_code"].decode(String?.self),
      trustLevel: Int(try row["trust_level"].decode(Int64.self)), sessionFamilyID: try row["family_id"].decode(String.self))
  }

  func rotateRefresh(refreshHash: String, replacement: IssuedTokens, now: Date) async throws -> RefreshOutcome {
    try await pool.write { conn in
      // Lock the token's family first: concurrent uses of one refresh token must see each
      // other's rotation or revocation (one rotates, one is reuse, the rest find it revoked).
      // The later statements run after the lock, so they read what earlier holders committed.
      guard try await conn.all(
        """
        SELECT f.id FROM token_families f
        WHERE f.id = (SELECT family_id FROM refresh_tokens WHERE token_hash = \(refreshHash))
        FOR UPDATE
        """, as: String.self, logger: logger
      ).first != nil,
        let row = try await conn.rows(
          """
          SELECT r.family_id, r.expires_at, r.used_at, f.revoked_at, f.account_id
          FROM refresh_tokens r JOIN token_families f ON f.id = r.family_id
          WHERE r.token_hash = \(refreshHash)
          """, logger: logger
        ).first
      else { return .invalid }
      let family = try row["family_id"].decode(String.self)
      let revoked = try row["revoked_at"].decode(Int64?.self)
      let expires = try row["expires_at"].decode(Int64.self)
      if revoked != nil || expires <= PGTime.ms(now) { return .invalid }
      if try row["used_at"].decode(Int64?.self) != nil {
        // Reuse of a rotated token means it leaked: revoke every token of this login.
        try await conn.run("UPDATE token_families SET revoked_at = \(PGTime.ms(now)) WHERE id = \(family)", logger: logger)
        return .reused
      }
      try await conn.run(
        "UPDATE refresh_tokens SET used_at = \(PGTime.ms(now)) WHERE token_hash = \(refreshHash)", logger: logger)
      try await Self.insertTokens(conn, family: family, tokens: replacement, logger: logger)
      return .rotated(accountID: try row["account_id"].decode(String.self))
    }
  }

  func revokeFamily(_ familyID: String, now: Date) async throws {
    try await pool.write { conn in
      try await conn.run(
        "UPDATE token_families SET revoked_at = \(PGTime.ms(now)) WHERE id = \(familyID) AND revoked_at IS NULL",
        logger: logger)
    }
  }

  func isSessionActive(familyID: String) async throws -> Bool {
    try await pool.read { conn in
      try await conn.run("SELECT 1 FROM token_families WHERE id = \(familyID) AND revoked_at IS NULL", logger: logger) > 0
    }
  }

  func purgeExpired(now: Date) async throws -> Int {
    try await pool.write { conn in
      let t = PGTime.ms(now)
      var removed = 0
      removed += try await conn.run("DELETE FROM access_tokens WHERE expires_at <= \(t) RETURNING 1", logger: logger)
      removed += try await conn.run("DELETE FROM refresh_tokens WHERE expires_at <= \(t) RETURNING 1", logger: logger)
      // A family with no live refresh token can never be used again.
      removed += try await conn.run(
        """
        DELETE FROM token_families
        WHERE NOT EXISTS (SELECT 1 FROM refresh_tokens r WHERE r.family_id = token_families.id)
        RETURNING 1
        """, logger: logger)
      // Keep a day of codes: the issuing rate limit counts them.
      let dayAgo = PGTime.ms(now.addingTimeInterval(-24 * 3600))
      removed += try await conn.run("DELETE FROM login_codes WHERE created_at <= \(dayAgo) RETURNING 1", logger: logger)
      return removed
    }
  }
}

/// The development SMS outbox on PostgreSQL.
struct PostgresOutboxStore: OutboxStore {
  let pool: PostgresPool
  var logger: Logger { pool.logger }

  func append(channel: String, recipient: String, body: String, now: Date) async throws {
    try await pool.write { conn in
      try await conn.run(
        """
        INSERT INTO outbox (channel, recipient, body, created_at)
        VALUES (\(channel), \(recipient), \(body), \(PGTime.ms(now)))
        """, logger: logger)
    }
  }

  func messages(recipient: String, limit: Int) async throws -> [OutboxMessage] {
    try await pool.read { conn in
      try await conn.rows(
        """
        SELECT id, channel, recipient, body, created_at FROM outbox WHERE recipient = \(recipient)
        ORDER BY id DESC LIMIT \(Int64(limit))
        """, logger: logger
      ).map {
        OutboxMessage(
          id: try $0["id"].decode(Int64.self), channel: try $0["channel"].decode(String.self),
          recipient: try $0["recipient"].decode(String.self), body: try $0["body"].decode(String.self),
          createdAt: PGTime.date(try $0["created_at"].decode(Int64.self)))
      }
    }
  }
}
