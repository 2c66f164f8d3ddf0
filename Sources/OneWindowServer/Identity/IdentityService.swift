import Foundation
import GRPCCore
import Logging
import OneWindowAPI
import OneWindowCore
import OneWindowStore

/// Unified identity: registration, code and password logins, token rotation, staff accounts.
struct IdentityService: Onewindow_V1_IdentityService.SimpleServiceProtocol {
  let store: any IdentityStore
  let catalog: any CatalogStore
  let codeSender: any LoginCodeSender
  let registry: any IdentityRegistry
  let clock: any WallClock
  let logger: Logger
  let passwords = PasswordWork()
  var codePolicy = LoginCodePolicy()
  var lockoutPolicy = LoginLockoutPolicy()
  /// Per-address limits where no account is involved yet: each code request and registration
  /// writes a row, so one caller must not be able to write them for arbitrary phones.
  /// Counted for the cluster (`Store.rateLimits`).
  let rateLimits: any RateLimits
  var codeRequestsPerPeer: PeerLimiter {
    PeerLimiter(store: rateLimits, name: "code", limit: 30, window: 600, what: "login code requests")
  }
  var registrationsPerPeer: PeerLimiter {
    PeerLimiter(store: rateLimits, name: "register", limit: 20, window: 3600, what: "registrations")
  }

  func registerCitizen(
    request: Onewindow_V1_RegisterCitizenRequest, context: ServerContext
  ) async throws -> Onewindow_V1_Account {
    let name = try AccountRules.personName(request.name)
    let phone = try PhoneNumber(request.phone)
    let idNumber = try ResidentIDNumber(request.idNumber)
    if !request.password.isEmpty { try PasswordHashing.validateNewPassword(request.password) }
    try await registrationsPerPeer.admit(context, now: clock.now())
    let hash = request.password.isEmpty ? nil : try await passwords.hash(request.password)
    let now = clock.now()
    let account = try await store.createAccount(NewAccount(
      account: Account(
        id: ULID.make(at: now), role: .citizen, displayName: name, phone: phone.value, idNumber: idNumber.value,
        hasPassword: hash != nil, createdAt: now),
      passwordHash: hash))
    logger.info("citizen registered", metadata: ["account": "\(account.id)"])
    return Onewindow_V1_Account(account)
  }

  func registerEnterprise(
    request: Onewindow_V1_RegisterEnterpriseRequest, context: ServerContext
  ) async throws -> Onewindow_V1_Account {
    let representative = try RequestContext.require([.citizen])
    let name = try AccountRules.enterpriseName(request.name)
    let code = try CreditCode(request.creditCode)
    try PasswordHashing.validateNewPassword(request.password)
    let hash = try await passwords.hash(request.password)
    let now = clock.now()
    let account = try await store.createAccount(NewAccount(
      account: Account(
        id: ULID.make(at: now), role: .enterprise, displayName: name, creditCode: code.value,
        legalRepresentativeID: representative.accountID, hasPassword: true, createdAt: now),
      passwordHash: hash))
    logger.info("enterprise registered", metadata: ["account": "\(account.id)"])
    return Onewindow_V1_Account(account)
  }

  func requestLoginCode(
    request: Onewindow_V1_RequestLoginCodeRequest, context: ServerContext
  ) async throws -> Onewindow_V1_RequestLoginCodeResponse {
    let phone = try PhoneNumber(request.phone)
    let now = clock.now()
    try await codeRequestsPerPeer.admit(context, now: now)
    let code = LoginCodePolicy.generateCode()
    // The rate limit applies to unregistered phones too, and the answer is the same either way.
    switch try await store.issueLoginCode(phone: phone.value, codeHash: OpaqueToken.hash(code), policy: codePolicy, now: now) {
    case .rateLimited(let wait):
      throw RateLimited.error("too many login codes for this phone", retryAfter: wait)
    case .issued(let expiresAt):
      if try await store.citizenID(phone: phone.value) != nil {
        do {
          try await codeSender.send(code: code, to: phone)
        } catch {
          // Undo the issue, so the failed attempt neither counts against the phone's limits
          // nor leaves a code nobody received.
          try await store.withdrawLoginCode(phone: phone.value, codeHash: OpaqueToken.hash(code))
          logger.error("login code could not be sent", metadata: ["phone": "\(phone.masked)", "error": "\(String(reflecting: type(of: error)))"])
          throw RPCError(code: .unavailable, message: "the code could not be sent; try again")
        }
      }
      return .with {
        $0.expiresAt = .init(expiresAt)
        $0.resendAfterSeconds = Int32(codePolicy.minInterval)
      }
    }
  }

