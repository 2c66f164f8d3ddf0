import Crypto
import Foundation
import OneWindowCore

/// The platform's certificate signing key (Ed25519), kept in the data directory as
/// `issuer-ed25519.key` (the raw 32-byte private key, mode 0600) and created on first start.
/// Keys of earlier generations stay published (`issuer-ed25519.<key id>.pub`) so old
/// certificates keep verifying after a rotation.
public struct IssuerKeys: Sendable {
  public let signingKey: Curve25519.Signing.PrivateKey
  public let keyID: String
  public let createdAt: Date
  /// Every key certificates may be signed with, by key id.
  public let published: [String: Curve25519.Signing.PublicKey]

  public static func loadOrCreate(directory: String) throws -> IssuerKeys {
    let fm = FileManager.default
    try fm.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    let path = (directory as NSString).appendingPathComponent(ServerKeys.issuerFile)
    let key: Curve25519.Signing.PrivateKey
    if let data = fm.contents(atPath: path) {
      key = try Curve25519.Signing.PrivateKey(rawRepresentation: data)
    } else {
      key = Curve25519.Signing.PrivateKey()
      // Written whole to a temporary file and renamed: a crash never leaves a truncated key.
      let temp = path + ".tmp"
      guard fm.createFile(atPath: temp, contents: key.rawRepresentation, attributes: [.posixPermissions: 0o600]),
            rename(temp, path) == 0
      else {
        try? fm.removeItem(atPath: temp)
        throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: path])
      }
    }
    let created = (try? fm.attributesOfItem(atPath: path)[.creationDate] as? Date)
      ?? (try? fm.attributesOfItem(atPath: path)[.modificationDate] as? Date) ?? Date()
    var published = [SignedCertificate.keyID(of: key.publicKey): key.publicKey]
    for name in (try? fm.contentsOfDirectory(atPath: directory)) ?? [] where name.hasPrefix("issuer-ed25519.") && name.hasSuffix(".pub") {
      if let data = fm.contents(atPath: (directory as NSString).appendingPathComponent(name)),
         let old = try? Curve25519.Signing.PublicKey(rawRepresentation: data)
      {
        published[SignedCertificate.keyID(of: old)] = old
      }
    }
    return IssuerKeys(signingKey: key, keyID: SignedCertificate.keyID(of: key.publicKey), createdAt: created, published: published)
  }
}
