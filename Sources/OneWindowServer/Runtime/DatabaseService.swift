import Logging
import OneWindowDatabase
import ServiceLifecycle

/// The database as a member of the server's service group. It is listed first, so the group
/// stops it last: once every other service has drained, it closes the store (on PostgreSQL,
/// the connection pool) instead of cutting connections under in-flight calls.
struct DatabaseService: Service {
  let database: OpenedDatabase
  let logger: Logger

  func run() async throws {
    try? await gracefulShutdown()
    try await database.close()
    logger.info("stopped; database closed", metadata: ["database": "\(database.description)"])
  }
}
