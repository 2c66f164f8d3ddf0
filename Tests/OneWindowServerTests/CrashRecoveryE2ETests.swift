import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import OneWindowAPI
import OneWindowClientPosix
import OneWindowCore
import OneWindowServer
import Testing
import OneWindowTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// A real `onewindow serve` process (the binary `swift build` put next to the test bundle, or
/// `$ONEWINDOW_BINARY`) on its own data directory, which a test can kill -9 and start again.
/// The HTTP listener gets `--http-port 0` (parallel tests never collide); its port is read from
/// the server's "serving" log line, which goes to a log file kept beside the data directory.
final class ServerProcess: @unchecked Sendable {
  /// The database every start of this server uses.
  let database: TestDatabase
  /// The node's data directory: the database's, unless the node has its own (several nodes on
  /// one PostgreSQL database).
  let dataDirectory: String
  /// Where its keys are (several nodes share one copy).
  let keysDirectory: String
  /// Reaches PostgreSQL on this loopback port instead of the database's own (a relay the test
  /// can cut).
  let databasePort: Int?
  let port: Int
  /// The HTTP listener's port of the current run (a new one after each `start()`).
  private(set) var httpPort = 0
  private var process: ChildProcess?
  private var logFile: String?

  init(database: TestDatabase, dataDirectory: String? = nil, keysDirectory: String? = nil, databasePort: Int? = nil) throws {
    self.database = database
    self.databasePort = databasePort
    self.dataDirectory = dataDirectory ?? database.directory
    self.keysDirectory = keysDirectory ?? self.dataDirectory
    try FileManager.default.createDirectory(atPath: self.dataDirectory, withIntermediateDirectories: true)
    port = try Self.freePort()
  }

  /// The options that open this node's database, with its own data and keys directories.
  var databaseArguments: [String] {
    var arguments = database.commandLineArguments
    if let i = arguments.firstIndex(of: "--data-dir"), i + 1 < arguments.count { arguments[i + 1] = dataDirectory }
    if let databasePort, let i = arguments.firstIndex(of: "--database-url"), i + 1 < arguments.count,
      var url = URLComponents(string: arguments[i + 1])
    {
      url.port = databasePort
      arguments[i + 1] = url.string ?? arguments[i + 1]
    }
    return arguments + ["--keys-dir", keysDirectory]
  }

  /// A server on a fresh database of `engine`.
  static func make(_ engine: TestEngine = .sqlite) async throws -> ServerProcess {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ow-crash-\(UUID().uuidString)").path
    return try ServerProcess(database: try await TestDatabase.create(engine, directory: dir))
  }

  deinit {
    if let process, process.isRunning {
      process.signal(SIGKILL)
      process.waitBlocking()
    }
    try? FileManager.default.removeItem(atPath: dataDirectory)
    if let logFile { try? FileManager.default.removeItem(atPath: logFile) }
  }

