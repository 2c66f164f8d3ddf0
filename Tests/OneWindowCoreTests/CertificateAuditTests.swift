import Crypto
import Foundation
import Testing
@testable import OneWindowCore

// MARK: - Certificates

/// A fixed issuer key, so signatures are reproducible.
let certKey = try! Curve25519.Signing.PrivateKey(rawRepresentation: [UInt8](repeating: 7, count: 32))

func certPayload(keyID: String = "0123456789abcdef", expiresOn: CivilDate? = nil) -> CertificatePayload {
  CertificatePayload(
    number: "OW2026-7K3M-9QXT-2B8N", type: "食品经营许可证", holderName: "张三", holderIDMasked: "1101**********002X",
    issuerDepartmentCode: "shichang", issuerDepartmentName: "朝阳区市场监督管理局", issuedOn: day("2026-11-23"),
    expiresOn: expiresOn,
    fields: ["shop_name": "老王\"面馆\"\n二店", "address": "北京市/朝阳区\\望京", "Zone": "A", "note": "x\ty"],
    trackingCode: "TC-2026-0001", keyID: keyID)
}

/// The byte-exact canonical encoding of `certPayload()`: keys sorted by UTF-8 bytes (so "Zone"
/// before "address"), no whitespace, `"` and `\` escaped, control characters as lowercase
/// `\u00XX`, "/" and Chinese text as they are, no expires_on.
let expectedCanonical = #"{"fields":{"Zone":"A","address":"北京市/朝阳区\\望京","note":"x\u0009y","shop_name":"老王\"面馆\"\u000a二店"},"format":"onewindow-cert/1","holder_id":"1101**********002X","holder_name":"张三","issued_on":"2026-11-23","issuer_department_code":"shichang","issuer_department_name":"朝阳区市场监督管理局","key_id":"0123456789abcdef","number":"OW2026-7K3M-9QXT-2B8N","tracking_code":"TC-2026-0001","type":"食品经营许可证"}"#

func certBlob(_ bytes: [UInt8], signature: [UInt8]) -> String {
  "OWC1.\(Base64URL.encode(bytes)).\(Base64URL.encode(signature))"
}

@Suite struct CertificatePayloadTests {
  @Test func canonicalJSONIsByteExact() {
    let bytes = certPayload().canonicalJSON()
    #expect(bytes == Array(expectedCanonical.utf8), "\(String(decoding: bytes, as: UTF8.self))")
  }

  @Test func anExpiryAppearsFirstInKeyOrder() {
    let bytes = certPayload(expiresOn: day("2031-11-22")).canonicalJSON()
    let expected = #"{"expires_on":"2031-11-22","# + expectedCanonical.dropFirst()
    #expect(bytes == Array(expected.utf8))
  }

  @Test func theCanonicalBytesParseBackToTheSamePayload() {
    for payload in [certPayload(), certPayload(expiresOn: day("2031-11-22"))] {
      #expect(CertificatePayload(canonicalJSON: payload.canonicalJSON()) == payload)
    }
    // The field with the quote and newline survives the round trip.
    #expect(CertificatePayload(canonicalJSON: Array(expectedCanonical.utf8))?.fields["shop_name"] == "老王\"面馆\"\n二店")
  }

  @Test func nonCanonicalEncodingsOfTheSameContentDoNotParse() {
    for variant in nonCanonicalVariants() {
      #expect(CertificatePayload(canonicalJSON: Array(variant.utf8)) == nil, "\(variant)")
    }
  }
}

