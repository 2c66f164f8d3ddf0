import ArgumentParser
import Foundation
import OneWindowDatabase

struct RestoreFinish: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "restore-finish",
    abstract: "After restoring the database from a backup: give it a new sync epoch, so every device resets and keeps its unsynced edits.",
    discussion: "Run once, with every node stopped, before the first start on the restored database (`onewindow restore` does the same itself). Devices then pull a fresh snapshot and push their pending edits; a device whose acknowledged edits the restore lost is told so (PushResponse.lost_from_id) instead of being stuck. Then run `onewindow payments reconcile` for the days since the backup.")

  @OptionGroup var data: DataOptions

  func run() async throws {
    try await Self.finish(data)
  }

  static func finish(_ data: DataOptions) async throws {
    let database = try await data.openDatabase(logger: try data.makeLogger())
    do {
      let (old, new) = try await database.store.sync.startNewEpoch(now: Date())
      print("database \(database): sync epoch \(old) → \(new); every device resets on its next pull and keeps its unsynced edits")
      try await database.close()
    } catch {
      try? await database.close()
      throw error
    }
  }
}