  func loginWithCode(request: Onewindow_V1_LoginWithCodeRequest, context: ServerContext) async throws -> Onewindow_V1_Session {
    let phone = try PhoneNumber(request.phone)
    try LoginCodePolicy.validateCodeShape(request.code)
    let now = clock.now()
    switch try await store.checkLoginCode(phone: phone.value, codeHash: OpaqueToken.hash(request.code), policy: codePolicy, now: now) {
    case .accepted:
      guard let accountID = try await store.citizenID(phone: phone.value),
            let account = try await store.account(id: accountID)
      else { throw RPCError(code: .unauthenticated, message: "code is wrong or expired") }
      return try await startSession(for: account, now: now)
    case .wrong(let left):
      throw RPCError(code: .unauthenticated, message: "code is wrong; \(left) attempt(s) left")
    case .noActiveCode:
      throw RPCError(code: .unauthenticated, message: "code is wrong or expired: request a new one")
    case .exhausted:
      throw RateLimited.error("too many wrong codes: request a new code", retryAfter: codePolicy.minInterval)
    }
  }

  func loginWithPassword(
    request: Onewindow_V1_LoginWithPasswordRequest, context: ServerContext
  ) async throws -> Onewindow_V1_Session {
    let login = try Check.text(request.login, field: "login", max: 64).uppercased()
    try Check.text(request.password, field: "password", max: 128)
    let now = clock.now()
    // Usernames are lowercase, credit codes uppercase: try the name as typed first.
    let typed = request.login.trimmingWhitespace()
    var found = try await store.credentials(login: typed)
    if found == nil, login != typed { found = try await store.credentials(login: login) }
    guard let credentials = found, let hash = credentials.passwordHash else {
      _ = try await passwords.verify(request.password, against: PasswordWork.decoyHash)
      throw RPCError(code: .unauthenticated, message: "login name or password is wrong")
    }
    if let wait = lockoutPolicy.lockedFor(credentials.lockout, now: now) {
      throw RateLimited.error("account temporarily locked after repeated failed logins", retryAfter: wait)
    }
    guard try await passwords.verify(request.password, against: hash) else {
      let state = try await store.recordLoginFailure(accountID: credentials.account.id, policy: lockoutPolicy, now: now)
      if let wait = lockoutPolicy.lockedFor(state, now: now) {
        logger.warning("account locked after failed logins", metadata: ["account": "\(credentials.account.id)"])
        throw RateLimited.error("account temporarily locked after repeated failed logins", retryAfter: wait)
      }
      throw RPCError(code: .unauthenticated, message: "login name or password is wrong")
    }
    if credentials.lockout.failures > 0 { try await store.clearLoginFailures(accountID: credentials.account.id) }
    return try await startSession(for: credentials.account, now: now)
  }

  func refresh(request: Onewindow_V1_RefreshRequest, context: ServerContext) async throws -> Onewindow_V1_Session {
    guard OpaqueToken.isWellFormed(request.refreshToken, prefix: OpaqueToken.refreshPrefix) else {
      throw RPCError(code: .unauthenticated, message: "refresh token is invalid: log in again")
    }
    let now = clock.now()
    let tokens = IssuedTokens.issue(now: now)
    switch try await store.rotateRefresh(refreshHash: OpaqueToken.hash(request.refreshToken), replacement: tokens, now: now) {
    case .rotated(let accountID):
      guard let account = try await store.account(id: accountID) else {
        throw RPCError(code: .unauthenticated, message: "account no longer exists")
      }
      return Self.session(tokens, account)
    case .reused:
      logger.warning("refresh token reused: session family revoked")
      throw RPCError(code: .unauthenticated, message: "refresh token was already used: every token of this login is revoked; log in again")
    case .invalid:
      throw RPCError(code: .unauthenticated, message: "refresh token is invalid, expired or revoked: log in again")
    }
  }

