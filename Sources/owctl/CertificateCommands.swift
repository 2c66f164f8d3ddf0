import ArgumentParser
import Crypto
import Foundation
import GRPCCore
import OneWindowAPI
import OneWindowClientPosix
import OneWindowCore
import SwiftProtobuf

// Electronic certificates (电子证照): listing, showing, verifying online or offline, revoking.

struct CertificateCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "cert",
    abstract: "Electronic certificates (电子证照): list, show, verify (also offline), revoke.",
    subcommands: [List.self, Show.self, Verify.self, Revoke.self])

  struct List: OwctlCommand {
    static let configuration = CommandConfiguration(abstract: "Your certificates, newest first.")

    @OptionGroup var global: GlobalOptions

    func execute() async throws {
      try await global.connect { remote in
        let response = try await remote.authorized { metadata in
          try await remote.certificates.listMyCertificates(.init(), metadata: metadata, options: remote.call)
        }
        try remote.output.show(response) {
          guard !response.certificates.isEmpty else { return Console.out("no certificates") }
          var table = Table(["NUMBER", "TYPE", "ISSUED", "EXPIRES", "STATUS", "ISSUER", "TRACKING CODE"])
          for c in response.certificates {
            table.add([
              c.number, c.type, c.issuedOn, c.expiresOn.isEmpty ? "-" : c.expiresOn, c.status.label,
              c.issuerDepartmentName.isEmpty ? c.issuerDepartmentCode : c.issuerDepartmentName, c.trackingCode,
            ])
          }
          table.print()
        }
      }
    }
  }

  struct Show: OwctlCommand {
    static let configuration = CommandConfiguration(
      abstract: "Show a certificate and its signed form (holder, issuing department, administrators).")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The certificate number, e.g. OW2026-7K3M-9QXT-2B8N.")
    var number: String

    @Flag(help: "Print only the signed form (OWC1.…), e.g. to save it for `cert verify --file`.")
    var signed = false

    func execute() async throws {
      try await global.connect { remote in
        let certificate = try await remote.authorized { metadata in
          try await remote.certificates.getCertificate(.with { $0.number = number }, metadata: metadata, options: remote.call)
        }
        if signed && !global.json {
          Console.out(certificate.signed)
          return
        }
        try remote.output.show(certificate) {
          CertificateView.print(certificate)
          Console.out("")
          Console.out("Signed form (verify anywhere with `owctl cert verify --file FILE`):")
          Console.out(certificate.signed)
        }
      }
    }
  }

  struct Verify: OwctlCommand {
    static let configuration = CommandConfiguration(
      abstract: "Verify a certificate by number (online) or its signed form from a file (offline); exits 1 unless valid.",
      discussion: """
        With --file the signature is checked on this machine with the platform's issuer keys \
        (fetched once and cached in $OWCTL_CONFIG_DIR/issuer-keys.json; fetched again when the \
        certificate names a key not in the cache). Then, when the server is reachable, it is asked \
        whether the certificate was revoked; when it is not, the offline result stands, with a note.
        The file holds the signed form (OWC1.…), e.g. from `owctl cert show NUMBER --signed`, or \
        the JSON of `owctl --json cert show NUMBER`.
        """)

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The certificate number (verified by the server).")
    var number: String?

    @Option(help: ArgumentHelp("A file with the signed form, verified offline.", valueName: "file"))
    var file: String?

    func validate() throws {
      switch (number, file) {
      case (nil, nil): throw ArgumentParser.ValidationError("Give a certificate number, or --file with its signed form.")
      case (.some, .some): throw ArgumentParser.ValidationError("Give a number or --file, not both.")
      default: break
      }
    }

    func execute() async throws {
      if let file {
        let valid = try await OfflineVerification.run(global, blob: try Self.readSigned(file))
        if !valid { throw ExitCode(1) }
        return
      }
      guard let number else { return }
      let response = try await global.connect { remote in
        try await remote.certificates.verifyCertificate(.with { $0.number = number }, options: remote.call)
      }
      try global.output.show(response) {
        Console.out("\(response.result.label): \(response.detail)")
        if response.hasCertificate {
          Console.out("")
          CertificateView.print(response.certificate)
        }
      }
      if response.result != .valid { throw ExitCode(1) }
    }

    /// The signed form in a file: the OWC1 token, or the `signed` field of a certificate's JSON.
    static func readSigned(_ path: String) throws -> String {
      guard FileManager.default.fileExists(atPath: path) else { throw CLIError("no such file: \(path)") }
      let data: Data
      do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
        throw CLIError("cannot read \(path): \(ErrorReport.describe(error))")
      }
      guard data.count <= 64 * 1024 else { throw CLIError("\(path) is too large to be a certificate") }
      guard let text = String(data: data, encoding: .utf8) else { throw CLIError("\(path) is not UTF-8 text") }
      let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
      if trimmed.hasPrefix("{") {
        var options = JSONDecodingOptions()
        options.ignoreUnknownFields = true
        if let certificate = try? Onewindow_V1_Certificate(jsonString: trimmed, options: options), !certificate.signed.isEmpty {
          return certificate.signed
        }
        if let response = try? Onewindow_V1_VerifyCertificateResponse(jsonString: trimmed, options: options),
           !response.certificate.signed.isEmpty {
          return response.certificate.signed
        }
        throw CLIError("\(path) is JSON without a certificate's \"signed\" field")
      }
      let token = trimmed.split(whereSeparator: { $0.isWhitespace }).first { $0.hasPrefix(SignedCertificate.prefix + ".") }
      return token.map(String.init) ?? trimmed
    }
  }

  struct Revoke: OwctlCommand {
    static let configuration = CommandConfiguration(
      abstract: "Revoke a certificate (issuing department's caseworkers, administrators).")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The certificate number.")
    var number: String

    @Option(help: "Why (required, up to 500 characters).")
    var reason: String

    func execute() async throws {
      try await global.connect { remote in
        let certificate = try await remote.authorized { metadata in
          try await remote.certificates.revokeCertificate(.with {
            $0.number = number
            $0.reason = reason
          }, metadata: metadata, options: remote.call)
        }
        try remote.output.show(certificate) {
          Console.out("revoked \(certificate.number) (\(certificate.type)): \(certificate.status.label)")
        }
      }
    }
  }
}

