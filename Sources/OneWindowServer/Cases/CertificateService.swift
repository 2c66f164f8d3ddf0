import Foundation
import GRPCCore
import Logging
import OneWindowAPI
import OneWindowCore
import OneWindowStore

/// Electronic certificates: public keys and verification for anyone, listings for holders,
/// revocation for the issuing department.
struct CertificateService: Onewindow_V1_CertificateService.SimpleServiceProtocol {
  let store: any Store
  let issuer: IssuerKeys
  let clock: any WallClock
  let logger: Logger

  func getIssuerKeys(request: Onewindow_V1_GetIssuerKeysRequest, context: ServerContext) async throws -> Onewindow_V1_GetIssuerKeysResponse {
    .with {
      $0.keys = issuer.published.sorted(by: { $0.key < $1.key }).map { id, key in
        .with {
          $0.keyID = id
          $0.publicKey = key.rawRepresentation
          if id == issuer.keyID { $0.createdAt = .init(issuer.createdAt) }
        }
      }
    }
  }

  func verifyCertificate(
    request: Onewindow_V1_VerifyCertificateRequest, context: ServerContext
  ) async throws -> Onewindow_V1_VerifyCertificateResponse {
    let today = CivilDate(clock.now())
    let stored: StoredCertificate?
    switch request.subject {
    case .number(let number)?:
      stored = try await store.certificates.certificate(number: number.trimmingWhitespace().uppercased())
      guard stored != nil else { return .with { $0.result = .notFound; $0.detail = "no certificate has this number" } }
    case .signed(let blob)?:
      guard blob.utf8.count <= 64 * 1024 else { throw ValidationError("signed", "is too long to be a certificate") }
      let payload: CertificatePayload
      do { payload = try SignedCertificate.verify(blob, keys: issuer.published) } catch {
        let result: Onewindow_V1_VerificationResult = switch error {
        case .malformed: .malformed
        case .unknownKey: .unknownKey
        case .badSignature: .badSignature
        }
        return .with { $0.result = result; $0.detail = error.description }
      }
      stored = try await store.certificates.certificate(number: payload.number)
      guard stored != nil else {
        return .with { $0.result = .notFound; $0.detail = "the signature is good but this platform has no record of the certificate" }
      }
    case nil:
      throw ValidationError("subject", "pass a certificate number or its signed form")
    }
    guard let stored else { throw StoreError.notFound("certificate") }
    let certificate = Onewindow_V1_Certificate(stored, today: today)
    return .with {
      $0.certificate = certificate
      switch certificate.status {
      case .revoked:
        $0.result = .revoked
        $0.detail = "revoked: \(stored.revocationReason)"
      case .expired:
        $0.result = .expired
        $0.detail = "expired on \(stored.payload.expiresOn?.description ?? "")"
      default:
        $0.result = .valid
        $0.detail = "valid: signed by \(stored.payload.issuerDepartmentName), key \(stored.payload.keyID)"
      }
    }
  }

  func listMyCertificates(
    request: Onewindow_V1_ListMyCertificatesRequest, context: ServerContext
  ) async throws -> Onewindow_V1_ListMyCertificatesResponse {
    let p = try RequestContext.require([.citizen, .enterprise])
    let today = CivilDate(clock.now())
    let certificates = try await store.certificates.certificates(holderID: p.accountID)
    return .with { $0.certificates = certificates.map { Onewindow_V1_Certificate($0, today: today) } }
  }

  func getCertificate(request: Onewindow_V1_GetCertificateRequest, context: ServerContext) async throws -> Onewindow_V1_Certificate {
    let p = try RequestContext.requirePrincipal()
    let certificate = try await visible(request.number, p)
    return Onewindow_V1_Certificate(certificate, today: CivilDate(clock.now()))
  }

  func revokeCertificate(request: Onewindow_V1_RevokeCertificateRequest, context: ServerContext) async throws -> Onewindow_V1_Certificate {
    let p = try RequestContext.require([.caseworker, .admin])
    let reason = try Check.text(request.reason, field: "reason", max: 500)
    let certificate = try await visible(request.number, p)
    if p.role == .caseworker && p.departmentCode != certificate.payload.issuerDepartmentCode {
      throw PermissionDenied("only the issuing department (\(certificate.payload.issuerDepartmentCode)) can revoke this certificate")
    }
    let now = clock.now()
    let revoked = try await store.certificates.revoke(
      number: certificate.payload.number, reason: reason,
      audit: AuditEvent(
        p, action: "certificate.revoke", targetType: "certificate", targetID: certificate.payload.number,
        subjectID: certificate.holderID, reason: reason),
      now: now)
    return Onewindow_V1_Certificate(revoked, today: CivilDate(now))
  }

  /// The certificate if `p` is its holder, a caseworker of the issuing department or an
  /// administrator; NOT_FOUND otherwise.
  func visible(_ number: String, _ p: Principal) async throws -> StoredCertificate {
    let notFound = StoreError.notFound("certificate '\(number)'")
    guard let c = try await store.certificates.certificate(number: number.trimmingWhitespace().uppercased()) else { throw notFound }
    switch p.role {
    case .admin: return c
    case .caseworker where p.departmentCode == c.payload.issuerDepartmentCode: return c
    default:
      guard c.holderID == p.accountID else { throw notFound }
      return c
    }
  }
}
