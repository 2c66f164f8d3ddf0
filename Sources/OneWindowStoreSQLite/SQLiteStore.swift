import OneWindowStore
import Foundation
import GRDB
import OneWindowCore

/// The embedded default: one SQLite file in WAL mode behind a GRDB `DatabasePool` (one writer,
/// concurrent readers). Open one per database file and share it.
public final class SQLiteStore: Store {
  let pool: DatabasePool
  public let identity: any IdentityStore
  public let catalog: any CatalogStore
  public let outbox: any OutboxStore
  public let sync: any SyncStore
  public let cases: any CaseStore
  public let materials: any MaterialStore
  public let certificates: any CertificateStore
  public let evaluations: any EvaluationStore
  public let audit: any AuditStore
  public let notifications: any NotificationStore
  public let payments: any PaymentStore
  /// One process uses the file: nobody to ring.
  public let doorbells: any Doorbells = SilentDoorbells()
  public let leases: any Leases
  /// One process: its in-memory count is the cluster's.
  public let rateLimits: any RateLimits = InProcessRateLimits()
  /// Files under `materials/` beside the database file.
  public let blobs: any BlobStore
  public var inspection: any StoreInspection { SQLiteInspection(pool: pool) }

  /// Opens (creating if needed) and migrates the database at `path`.
  public init(path: String) throws {
    var config = Configuration()
    config.busyMode = .timeout(5)
    config.maximumReaderCount = max(2, ProcessInfo.processInfo.activeProcessorCount * 2)
    config.prepareDatabase { db in
      try db.execute(sql: "PRAGMA foreign_keys = ON")
      try db.execute(sql: "PRAGMA temp_store = MEMORY")
    }
    pool = try DatabasePool(path: path, configuration: config)
    try Migrations.migrator.migrate(pool)
    identity = SQLiteIdentityStore(pool: pool)
    catalog = SQLiteCatalogStore(pool: pool)
    outbox = SQLiteOutboxStore(pool: pool)
    let sync = try SQLiteSyncStore(pool: pool)
    self.sync = sync
    cases = SQLiteCaseStore(pool: pool, sync: sync)
    materials = SQLiteMaterialStore(pool: pool)
    certificates = SQLiteCertificateStore(pool: pool)
    evaluations = SQLiteEvaluationStore(pool: pool)
    audit = SQLiteAuditStore(pool: pool)
    notifications = SQLiteNotificationStore(pool: pool)
    payments = SQLitePaymentStore(pool: pool)
    leases = SQLiteLeases(pool: pool)
    blobs = try FileBlobStore(
      root: ((path as NSString).deletingLastPathComponent as NSString).appendingPathComponent("materials"))
  }

  /// Opens `onewindow.sqlite` inside `directory`, creating the directory (mode 0700) if needed.
  public convenience init(directory: String) throws {
    try FileManager.default.createDirectory(
      atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    try self.init(path: (directory as NSString).appendingPathComponent("onewindow.sqlite"))
  }

  public func close() async throws {
    // Fold the WAL back into the main file so the database is one self-contained file at rest.
    _ = try? await pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)") }
    try pool.close()
  }

  public func ping() async throws {
    try await pool.read { try $0.execute(sql: "SELECT 1") }
  }

  public func appliedMigrations() async throws -> [String] {
    try await pool.read { db in try Migrations.migrator.appliedMigrations(db) }
  }
}

typealias SQLTime = StoreTime

extension DatabaseError {
  /// For a UNIQUE violation, the violated column ("UNIQUE constraint failed: accounts.phone" → "phone").
  var uniqueViolationColumn: String? {
    guard extendedResultCode == .SQLITE_CONSTRAINT_UNIQUE || extendedResultCode == .SQLITE_CONSTRAINT_PRIMARYKEY,
          let message, let range = message.range(of: "failed: ")
    else { return nil }
    let columns = message[range.upperBound...].split(separator: ",").first ?? ""
    return columns.split(separator: ".").last.map { String($0).trimmingCharacters(in: .whitespaces) }
  }
}
