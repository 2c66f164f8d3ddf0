import Foundation
import Logging
import NIOPosix
import OneWindowCore
import OneWindowStore

/// Delivers one-time login codes (SMS in production). A real SMS gateway plugs in here.
public protocol LoginCodeSender: Sendable {
  func send(code: String, to phone: PhoneNumber) async throws
}

/// Development sender: renders the `login.code` template (administrators may reword it) and
/// queues the message in the outbox table (where tests and `owctl` demos read it), writing it to
/// the server log with the phone masked. Never use it in production: the code itself is logged
/// so a developer can log in. A real SMS gateway is another `LoginCodeSender`.
public struct DevelopmentCodeSender: LoginCodeSender {
  let outbox: any OutboxStore
  let templates: any NotificationStore
  let clock: any WallClock
  let logger: Logger

  public init(outbox: any OutboxStore, templates: any NotificationStore, clock: any WallClock, logger: Logger) {
    self.outbox = outbox
    self.templates = templates
    self.clock = clock
    self.logger = logger
  }

  public func send(code: String, to phone: PhoneNumber) async throws {
    try await outbox.append(channel: "sms", recipient: phone.value, body: try await Self.message(code: code, templates: templates), now: clock.now())
    logger.notice("development SMS outbox: login code queued", metadata: ["phone": "\(phone.masked)", "code": "\(code)"])
  }

  /// The login-code text from the stored template, or the built-in one if it cannot be used.
  static func message(code: String, templates: any NotificationStore) async throws -> String {
    if let stored = try await templates.template(name: SystemTemplates.loginCode, version: nil),
       let text = try? stored.template.render(["code": code]) {
      return text.body
    }
    let builtIn = SystemTemplates.builtIn(SystemTemplates.loginCode)
    let template = try MessageTemplate(
      name: SystemTemplates.loginCode, version: 1, title: builtIn?.title ?? "登录验证码", body: builtIn?.body ?? "((code))")
    return try template.render(["code": code]).body
  }
}

/// Checks a person's name and ID number against the population registry (人口库). The
/// verification RPC and future registry integrations call it to raise trust to level 3.
public protocol IdentityRegistry: Sendable {
  func confirms(name: String, idNumber: ResidentIDNumber) async throws -> Bool
}

/// Stand-in registry for development and tests: confirms every well-formed ID number except
/// those whose sequence code (characters 15–17) is `999`, which it treats as unknown.
public struct SimulatedPopulationRegistry: IdentityRegistry {
  public init() {}

  public func confirms(name: String, idNumber: ResidentIDNumber) async throws -> Bool {
    !name.isEmpty && !idNumber.value.dropFirst(14).hasPrefix("999")
  }
}

/// Runs the deliberately slow password KDF on NIO's blocking thread pool, so it never stalls
/// the event loops or Swift's cooperative pool.
struct PasswordWork: Sendable {
  func hash(_ password: String) async throws -> String {
    try await NIOThreadPool.singleton.runIfActive { try PasswordHashing.hash(password) }
  }

  func verify(_ password: String, against stored: String) async throws -> Bool {
    try await NIOThreadPool.singleton.runIfActive { PasswordHashing.verify(password, against: stored) }
  }

  /// A hash of a random password, verified against when the login name is unknown so that
  /// response time does not reveal which accounts exist.
  static let decoyHash: String = (try? PasswordHashing.hash(OpaqueToken.generate(prefix: "decoy"))) ?? ""
}