/// Valid JSON for the same (or nearly the same) content, each not in canonical form.
func nonCanonicalVariants() -> [String] {
  let c = expectedCanonical
  return [
    "{ " + c.dropFirst(),  // whitespace
    c + "\n",  // trailing newline
    c.replacing(#"\u000a"#, with: #"\n"#),  // short escape
    c.replacing(#"\u000a"#, with: #"\u000A"#),  // uppercase hex
    c.replacing("食品经营许可证", with: #"\u98df品经营许可证"#),  // escaped non-ASCII
    c.replacing("北京市/朝阳区", with: #"北京市\/朝阳区"#),  // escaped slash
    #"{"extra":"x","# + c.dropFirst(),  // unknown key
    // Keys out of order: "format" moved to the front.
    #"{"format":"onewindow-cert/1","# + c.dropFirst().replacing(#""format":"onewindow-cert/1","#, with: ""),
    // An explicit null expiry instead of omitting it.
    #"{"expires_on":null,"# + c.dropFirst(),
  ]
}

@Suite struct SignedCertificateTests {
  let keyID = SignedCertificate.keyID(of: certKey.publicKey)
  var keys: [String: Curve25519.Signing.PublicKey] { [keyID: certKey.publicKey] }
  var payload: CertificatePayload { certPayload(keyID: keyID, expiresOn: day("2031-11-22")) }

  @Test func theKeyIDIsTheStartOfTheKeysSHA256() {
    #expect(keyID.count == 16)
    #expect(keyID == String(Hex.sha256(Array(certKey.publicKey.rawRepresentation)).prefix(16)))
    #expect(keyID != SignedCertificate.keyID(of: Curve25519.Signing.PrivateKey().publicKey))
  }

  @Test func signThenVerifyRoundTrips() throws {
    let blob = try SignedCertificate.sign(payload, with: certKey)
    let parts = blob.split(separator: ".", omittingEmptySubsequences: false)
    #expect(parts.count == 3 && parts[0] == "OWC1")
    #expect(Base64URL.decode(String(parts[1])) == payload.canonicalJSON())
    #expect(Base64URL.decode(String(parts[2]))?.count == 64)
    #expect(try SignedCertificate.verify(blob, keys: keys) == payload)
    #expect(try SignedCertificate.verify("\n  \(blob) \n", keys: keys) == payload)
    // Another issuer key of the platform alongside does not disturb verification.
    let other = Curve25519.Signing.PrivateKey().publicKey
    #expect(try SignedCertificate.verify(blob, keys: [SignedCertificate.keyID(of: other): other, keyID: certKey.publicKey]) == payload)
  }

  @Test func flippingAnyPayloadByteNeverYieldsAValidPayload() throws {
    let blob = try SignedCertificate.sign(payload, with: certKey)
    let parts = blob.split(separator: ".").map(String.init)
    let bytes = try #require(Base64URL.decode(parts[1]))
    let marker = Array("\"key_id\":\"".utf8)
    let start = try #require((0...(bytes.count - marker.count)).first { Array(bytes[$0..<($0 + marker.count)]) == marker })
    let keyIDValue = (start + marker.count)..<(start + marker.count + keyID.utf8.count)
    var outcomes: [String: Int] = [:]
    for i in bytes.indices {
      for mask: UInt8 in [0x01, 0x20, 0x80] {
        var tampered = bytes
        tampered[i] ^= mask
        do {
          let p = try SignedCertificate.verify("OWC1.\(Base64URL.encode(tampered)).\(parts[2])", keys: keys)
          Issue.record("byte \(i) ^ \(mask) verified as \(p)")
        } catch {
          switch error {
          case .badSignature: outcomes["bad", default: 0] += 1
          case .malformed: outcomes["malformed", default: 0] += 1
          case .unknownKey:
            outcomes["unknownKey", default: 0] += 1
            #expect(keyIDValue.contains(i), "unknownKey only when the key id itself was changed (byte \(i))")
          }
        }
      }
    }
    #expect(outcomes["bad", default: 0] > 0 && outcomes["malformed", default: 0] > 0)
  }

  @Test func flippingAnySignatureByteIsABadSignature() throws {
    let blob = try SignedCertificate.sign(payload, with: certKey)
    let parts = blob.split(separator: ".").map(String.init)
    let signature = try #require(Base64URL.decode(parts[2]))
    for i in signature.indices {
      for mask: UInt8 in [0x01, 0x80] {
        var tampered = signature
        tampered[i] ^= mask
        #expect(throws: SignedCertificate.Failure.badSignature) {
          try SignedCertificate.verify("OWC1.\(parts[1]).\(Base64URL.encode(tampered))", keys: keys)
        }
      }
    }
  }

  @Test func changingAnyCharacterOfTheBlobNeverYieldsADifferentPayload() throws {
    let blob = Array(try SignedCertificate.sign(payload, with: certKey))
    let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
    var accepted: [Int] = []
    for i in blob.indices {
      for replacement in [alphabet[(alphabet.firstIndex(of: blob[i]).map { $0 + 1 } ?? 0) % alphabet.count], "="] {
        var tampered = blob
        tampered[i] = replacement
        if let p = try? SignedCertificate.verify(String(tampered), keys: keys) {
          #expect(p == payload, "character \(i) changed and still verified, to different content")
          accepted.append(i)
        }
      }
    }
    // Base64URL.decode accepts only the canonical spelling (unused low bits zero), so no
    // character of a signed certificate can change with the blob still verifying.
    #expect(accepted.isEmpty, "blob length \(blob.count), changed characters still accepted at \(accepted)")
    #expect(Base64URL.decode("AB") == nil, "AB is a non-canonical spelling of the byte 0x00 (canonical: AA)")
  }

  @Test func anUnknownKeyIDIsReported() throws {
    let blob = try SignedCertificate.sign(payload, with: certKey)
    #expect(throws: SignedCertificate.Failure.unknownKey(keyID)) { try SignedCertificate.verify(blob, keys: [:]) }
    let other = Curve25519.Signing.PrivateKey().publicKey
    #expect(throws: SignedCertificate.Failure.unknownKey(keyID)) {
      try SignedCertificate.verify(blob, keys: [SignedCertificate.keyID(of: other): other])
    }
    // The right id mapped to the wrong key: the signature does not match.
    #expect(throws: SignedCertificate.Failure.badSignature) { try SignedCertificate.verify(blob, keys: [keyID: other]) }
    // Signed by a key that merely claims this key's id.
    let forger = Curve25519.Signing.PrivateKey()
    let forged = try SignedCertificate.sign(payload, with: forger)
    #expect(throws: SignedCertificate.Failure.badSignature) { try SignedCertificate.verify(forged, keys: keys) }
  }

  @Test func validlySignedNonCanonicalJSONIsMalformed() throws {
    for variant in nonCanonicalVariants() {
      let bytes = Array(variant.replacing("0123456789abcdef", with: keyID).utf8)
      let signature = Array(try certKey.signature(for: bytes))
      #expect(certKey.publicKey.isValidSignature(signature, for: bytes))
      #expect(throws: SignedCertificate.Failure.malformed, "\(variant)") {
        try SignedCertificate.verify(certBlob(bytes, signature: signature), keys: keys)
      }
    }
    // Well-formed JSON of another format, or JSON that is not a certificate at all.
    let otherFormat = Array(
      expectedCanonical.replacing("onewindow-cert/1", with: "onewindow-cert/2").replacing("0123456789abcdef", with: keyID).utf8)
    let notACertificate = Array(#"{"key_id":"\#(keyID)"}"#.utf8)
    let badDate = Array(
      expectedCanonical.replacing("2026-11-23", with: "2026-02-30").replacing("0123456789abcdef", with: keyID).utf8)
    for bytes in [otherFormat, notACertificate, badDate] {
      let signature = Array(try certKey.signature(for: bytes))
      #expect(throws: SignedCertificate.Failure.malformed) {
        try SignedCertificate.verify(certBlob(bytes, signature: signature), keys: keys)
      }
    }
    // The canonical bytes with the real key id, signed by hand, do verify.
    let canonical = Array(expectedCanonical.replacing("0123456789abcdef", with: keyID).utf8)
    let signature = Array(try certKey.signature(for: canonical))
    #expect(try SignedCertificate.verify(certBlob(canonical, signature: signature), keys: keys) == certPayload(keyID: keyID))
  }

  @Test func malformedBlobs() throws {
    let blob = try SignedCertificate.sign(payload, with: certKey)
    let parts = blob.split(separator: ".").map(String.init)
    let signature = try #require(Base64URL.decode(parts[2]))
    let malformed = [
      "", "OWC1", "OWC1.\(parts[1])", "OWC2.\(parts[1]).\(parts[2])", "owc1.\(parts[1]).\(parts[2])",
      "\(blob).x", "OWC1..\(parts[2])", "OWC1.\(parts[1]).", "OWC1.\(parts[1])+.\(parts[2])",
      "OWC1.\(parts[1]).\(Base64URL.encode(Array(signature.dropLast())))",
      "OWC1.\(parts[1]).\(Base64URL.encode(signature + [0]))",
      "OWC1.\(Base64URL.encode(Array("not json".utf8))).\(parts[2])",
    ]
    for text in malformed {
      #expect(throws: SignedCertificate.Failure.malformed, "\(text)") { try SignedCertificate.verify(text, keys: keys) }
    }
  }

  @Test func expiryIsTheDayBeforeTheAnniversary() {
    // Documented rule: the day before the anniversary; for 29 February in a year without one
    // the anniversary is 1 March, so the certificate runs through 28 February.
    #expect(SignedCertificate.expiry(issuedOn: day("2024-02-29"), years: 1) == day("2025-02-28"))
    #expect(SignedCertificate.expiry(issuedOn: day("2024-02-29"), years: 3) == day("2027-02-28"))
    #expect(SignedCertificate.expiry(issuedOn: day("2024-02-29"), years: 4) == day("2028-02-28"))
    #expect(SignedCertificate.expiry(issuedOn: day("2026-11-23"), years: 5) == day("2031-11-22"))
    #expect(SignedCertificate.expiry(issuedOn: day("2026-03-01"), years: 1) == day("2027-02-28"))
    #expect(SignedCertificate.expiry(issuedOn: day("2027-03-01"), years: 1) == day("2028-02-29"))
    #expect(SignedCertificate.expiry(issuedOn: day("2026-01-01"), years: 1) == day("2026-12-31"))
    #expect(SignedCertificate.expiry(issuedOn: day("2026-11-23"), years: 0) == nil)
    #expect(SignedCertificate.expiry(issuedOn: day("2026-11-23"), years: -1) == nil)
  }

  @Test func certificateNumbersHaveTheDocumentedFormat() {
    let numbers = (0..<2000).map { _ in SignedCertificate.makeNumber(year: 2026) }
    for n in numbers {
      #expect(n.wholeMatch(of: #/OW2026-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}/#) != nil, "\(n)")
      #expect(n.count == 21)
    }
    #expect(Set(numbers).count == numbers.count)
    // All 32 Crockford symbols turn up, and none of I, L, O, U.
    let used = Set(numbers.flatMap { $0.dropFirst(7).filter { $0 != "-" } })
    #expect(used == Set("0123456789ABCDEFGHJKMNPQRSTVWXYZ"))
    #expect(SignedCertificate.makeNumber(year: 2027).hasPrefix("OW2027-"))
  }
}

@Suite struct CertificateTemplateValidationTests {
  let departments: Set<String> = ["gongan"]

  func failingField(_ template: CertificateTemplate) -> String? {
    var spec = sampleSpec()
    spec.certificate = template
    do {
      _ = try spec.validated(departments: departments)
      return nil
    } catch { return error.field }
  }

  @Test func aValidTemplateIsTrimmedAndKept() throws {
    var spec = sampleSpec()
    spec.certificate = CertificateTemplate(type: " 居民身份证 ", validityYears: 10, fields: ["reason"])
    let valid = try spec.validated(departments: departments)
    #expect(valid.certificate == CertificateTemplate(type: "居民身份证", validityYears: 10, fields: ["reason"]))
    #expect(try sampleSpec().validated(departments: departments).certificate == nil)
    #expect(failingField(CertificateTemplate(type: "证", validityYears: 0, fields: [])) == nil)
    #expect(failingField(CertificateTemplate(type: "证", validityYears: 50, fields: ["reason"])) == nil)
  }

  @Test func templateLimits() {
    #expect(failingField(CertificateTemplate(type: " ", validityYears: 1, fields: [])) == "spec.certificate.type")
    #expect(failingField(CertificateTemplate(type: String(repeating: "证", count: 51), validityYears: 1, fields: [])) == "spec.certificate.type")
    #expect(failingField(CertificateTemplate(type: "证", validityYears: -1, fields: [])) == "spec.certificate.validity_years")
    #expect(failingField(CertificateTemplate(type: "证", validityYears: 51, fields: [])) == "spec.certificate.validity_years")
    #expect(failingField(CertificateTemplate(type: "证", validityYears: 1, fields: Array(repeating: "reason", count: 31))) == "spec.certificate.fields")
  }

  @Test func templateFieldsMustNameFormFields() {
    var spec = sampleSpec()
    spec.certificate = CertificateTemplate(type: "证", validityYears: 1, fields: ["reason", "shop_name"])
    #expect(throws: ValidationError("spec.certificate.fields[1]", "names 'shop_name', which is not a field of the form schema")) {
      try spec.validated(departments: departments)
    }
  }
}