  func logout(request: Onewindow_V1_LogoutRequest, context: ServerContext) async throws -> Onewindow_V1_LogoutResponse {
    let principal = try RequestContext.requirePrincipal()
    try await store.revokeFamily(principal.sessionFamilyID, now: clock.now())
    return .init()
  }

  func whoAmI(request: Onewindow_V1_WhoAmIRequest, context: ServerContext) async throws -> Onewindow_V1_Account {
    let principal = try RequestContext.requirePrincipal()
    guard let account = try await store.account(id: principal.accountID) else { throw StoreError.notFound("account") }
    return Onewindow_V1_Account(account)
  }

  func changePassword(
    request: Onewindow_V1_ChangePasswordRequest, context: ServerContext
  ) async throws -> Onewindow_V1_ChangePasswordResponse {
    let principal = try RequestContext.requirePrincipal()
    try PasswordHashing.validateNewPassword(request.newPassword, field: "new_password")
    guard let account = try await store.account(id: principal.accountID) else { throw StoreError.notFound("account") }
    if account.hasPassword {
      guard let login = account.phone ?? account.creditCode ?? account.username,
            let credentials = try await store.credentials(login: login), let hash = credentials.passwordHash,
            try await passwords.verify(request.currentPassword, against: hash)
      else { throw RPCError(code: .permissionDenied, message: "current_password is wrong") }
    }
    let newHash = try await passwords.hash(request.newPassword)
    try await store.changePassword(accountID: account.id, newHash: newHash, keepFamily: principal.sessionFamilyID, now: clock.now())
    return .init()
  }

  func verifyIdentity(request: Onewindow_V1_VerifyIdentityRequest, context: ServerContext) async throws -> Onewindow_V1_Account {
    let accountID = try Self.accountID(request.accountID)
    guard let account = try await store.account(id: accountID) else { throw StoreError.notFound("account") }
    guard account.role == .citizen, let raw = account.idNumber else {
      throw RPCError(code: .failedPrecondition, message: "only citizen accounts are verified against the population registry")
    }
    let idNumber = try ResidentIDNumber(raw)
    guard try await registry.confirms(name: account.displayName, idNumber: idNumber) else {
      throw RPCError(code: .failedPrecondition, message: "the population registry does not confirm this name and ID number")
    }
    let updated = try await store.setTrustLevel(
      accountID: account.id, level: max(account.trustLevel, TrustLevel.registryVerified), now: clock.now(),
      audit: AuditTrail.event("account.verify_identity", targetType: "account", targetID: account.id, subjectID: account.id))
    return Onewindow_V1_Account(updated)
  }

  func moveCaseworker(request: Onewindow_V1_MoveCaseworkerRequest, context: ServerContext) async throws -> Onewindow_V1_Account {
    let accountID = try Self.accountID(request.accountID)
    let department = try Check.text(request.departmentCode, field: "department_code", max: 32)
    let account = try await store.moveCaseworker(
      accountID: accountID, departmentCode: department, now: clock.now(),
      audit: AuditTrail.event("account.move_department", targetType: "account", targetID: accountID, reason: department))
    logger.info("caseworker moved", metadata: ["account": "\(account.id)", "department": "\(department)"])
    return Onewindow_V1_Account(account)
  }

  func createStaffAccount(
    request: Onewindow_V1_CreateStaffAccountRequest, context: ServerContext
  ) async throws -> Onewindow_V1_CreateStaffAccountResponse {
    let role = try Role(proto: request.role, field: "role")
    let staff = try await StaffAccounts.create(
      role: role, username: request.username, displayName: request.displayName,
      departmentCode: request.departmentCode, password: request.password,
      store: store, catalog: catalog, now: clock.now(), auditedBy: RequestContext.principal)
    logger.info("staff account created", metadata: ["account": "\(staff.account.id)", "role": "\(role.rawValue)"])
    return .with {
      $0.account = Onewindow_V1_Account(staff.account)
      $0.generatedPassword = staff.generatedPassword ?? ""
    }
  }

