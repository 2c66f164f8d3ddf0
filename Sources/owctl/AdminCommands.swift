import ArgumentParser
import Foundation
import GRPCCore
import OneWindowAPI
import OneWindowClientPosix

struct AdminCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "admin",
    abstract: "Administrator commands (log in as an administrator first).",
    subcommands: [
      AdminCatalogCommand.self, AdminDepartmentCommand.self, AdminUserCommand.self, Verify.self, Account.self,
      AdminNotifyCommand.self, AdminTemplatesCommand.self, AdminTopicsCommand.self, AdminWebhooksCommand.self,
      AdminPaymentsCommand.self,
    ])

  struct Verify: OwctlCommand {
    static let configuration = CommandConfiguration(
      abstract: "Check a citizen against the population registry and raise them to trust level 3.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The citizen's account id.")
    var accountID: String

    func execute() async throws {
      try await global.connect { remote in
        let account = try await remote.authorized { metadata in
          try await remote.identity.verifyIdentity(.with { $0.accountID = accountID }, metadata: metadata, options: remote.call)
        }
        try remote.output.show(account) {
          Console.out("verified \(account.displayName): trust level \(account.trustLevel)")
        }
      }
    }
  }

  struct Account: OwctlCommand {
    static let configuration = CommandConfiguration(abstract: "Show an account.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The account id.")
    var accountID: String

    func execute() async throws {
      try await global.connect { remote in
        let account = try await remote.authorized { metadata in
          try await remote.identity.getAccount(.with { $0.accountID = accountID }, metadata: metadata, options: remote.call)
        }
        try remote.output.show(account) { AccountView.print(account) }
      }
    }
  }
}

// MARK: - admin catalog