// MARK: - Audit hash chain

func auditChain(_ count: Int = 5) -> [AuditEntry] {
  var previous = AuditChain.genesis
  return (1...count).map { i in
    let seq = Int64(i)
    let at = Date(timeIntervalSince1970: 1_795_365_000 + Double(i) * 61.25)
    let actorID: String? = i == 3 ? nil : "acct-\(i)"
    let role = i == 3 ? "system" : "caseworker"
    let department: String? = i == 3 ? nil : "shichang"
    let subject: String? = i % 2 == 0 ? "acct-applicant" : nil
    let hash = AuditChain.hash(
      sequence: seq, atMillis: Int64((at.timeIntervalSince1970 * 1000).rounded()), actorID: actorID, actorRole: role,
      actorDepartment: department, action: "case.accept", targetType: "case", targetID: "case-\(i)", subjectID: subject,
      reason: "第\(i)条", previousHash: previous)
    defer { previous = hash }
    return AuditEntry(
      sequence: seq, at: at, actorID: actorID, actorRole: role, actorDepartment: department, action: "case.accept",
      targetType: "case", targetID: "case-\(i)", subjectID: subject, reason: "第\(i)条", previousHash: previous, hash: hash)
  }
}

/// The first break when verifying `entries` from the start, and how many entries passed.
func firstBreak(_ entries: [AuditEntry], verifier: AuditChain.Verifier = .init()) -> (AuditChain.Break?, Int) {
  var v = verifier
  for e in entries {
    if let b = v.check(e) { return (b, v.checked) }
  }
  return (nil, v.checked)
}

