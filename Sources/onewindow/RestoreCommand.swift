import ArgumentParser
import Foundation
import OneWindowDatabase
import OneWindowServer

struct Restore: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Bring an embedded deployment back from `onewindow backup`, then finish the restore (a new sync epoch).",
    discussion: "Run with the server stopped, into a data directory without a database (move a damaged one aside). Keys already in place are kept.")

  @OptionGroup var data: DataOptions

  @Option(name: .customLong("from"), help: "The directory `onewindow backup --to` wrote.")
  var source: String

  func run() async throws {
    let summary: EmbeddedBackups.Summary
    do {
      summary = try await EmbeddedBackups.restore(
        try data.database(), from: source, keysDirectory: data.resolvedKeysDirectory, now: Date())
    } catch let failure as EmbeddedBackups.Failure {
      throw ValidationError(failure.description)
    }
    print("restored \(summary.files.joined(separator: ", ")), \(summary.materials) material file(s) and \(summary.keys.count) key(s) from \(source)")
    if let (old, new) = summary.epochs {
      print("sync epoch \(old) → \(new); every device resets on its next pull and keeps its unsynced edits")
    }
  }
}
