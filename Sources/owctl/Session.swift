import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import OneWindowAPI
import OneWindowClientPosix

/// The credentials of one login, as saved on disk.
struct SavedSession: Codable, Sendable {
  var server: String
  var accessToken: String
  var accessExpiresAt: Date
  var refreshToken: String
  var refreshExpiresAt: Date
  var accountID: String
  var role: String
  var displayName: String

  init(server: String, session: Onewindow_V1_Session) {
    self.server = server
    self.accessToken = session.accessToken
    self.accessExpiresAt = session.accessExpiresAt.date
    self.refreshToken = session.refreshToken
    self.refreshExpiresAt = session.refreshExpiresAt.date
    self.accountID = session.account.id
    self.role = session.account.role.label
    self.displayName = session.account.displayName
  }
}

/// `session.json` in the configuration directory: one saved session per server address.
struct SessionStore: Sendable {
  let directory: URL
  var file: URL { directory.appendingPathComponent("session.json") }

  private struct Contents: Codable {
    var sessions: [String: SavedSession] = [:]
  }

  /// `$OWCTL_CONFIG_DIR`, else `$HOME/.config/owctl`.
  static func fromEnvironment() -> SessionStore {
    if let dir = Environment.value("OWCTL_CONFIG_DIR") {
      return SessionStore(directory: URL(fileURLWithPath: dir, isDirectory: true))
    }
    let home = Environment.value("HOME").map { URL(fileURLWithPath: $0, isDirectory: true) }
      ?? FileManager.default.homeDirectoryForCurrentUser
    return SessionStore(directory: home.appendingPathComponent(".config/owctl", isDirectory: true))
  }

  func load(_ server: String) throws -> SavedSession? {
    try read().sessions[server]
  }

  func save(_ session: SavedSession) throws {
    var contents = try read()
    contents.sessions[session.server] = session
    try write(contents)
  }

  func delete(_ server: String) throws {
    var contents = try read()
    guard contents.sessions.removeValue(forKey: server) != nil else { return }
    if contents.sessions.isEmpty {
      try FileManager.default.removeItem(at: file)
    } else {
      try write(contents)
    }
  }

  private func read() throws -> Contents {
    guard FileManager.default.fileExists(atPath: file.path) else { return Contents() }
    do {
      let decoder = JSONDecoder()
      decoder.dateDecodingStrategy = .custom { decoder in
        // ISO 8601 as written, or epoch seconds.
        let container = try decoder.singleValueContainer()
        if let seconds = try? container.decode(Double.self) { return Date(timeIntervalSince1970: seconds) }
        let text = try container.decode(String.self)
        guard let date = try? Date(text, strategy: .iso8601) else {
          throw DecodingError.dataCorruptedError(in: container, debugDescription: "not an ISO 8601 date: \(text)")
        }
        return date
      }
      return try decoder.decode(Contents.self, from: Data(contentsOf: file))
    } catch {
      throw CLIError("session file \(file.path) is unreadable (\(ErrorReport.describe(error))); delete it and log in again")
    }
  }

