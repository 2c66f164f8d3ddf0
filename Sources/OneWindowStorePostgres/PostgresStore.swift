import Foundation
import Logging
import OneWindowStore
import PostgresNIO

/// The scale-out engine: every store protocol on PostgreSQL through one pooled postgres-nio
/// client. Open one per process and share it; several processes may share the database.
public final class PostgresStore: Store {
  let database: PostgresPool
  public let settings: PostgresSettings
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
  public var doorbells: any Doorbells { bells }
  public let leases: any Leases
  public let rateLimits: any RateLimits
  public let blobs: any BlobStore
  let bells: PostgresDoorbells
  private let syncStore: PostgresSyncStore

  /// Connects and migrates (under an advisory lock, so concurrent starts migrate once).
  public init(settings: PostgresSettings, logger: Logger) async throws {
    self.settings = settings
    database = try PostgresPool(settings: settings, logger: logger)
    payments = PostgresPaymentStore(pool: database)
    identity = PostgresIdentityStore(pool: database)
    catalog = PostgresCatalogStore(pool: database)
    outbox = PostgresOutboxStore(pool: database)
    audit = PostgresAuditStore(pool: database)
    materials = PostgresMaterialStore(pool: database)
    certificates = PostgresCertificateStore(pool: database)
    evaluations = PostgresEvaluationStore(pool: database)
    notifications = PostgresNotificationStore(pool: database)
    leases = PostgresLeases(pool: database)
    rateLimits = PostgresRateLimits(pool: database)
    blobs = PostgresBlobStore(pool: database)
    let bells: PostgresDoorbells
    let sync: PostgresSyncStore
    do {
      try await PostgresMigrator.migrate(database)
      bells = try PostgresDoorbells(pool: database, settings: settings, logger: logger)
    } catch {
      await database.close()
      throw error
    }
    do {
      // After migrating: the sync store reads its clock from sync_meta.
      sync = try await PostgresSyncStore(pool: database, doorbells: bells)
    } catch {
      await bells.close()
      await database.close()
      throw error
    }
    self.bells = bells
    syncStore = sync
    self.sync = sync
    cases = PostgresCaseStore(pool: database, sync: sync)
    sync.startPump()
  }

  public var inspection: any StoreInspection { PostgresInspection(database: database) }

  public func ping() async throws {
    _ = try await database.rows("SELECT 1")
  }

  public func appliedMigrations() async throws -> [String] {
    try await PostgresMigrator.applied(database)
  }

  public func close() async throws {
    await syncStore.stopPump()
    await bells.close()
    await database.close()
  }

  /// True while this process's doorbell listener is connected (tests; `/metrics`).
  public var isListening: Bool { bells.listening.load(ordering: .relaxed) }
}

typealias PGTime = StoreTime
