#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// What an account may do. Raw values are stored in the database and never renumbered.
public enum Role: String, Sendable, Codable, CaseIterable {
  case citizen
  case enterprise
  case caseworker
  case admin

  public var isStaff: Bool { self == .caseworker || self == .admin }
}

/// Identity assurance (可信等级). 2: self-declared; 3: checked against the population registry.
public enum TrustLevel {
  public static let selfDeclared = 2
  public static let registryVerified = 3
}

/// An account as the rest of the system sees it: no secrets, personal data kept for display
/// through masking only.
public struct Account: Sendable, Equatable {
  public var id: String
  public var role: Role
  public var displayName: String
  public var trustLevel: Int
  public var phone: String?
  public var idNumber: String?
  public var creditCode: String?
  public var legalRepresentativeID: String?
  public var departmentCode: String?
  public var username: String?
  public var hasPassword: Bool
  public var createdAt: Date

  public init(
    id: String, role: Role, displayName: String, trustLevel: Int = TrustLevel.selfDeclared,
    phone: String? = nil, idNumber: String? = nil, creditCode: String? = nil,
    legalRepresentativeID: String? = nil, departmentCode: String? = nil, username: String? = nil,
    hasPassword: Bool, createdAt: Date
  ) {
    self.id = id
    self.role = role
    self.displayName = displayName
    self.trustLevel = trustLevel
    self.phone = phone
    self.idNumber = idNumber
    self.creditCode = creditCode
    self.legalRepresentativeID = legalRepresentativeID
    self.departmentCode = departmentCode
    self.username = username
    self.hasPassword = hasPassword
    self.createdAt = createdAt
  }
}

/// The authenticated caller of one RPC, resolved from its access token.
public struct Principal: Sendable, Equatable {
  public var accountID: String
  public var role: Role
  public var departmentCode: String?
  public var trustLevel: Int
  /// The login (session family) the access token belongs to; logout revokes it.
  public var sessionFamilyID: String

  public init(accountID: String, role: Role, departmentCode: String?, trustLevel: Int, sessionFamilyID: String) {
    self.accountID = accountID
    self.role = role
    self.departmentCode = departmentCode
    self.trustLevel = trustLevel
    self.sessionFamilyID = sessionFamilyID
  }
}

/// Rules for names and usernames shared by registration and staff creation.
public enum AccountRules {
  public static func personName(_ raw: String, field: String = "name") throws(ValidationError) -> String {
    try Check.text(raw, field: field, max: 50)
  }

  public static func enterpriseName(_ raw: String) throws(ValidationError) -> String {
    try Check.text(raw, field: "name", max: 100)
  }

  /// 3–32 characters: lowercase letters, digits, '.', '_' or '-', starting with a letter.
  public static func username(_ raw: String) throws(ValidationError) -> String {
    let text = raw.trimmingWhitespace()
    let chars = Array(text.unicodeScalars)
    guard (3...32).contains(chars.count) else { throw ValidationError("username", "must be 3–32 characters") }
    guard let first = chars.first, ("a"..."z").contains(first),
          chars.allSatisfy({ ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "." || $0 == "_" || $0 == "-" })
    else { throw ValidationError("username", "may use lowercase letters, digits, '.', '_' and '-', starting with a letter") }
    return text
  }
}
