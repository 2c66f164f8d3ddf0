import ArgumentParser
import Foundation
import GRPCCore
import OneWindowAPI
import OneWindowClientPosix

struct HealthCommand: OwctlCommand {
  static let configuration = CommandConfiguration(
    commandName: "health",
    abstract: "Check the server's health (grpc.health.v1); exits 1 unless SERVING.")

  @OptionGroup var global: GlobalOptions

  @Option(help: "The service to check; empty means the whole server.")
  var service = ""

  func execute() async throws {
    let status = try await global.connect { remote in
      let response = try await remote.clients.health.check(.with { $0.service = service }, options: remote.call)
      try remote.output.show(response) { Console.out(response.status.name) }
      return response.status
    }
    if status != .serving { throw ExitCode(1) }
  }
}

extension Grpc_Health_V1_HealthCheckResponse.ServingStatus {
  var name: String {
    switch self {
    case .unknown: "UNKNOWN"
    case .serving: "SERVING"
    case .notServing: "NOT_SERVING"
    case .serviceUnknown: "SERVICE_UNKNOWN"
    case .UNRECOGNIZED(let n): "STATUS_\(n)"
    }
  }
}

// MARK: - register

struct RegisterCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "register",
    abstract: "Create a citizen or enterprise account.",
    subcommands: [Citizen.self, Enterprise.self])

  struct Citizen: OwctlCommand {
    static let configuration = CommandConfiguration(
      abstract: "Register a citizen (自然人) account.",
      discussion: "Without --password-stdin the account logs in with SMS codes only.")

    @OptionGroup var global: GlobalOptions

    @Option(help: "The person's name (1–50 characters).")
    var name: String

    @Option(help: "Mainland mobile number (11 digits starting with 1).")
    var phone: String

    @Option(help: "18-character resident ID number.")
    var idNumber: String

    @Flag(help: "Read a password from standard input (8–128 characters with a letter and a digit).")
    var passwordStdin = false

    func execute() async throws {
      let password = passwordStdin ? try Input.newPassword(prompt: "Password: ") : ""
      try await global.connect { remote in
        let account = try await remote.identity.registerCitizen(.with {
          $0.name = name
          $0.phone = phone
          $0.idNumber = idNumber
          $0.password = password
        }, options: remote.call)
        try remote.output.show(account) {
          Console.out("registered citizen \(account.displayName) (id \(account.id))")
          Console.out("log in with: owctl login --phone \(phone)" + (password.isEmpty ? "" : "   or   owctl login --user \(phone)"))
        }
      }
    }
  }

  struct Enterprise: OwctlCommand {
    static let configuration = CommandConfiguration(
      abstract: "Register an enterprise (法人) with you as its legal representative.",
      discussion: "Requires a citizen login. The enterprise's password is read from standard input.")

    @OptionGroup var global: GlobalOptions

    @Option(help: "The enterprise's name (1–100 characters).")
    var name: String

    @Option(help: "18-character unified social credit code.")
    var creditCode: String

    func execute() async throws {
      let password = try Input.newPassword(prompt: "Enterprise password: ")
      try await global.connect { remote in
        let account = try await remote.authorized { metadata in
          try await remote.identity.registerEnterprise(.with {
            $0.name = name
            $0.creditCode = creditCode
            $0.password = password
          }, metadata: metadata, options: remote.call)
        }
        try remote.output.show(account) {
          Console.out("registered enterprise \(account.displayName) (id \(account.id))")
          Console.out("log in with: owctl login --user \(account.creditCode.isEmpty ? creditCode : account.creditCode)")
        }
      }
    }
  }
}

// MARK: - login / whoami / logout / passwd

struct LoginCommand: OwctlCommand {
  static let configuration = CommandConfiguration(
    commandName: "login",
    abstract: "Log in with an SMS code (--phone) or a password (--user) and save the session.",
    discussion: """
      owctl login --phone P                   send an SMS code, then ask for it
      owctl login --phone P --send-code-only  only send the code
      owctl login --phone P --code C          use a code already received
      owctl login --user L                    password from --password,
                                              --password-stdin, $OWCTL_PASSWORD
                                              or a prompt
      """)

  @OptionGroup var global: GlobalOptions

  @Option(help: "Log in with a one-time code sent by SMS to this phone.")
  var phone: String?

  @Option(help: "The 6-digit code already received (with --phone); no new code is requested.")
  var code: String?

  @Flag(help: "With --phone: only request a code.")
  var sendCodeOnly = false

  @Option(help: "Log in with a password: phone, unified social credit code or staff username.")
  var user: String?

  @Option(help: "The password (visible to other local users; prefer --password-stdin or OWCTL_PASSWORD).")
  var password: String?

  @Flag(help: "Read the password from the first line of standard input.")
  var passwordStdin = false

  func validate() throws {
    guard (phone == nil) != (user == nil) else { throw ValidationError("Give either --phone or --user.") }
    if phone != nil, password != nil || passwordStdin {
      throw ValidationError("--password and --password-stdin go with --user.")
    }
    if user != nil, code != nil || sendCodeOnly { throw ValidationError("--code and --send-code-only go with --phone.") }
    if code != nil, sendCodeOnly { throw ValidationError("--code and --send-code-only exclude each other.") }
    if password != nil, passwordStdin { throw ValidationError("--password and --password-stdin exclude each other.") }
  }