enum CertificateView {
  static func print(_ c: Onewindow_V1_Certificate) {
    var pairs: [(String, String)] = [
      ("Number", c.number),
      ("Type", c.type),
      ("Status", c.status.label),
      ("Holder", c.holderName),
      ("Holder ID", c.holderID),
      ("Issuer", c.issuerDepartmentName.isEmpty ? c.issuerDepartmentCode : "\(c.issuerDepartmentName) (\(c.issuerDepartmentCode))"),
      ("Issued on", c.issuedOn),
      ("Expires on", c.expiresOn.isEmpty ? "no expiry" : c.expiresOn),
      ("Tracking code", c.trackingCode),
      ("Signing key", c.keyID),
    ]
    if c.hasRevokedAt { pairs.append(("Revoked", "\(Format.minute(c.revokedAt)): \(c.revocationReason)")) }
    Table.keyValue(pairs).print()
    if !c.fields.isEmpty {
      Console.out("Fields:")
      var table = Table([])
      table.indent = "  "
      for key in c.fields.keys.sorted() { table.add([key, c.fields[key] ?? ""]) }
      table.print()
    }
  }

  static func print(_ p: CertificatePayload) {
    Table.keyValue([
      ("Number", p.number),
      ("Type", p.type),
      ("Holder", p.holderName),
      ("Holder ID", p.holderIDMasked),
      ("Issuer", "\(p.issuerDepartmentName) (\(p.issuerDepartmentCode))"),
      ("Issued on", p.issuedOn.description),
      ("Expires on", p.expiresOn?.description ?? "no expiry"),
      ("Tracking code", p.trackingCode),
      ("Signing key", p.keyID),
    ]).print()
    if !p.fields.isEmpty {
      Console.out("Fields:")
      var table = Table([])
      table.indent = "  "
      for key in p.fields.keys.sorted() { table.add([key, p.fields[key] ?? ""]) }
      table.print()
    }
  }
}