  /// Writes a temporary file with mode 0600, then renames it over `session.json`.
  private func write(_ contents: Contents) throws {
    try ensureDirectory()
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    encoder.dateEncodingStrategy = .iso8601
    let data = try encoder.encode(contents)
    let temp = directory.appendingPathComponent(".session.json.\(ProcessInfo.processInfo.processIdentifier).tmp")
    let fd = open(temp.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    guard fd >= 0 else { throw CLIError("cannot write \(temp.path): \(String(cString: strerror(errno)))") }
    let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
    do {
      try handle.write(contentsOf: data)
      try handle.synchronize()
      try handle.close()
    } catch {
      unlink(temp.path)
      throw CLIError("cannot write \(temp.path): \(ErrorReport.describe(error))")
    }
    guard rename(temp.path, file.path) == 0 else {
      let reason = String(cString: strerror(errno))
      unlink(temp.path)
      throw CLIError("cannot replace \(file.path): \(reason)")
    }
  }

  /// Creates the directory with mode 0700 (its missing parents with the default mode).
  private func ensureDirectory() throws {
    let fm = FileManager.default
    guard !fm.fileExists(atPath: directory.path) else { return }
    try fm.createDirectory(at: directory.deletingLastPathComponent(), withIntermediateDirectories: true)
    try fm.createDirectory(at: directory, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
  }
}

/// One command's connection to a server, with that server's saved session.
struct Remote {
  let server: String
  let clients: OneWindowClients
  let sessions: SessionStore
  let output: Output
  /// Per-call options: a deadline so a stuck server can't hang the terminal.
  let call: CallOptions

  var identity: Onewindow_V1_IdentityService.Client<HTTP2ClientTransport.Posix> { clients.identity }
  var catalog: Onewindow_V1_CatalogService.Client<HTTP2ClientTransport.Posix> { clients.catalog }

  /// Refresh when the access token expires within this many seconds.
  static let refreshMargin: TimeInterval = 60

  /// Runs `call` with the saved session's bearer token (or none when not logged in).
  ///
  /// Refreshes first when the access token is about to expire; when the call still fails with
  /// UNAUTHENTICATED, refreshes once and retries once. With `optional` (public RPCs), a session
  /// that cannot be refreshed is dropped and the call is made without a token.
  func authorized<T>(optional: Bool = false, _ call: (Metadata) async throws -> T) async throws -> T {
    guard var session = try sessions.load(server) else { return try await call([:]) }
    do {
      if session.accessExpiresAt.timeIntervalSinceNow < Self.refreshMargin {
        session = try await refresh(session)
      }
      do {
        return try await call(bearer(session.accessToken))
      } catch let error as RPCError where error.code == .unauthenticated && !session.refreshToken.isEmpty {
        session = try await refresh(session)
        return try await call(bearer(session.accessToken))
      }
    } catch let error as SessionExpired where optional {
      Console.error("note: \(error.message); continuing without login")
      return try await call([:])
    } catch let error as SessionExpired {
      throw RPCError(code: .unauthenticated, message: error.message)
    }
  }

  private struct SessionExpired: Error {
    var message: String
  }

  /// Rotates the tokens and saves them. A refused refresh deletes the saved session.
  private func refresh(_ session: SavedSession) async throws -> SavedSession {
    let expired = SessionExpired(message: "the session for \(server) has expired; log in again with 'owctl login'")
    guard !session.refreshToken.isEmpty, session.refreshExpiresAt > Date() else {
      try sessions.delete(server)
      throw expired
    }
    do {
      let fresh = try await identity.refresh(.with { $0.refreshToken = session.refreshToken }, options: call)
      let saved = SavedSession(server: server, session: fresh)
      try sessions.save(saved)
      return saved
    } catch let error as RPCError where Self.refusals.contains(error.code) {
      try sessions.delete(server)
      throw expired
    }
  }

  /// Answers to Refresh meaning the refresh token is no good (as opposed to a transient failure).
  private static let refusals: Set<RPCError.Code> = [
    .unauthenticated, .permissionDenied, .invalidArgument, .notFound, .failedPrecondition,
  ]
}

extension GlobalOptions {
  /// Connects to the server, runs `body`, and closes the connection.
  func connect<T: Sendable>(_ body: (Remote) async throws -> T) async throws -> T {
    let connection = try connectionOptions()
    var call = CallOptions.defaults
    call.timeout = .seconds(30)
    call.waitForReady = false
    let remote = { (clients: OneWindowClients) in
      Remote(server: connection.display, clients: clients, sessions: SessionStore.fromEnvironment(), output: output, call: call)
    }
    return try await OneWindowClients.with(connection) { clients in try await body(remote(clients)) }
  }
}