  func execute() async throws {
    // Read the password before connecting so a prompt never races the connection.
    var secret: String?
    if user != nil {
      if let password {
        secret = password
      } else if passwordStdin {
        secret = try Input.line(prompt: "", what: "a password")
      } else if let env = Environment.value("OWCTL_PASSWORD") {
        secret = env
      } else {
        secret = try Input.secret(prompt: "Password: ", what: "a password")
      }
    }
    try await global.connect { remote in
      let session: Onewindow_V1_Session
      if let user, let secret {
        session = try await remote.identity.loginWithPassword(.with {
          $0.login = user
          $0.password = secret
        }, options: remote.call)
      } else if let phone {
        var code = self.code
        if code == nil {
          let sent = try await remote.identity.requestLoginCode(.with { $0.phone = phone }, options: remote.call)
          if sendCodeOnly {
            try remote.output.show(sent) {
              Console.out("code sent to \(phone); valid until \(Format.date(sent.expiresAt)); next code after \(sent.resendAfterSeconds) s")
            }
            return
          }
          Console.error("code sent to \(phone) (valid until \(Format.date(sent.expiresAt)))")
          code = try Input.line(prompt: "SMS code: ", what: "the SMS code").trimmingCharacters(in: .whitespaces)
        }
        session = try await remote.identity.loginWithCode(.with {
          $0.phone = phone
          $0.code = code ?? ""
        }, options: remote.call)
      } else {
        throw ValidationError("Give either --phone or --user.")
      }
      try remote.sessions.save(SavedSession(server: remote.server, session: session))
      let account = session.account
      try remote.output.show(account) {
        Console.out("logged in to \(remote.server) as \(account.displayName) (\(account.role.label), id \(account.id))")
        Console.out("session saved in \(remote.sessions.file.path); access token valid until \(Format.date(session.accessExpiresAt))")
      }
    }
  }
}

struct WhoAmICommand: OwctlCommand {
  static let configuration = CommandConfiguration(
    commandName: "whoami", abstract: "Show the logged-in account.")

  @OptionGroup var global: GlobalOptions

  func execute() async throws {
    try await global.connect { remote in
      let account = try await remote.authorized { metadata in
        try await remote.identity.whoAmI(.init(), metadata: metadata, options: remote.call)
      }
      try remote.output.show(account) { AccountView.print(account) }
    }
  }
}

struct LogoutCommand: OwctlCommand {
  static let configuration = CommandConfiguration(
    commandName: "logout", abstract: "End the session on the server and delete it locally.")

  @OptionGroup var global: GlobalOptions

  func execute() async throws {
    try await global.connect { remote in
      guard try remote.sessions.load(remote.server) != nil else {
        Console.error("not logged in to \(remote.server)")
        return
      }
      var note = ""
      do {
        _ = try await remote.authorized { metadata in
          try await remote.identity.logout(.init(), metadata: metadata, options: remote.call)
        }
      } catch let error as RPCError where error.code == .unauthenticated {
        note = " (the server had already ended the session)"
      }
      try remote.sessions.delete(remote.server)
      if !remote.output.json { Console.out("logged out of \(remote.server)\(note)") }
    }
  }
}

struct PasswdCommand: OwctlCommand {
  static let configuration = CommandConfiguration(
    commandName: "passwd",
    abstract: "Change your password; every other session of the account is ended.",
    discussion: """
      Without --current/--new, the passwords are read from standard input: the current one on \
      the first line (an empty line if the account has none), the new one on the next.
      """)

  @OptionGroup var global: GlobalOptions

  @Option(help: "The current password (visible to other local users).")
  var current: String?

  @Option(name: .customLong("new"), help: "The new password: 8–128 characters with a letter and a digit.")
  var newPassword: String?

  func execute() async throws {
    let currentPassword = try current ?? Input.secret(prompt: "Current password (empty if none): ", what: "the current password")
    let newPassword = try self.newPassword ?? Input.newPassword()
    try await global.connect { remote in
      let response = try await remote.authorized { metadata in
        try await remote.identity.changePassword(.with {
          $0.currentPassword = currentPassword
          $0.newPassword = newPassword
        }, metadata: metadata, options: remote.call)
      }
      try remote.output.show(response) { Console.out("password changed; other sessions of this account were ended") }
    }
  }
}

/// Readable form of an account.
enum AccountView {
  static func print(_ account: Onewindow_V1_Account) {
    Table.keyValue([
      ("ID", account.id),
      ("Role", account.role.label),
      ("Name", account.displayName),
      ("Trust level", account.role == .citizen ? Levels.trust(account.trustLevel) : "\(account.trustLevel)"),
      ("Phone", account.phoneMasked),
      ("ID number", account.idNumberMasked),
      ("Credit code", account.creditCode),
      ("Legal rep.", account.legalRepresentativeID),
      ("Department", account.departmentCode),
      ("Username", account.username),
      ("Password", account.hasPassword_p ? "set" : "none (SMS code login only)"),
      ("Created", account.hasCreatedAt ? Format.date(account.createdAt) : ""),
    ]).print()
  }
}