@Suite struct AuditChainTests {
  /// Entries with a client address hash as `ow-audit-2` (the address is covered); entries without
  /// keep the `ow-audit-1` hash they were written with, so old chains still verify.
  @Test func theClientAddressIsPartOfTheHashOnlyWhenKept() {
    let old = auditChain(2)
    var withAddress = old[1]
    withAddress.clientAddress = "ipv4:198.51.100.7"
    // Known value of the ow-audit-1 encoding: unchanged by the new parameter.
    #expect(AuditChain.hash(of: old[1]) == old[1].hash)
    withAddress.hash = AuditChain.hash(of: withAddress)
    #expect(withAddress.hash != old[1].hash)
    #expect(firstBreak([old[0], withAddress]).0 == nil)
    // Changing or dropping the address breaks the entry.
    var forged = withAddress
    forged.clientAddress = "ipv4:198.51.100.8"
    #expect(firstBreak([old[0], forged]).0 == .alteredEntry(sequence: 2))
    forged.clientAddress = nil
    #expect(firstBreak([old[0], forged]).0 == .alteredEntry(sequence: 2))
    // An empty address is still an address (not confused with none).
    var empty = old[1]
    empty.clientAddress = ""
    #expect(AuditChain.hash(of: empty) != old[1].hash)
  }

