import Foundation
import OneWindowCore

/// The persistence boundary. Services talk only to these protocols, so a PostgreSQL backend can
/// be added as another conforming type without touching them. Every method is one transaction.
public protocol Store: Sendable {
  var identity: any IdentityStore { get }
  var catalog: any CatalogStore { get }
  var outbox: any OutboxStore { get }
  var sync: any SyncStore { get }
  var cases: any CaseStore { get }
  var materials: any MaterialStore { get }
  var certificates: any CertificateStore { get }
  var evaluations: any EvaluationStore { get }
  var audit: any AuditStore { get }
  var notifications: any NotificationStore { get }
  var payments: any PaymentStore { get }
  /// Doorbells to the other nodes sharing this database (silent on the embedded engine).
  var doorbells: any Doorbells { get }
  /// Leases for singleton jobs, judged by the database's clock.
  var leases: any Leases { get }
  /// Per-caller rate limits counted for every node sharing the database.
  var rateLimits: any RateLimits { get }
  /// Uploaded materials' content, where every node sharing the database finds it.
  var blobs: any BlobStore { get }
  /// Raw SQL for tests and checks that look under the protocols.
  var inspection: any StoreInspection { get }
  /// Runs a trivial query: throws while the database cannot answer (readiness probes).
  func ping() async throws
  /// Applied migration identifiers, oldest first (`onewindow migrate`); the same on every engine.
  func appliedMigrations() async throws -> [String]
  /// Flushes and closes the database; call once after the server has drained.
  func close() async throws
}

/// Failures a store reports in domain terms; the server maps them to gRPC status codes.
public enum StoreError: Error, Equatable, Sendable {
  /// The named thing does not exist.
  case notFound(String)
  /// A unique value (named by its field) is already taken.
  case alreadyExists(field: String)
  /// Optimistic concurrency: the row is at `current`, not the version the caller expected.
  case versionConflict(current: Int64)
  /// The operation is not allowed in the row's current state.
  case failedPrecondition(String)
  /// The caller may not touch this row (it belongs to someone else).
  case permissionDenied(String)
  /// The request collides with an existing one (an idempotency key reused with other
  /// parameters, a second order for a case); the message says with what.
  case conflict(String)
  /// The database cannot be reached (connection refused or lost, the server shutting down):
  /// a transient failure the caller may retry. A write that failed this way may or may not have
  /// committed, so only writes with an idempotency key are safe to retry blindly.
  case unavailable(String)
}

// MARK: - Identity

/// An account to create, with its password hash (nil: code login only).
public struct NewAccount: Sendable {
  public var account: Account
  public var passwordHash: String?
  /// Appended to the audit log in the same transaction (staff accounts created by an admin).
  public var audit: AuditEvent?

  public init(account: Account, passwordHash: String?, audit: AuditEvent? = nil) {
    self.account = account
    self.passwordHash = passwordHash
    self.audit = audit
  }
}

/// What password login needs: the account, its hash, and its lockout state.
public struct AccountCredentials: Sendable {
  public var account: Account
  public var passwordHash: String?
  public var lockout: LoginLockoutPolicy.State

  public init(account: Account, passwordHash: String?, lockout: LoginLockoutPolicy.State) {
    self.account = account
    self.passwordHash = passwordHash
    self.lockout = lockout
  }
}

public enum LoginCodeIssue: Sendable, Equatable {
  case issued(expiresAt: Date)
  case rateLimited(retryAfter: TimeInterval)
}

public enum LoginCodeCheck: Sendable, Equatable {
  case accepted
  case wrong(attemptsLeft: Int)
  /// Too many wrong attempts: the code is burnt.
  case exhausted
  /// No unexpired, unused code exists for the phone.
  case noActiveCode
}

public enum RefreshOutcome: Sendable, Equatable {
  case rotated(accountID: String)
  /// The token had already been used: the whole family is now revoked.
  case reused
  case invalid
}

public protocol IdentityStore: Sendable {
  /// `StoreError.alreadyExists(field:)` when a phone, ID number, credit code or username is taken.
  func createAccount(_ new: NewAccount) async throws -> Account
  func account(id: String) async throws -> Account?
  /// Looks an account up by phone, credit code or username.
  func credentials(login: String) async throws -> AccountCredentials?
  func citizenID(phone: String) async throws -> String?
  /// Records a failed password login and returns the new lockout state (atomic read-modify-write).
  func recordLoginFailure(accountID: String, policy: LoginLockoutPolicy, now: Date) async throws -> LoginLockoutPolicy.State
  func clearLoginFailures(accountID: String) async throws
  /// Sets a new password hash and revokes every session family of the account except `keepFamily`.
  func changePassword(accountID: String, newHash: String, keepFamily: String?, now: Date) async throws
  func setTrustLevel(accountID: String, level: Int, now: Date, audit: AuditEvent?) async throws -> Account
  /// Moves a caseworker to another department. `notFound` for an unknown account or department,
  /// `failedPrecondition` when the account is not a caseworker.
  func moveCaseworker(accountID: String, departmentCode: String, now: Date, audit: AuditEvent?) async throws -> Account

