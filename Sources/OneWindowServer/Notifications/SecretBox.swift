import Crypto
import Foundation
import OneWindowCore

/// Keeps webhook signing secrets encrypted at rest. The server must sign with each secret, so it
/// cannot store only a hash; instead each secret is sealed with AES-256-GCM under a key kept in
/// the data directory as `webhook-secrets.key` (32 random bytes, mode 0600, created on first
/// start). A copied database alone does not reveal the secrets.
///
/// The lead wires it as `let secrets = try SecretBox.loadOrCreate(directory: config.dataDirectory)`
/// and hands it to `WebhookChannel` (to open) and the AddWebhook RPC (to seal `newSecret()`).
public struct SecretBox: Sendable {
  public static let fileName = "webhook-secrets.key"

  let key: SymmetricKey

  public enum Failure: Error, Sendable, CustomStringConvertible {
    /// The key file exists but is not 32 bytes.
    case badKeyFile(path: String, size: Int)
    /// The key file could not be written.
    case cannotWriteKey(path: String)
    /// Sealing failed.
    case cannotSeal
    /// The sealed bytes are malformed, or were sealed under another key.
    case cannotOpen
    /// The opened secret is not UTF-8.
    case notText

    public var description: String {
      switch self {
      case .badKeyFile(let path, let size): "\(path) holds \(size) bytes, not a 32-byte key"
      case .cannotWriteKey(let path): "cannot write the webhook secret key \(path)"
      case .cannotSeal: "a webhook secret could not be encrypted"
      case .cannotOpen: "a webhook secret cannot be decrypted with this server's key (was webhook-secrets.key replaced?)"
      case .notText: "a decrypted webhook secret is not text"
      }
    }
  }

  /// A box over a given key (tests; the server uses `loadOrCreate`).
  public init(key: SymmetricKey) {
    self.key = key
  }

  /// Loads `<directory>/webhook-secrets.key`, creating the directory (0700) and a new random key
  /// (0600, written to a temporary file and renamed, so a crash never leaves a truncated key)
  /// the first time.
  public static func loadOrCreate(directory: String) throws -> SecretBox {
    let fm = FileManager.default
    try fm.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    let path = (directory as NSString).appendingPathComponent(fileName)
    if let data = fm.contents(atPath: path) {
      guard data.count == 32 else { throw Failure.badKeyFile(path: path, size: data.count) }
      return SecretBox(key: SymmetricKey(data: data))
    }
    let key = SymmetricKey(size: .bits256)
    let bytes = key.withUnsafeBytes { Data($0) }
    let temp = path + ".\(UUID().uuidString).tmp"
    guard fm.createFile(atPath: temp, contents: bytes, attributes: [.posixPermissions: 0o600]) else {
      throw Failure.cannotWriteKey(path: path)
    }
    // link(2) rather than rename(2): if another process created the key meanwhile, keep theirs.
    if link(temp, path) != 0 {
      let raced = errno == EEXIST
      try? fm.removeItem(atPath: temp)
      if raced, let data = fm.contents(atPath: path), data.count == 32 { return SecretBox(key: SymmetricKey(data: data)) }
      throw Failure.cannotWriteKey(path: path)
    }
    try? fm.removeItem(atPath: temp)
    return SecretBox(key: key)
  }

  /// AES-GCM's combined representation: 12-byte nonce, ciphertext, 16-byte tag.
  public func seal(_ secret: String) throws -> [UInt8] {
    let box = try AES.GCM.seal(Array(secret.utf8), using: key)
    guard let combined = box.combined else { throw Failure.cannotSeal }  // only nil for non-12-byte nonces
    return Array(combined)
  }

  public func open(_ sealed: [UInt8]) throws -> String {
    let plain: Data
    do {
      plain = try AES.GCM.open(AES.GCM.SealedBox(combined: sealed), using: key)
    } catch {
      throw Failure.cannotOpen
    }
    guard let text = String(bytes: plain, encoding: .utf8) else { throw Failure.notText }
    return text
  }

  /// A new signing secret: `whsec_` and 32 random bytes in base64url (no padding).
  public static func newSecret() -> String {
    var generator = SystemRandomNumberGenerator()
    let bytes = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
    return "whsec_" + Base64URL.encode(bytes)
  }
}