struct AdminCatalogCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "catalog",
    abstract: "Write service items: create, update, publish, withdraw, import.",
    discussion: """
      Item files are a ServiceItemSpec in the protobuf JSON mapping (see `owctl catalog show CODE --json` \
      for the shape, under "spec"), or YAML with the same keys when the name ends in .yaml or .yml.
      """,
    subcommands: [Create.self, Update.self, Publish.self, Withdraw.self, Import.self])

  struct Create: OwctlCommand {
    static let configuration = CommandConfiguration(abstract: "Create a draft item (version 1) from a spec file.")

    @OptionGroup var global: GlobalOptions

    @Option(help: ArgumentHelp("ServiceItemSpec as JSON, or YAML (.yaml/.yml).", valueName: "file"))
    var file: String

    func execute() async throws {
      let spec = try Input.document(Onewindow_V1_ServiceItemSpec.self, path: file)
      try await global.connect { remote in
        let item = try await remote.authorized { metadata in
          try await remote.catalog.createItem(.with { $0.spec = spec }, metadata: metadata, options: remote.call)
        }
        try remote.output.show(item) { Console.out("created \(ItemLine.of(item))") }
      }
    }
  }

  struct Update: OwctlCommand {
    static let configuration = CommandConfiguration(
      abstract: "Replace an item's guide from a spec file (the spec's code names the item).")

    @OptionGroup var global: GlobalOptions

    @Option(help: ArgumentHelp("ServiceItemSpec as JSON, or YAML (.yaml/.yml).", valueName: "file"))
    var file: String

    @Option(help: "The version you last read; a stale version is refused (ABORTED).")
    var version: Int64

    func execute() async throws {
      let spec = try Input.document(Onewindow_V1_ServiceItemSpec.self, path: file)
      try await global.connect { remote in
        let item = try await remote.authorized { metadata in
          try await remote.catalog.updateItem(.with {
            $0.spec = spec
            $0.expectedVersion = version
          }, metadata: metadata, options: remote.call)
        }
        try remote.output.show(item) { Console.out("updated \(ItemLine.of(item))") }
      }
    }
  }

  /// The arguments publish and withdraw share.
  struct StatusChange: ParsableArguments {
    @Argument(help: "The item code.")
    var code: String

    @Option(help: "Apply only if the item is still at this version.")
    var version: Int64?

    var request: Onewindow_V1_ChangeItemStatusRequest {
      .with {
        $0.code = code
        $0.expectedVersion = version ?? 0
      }
    }
  }

  struct Publish: OwctlCommand {
    static let configuration = CommandConfiguration(abstract: "Publish a draft or withdrawn item.")

    @OptionGroup var global: GlobalOptions
    @OptionGroup var change: StatusChange

    func execute() async throws {
      try await global.connect { remote in
        let item = try await remote.authorized { metadata in
          try await remote.catalog.publishItem(change.request, metadata: metadata, options: remote.call)
        }
        try remote.output.show(item) { Console.out("published \(ItemLine.of(item))") }
      }
    }
  }

  struct Withdraw: OwctlCommand {
    static let configuration = CommandConfiguration(
      abstract: "Withdraw a published item (it stays readable by code).")

    @OptionGroup var global: GlobalOptions
    @OptionGroup var change: StatusChange

    func execute() async throws {
      try await global.connect { remote in
        let item = try await remote.authorized { metadata in
          try await remote.catalog.withdrawItem(change.request, metadata: metadata, options: remote.call)
        }
        try remote.output.show(item) { Console.out("withdrew \(ItemLine.of(item))") }
      }
    }
  }

  struct Import: OwctlCommand {
    static let configuration = CommandConfiguration(
      abstract: "Import a CatalogBundle: upsert its departments, create its items (existing codes are skipped).",
      discussion: "Items that fail validation are reported and the rest are still imported; the exit code is then 1.")

    @OptionGroup var global: GlobalOptions

    @Option(help: ArgumentHelp("CatalogBundle as JSON, or YAML (.yaml/.yml).", valueName: "file"))
    var file: String

    @Flag(help: "Publish the items this import created.")
    var publish = false

    struct Summary: Codable, Sendable {
      var departments: [String] = []
      var created: [String] = []
      var skipped: [String] = []
      var published: [String] = []
      var failed: [String: String] = [:]
    }

    func execute() async throws {
      let bundle = try Input.document(Onewindow_V1_CatalogBundle.self, path: file)
      let summary = try await global.connect { remote in
        var summary = Summary()
        do {
          try await importBundle(bundle, remote: remote, into: &summary)
        } catch {
          Console.error(
            "import stopped: \(summary.departments.count) department(s) upserted, created: "
              + (summary.created.isEmpty ? "none" : summary.created.joined(separator: " "))
              + (publish ? ", published: " + (summary.published.isEmpty ? "none" : summary.published.joined(separator: " ")) : ""))
          throw error
        }
        return summary
      }
      if global.json {
        try global.output.printJSON(encodable: summary)
      } else {
        Console.out(
          "departments upserted: \(summary.departments.count); items created: \(summary.created.count), "
            + "skipped (already exist): \(summary.skipped.count), failed: \(summary.failed.count)"
            + (publish ? "; published: \(summary.published.count)" : ""))
        if !summary.skipped.isEmpty { Console.out("skipped: " + summary.skipped.joined(separator: " ")) }
      }
      if !summary.failed.isEmpty { throw ExitCode(1) }
    }

    private func importBundle(_ bundle: Onewindow_V1_CatalogBundle, remote: Remote, into summary: inout Summary) async throws {
      for department in bundle.departments {
        _ = try await remote.authorized { metadata in
          try await remote.catalog.upsertDepartment(.with { $0.department = department }, metadata: metadata, options: remote.call)
        }
        summary.departments.append(department.code)
      }
      var createdItems: [Onewindow_V1_ServiceItem] = []
      for spec in bundle.items {
        do {
          let item = try await remote.authorized { metadata in
            try await remote.catalog.createItem(.with { $0.spec = spec }, metadata: metadata, options: remote.call)
          }
          createdItems.append(item)
          summary.created.append(spec.code)
        } catch let error as RPCError where error.code == .alreadyExists {
          summary.skipped.append(spec.code)
        } catch let error as RPCError where Self.itemErrors.contains(error.code) {
          summary.failed[spec.code] = "\(error.code.canonicalName): \(error.message)"
          Console.error("failed \(spec.code.isEmpty ? "(no code)" : spec.code): \(error.code.canonicalName): \(error.message)")
        }
      }
      if publish {
        for item in createdItems {
          let code = item.spec.code
          do {
            _ = try await remote.authorized { metadata in
              try await remote.catalog.publishItem(.with {
                $0.code = code
                $0.expectedVersion = item.version
              }, metadata: metadata, options: remote.call)
            }
            summary.published.append(code)
          } catch let error as RPCError where Self.itemErrors.contains(error.code) {
            summary.failed[code] = "publish: \(error.code.canonicalName): \(error.message)"
            Console.error("failed to publish \(code): \(error.code.canonicalName): \(error.message)")
          }
        }
      }
    }

    /// Per-item failures that don't stop the import (auth and connection errors do).
    static let itemErrors: Set<RPCError.Code> = [.invalidArgument, .failedPrecondition, .notFound, .aborted]
  }
}