  func getAccount(request: Onewindow_V1_GetAccountRequest, context: ServerContext) async throws -> Onewindow_V1_Account {
    let principal = try RequestContext.requirePrincipal()
    let accountID = try Self.accountID(request.accountID)
    // Ownership: only administrators read other accounts. Refusing before the lookup means a
    // non-administrator learns nothing about ids other than their own.
    guard principal.role == .admin || principal.accountID == accountID else {
      throw RPCError(code: .permissionDenied, message: "you may only read your own account")
    }
    guard let account = try await store.account(id: accountID) else { throw StoreError.notFound("account") }
    return Onewindow_V1_Account(account)
  }

  // MARK: - Helpers

  func startSession(for account: Account, now: Date) async throws -> Onewindow_V1_Session {
    let tokens = IssuedTokens.issue(now: now)
    _ = try await store.createSession(accountID: account.id, tokens: tokens, now: now)
    logger.info("login", metadata: ["account": "\(account.id)"])
    return Self.session(tokens, account)
  }

  static func session(_ tokens: IssuedTokens, _ account: Account) -> Onewindow_V1_Session {
    .with {
      $0.accessToken = tokens.accessToken
      $0.accessExpiresAt = .init(tokens.accessExpiresAt)
      $0.refreshToken = tokens.refreshToken
      $0.refreshExpiresAt = .init(tokens.refreshExpiresAt)
      $0.account = Onewindow_V1_Account(account)
    }
  }

  static func accountID(_ raw: String) throws(ValidationError) -> String {
    let id = raw.trimmingWhitespace()
    guard ULID.isValid(id) else { throw ValidationError("account_id", "must be a 26-character account id") }
    return id
  }
}

/// Staff account creation, shared by the RPC and `onewindow admin create-user`.
public enum StaffAccounts {
  public struct Created: Sendable {
    public var account: Account
    /// Set when the caller supplied no password.
    public var generatedPassword: String?
  }

  public static func create(
    role: Role, username: String, displayName: String, departmentCode: String, password: String,
    store: any IdentityStore, catalog: any CatalogStore, now: Date, auditedBy actor: Principal? = nil
  ) async throws -> Created {
    guard role.isStaff else { throw ValidationError("role", "must be admin or caseworker") }
    let username = try AccountRules.username(username)
    let displayName = try AccountRules.personName(displayName, field: "display_name")
    var department: String?
    let code = departmentCode.trimmingWhitespace()
    if role == .caseworker {
      guard !code.isEmpty else { throw ValidationError("department_code", "is required for caseworkers") }
      guard try await catalog.departments().contains(where: { $0.code == code }) else {
        throw StoreError.notFound("department '\(code)'")
      }
      department = code
    } else if !code.isEmpty {
      throw ValidationError("department_code", "is only for caseworkers")
    }
    var generated: String?
    var clear = password
    if clear.isEmpty {
      clear = generatePassword()
      generated = clear
    } else {
      try PasswordHashing.validateNewPassword(clear)
    }
    let hash = try await PasswordWork().hash(clear)
    let id = ULID.make(at: now)
    let account = try await store.createAccount(NewAccount(
      account: Account(
        id: id, role: role, displayName: displayName, departmentCode: department, username: username,
        hasPassword: true, createdAt: now),
      passwordHash: hash,
      audit: actor.map { AuditEvent($0, action: "account.create_staff", targetType: "account", targetID: id, reason: role.rawValue) }))
    return Created(account: account, generatedPassword: generated)
  }

  /// 16 characters from an unambiguous alphabet, always with a letter and a digit.
  public static func generatePassword() -> String {
    let letters = Array("abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ")
    let digits = Array("23456789")
    let all = letters + digits
    var rng = SystemRandomNumberGenerator()
    var chars = (0..<14).map { _ in all.randomElement(using: &rng)! }
    chars.append(letters.randomElement(using: &rng)!)
    chars.append(digits.randomElement(using: &rng)!)
    chars.shuffle(using: &rng)
    return String(chars)
  }
}
