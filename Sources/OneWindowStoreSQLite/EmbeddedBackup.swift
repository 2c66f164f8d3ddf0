import Foundation
import GRDB

/// An online, consistent copy of an embedded deployment, and its way back: the database and the
/// sandbox provider's books through SQLite's backup API (a snapshot that a running server keeps
/// writing around), then the materials and the keys. Materials are copied after the database
/// snapshot: they are written before the rows naming them, so every material the snapshot
/// names is in the copy.
public enum EmbeddedBackup {
  public static let databaseFile = "onewindow.sqlite"
  public static let sandboxFile = "sandbox-provider.sqlite"
  public static let materialsDirectory = "materials"
  public static let keysDirectory = "keys"

  public struct Failure: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
  }

  /// What a backup or restore copied.
  public struct Summary: Sendable {
    public var files: [String] = []
    public var materials = 0
    public var keys: [String] = []
    /// A restore's sync epochs: the backup's and the new one it was given.
    public var epochs: (old: UInt32, new: UInt32)?
  }

  /// Copies the deployment in `dataDirectory` (keys from `keysDirectory`) into `target`, which
  /// must not exist or be empty. Safe while a server runs.
  public static func backup(dataDirectory: String, keysDirectory: String, keyFiles: [String], to target: String) throws -> Summary {
    let fm = FileManager.default
    let source = (dataDirectory as NSString).appendingPathComponent(databaseFile)
    guard fm.fileExists(atPath: source) else { throw Failure("no database at \(source): give the data directory of the deployment (--data-dir)") }
    if fm.fileExists(atPath: target) {
      guard (try fm.contentsOfDirectory(atPath: target)).isEmpty else { throw Failure("\(target) is not empty: back up into a new directory") }
    }
    try fm.createDirectory(atPath: target, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    var summary = Summary()
    summary.files = try snapshotDatabases(from: dataDirectory, to: target)
    summary.materials = try copyTree(
      (dataDirectory as NSString).appendingPathComponent(materialsDirectory),
      to: (target as NSString).appendingPathComponent(materialsDirectory))
    let keysTarget = (target as NSString).appendingPathComponent(Self.keysDirectory)
    try fm.createDirectory(atPath: keysTarget, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    for key in keyFiles {
      let from = (keysDirectory as NSString).appendingPathComponent(key)
      guard fm.fileExists(atPath: from) else { continue }
      try copyFile(from, to: (keysTarget as NSString).appendingPathComponent(key), mode: 0o600)
      summary.keys.append(key)
    }
    return summary
  }

  /// Brings a backup back into `dataDirectory` (keys into `keysDirectory`), which must hold no
  /// database: move a damaged one aside first. The database is restored under a temporary name,
  /// given its new sync epoch there (`SyncStore.startNewEpoch`), and renamed into place last: a
  /// restore that fails or is killed half-way leaves no database a server could start on with
  /// the old epoch, and can simply be run again.
  public static func restore(from backup: String, dataDirectory: String, keysDirectory: String, now: Date) async throws -> Summary {
    let fm = FileManager.default
    let database = (backup as NSString).appendingPathComponent(databaseFile)
    guard fm.fileExists(atPath: database) else { throw Failure("\(backup) holds no \(databaseFile): is it a backup made by `onewindow backup`?") }
    try fm.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    for file in [databaseFile, databaseFile + "-wal", databaseFile + "-shm"] {
      let existing = (dataDirectory as NSString).appendingPathComponent(file)
      if fm.fileExists(atPath: existing) {
        throw Failure("\(existing) exists: stop the server and move the data directory's database aside before restoring into it")
      }
    }
    var summary = Summary()
    summary.files = try snapshotDatabases(from: backup, to: dataDirectory, suffix: restoringSuffix)
    summary.materials = try copyTree(
      (backup as NSString).appendingPathComponent(materialsDirectory),
      to: (dataDirectory as NSString).appendingPathComponent(materialsDirectory))
    let keys = (backup as NSString).appendingPathComponent(Self.keysDirectory)
    try fm.createDirectory(atPath: keysDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    for key in (try? fm.contentsOfDirectory(atPath: keys)) ?? [] {
      let to = (keysDirectory as NSString).appendingPathComponent(key)
      guard !fm.fileExists(atPath: to) else { continue }  // a key in place is never replaced
      try copyFile((keys as NSString).appendingPathComponent(key), to: to, mode: 0o600)
      summary.keys.append(key)
    }
    // The new epoch, on the database still under its temporary name.
    let restoring = (dataDirectory as NSString).appendingPathComponent(databaseFile + restoringSuffix)
    let store = try SQLiteStore(path: restoring)
    do {
      summary.epochs = try await store.sync.startNewEpoch(now: now)
      try await store.close()
    } catch {
      try? await store.close()
      throw error
    }
    // Into place: the books, then the database last.
    for file in [sandboxFile, databaseFile] where summary.files.contains(file) {
      let from = (dataDirectory as NSString).appendingPathComponent(file + restoringSuffix)
      let to = (dataDirectory as NSString).appendingPathComponent(file)
      for leftover in ["-wal", "-shm"] { try? fm.removeItem(atPath: from + leftover) }
      if fm.fileExists(atPath: to) { try fm.removeItem(atPath: to) }
      try fm.moveItem(atPath: from, toPath: to)
    }
    return summary
  }

  /// The name a restored file has until the restore is complete.
  static let restoringSuffix = ".restoring"

  /// The database and the sandbox books of `source` snapshotted into `target`, each under its
  /// name plus `suffix` (a file already there is replaced). Returns the names copied.
  static func snapshotDatabases(from source: String, to target: String, suffix: String = "") throws -> [String] {
    var copied: [String] = []
    for file in [databaseFile, sandboxFile] {
      let from = (source as NSString).appendingPathComponent(file)
      guard FileManager.default.fileExists(atPath: from) else { continue }
      let to = (target as NSString).appendingPathComponent(file + suffix)
      for stale in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: to + stale) }
      try snapshot(from, to: to)
      copied.append(file)
    }
    return copied
  }

  /// SQLite's online backup of one database file into a new one (WAL folded in).
  static func snapshot(_ source: String, to target: String) throws {
    var configuration = Configuration()
    configuration.readonly = true
    configuration.busyMode = .timeout(30)
    let from = try DatabasePool(path: source, configuration: configuration)
    let to = try DatabaseQueue(path: target)
    try from.backup(to: to)
    try to.close()
    try from.close()
    chmod(target, 0o600)
  }

  /// Copies the files of `source` (one level of subdirectories) that `target` lacks; returns how
  /// many were copied.
  static func copyTree(_ source: String, to target: String) throws -> Int {
    let fm = FileManager.default
    guard let enumerator = fm.enumerator(atPath: source) else { return 0 }
    try fm.createDirectory(atPath: target, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    var copied = 0
    while let relative = enumerator.nextObject() as? String {
      let from = (source as NSString).appendingPathComponent(relative)
      let to = (target as NSString).appendingPathComponent(relative)
      var isDirectory: ObjCBool = false
      guard fm.fileExists(atPath: from, isDirectory: &isDirectory) else { continue }
      if isDirectory.boolValue {
        if relative == "tmp" || relative.hasSuffix("/tmp") { enumerator.skipDescendants(); continue }  // uploads in flight
        try fm.createDirectory(atPath: to, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
      } else if !fm.fileExists(atPath: to) {
        try copyFile(from, to: to, mode: 0o600)
        copied += 1
      }
    }
    return copied
  }

  static func copyFile(_ from: String, to: String, mode: Int) throws {
    try FileManager.default.copyItem(atPath: from, toPath: to)
    chmod(to, mode_t(mode))
  }
}