enum ItemLine {
  static func of(_ item: Onewindow_V1_ServiceItem) -> String {
    "\(item.spec.code) \(item.spec.name): \(item.status.label), version \(item.version)"
  }
}

// MARK: - admin department / user

struct AdminDepartmentCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "department", abstract: "Manage departments.", subcommands: [Upsert.self])

  struct Upsert: OwctlCommand {
    static let configuration = CommandConfiguration(abstract: "Create a department, or rename an existing one.")

    @OptionGroup var global: GlobalOptions

    @Option(help: "Department code: 2–32 lowercase letters, digits or '-'.")
    var code: String

    @Option(help: "Department name (1–50 characters).")
    var name: String

    func execute() async throws {
      try await global.connect { remote in
        let department = try await remote.authorized { metadata in
          try await remote.catalog.upsertDepartment(.with {
            $0.department = .with {
              $0.code = code
              $0.name = name
            }
          }, metadata: metadata, options: remote.call)
        }
        try remote.output.show(department) { Console.out("department \(department.code): \(department.name)") }
      }
    }
  }
}

struct AdminUserCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "user", abstract: "Manage staff accounts.", subcommands: [Create.self])

  enum StaffRole: String, CaseIterable, ExpressibleByArgument {
    case admin, caseworker

    var proto: Onewindow_V1_Role { self == .admin ? .admin : .caseworker }
  }

  struct Create: OwctlCommand {
    static let configuration = CommandConfiguration(
      abstract: "Create an administrator or caseworker account; prints the generated password.")

    @OptionGroup var global: GlobalOptions

    @Option(help: "The account's role.")
    var role: StaffRole

    @Option(help: "Login name: 3–32 lowercase letters, digits, '.', '_' or '-', starting with a letter.")
    var username: String

    @Option(help: "Display name (1–50 characters).")
    var name: String

    @Option(help: "Department code (required for caseworkers).")
    var department: String?

    @Flag(help: "Read the password from standard input instead of letting the server generate one.")
    var passwordStdin = false

    func validate() throws {
      if role == .caseworker, department == nil { throw ValidationError("Caseworkers need --department.") }
    }

    func execute() async throws {
      let password = passwordStdin ? try Input.newPassword(prompt: "Password: ") : ""
      try await global.connect { remote in
        let response = try await remote.authorized { metadata in
          try await remote.identity.createStaffAccount(.with {
            $0.role = role.proto
            $0.username = username
            $0.displayName = name
            $0.departmentCode = department ?? ""
            $0.password = password
          }, metadata: metadata, options: remote.call)
        }
        try remote.output.show(response) {
          let account = response.account
          Console.out("created \(account.role.label) \(account.username) (\(account.displayName), id \(account.id))")
          if !response.generatedPassword.isEmpty {
            Console.out("password: \(response.generatedPassword)   (shown once; change it with owctl passwd)")
          }
        }
      }
    }
  }
}