/// `issuer-keys.json` in the configuration directory: the issuer public keys per server.
struct IssuerKeyCache {
  let directory: URL
  var file: URL { directory.appendingPathComponent("issuer-keys.json") }

  struct Entry: Codable {
    var fetchedAt: Date
    /// Key id → base64 of the raw 32-byte Ed25519 public key.
    var keys: [String: String]
  }

  private struct Contents: Codable {
    var servers: [String: Entry] = [:]
  }

  static func fromEnvironment() -> IssuerKeyCache {
    IssuerKeyCache(directory: SessionStore.fromEnvironment().directory)
  }

  /// The cached keys of `server` (empty when none or the file is unreadable).
  func load(_ server: String) -> [String: Curve25519.Signing.PublicKey] {
    guard let entry = read()?.servers[server] else { return [:] }
    return Self.keys(entry.keys)
  }

  /// Keeps only keys whose id is the one their bytes give.
  static func keys(_ encoded: [String: String]) -> [String: Curve25519.Signing.PublicKey] {
    var out: [String: Curve25519.Signing.PublicKey] = [:]
    for (_, base64) in encoded {
      guard let raw = Data(base64Encoded: base64), let key = try? Curve25519.Signing.PublicKey(rawRepresentation: raw) else { continue }
      out[SignedCertificate.keyID(of: key)] = key
    }
    return out
  }

  func save(_ server: String, keys: [String: Curve25519.Signing.PublicKey]) throws {
    var contents = read() ?? Contents()
    contents.servers[server] = Entry(
      fetchedAt: Date(), keys: keys.mapValues { $0.rawRepresentation.base64EncodedString() })
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    encoder.dateEncodingStrategy = .iso8601
    try FileManager.default.createDirectory(
      at: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    try encoder.encode(contents).write(to: file, options: .atomic)
  }

  private func read() -> Contents? {
    guard let data = try? Data(contentsOf: file) else { return nil }
    let decoder = JSONDecoder()
    decoder.dateDecodingStrategy = .iso8601
    return try? decoder.decode(Contents.self, from: data)
  }
}

/// `cert verify --file`: the signature offline, then revocation online when reachable.
enum OfflineVerification {
  struct Report: Encodable {
    var valid: Bool
    var signature: String
    var detail: String
    var number: String?
    var keyId: String?
    var expired: Bool?
    var keysFrom: String?
    var server: ServerPart?
  }

  struct ServerPart: Encodable {
    var checked: Bool
    var result: String?
    var detail: String
  }

  /// Codes meaning "the server could not be asked" rather than "the server said no".
  static let unreachable: Set<RPCError.Code> = [.unavailable, .deadlineExceeded, .cancelled, .resourceExhausted]

