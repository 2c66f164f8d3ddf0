import Foundation
import GRPCCore
import Synchronization
import GRPCNIOTransportHTTP2Posix
import OneWindowAPI
import OneWindowClientPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A `onewindow serve` process that owbench started itself (`--spawn`): a free loopback port, a
/// fresh temporary data directory with the demo catalog, stdout (demo passwords) discarded and
/// stderr kept in a log file for diagnostics. Its HTTP listener (/healthz, /metrics) gets
/// `--http-port 0`; the bound port is read from the "serving" line of that log. With a
/// `databaseURL` it uses that PostgreSQL database instead of the embedded SQLite file (the keys
/// stay in the data directory).
final class SpawnedServer: Sendable {
  let process: Process
  let port: Int
  let dataDirectory: URL
  let logFile: URL
  /// `--database-url` given to the server, and to every command run on its database.
  let databaseURL: String?

  /// The options that select the server's database, for `onewindow` commands run beside it.
  var databaseArguments: [String] {
    ["--data-dir", dataDirectory.path] + (databaseURL.map { ["--database-url", $0] } ?? [])
  }
  private let boundHTTPPort = Atomic<Int>(0)

  var pid: Int32 { process.processIdentifier }
  var address: String { "127.0.0.1:\(port)" }
  /// The HTTP listener's port; known once `start` returned.
  var httpPort: Int { boundHTTPPort.load(ordering: .relaxed) }

  private init(process: Process, port: Int, dataDirectory: URL, logFile: URL, databaseURL: String?) {
    self.process = process
    self.port = port
    self.dataDirectory = dataDirectory
    self.logFile = logFile
    self.databaseURL = databaseURL
  }

  /// Starts the server and waits (at most `readyTimeout`) until health Check answers SERVING and
  /// the log names the HTTP port.
  /// `keys`: another spawned server's data directory whose keys this one shares (several nodes
  /// on one database); nil: its own, created here on PostgreSQL.
  static func start(
    executable: String, databaseURL: String? = nil, keys: URL? = nil, nodeID: String? = nil, readyTimeout: Duration = .seconds(60)
  ) async throws -> SpawnedServer {
    guard FileManager.default.isExecutableFile(atPath: executable) else {
      throw BenchError("--spawn: '\(executable)' is not an executable file")
    }
    let port = try freeLoopbackPort()
    let base = FileManager.default.temporaryDirectory
      .appendingPathComponent("owbench-\(getpid())-\(UInt32.random(in: 0...UInt32.max))", isDirectory: true)
    let dataDirectory = base.appendingPathComponent("data", isDirectory: true)
    try FileManager.default.createDirectory(at: dataDirectory, withIntermediateDirectories: true)
    let logFile = base.appendingPathComponent("server.log")
    guard FileManager.default.createFile(atPath: logFile.path, contents: nil) else {
      throw BenchError("cannot create \(logFile.path)")
    }

    if databaseURL != nil, keys == nil {
      // On PostgreSQL a node never makes its own keys: created first, as an operator would.
      let keys = Process()
      keys.executableURL = URL(fileURLWithPath: executable)
      keys.arguments = ["keys", "create", "--keys-dir", dataDirectory.path]
      keys.standardOutput = FileHandle.nullDevice
      try keys.run()
      keys.waitUntilExit()
      guard keys.terminationStatus == 0 else { throw BenchError("onewindow keys create failed") }
    }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = [
      "serve", "--host", "127.0.0.1", "--port", "\(port)", "--http-port", "0", "--data-dir", dataDirectory.path, "--demo",
    ]
    if let databaseURL { process.arguments? += ["--database-url", databaseURL] }
    if let keys { process.arguments? += ["--keys-dir", keys.path] }
    if let nodeID { process.arguments? += ["--node-id", nodeID] }
    process.standardInput = FileHandle.nullDevice
    process.standardOutput = FileHandle.nullDevice  // the demo account passwords
    process.standardError = try FileHandle(forWritingTo: logFile)
    try process.run()
    // The child has its own process group, so a Ctrl-C on owbench would not reach it.
    terminateOnSignal(pid: process.processIdentifier)
    let server = SpawnedServer(
      process: process, port: port, dataDirectory: dataDirectory, logFile: logFile, databaseURL: databaseURL)

    do {
      try await server.waitUntilServing(timeout: readyTimeout)
    } catch {
      await server.stop(removeData: false)
      throw BenchError("\(error)\n--- server log (\(logFile.path)) ---\n\(server.logTail())")
    }
    return server
  }

