#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A department that owns items and handles process steps.
public struct Department: Sendable, Equatable, Codable {
  public var code: String
  public var name: String

  public init(code: String, name: String) {
    self.code = code
    self.name = name
  }

  /// Code: 2–32 of `[a-z0-9-]`; name: 1–50 characters.
  public static func validated(code: String, name: String) throws(ValidationError) -> Department {
    let code = code.trimmingWhitespace()
    guard (2...32).contains(code.utf8.count),
          code.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D })
    else { throw ValidationError("department.code", "must be 2–32 characters of lowercase letters, digits and '-'") }
    return Department(code: code, name: try Check.text(name, field: "department.name", max: 50))
  }
}

/// Legal category of an item (事项类型). Raw values are persisted.
public enum ItemCategory: String, Sendable, Codable, CaseIterable {
  case administrativeLicense, administrativePayment, administrativeConfirmation, publicService, other
}

public enum ServiceTarget: String, Sendable, Codable, CaseIterable {
  case citizen, enterprise, both
}

/// Publication state. draft → published ⇄ withdrawn.
public enum ItemStatus: String, Sendable, Codable {
  case draft, published, withdrawn
}

public enum MaterialForm: String, Sendable, Codable {
  case original, copy, electronic
}

public enum FormFieldType: String, Sendable, Codable {
  case text, integer, decimal, boolean, date, phone, idNumber, choice
}

public struct Material: Sendable, Equatable, Codable {
  public var name: String
  public var form: MaterialForm
  public var copies: Int
  public var notes: String
  public var ecertSubstitutable: Bool
  public var required: Bool

  public init(name: String, form: MaterialForm, copies: Int, notes: String, ecertSubstitutable: Bool, required: Bool) {
    self.name = name; self.form = form; self.copies = copies; self.notes = notes
    self.ecertSubstitutable = ecertSubstitutable; self.required = required
  }
}

public struct ProcessStep: Sendable, Equatable, Codable {
  public var name: String
  public var departmentCode: String
  public var description: String

  public init(name: String, departmentCode: String, description: String) {
    self.name = name; self.departmentCode = departmentCode; self.description = description
  }
}

public struct FeeItem: Sendable, Equatable, Codable {
  public var name: String
  /// Amount in fen.
  public var amountFen: Int64
  public var legalBasis: String

  public init(name: String, amountFen: Int64, legalBasis: String) {
    self.name = name; self.amountFen = amountFen; self.legalBasis = legalBasis
  }
}

public struct FAQEntry: Sendable, Equatable, Codable {
  public var question: String
  public var answer: String

  public init(question: String, answer: String) {
    self.question = question; self.answer = answer
  }
}

public struct FormField: Sendable, Equatable, Codable {
  public var name: String
  public var label: String
  public var type: FormFieldType
  public var required: Bool
  public var pattern: String
  public var maxLength: Int
  public var options: [String]

  public init(name: String, label: String, type: FormFieldType, required: Bool, pattern: String, maxLength: Int, options: [String]) {
    self.name = name; self.label = label; self.type = type; self.required = required
    self.pattern = pattern; self.maxLength = maxLength; self.options = options
  }
}

/// The full guide of a service item (办事指南) as administrators write it.
public struct ServiceItemSpec: Sendable, Equatable, Codable {
  public var code: String
  public var name: String
  public var departmentCode: String
  public var category: ItemCategory
  public var target: ServiceTarget
  public var summary: String
  public var legalBasis: String
  public var acceptanceConditions: [String]
  public var materials: [Material]
  public var processSteps: [ProcessStep]
  public var statutoryLimitDays: Int
  public var promisedLimitDays: Int
  public var fees: [FeeItem]
  public var onlineDepth: Int
  public var onsiteVisits: Int
  public var supportsAppointment: Bool
  public var supportsCourierDelivery: Bool
  public var supportsOnlinePayment: Bool
  public var faq: [FAQEntry]
  public var formFields: [FormField]
  public var handlingLocation: String
  public var contactPhone: String
  /// Set when approval issues an electronic certificate (licence).
  public var certificate: CertificateTemplate?

  public init(
    code: String, name: String, departmentCode: String, category: ItemCategory, target: ServiceTarget,
    summary: String = "", legalBasis: String = "", acceptanceConditions: [String] = [], materials: [Material] = [],
    processSteps: [ProcessStep], statutoryLimitDays: Int, promisedLimitDays: Int, fees: [FeeItem] = [],
    onlineDepth: Int, onsiteVisits: Int, supportsAppointment: Bool = false, supportsCourierDelivery: Bool = false,
    supportsOnlinePayment: Bool = false, faq: [FAQEntry] = [], formFields: [FormField] = [],
    handlingLocation: String = "", contactPhone: String = "", certificate: CertificateTemplate? = nil
  ) {
    self.code = code; self.name = name; self.departmentCode = departmentCode; self.category = category
    self.target = target; self.summary = summary; self.legalBasis = legalBasis
    self.acceptanceConditions = acceptanceConditions; self.materials = materials; self.processSteps = processSteps
    self.statutoryLimitDays = statutoryLimitDays; self.promisedLimitDays = promisedLimitDays; self.fees = fees
    self.onlineDepth = onlineDepth; self.onsiteVisits = onsiteVisits; self.supportsAppointment = supportsAppointment
    self.supportsCourierDelivery = supportsCourierDelivery; self.supportsOnlinePayment = supportsOnlinePayment
    self.faq = faq; self.formFields = formFields; self.handlingLocation = handlingLocation
    self.contactPhone = contactPhone
    self.certificate = certificate
  }

  /// Total of all fee items in fen; 0 means free.
  public var totalFeeFen: Int64 { fees.reduce(0) { $0 + $1.amountFen } }

  /// The text that full-text search indexes besides the name.
  public var searchableBody: String {
    var parts = [summary]
    parts += acceptanceConditions
    parts += materials.map(\.name)
    parts += faq.flatMap { [$0.question, $0.answer] }
    return parts.joined(separator: "\n")
  }
}

/// A stored item: the guide plus its publication state and version.
public struct ServiceItem: Sendable, Equatable {
  public var spec: ServiceItemSpec
  public var status: ItemStatus
  public var version: Int64
  public var createdAt: Date
  public var updatedAt: Date
  public var publishedAt: Date?

  public init(spec: ServiceItemSpec, status: ItemStatus, version: Int64, createdAt: Date, updatedAt: Date, publishedAt: Date?) {
    self.spec = spec; self.status = status; self.version = version
    self.createdAt = createdAt; self.updatedAt = updatedAt; self.publishedAt = publishedAt
  }
}