  @Test func anIntactChainVerifies() {
    let chain = auditChain()
    #expect(chain.first?.previousHash == AuditChain.genesis)
    #expect(AuditChain.genesis == String(repeating: "0", count: 64))
    for (a, b) in zip(chain, chain.dropFirst()) { #expect(b.previousHash == a.hash) }
    for e in chain {
      #expect(AuditChain.hash(of: e) == e.hash)
      #expect(e.hash.count == 64 && Hex.decode(e.hash) != nil)
    }
    #expect(Set(chain.map(\.hash)).count == 5)
    var v = AuditChain.Verifier()
    for e in chain { #expect(v.check(e) == nil) }
    #expect(v.checked == 5 && v.lastSequence == 5 && v.lastHash == chain[4].hash)
  }

  @Test func verificationCanResumeFromACheckpoint() {
    let chain = auditChain()
    let (result, checked) = firstBreak(Array(chain[2...]), verifier: .init(afterSequence: 2, hash: chain[1].hash))
    #expect(result == nil && checked == 3)
    // A checkpoint with the wrong hash breaks at the first entry after it.
    #expect(firstBreak(Array(chain[2...]), verifier: .init(afterSequence: 2, hash: chain[0].hash)).0 == .brokenLink(sequence: 3))
  }

  @Test func everyFieldIsCoveredByTheHash() {
    let e = auditChain()[1]
    var variants: [AuditEntry] = []
    func vary(_ change: (inout AuditEntry) -> Void) {
      var copy = e
      change(&copy)
      variants.append(copy)
    }
    vary { $0.sequence += 1 }
    vary { $0.at = $0.at.addingTimeInterval(0.001) }
    vary { $0.actorID = "acct-x" }
    vary { $0.actorID = nil }
    vary { $0.actorRole = "admin" }
    vary { $0.actorDepartment = "weijian" }
    vary { $0.action = "case.reject" }
    vary { $0.targetType = "certificate" }
    vary { $0.targetID = "case-9" }
    vary { $0.subjectID = nil }
    vary { $0.reason = "第2条 " }
    vary { $0.previousHash = AuditChain.genesis }
    for v in variants { #expect(AuditChain.hash(of: v) != e.hash, "\(v)") }
    // Moving text between neighbouring fields changes the hash too (fields are separated).
    vary { $0.targetType = "cas"; $0.targetID = "ecase-2" }
    #expect(AuditChain.hash(of: variants.last!) != e.hash)
  }

  @Test func anAlteredReasonIsFoundAtItsSequence() {
    var chain = auditChain()
    chain[2].reason = "篡改后的理由"
    let (result, checked) = firstBreak(chain)
    #expect(result == .alteredEntry(sequence: 3))
    #expect(result?.sequence == 3)
    #expect(checked == 2)
  }

  @Test func anAlteredAndRehashedEntryBreaksTheNextLink() {
    var chain = auditChain()
    chain[2].reason = "篡改后的理由"
    chain[2].hash = AuditChain.hash(of: chain[2])
    #expect(firstBreak(chain).0 == .brokenLink(sequence: 4))
  }

  @Test func aDeletedEntryIsReportedAsMissing() {
    var chain = auditChain()
    chain.remove(at: 2)
    let (result, checked) = firstBreak(chain)
    #expect(result == .missingEntries(after: 2, found: 4))
    #expect(result?.sequence == 4)
    #expect(result?.description == "entries 3…3 are missing")
    #expect(checked == 2)
    // Deleting the last entries is not visible from the chain alone; deleting the first is.
    #expect(firstBreak(Array(chain.dropFirst())).0 == .missingEntries(after: 0, found: 2))
  }

  @Test func aChangedPreviousHashIsABrokenLink() {
    var chain = auditChain()
    chain[3].previousHash = chain[1].hash
    #expect(firstBreak(chain).0 == .brokenLink(sequence: 4))
    var first = auditChain()
    first[0].previousHash = String(repeating: "f", count: 64)
    #expect(firstBreak(first).0 == .brokenLink(sequence: 1))
  }

  @Test func aVerifierStopsAtTheBreak() {
    var chain = auditChain()
    chain[1].targetID = "case-x"
    var v = AuditChain.Verifier()
    #expect(v.check(chain[0]) == nil)
    #expect(v.check(chain[1]) == .alteredEntry(sequence: 2))
    #expect(v.lastSequence == 1 && v.lastHash == chain[0].hash && v.checked == 1)
    // The next entry is judged against the last good one, so it looks like a gap.
    #expect(v.check(chain[2]) == .missingEntries(after: 1, found: 3))
  }

  @Test func auditEventsFromCaseActors() {
    let system = AuditEvent(.system, action: "case.deem_accepted", targetType: "case", targetID: "c1", subjectID: "a1", reason: "")
    #expect(system.actorID == nil && system.actorRole == "system" && system.actorDepartment == nil)
    let worker = AuditEvent(
      CaseActor(kind: .handler, accountID: "w1", role: .caseworker, departmentCode: "shichang"), action: "case.accept",
      targetType: "case", targetID: "c1", subjectID: "a1", reason: "ok")
    #expect(worker.actorID == "w1" && worker.actorRole == "caseworker" && worker.actorDepartment == "shichang")
  }
}