  /// Prints the outcome; returns whether the certificate is valid.
  static func run(_ global: GlobalOptions, blob: String) async throws -> Bool {
    let server = try global.connectionOptions().display
    let cache = IssuerKeyCache.fromEnvironment()
    let json = global.json
    return try await global.connect { remote in
      var keys = cache.load(server)
      var keysFrom = keys.isEmpty ? "" : "cached issuer keys"
      var fetched = false
      func fetch() async {
        fetched = true
        do {
          let response = try await remote.certificates.getIssuerKeys(.init(), options: remote.call)
          var fresh: [String: Curve25519.Signing.PublicKey] = [:]
          for k in response.keys {
            guard let key = try? Curve25519.Signing.PublicKey(rawRepresentation: k.publicKey) else { continue }
            let id = SignedCertificate.keyID(of: key)
            if id != k.keyID { Console.error("warning: the server lists key \(k.keyID) whose bytes give id \(id); using \(id)") }
            fresh[id] = key
          }
          keys = fresh
          keysFrom = "issuer keys just fetched from \(server)"
          do { try cache.save(server, keys: fresh) } catch {
            Console.error("warning: cannot cache the issuer keys in \(cache.file.path): \(ErrorReport.describe(error))")
          }
        } catch let error as RPCError where unreachable.contains(error.code) {
          Console.error("note: cannot fetch the issuer keys from \(server): \(ErrorReport.oneLine(error.message))")
        } catch {
          Console.error("note: cannot fetch the issuer keys from \(server): \(ErrorReport.oneLine(ErrorReport.text(for: error, server: server)))")
        }
      }
      if keys.isEmpty { await fetch() }
      guard !keys.isEmpty else {
        throw CLIError("no issuer keys: connect to the server once (they are cached for offline use)")
      }
      var outcome: Result<CertificatePayload, SignedCertificate.Failure>
      outcome = check(blob, keys)
      if case .failure(.unknownKey) = outcome, !fetched {
        await fetch()
        outcome = check(blob, keys)
      }

      let payload: CertificatePayload
      switch outcome {
      case .failure(let failure):
        let report = Report(valid: false, signature: resultName(failure), detail: failure.description, keysFrom: keysFrom)
        if json {
          try remote.output.printJSON(encodable: report)
        } else {
          Console.out("NOT VALID: \(failure.description) (checked offline with \(keysFrom))")
        }
        return false
      case .success(let p):
        payload = p
      }

      let today = CivilDate(Date())
      let expired = payload.expiresOn.map { $0 < today } ?? false
      if !json {
        Console.out("signature: GOOD (key \(payload.keyID), checked offline with \(keysFrom))")
        CertificateView.print(payload)
        if expired, let day = payload.expiresOn { Console.out("EXPIRED on \(day)") }
      }

      // Revocation can only be known online.
      var serverPart: ServerPart
      var valid = !expired
      do {
        let response = try await remote.certificates.verifyCertificate(.with { $0.signed = blob }, options: remote.call)
        serverPart = ServerPart(checked: true, result: response.result.label, detail: response.detail)
        valid = valid && response.result == .valid
        if !json { Console.out("server (\(server)): \(response.result.label): \(response.detail)") }
      } catch let error as RPCError where unreachable.contains(error.code) {
        let detail = "revocation not checked: cannot reach \(server) (\(ErrorReport.oneLine(error.message)))"
        serverPart = ServerPart(checked: false, detail: detail)
        if !json { Console.error("note: \(detail)") }
      }
      let report = Report(
        valid: valid, signature: "GOOD", detail: valid ? "valid" : "not valid", number: payload.number,
        keyId: payload.keyID, expired: expired, keysFrom: keysFrom, server: serverPart)
      if json {
        try remote.output.printJSON(encodable: report)
      } else {
        Console.out(valid ? "VALID" + (serverPart.checked ? "" : " (offline: revocation not checked)") : "NOT VALID")
      }
      return valid
    }
  }

  static func check(
    _ blob: String, _ keys: [String: Curve25519.Signing.PublicKey]
  ) -> Result<CertificatePayload, SignedCertificate.Failure> {
    do throws(SignedCertificate.Failure) {
      return .success(try SignedCertificate.verify(blob, keys: keys))
    } catch {
      return .failure(error)
    }
  }

  static func resultName(_ failure: SignedCertificate.Failure) -> String {
    switch failure {
    case .malformed: "MALFORMED"
    case .unknownKey: "UNKNOWN_KEY"
    case .badSignature: "BAD_SIGNATURE"
    }
  }
}
