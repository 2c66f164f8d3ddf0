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
    do {
      try await PostgresMigrator.migrate(database)
    } catch {
      await database.close()
      throw error
    }
    do {
      // After migrating: the sync store reads its clock from sync_meta.
      let sync = try await PostgresSyncStore(pool: database)
      self.sync = sync
      cases = PostgresCaseStore(pool: database, sync: sync)
    } catch {
      await database.close()
      throw error
    }
  }

  public var inspection: any StoreInspection { PostgresInspection(database: database) }

  public func appliedMigrations() async throws -> [String] {
    try await PostgresMigrator.applied(database)
  }

  public func close() async throws {
    await database.close()
  }
}

typealias PGTime = StoreTime
