import ArgumentParser
import Foundation
import Logging
import OneWindowCore
import OneWindowServer
import OneWindowStore

struct Admin: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Offline administration on the database (use when no administrator exists yet).",
    subcommands: [CreateUser.self])

  struct CreateUser: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "create-user", abstract: "Create an administrator or caseworker account; prints a generated password if none is given.")

    @OptionGroup var data: DataOptions

    @Option(help: "admin or caseworker.")
    var role: String

    @Option(help: "Login username: 3–32 of a-z 0-9 . _ -, starting with a letter.")
    var username: String

    @Option(help: "Display name (defaults to the username).")
    var name: String?

    @Option(help: "Department code (required for caseworkers).")
    var department: String = ""

    @Flag(help: "Read the password from standard input instead of generating one.")
    var passwordStdin = false

    func run() async throws {
      guard let role = Role(rawValue: role), role.isStaff else { throw ValidationError("--role must be admin or caseworker") }
      var password = ""
      if passwordStdin { password = readLine(strippingNewline: true) ?? "" }
      let database = try await data.openDatabase(logger: try data.makeLogger())
      let store = database.store
      do {
        let created = try await StaffAccounts.create(
          role: role, username: username, displayName: name ?? username, departmentCode: department, password: password,
          store: store.identity, catalog: store.catalog, now: Date())
        try await database.close()
        print("created \(role.rawValue) \(created.account.username ?? "") (id \(created.account.id))")
        if let generated = created.generatedPassword { print("password: \(generated)   (shown once; change it with owctl passwd)") }
      } catch let error as OneWindowCore.ValidationError {
        try? await database.close()
        throw ValidationError(error.description)
      } catch let error as StoreError {
        try? await database.close()
        throw ValidationError("\(error)")
      }
    }
  }
}