  static var binary: String? {
    if let path = ProcessInfo.processInfo.environment["ONEWINDOW_BINARY"] { return path }
    let bundle = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for dir in [bundle, bundle.deletingLastPathComponent()] {
      let candidate = dir.appendingPathComponent("onewindow").path
      if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    return nil
  }

  func start(extraArguments: [String] = []) async throws {
    guard let binary = Self.binary else {
      throw RPCError(code: .failedPrecondition, message: "onewindow binary not found next to the tests: run `swift build` first or set ONEWINDOW_BINARY")
    }
    if let logFile { try? FileManager.default.removeItem(atPath: logFile) }
    // On PostgreSQL a node never makes its own keys: created first, as an operator would.
    if database.engine == .postgres { try ServerKeys.createMissing(in: keysDirectory) }
    let log = dataDirectory + "-\(UUID().uuidString).log"
    logFile = log
    httpPort = 0
    process = try ChildProcess(
      binary, ["serve", "--port", "\(port)", "--http-port", "0", "--log-level", "notice"] + databaseArguments + extraArguments,
      stdout: .null, stderr: .appendingTo(log))
    // Generous: on a loaded 2-core machine a start (with migrations) can take many seconds.
    let deadline = ContinuousClock.now + .seconds(90)
    while ContinuousClock.now < deadline {
      if httpPort == 0, let parsed = Self.httpPort(inLog: log) { httpPort = parsed }
      if httpPort != 0,
        (try? await OneWindowClients.with(ConnectionOptions(host: "127.0.0.1", port: port)) { try await $0.health.check(.init()) })?.status == .serving
      {
        return
      }
      try await Task.sleep(for: .milliseconds(100))
    }
    let tail = (try? String(contentsOfFile: log, encoding: .utf8)).map { String($0.suffix(2000)) } ?? ""
    throw RPCError(code: .unavailable, message: "onewindow did not start serving within 90 s; its log ends:\n\(tail)")
  }

  /// The port in the `http-address=HOST:PORT` field of the "serving" log line, once written.
  static func httpPort(inLog path: String) -> Int? {
    guard let data = FileManager.default.contents(atPath: path) else { return nil }
    for line in String(decoding: data, as: UTF8.self).split(separator: "\n") where line.hasSuffix(" serving") {
      guard let field = line.split(separator: " ").first(where: { $0.hasPrefix("http-address=") }),
        let port = field.split(separator: ":").last.flatMap({ Int($0) })
      else { continue }
      return port
    }
    return nil
  }

  /// SIGTERM (a graceful shutdown), then waits for the exit; returns the exit status.
  func terminate() -> Int32 {
    guard let process else { return -1 }
    process.signal(SIGTERM)
    let status = process.waitBlocking()
    self.process = nil
    return status
  }

  /// Creates an administrator offline (`onewindow admin create-user`), as an operator would
  /// before the first start.
  func createAdmin(username: String, password: String) throws {
    guard let binary = Self.binary else { throw RPCError(code: .failedPrecondition, message: "onewindow binary not found") }
    let process = try ChildProcess(
      binary, ["admin", "create-user", "--role", "admin", "--username", username, "--password-stdin"] + databaseArguments,
      stdin: .pipe)
    process.writeAndClose(Array((password + "\n").utf8))
    guard process.waitBlocking() == 0 else { throw RPCError(code: .internalError, message: "admin create-user failed") }
  }

  /// Kills the server without letting it finish anything (no graceful shutdown, no checkpoint).
  func crash() {
    guard let process else { return }
    process.signal(SIGKILL)
    process.waitBlocking()
    self.process = nil
  }

  static func freePort() throws -> Int {
    let reserved = try ReservedPort()
    defer { reserved.release() }
    return reserved.port
  }
}

@Suite(.serialized) struct CrashRecoveryE2ETests {
  /// T11: the server is killed while a push is in flight. The device cannot know whether the
  /// push committed; it retries the same mutations after the restart and each applies once.
  @Test(arguments: TestEngine.enabled) func aPushInterruptedByAServerCrashAppliesExactlyOnceAfterRetry(engine: TestEngine) async throws {
    let server = try await ServerProcess.make(engine)
    try await server.start()
    let options = ConnectionOptions(host: "127.0.0.1", port: server.port)
    let phone = "13900000077"
    let token = try await OneWindowClients.with(options) { clients in
      _ = try await clients.identity.registerCitizen(.with {
        $0.name = "赵六"; $0.phone = phone; $0.idNumber = "11010519491231002X"; $0.password = "Citizen-pass-1"
      })
      return try await clients.identity.loginWithPassword(.with { $0.login = phone; $0.password = "Citizen-pass-1" }).accessToken
    }
    var device = RawDevice("crash-device")
    let ids = (0..<3000).map { _ in newRecordID() }
    let now = Date()
    let batches = stride(from: 0, to: ids.count, by: 1000).map { start in
      ids[start..<start + 1000].map { device.upsert("preferences", $0, ["n": .int(1), "pad": .string(String(repeating: "x", count: 200))], now: now) }
    }
    // Push in the background; once the first batch is acknowledged, crash the server while the
    // second is in flight.
    let (acknowledged, signal) = AsyncStream.makeStream(of: Void.self)
    let pushing = Task {
      try await OneWindowClients.with(options) { clients in
        for batch in batches {
          _ = try await clients.sync.push(.with { $0.clientID = "crash-device"; $0.mutations = batch }, metadata: bearer(token))
          signal.yield()
        }
      }
    }
    for await _ in acknowledged { break }
    try await Task.sleep(for: .milliseconds(5))
    server.crash()
    let interrupted = await pushing.result
    #expect(throws: (any Error).self) { try interrupted.get() }

    try await server.start()
    try await OneWindowClients.with(options) { clients in
      try await Self.retryAndCheck(clients.sync, token: token, batches: batches)
    }
    server.crash()
  }

  static func retryAndCheck(
    _ sync: Onewindow_V1_SyncService.Client<HTTP2ClientTransport.Posix>, token: String, batches: [[Onewindow_V1_Mutation]]
  ) async throws {
    var last: Int64 = 0
    for batch in batches {
      let response = try await sync.push(.with { $0.clientID = "crash-device"; $0.mutations = batch }, metadata: bearer(token))
      #expect(response.gapExpectedID == 0)
      #expect(response.results.allSatisfy { $0.outcome == .applied })
      last = response.lastMutationID
    }
    #expect(last == 3000)
    var versions: [String: Int64] = [:]
    var cursor = ""
    while true {
      let page = try await sync.pull(.with { $0.cursor = cursor }, metadata: bearer(token))
      for change in page.changes where change.collection == "preferences" { versions[change.recordID, default: 0] += change.version }
      cursor = page.cursor
      if !page.hasMore_p { break }
    }
    #expect(versions.count == 3000)
    #expect(versions.values.allSatisfy { $0 == 1 })  // every record written exactly once
  }
}
