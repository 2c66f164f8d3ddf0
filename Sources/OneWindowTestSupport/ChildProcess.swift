import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A child process started with `posix_spawn`, for tests that run the real binary, Python
/// grpcio, HAProxy or openssl.
///
/// Not Foundation's `Process`: on Linux its `run()` reads `/proc/self/fd` with an over-long copy
/// of each directory entry and crashes now and then (SIGSEGV in `memmove`) in a process with many
/// open descriptors, like a parallel test run (swift-corelibs-foundation#5472, after 6.3.1).
/// The child gets only its three standard descriptors (everything else is closed at exec), the
/// default SIGPIPE disposition and an empty signal mask.
public final class ChildProcess: Sendable {
  /// Where a standard descriptor of the child goes.
  public enum Stream: Sendable {
    /// /dev/null.
    case null
    /// This process's own.
    case inherit
    /// A file, created or appended to.
    case appendingTo(String)
    /// A pipe to this process (`output()` reads stdout's; `writeAndClose(_:)` feeds stdin's).
    /// For stdin and stdout only; stderr given `.pipe` goes to /dev/null.
    case pipe
  }

  public enum SpawnError: Error, CustomStringConvertible {
    case failed(String, Int32)
    public var description: String {
      switch self {
      case .failed(let what, let code): "cannot start \(what): \(String(cString: strerror(code)))"
      }
    }
  }

  public let pid: pid_t
  private let state: Mutex<State>

  private struct State {
    var status: Int32?
    var stdinFD: Int32?
    var stdoutFD: Int32?
  }

  /// Starts `executable` (a path, or a name looked up on PATH) with `arguments` (not including
  /// argv[0]).
  public init(
    _ executable: String, _ arguments: [String], stdin: Stream = .null, stdout: Stream = .null, stderr: Stream = .inherit
  ) throws {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    var parentEnds: [Int32] = []
    var childEnds: [Int32] = []
    var stdinFD: Int32?
    var stdoutFD: Int32?
    defer { for fd in childEnds { close(fd) } }
    for (target, stream) in [(Int32(0), stdin), (1, stdout), (2, stderr)] {
      switch stream {
      case .inherit:
        break
      case .null:
        posix_spawn_file_actions_addopen(&actions, target, "/dev/null", target == 0 ? O_RDONLY : O_WRONLY, 0)
      case .pipe where target == 2:
        posix_spawn_file_actions_addopen(&actions, target, "/dev/null", O_WRONLY, 0)
      case .appendingTo(let path):
        posix_spawn_file_actions_addopen(&actions, target, path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
      case .pipe:
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else {
          for fd in parentEnds { close(fd) }
          throw SpawnError.failed("a pipe", errno)
        }
        // Not inherited by other children spawned meanwhile (ours close them anyway).
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        let (childEnd, parentEnd) = target == 0 ? (fds[0], fds[1]) : (fds[1], fds[0])
        posix_spawn_file_actions_adddup2(&actions, childEnd, target)
        childEnds.append(childEnd)
        parentEnds.append(parentEnd)
        if target == 0 { stdinFD = parentEnd } else { stdoutFD = parentEnd }
      }
    }
    Self.closeFrom3(&actions)
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    var none = sigset_t()
    sigemptyset(&none)
    var pipeSignal = sigset_t()
    sigemptyset(&pipeSignal)
    sigaddset(&pipeSignal, SIGPIPE)
    posix_spawnattr_setsigmask(&attributes, &none)
    posix_spawnattr_setsigdefault(&attributes, &pipeSignal)
    posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

    let argv = ([executable] + arguments).map { strdup($0) } + [nil]
    defer { for p in argv { free(p) } }
    var pid: pid_t = 0
    let result = posix_spawnp(&pid, executable, &actions, &attributes, argv, environ)
    guard result == 0 else {
      for fd in parentEnds { close(fd) }
      throw SpawnError.failed(executable, result)
    }
    self.pid = pid
    state = Mutex(State(status: nil, stdinFD: stdinFD, stdoutFD: stdoutFD))
  }

  deinit {
    state.withLock { s in
      for fd in [s.stdinFD, s.stdoutFD].compactMap({ $0 }) { close(fd) }
    }
  }

  /// Closes every descriptor above stderr in the child (glibc 2.34+), so it holds none of this
  /// process's sockets or pipes. Looked up at run time: the Glibc module does not export it.
  private static func closeFrom3(_ actions: inout posix_spawn_file_actions_t) {
    typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") else { return }
    _ = unsafeBitCast(symbol, to: CloseFrom.self)(&actions, 3)
  }

  public func signal(_ signal: Int32) {
    if state.withLock({ $0.status == nil }) { kill(pid, signal) }
  }

  /// Whether it has not exited yet (reaps it if it has).
  public var isRunning: Bool {
    state.withLock { s in
      if s.status != nil { return false }
      var raw: Int32 = 0
      guard waitpid(pid, &raw, WNOHANG) == pid else { return true }
      s.status = Self.decode(raw)
      return false
    }
  }

  /// Waits for the exit on the calling thread: the exit code, or 128 + the signal that ended it.
  @discardableResult
  public func waitBlocking() -> Int32 {
    if let status = state.withLock({ $0.status }) { return status }
    var raw: Int32 = 0
    var reaped: pid_t
    repeat { reaped = waitpid(pid, &raw, 0) } while reaped == -1 && errno == EINTR
    return state.withLock { s in
      // -1 (ECHILD): `isRunning` reaped it meanwhile and recorded the status.
      if s.status == nil { s.status = reaped == pid ? Self.decode(raw) : -1 }
      return s.status ?? -1
    }
  }

  /// Waits for the exit off the cooperative thread pool.
  @discardableResult
  public func wait() async -> Int32 {
    await withCheckedContinuation { continuation in
      DispatchQueue.global().async { continuation.resume(returning: self.waitBlocking()) }
    }
  }

  /// Writes to the child's stdin pipe, then closes it.
  public func writeAndClose(_ bytes: [UInt8]) {
    guard let fd = state.withLock({ s -> Int32? in defer { s.stdinFD = nil }; return s.stdinFD }) else { return }
    var offset = 0
    while offset < bytes.count {
      let n = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
      if n < 0 && errno == EINTR { continue }
      if n <= 0 { break }
      offset += n
    }
    close(fd)
  }

  /// Reads the child's stdout pipe to its end (off the cooperative thread pool).
  public func output() async -> [UInt8] {
    guard let fd = state.withLock({ s -> Int32? in defer { s.stdoutFD = nil }; return s.stdoutFD }) else { return [] }
    return await withCheckedContinuation { continuation in
      DispatchQueue.global().async {
        var all: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
          let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
          if n < 0 && errno == EINTR { continue }
          if n <= 0 { break }
          all.append(contentsOf: buffer[0..<n])
        }
        close(fd)
        continuation.resume(returning: all)
      }
    }
  }

  /// Runs to the end and returns the exit status and stdout.
  public static func run(_ executable: String, _ arguments: [String], stderr: Stream = .null) async throws -> (status: Int32, output: String) {
    let child = try ChildProcess(executable, arguments, stdout: .pipe, stderr: stderr)
    let output = await child.output()
    return (await child.wait(), String(decoding: output, as: UTF8.self))
  }

  private static func decode(_ raw: Int32) -> Int32 {
    let signal = raw & 0x7F
    return signal == 0 ? (raw >> 8) & 0xFF : 128 + signal
  }
}
