import ArgumentParser
import Foundation
import OneWindowServer

struct Keys: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Manage the private keys (certificate issuer, webhook sealing, sandbox callbacks).",
    subcommands: [Create.self])

  struct Create: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Create the keys the directory lacks (never replaces one). On PostgreSQL, run once and give every node the same files.")

    @Option(name: .customLong("keys-dir"), help: "Where to create them. [env: ONEWINDOW_KEYS_DIR] (default: --data-dir, ./onewindow-data)")
    var keysDirectory: String?

    @Option(name: .customLong("data-dir"), help: "The data directory, used when --keys-dir is not given. [env: ONEWINDOW_DATA_DIR]")
    var dataDirectory: String?

    func run() throws {
      let dir = keysDirectory ?? Environment.value("ONEWINDOW_KEYS_DIR") ?? dataDirectory ?? Environment.value("ONEWINDOW_DATA_DIR")
        ?? ServerConfig().dataDirectory
      let created = try ServerKeys.createMissing(in: dir)
      print(created.isEmpty
        ? "\(dir) already holds every key; nothing created"
        : "created in \(dir): \(created.joined(separator: ", ")) (mode 0600; copy the same files to every node)")
    }
  }
}
