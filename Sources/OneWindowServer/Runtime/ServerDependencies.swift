import Foundation
import Logging
import OneWindowCore
import OneWindowStore
import OneWindowDatabase

/// Everything the server is assembled from, built in one place so the executable and the tests
/// assemble it the same way: the database, the clock, the adapters to the outside (code sender,
/// population registry, payment provider books) and the keys.
public struct ServerDependencies: Sendable {
  public var database: OpenedDatabase
  public var clock: any WallClock
  /// nil: the development sender, which queues codes in the store's outbox.
  public var codeSender: (any LoginCodeSender)?
  public var registry: any IdentityRegistry
  /// Signs e-certificates and receipts.
  public var issuer: IssuerKeys
  /// Seals webhook secrets at rest.
  public var secrets: SecretBox
  /// The sandbox payment provider's signing secret.
  public var sandboxSecret: String

  public var store: any Store { database.store }

  /// Opens the database and loads the keys from `config.keysDirectory`: created on first start
  /// for the embedded engine, required on PostgreSQL (see `ServerKeys`).
  public static func build(
    config: ServerConfig, database: DatabaseChoice, clock: any WallClock = SystemClock(), logger: Logger,
    codeSender: (any LoginCodeSender)? = nil, registry: any IdentityRegistry = SimulatedPopulationRegistry()
  ) async throws -> ServerDependencies {
    let keys = config.resolvedKeysDirectory
    if case .postgres = database { try ServerKeys.requireAll(in: keys) }
    let issuer = try IssuerKeys.loadOrCreate(directory: keys)
    let secrets = try SecretBox.loadOrCreate(directory: keys)
    let sandboxSecret = try SandboxProvider.loadOrCreateSecret(directory: keys)
    let opened = try await OpenedDatabase.open(database, logger: logger)
    return ServerDependencies(
      database: opened, clock: clock, codeSender: codeSender, registry: registry, issuer: issuer, secrets: secrets,
      sandboxSecret: sandboxSecret)
  }
}
