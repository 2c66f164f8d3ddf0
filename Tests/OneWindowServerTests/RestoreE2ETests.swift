import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import OneWindowAPI
import OneWindowClient
import OneWindowClientPosix
import OneWindowCore
import OneWindowServer
import OneWindowTestSupport
import Synchronization
import Testing

/// Backup and restore with the real binary, and devices that lived through it with the client
/// SDK. The embedded engine uses `onewindow backup` and `onewindow restore` (which finishes with
/// a new sync epoch); PostgreSQL uses `pg_dump` and `pg_restore` of the deployment's schema, then
/// `onewindow restore-finish`, as docs/deployment.md says.
@Suite struct RestoreE2ETests {
  /// The PostgreSQL URL (without OneWindow's own parameters) and schema a node's arguments name.
  func postgres(_ server: ServerProcess) throws -> (url: String, schema: String) {
    let arguments = server.databaseArguments
    let i = try #require(arguments.firstIndex(of: "--database-url"))
    var url = try #require(URLComponents(string: arguments[i + 1]))
    let schema = try #require(url.queryItems?.first { $0.name == "search_path" }?.value)
    url.queryItems = url.queryItems?.filter { $0.name == "sslmode" }
    return (try #require(url.string), schema)
  }

  /// The backup: `onewindow backup`, or `pg_dump` of the schema; true when it succeeded.
  func backUp(_ server: ServerProcess, engine: TestEngine, binary: String, to directory: String) async throws -> Bool {
    switch engine {
    case .sqlite:
      let backup = try await ChildProcess.run(binary, ["backup", "--to", directory] + server.databaseArguments)
      #expect(backup.output.contains("backed up onewindow.sqlite, sandbox-provider.sqlite"), "\(backup.output)")
      return backup.status == 0
    case .postgres:
      let (url, schema) = try postgres(server)
      try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
      let dump = try await ChildProcess.run("pg_dump", ["--dbname=\(url)", "-n", schema, "-Fc", "-f", directory + "/db.dump"], stderr: .inherit)
      return dump.status == 0
    }
  }

  /// The disk (or the database) is lost, the backup comes back, the restore is finished.
  func restore(_ server: ServerProcess, engine: TestEngine, binary: String, from directory: String, work: String) async throws -> String {
    switch engine {
    case .sqlite:
      try FileManager.default.moveItem(atPath: server.dataDirectory, toPath: "\(work)/damaged")
      return try await ChildProcess.run(binary, ["restore", "--from", directory] + server.databaseArguments).output
    case .postgres:
      let (url, schema) = try postgres(server)
      let drop = try await ChildProcess.run("psql", ["--dbname=\(url)", "-qc", "DROP SCHEMA \(schema) CASCADE"], stderr: .inherit)
      #expect(drop.status == 0)
      let restored = try await ChildProcess.run(
        "pg_restore", ["--dbname=\(url)", "--no-owner", "--no-comments", directory + "/db.dump"], stderr: .inherit)
      #expect(restored.status == 0)
      return try await ChildProcess.run(binary, ["restore-finish"] + server.databaseArguments).output
    }
  }

  func syncEngine(
    _ replica: SyncReplica, _ clients: OneWindowClients, token: String
  ) -> SyncEngine<HTTP2ClientTransport.Posix> {
    SyncEngine(replica: replica, client: clients.sync, options: .init(collections: ["preferences"]), metadata: { bearer(token) })
  }

  @Test(arguments: TestEngine.enabled) func devicesConvergeAfterARestoreAndKeepTheirUnsyncedEdits(engine: TestEngine) async throws {
    let server = try await ServerProcess.make(engine)
    defer { if engine == .postgres { Task { await server.database.drop() } } }
    let work = FileManager.default.temporaryDirectory.appendingPathComponent("ow-restore-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: work) }
    let binary = try #require(ServerProcess.binary)
    try await server.start()
    let replicas = try ["a", "b", "c", "d"].map { try SyncReplica(path: "\(work)/\($0).sqlite") }
    let (a, b, c, d) = (replicas[0], replicas[1], replicas[2], replicas[3])

    // Before the backup: A and B sync some records.
    let token = try await OneWindowClients.with(ConnectionOptions(host: "127.0.0.1", port: server.port)) { clients in
      _ = try await clients.identity.registerCitizen(.with {
        $0.name = "孙九"; $0.phone = "13900000401"; $0.idNumber = "11010519491231002X"; $0.password = "Citizen-pass-1"
      })
      let token = try await clients.identity.loginWithPassword(.with { $0.login = "13900000401"; $0.password = "Citizen-pass-1" }).accessToken
      for (replica, n) in [(a, 3), (b, 2)] {
        for i in 0..<n { _ = try await replica.put(collection: "preferences", id: newRecordID(), fields: ["n": .int(Int64(i))]) }
        _ = try await syncEngine(replica, clients, token: token).sync()
      }

      // The backup, while device C keeps pushing.
      let stop = Atomic<Bool>(false)
      let writer = Task {
        var pushes = 0
        while !stop.load(ordering: .relaxed) {
          _ = try await c.put(collection: "preferences", id: newRecordID(), fields: ["during": .int(Int64(pushes))])
          _ = try await syncEngine(c, clients, token: token).sync()
          pushes += 1
        }
        return pushes
      }
      try await Task.sleep(for: .milliseconds(300))
      let backup = try await backUp(server, engine: engine, binary: binary, to: "\(work)/backup")
      stop.store(true, ordering: .relaxed)
      let during = try await writer.value
      #expect(backup)
      #expect(during > 0)

      // After the backup: acknowledged edits the restore will lose, and unsynced ones it must not.
      for i in 0..<3 { _ = try await a.put(collection: "preferences", id: newRecordID(), fields: ["lost": .int(Int64(i))]) }
      _ = try await syncEngine(a, clients, token: token).sync()
      _ = try await b.put(collection: "preferences", id: newRecordID(), fields: ["lost": .int(9)])
      _ = try await syncEngine(b, clients, token: token).sync()
      return token
    }
    let unsyncedA = try #require(try await a.put(collection: "preferences", id: newRecordID(), fields: ["offline": .string("a")]))
    let unsyncedB1 = try #require(try await b.put(collection: "preferences", id: newRecordID(), fields: ["offline": .string("b1")]))
    let unsyncedB2 = try #require(try await b.put(collection: "preferences", id: newRecordID(), fields: ["offline": .string("b2")]))

    // The disk is lost: the server stops, its data moves aside, the backup comes back.
    #expect(server.terminate() == 0)
    let restore = try await restore(server, engine: engine, binary: binary, from: "\(work)/backup", work: work)
    #expect(restore.contains("sync epoch"), "\(restore)")
    if engine == .sqlite {
      // The database took its name only once finished: no temporary file is left.
      let left = try FileManager.default.contentsOfDirectory(atPath: server.dataDirectory).filter { $0.contains(".restoring") }
      #expect(left.isEmpty, "\(left)")
      // A second restore into the same directory is refused: it would overwrite the database.
      let again = try await ChildProcess.run(binary, ["restore", "--from", "\(work)/backup"] + server.databaseArguments, stderr: .null)
      #expect(again.status != 0)
    }

    try await server.start()
    try await OneWindowClients.with(ConnectionOptions(host: "127.0.0.1", port: server.port)) { clients in
      // More writes after the restore than were lost, from a new device: the restored log
      // overtakes the old devices' cursors.
      for i in 0..<8 { _ = try await d.put(collection: "preferences", id: newRecordID(), fields: ["after": .int(Int64(i))]) }
      _ = try await syncEngine(d, clients, token: token).sync()

      // The old devices sync again: a reset, their unsynced edits applied, the lost ones named.
      let syncA = try await syncEngine(a, clients, token: token).sync()
      #expect(syncA.pull.reset == .epochChanged)
      #expect(syncA.push.lostFromMutationID != nil, "A's acknowledged edits after the backup are reported lost")
      let syncB = try await syncEngine(b, clients, token: token).sync()
      #expect(syncB.pull.reset == .epochChanged)
      _ = try await syncEngine(c, clients, token: token).sync()
      _ = try await syncEngine(d, clients, token: token).sync()
      let devices = replicas.map { syncEngine($0, clients, token: token) }
      try await expectConverged(devices)
      let ids = Set(try await d.list(collection: "preferences").map(\.id))
      for edit in [unsyncedA, unsyncedB1, unsyncedB2] {
        #expect(ids.contains(edit.key.id), "the unsynced edit \(edit.key.id) survived the restore")
      }
    }
    #expect(server.terminate() == 0)
    for replica in replicas { try await replica.close() }
    // The restored database is whole.
    let audit = try await ChildProcess.run(binary, ["audit", "verify"] + server.databaseArguments)
    #expect(audit.status == 0, "\(audit.output)")
    let payments = try await ChildProcess.run(binary, ["payments", "check"] + server.databaseArguments)
    #expect(payments.status == 0 && payments.output.contains("ledger OK"), "\(payments.output)")
  }
}