  private func waitUntilServing(timeout: Duration) async throws {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    let options = try ConnectionOptions(server: address)
    var lastError = "no answer"
    while clock.now < deadline {
      guard process.isRunning else {
        throw BenchError("the server exited with status \(process.terminationStatus) before it was ready")
      }
      if httpPort == 0, let port = loggedHTTPPort() { boundHTTPPort.store(port, ordering: .relaxed) }
      guard httpPort != 0 else {
        lastError = "no \"serving\" line with http-address in the log yet"
        try await Task.sleep(for: .milliseconds(100))
        continue
      }
      do {
        var callOptions = CallOptions.defaults
        callOptions.timeout = .seconds(1)
        callOptions.waitForReady = false
        let status = try await withGRPCClient(transport: options.makeTransport()) { client in
          try await Grpc_Health_V1_Health.Client(wrapping: client)
            .check(Grpc_Health_V1_HealthCheckRequest(), options: callOptions).status
        }
        if status == .serving { return }
        lastError = "health status \(status)"
      } catch {
        lastError = "\(error)"
      }
      try await Task.sleep(for: .milliseconds(100))
    }
    throw BenchError("the server did not answer health Check SERVING within \(timeout) (last: \(lastError))")
  }

  /// SIGTERM, then wait up to 15 s for the graceful shutdown; SIGKILL after that.
  func stop(removeData: Bool = true) async {
    defer { Self.forget(pid: pid) }
    if process.isRunning {
      kill(pid, SIGTERM)
      let clock = ContinuousClock()
      let deadline = clock.now + .seconds(15)
      while process.isRunning, clock.now < deadline {
        try? await Task.sleep(for: .milliseconds(50))
      }
      if process.isRunning {
        kill(pid, SIGKILL)
        while process.isRunning { try? await Task.sleep(for: .milliseconds(50)) }
      }
    }
    if removeData {
      try? FileManager.default.removeItem(at: dataDirectory.deletingLastPathComponent())
    }
  }

  /// If owbench gets SIGINT or SIGTERM while the server runs, pass SIGTERM on to the server
  /// and exit (the temporary data directory stays behind).
  private static func terminateOnSignal(pid: Int32) {
    for slot in 0..<spawnedServerSlots where spawnedServerPIDs[slot] == 0 {
      spawnedServerPIDs[slot] = pid
      break
    }
    let handler: @convention(c) (Int32) -> Void = { signal in
      for slot in 0..<spawnedServerSlots where spawnedServerPIDs[slot] > 0 { kill(spawnedServerPIDs[slot], SIGTERM) }
      _exit(128 + signal)
    }
    signal(SIGINT, handler)
    signal(SIGTERM, handler)
  }

  private static func forget(pid: Int32) {
    for slot in 0..<spawnedServerSlots where spawnedServerPIDs[slot] == pid { spawnedServerPIDs[slot] = 0 }
  }

  /// The port in the `http-address=HOST:PORT` field of the server's "serving" log line.
  private func loggedHTTPPort() -> Int? {
    guard let data = FileManager.default.contents(atPath: logFile.path) else { return nil }
    for line in String(decoding: data, as: UTF8.self).split(separator: "\n") where line.hasSuffix(" serving") {
      guard let field = line.split(separator: " ").first(where: { $0.hasPrefix("http-address=") }),
        let port = field.split(separator: ":").last.flatMap({ Int($0) })
      else { continue }
      return port
    }
    return nil
  }

