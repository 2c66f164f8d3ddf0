import Foundation

/// The private keys a server needs: the certificate issuer's signing key, the key sealing
/// webhook secrets, and the sandbox provider's callback secret. They live as files in the keys
/// directory (`--keys-dir`, by default the data directory) and are never written to the database.
///
/// The embedded engine creates missing keys on first start. On PostgreSQL every node must sign
/// and open with the same keys, so a node never makes its own: the operator creates them once
/// (`onewindow keys create`) and gives every node the same files, and a node started without
/// them stops at once with a message saying so.
public enum ServerKeys {
  public static let issuerFile = "issuer-ed25519.key"
  public static let sandboxSecretFile = "sandbox-callback.secret"
  public static var files: [String] { [issuerFile, SecretBox.fileName, sandboxSecretFile] }

  public struct Missing: Error, CustomStringConvertible {
    public let directory: String
    public let names: [String]
    public var description: String {
      "every node on a shared PostgreSQL database needs the cluster's keys, and \(directory) lacks \(names.joined(separator: ", ")): "
        + "create them once with `onewindow keys create --keys-dir DIR` and give every node the same files "
        + "(--keys-dir or ONEWINDOW_KEYS_DIR); nodes never create their own"
    }
  }

  /// Throws `Missing` unless every key file is in `directory`.
  public static func requireAll(in directory: String) throws {
    let missing = files.filter { !FileManager.default.fileExists(atPath: (directory as NSString).appendingPathComponent($0)) }
    if !missing.isEmpty { throw Missing(directory: directory, names: missing) }
  }

  /// Creates the key files `directory` lacks (mode 0600); returns their names.
  @discardableResult
  public static func createMissing(in directory: String) throws -> [String] {
    let fm = FileManager.default
    let missing = files.filter { !fm.fileExists(atPath: (directory as NSString).appendingPathComponent($0)) }
    _ = try IssuerKeys.loadOrCreate(directory: directory)
    _ = try SecretBox.loadOrCreate(directory: directory)
    _ = try SandboxProvider.loadOrCreateSecret(directory: directory)
    return missing
  }
}
