import ArgumentParser
import Foundation
import OneWindowDatabase
import OneWindowServer

struct Backup: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Copy a running embedded deployment (database, sandbox books, materials, keys) into a new directory.",
    discussion: "Consistent while the server runs (SQLite's online backup). Bring it back with `onewindow restore --from DIR`. PostgreSQL deployments use PostgreSQL's tools; see docs/deployment.md.")

  @OptionGroup var data: DataOptions

  @Option(name: .customLong("to"), help: "A new or empty directory to write the backup into.")
  var target: String

  func run() throws {
    do {
      let summary = try EmbeddedBackups.backup(
        try data.database(), keysDirectory: data.resolvedKeysDirectory, keyFiles: ServerKeys.files, to: target)
      print("backed up \(summary.files.joined(separator: ", ")), \(summary.materials) material file(s) and \(summary.keys.count) key(s) into \(target)")
    } catch let failure as EmbeddedBackups.Failure {
      throw ValidationError(failure.description)
    }
  }
}