  func logTail(lines: Int = 20) -> String {
    guard let data = FileManager.default.contents(atPath: logFile.path) else { return "(no log)" }
    return String(decoding: data, as: UTF8.self).split(separator: "\n").suffix(lines).joined(separator: "\n")
  }
}

/// The spawned server's PID for the signal handler (async-signal-safe: a lock-free atomic).
/// The spawned servers' pids, for the signal handler (plain stores and loads of Int32 slots,
/// which a signal handler may read; slots are taken and freed by owbench's one setup path).
private let spawnedServerSlots = 16
nonisolated(unsafe) private let spawnedServerPIDs: UnsafeMutablePointer<Int32> = {
  let slots = UnsafeMutablePointer<Int32>.allocate(capacity: spawnedServerSlots)
  slots.initialize(repeating: 0, count: spawnedServerSlots)
  return slots
}()

/// A TCP port that was free a moment ago: bind 127.0.0.1:0, read the port back, close.
func freeLoopbackPort() throws -> Int {
  #if canImport(Glibc)
  let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
  #else
  let fd = socket(AF_INET, SOCK_STREAM, 0)
  #endif
  guard fd >= 0 else { throw BenchError("socket() failed: errno \(errno)") }
  defer { close(fd) }
  var address = sockaddr_in()
  address.sin_family = sa_family_t(AF_INET)
  address.sin_port = 0
  address.sin_addr.s_addr = inet_addr("127.0.0.1")
  let bound = withUnsafePointer(to: &address) {
    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
  }
  guard bound == 0 else { throw BenchError("bind(127.0.0.1:0) failed: errno \(errno)") }
  var length = socklen_t(MemoryLayout<sockaddr_in>.size)
  let named = withUnsafeMutablePointer(to: &address) {
    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
  }
  guard named == 0 else { throw BenchError("getsockname() failed: errno \(errno)") }
  return Int(UInt16(bigEndian: address.sin_port))
}

/// Resident memory of a process from `/proc/PID/status` (Linux).
enum ProcStatus {
  /// A field such as `VmRSS` or `VmHWM`, in bytes; nil when the process or field is gone.
  static func bytes(_ field: String, pid: Int32) -> UInt64? {
    guard let text = readProcFile("/proc/\(pid)/status") else { return nil }
    for line in text.split(separator: "\n") where line.hasPrefix(field + ":") {
      // "VmRSS:\t   12345 kB"
      let parts = line.dropFirst(field.count + 1).split(separator: " ", omittingEmptySubsequences: true)
        .flatMap { $0.split(separator: "\t") }
      guard let value = parts.first.flatMap({ UInt64($0) }) else { return nil }
      let unit = parts.dropFirst().first.map(String.init) ?? "kB"
      return unit == "kB" ? value * 1024 : value
    }
    return nil
  }

  /// procfs files report size 0, so read until EOF instead of trusting stat.
  static func readProcFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var result: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
      let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
      if n < 0 { return nil }
      if n == 0 { break }
      result += buffer[0..<n]
    }
    return String(decoding: result, as: UTF8.self)
  }
}

/// Samples a process's VmRSS every 200 ms and keeps the maximum.
final class RSSSampler: Sendable {
  private let task: Task<UInt64, Never>

  init(pid: Int32, interval: Duration = .milliseconds(200)) {
    task = Task {
      var peak: UInt64 = 0
      while !Task.isCancelled {
        if let rss = ProcStatus.bytes("VmRSS", pid: pid) { peak = max(peak, rss) }
        try? await Task.sleep(for: interval)
      }
      if let rss = ProcStatus.bytes("VmRSS", pid: pid) { peak = max(peak, rss) }
      return peak
    }
  }

  /// Stops sampling and returns the largest VmRSS seen (0 when none could be read).
  func finish() async -> UInt64 {
    task.cancel()
    return await task.value
  }
}

struct BenchError: Error, CustomStringConvertible {
  let description: String
  init(_ description: String) { self.description = description }
}