  /// Applies the rate-limit policy and stores the hashed code in one transaction.
  func issueLoginCode(phone: String, codeHash: String, policy: LoginCodePolicy, now: Date) async throws -> LoginCodeIssue
  /// Deletes a just-issued code whose delivery failed, as if it had never been issued.
  func withdrawLoginCode(phone: String, codeHash: String) async throws
  /// Checks a code against the phone's active code; counts attempts and consumes it on success.
  func checkLoginCode(phone: String, codeHash: String, policy: LoginCodePolicy, now: Date) async throws -> LoginCodeCheck

  /// Starts a new session family with its first token pair; returns the family id.
  func createSession(accountID: String, tokens: IssuedTokens, now: Date) async throws -> String
  /// Resolves an access token hash to its principal if unexpired and not revoked.
  func authenticate(accessHash: String, now: Date) async throws -> Principal?
  /// Single-use refresh: marks the old token used and stores the new pair in the same family.
  func rotateRefresh(refreshHash: String, replacement: IssuedTokens, now: Date) async throws -> RefreshOutcome
  func revokeFamily(_ familyID: String, now: Date) async throws
  /// Whether the login (session family) still stands: not revoked by logout, password change or
  /// refresh-token reuse. Long-lived streams re-check it.
  func isSessionActive(familyID: String) async throws -> Bool
  /// Deletes expired tokens, codes and revoked families (housekeeping).
  func purgeExpired(now: Date) async throws -> Int
}

// MARK: - Catalog

public protocol CatalogStore: Sendable {
  func departments() async throws -> [Department]
  // Writes made by an administrator's RPC carry its audit entry, appended in the same
  // transaction (nil for bootstrap paths such as the demo import).
  func upsertDepartment(_ department: Department, now: Date, audit: AuditEvent?) async throws -> Department
  /// Creates a draft at version 1. `alreadyExists(field: "spec.code")` when taken.
  func createItem(_ spec: ServiceItemSpec, now: Date, audit: AuditEvent?) async throws -> ServiceItem
  /// Replaces the guide if the item is at `expectedVersion`; `versionConflict` otherwise.
  func updateItem(_ spec: ServiceItemSpec, expectedVersion: Int64, now: Date, audit: AuditEvent?) async throws -> ServiceItem
  /// Publishes or withdraws. `expectedVersion` nil skips the version check.
  func setItemStatus(code: String, to status: ItemStatus, expectedVersion: Int64?, now: Date, audit: AuditEvent?) async throws -> ServiceItem
  func item(code: String) async throws -> ServiceItem?
  /// Items with the given statuses, sorted by code.
  func items(statuses: Set<ItemStatus>) async throws -> [ServiceItem]
  /// Codes of published items matching the query, best first.
  func search(_ query: SearchQuery, limit: Int, offset: Int) async throws -> [String]
  /// Loads departments and items (optionally published) in one transaction; existing codes are
  /// left untouched. Returns how many items were created.
  func importBundle(departments: [Department], items: [ServiceItemSpec], publish: Bool, now: Date) async throws -> Int
}

// MARK: - Outbox

/// A message queued for an outbound channel (SMS in development: the login codes).
public struct OutboxMessage: Sendable, Equatable {
  public var id: Int64
  public var channel: String
  public var recipient: String
  public var body: String
  public var createdAt: Date

  public init(id: Int64, channel: String, recipient: String, body: String, createdAt: Date) {
    self.id = id
    self.channel = channel
    self.recipient = recipient
    self.body = body
    self.createdAt = createdAt
  }
}

public protocol OutboxStore: Sendable {
  func append(channel: String, recipient: String, body: String, now: Date) async throws
  /// Newest first.
  func messages(recipient: String, limit: Int) async throws -> [OutboxMessage]
}

extension CatalogStore {
  /// Without an audit entry: bootstrap and test paths that have no acting administrator.
  public func upsertDepartment(_ department: Department, now: Date) async throws -> Department {
    try await upsertDepartment(department, now: now, audit: nil)
  }

  public func createItem(_ spec: ServiceItemSpec, now: Date) async throws -> ServiceItem {
    try await createItem(spec, now: now, audit: nil)
  }

  public func setItemStatus(code: String, to status: ItemStatus, expectedVersion: Int64?, now: Date) async throws -> ServiceItem {
    try await setItemStatus(code: code, to: status, expectedVersion: expectedVersion, now: now, audit: nil)
  }
}
