import Foundation
import OneWindowAPI
import OneWindowCore
import SwiftProtobuf

// Conversions between the wire messages and the core's value types. Enum values that are
// unspecified or unknown to this server are rejected here, at the edge.

extension Google_Protobuf_Timestamp {
  /// Whole milliseconds (what the store keeps), so a stored time does not come back with
  /// floating-point noise in its nanoseconds.
  init(_ date: Date) {
    let millis = (date.timeIntervalSince1970 * 1000).rounded()
    let seconds = (millis / 1000).rounded(.down)
    self.init(seconds: Int64(seconds), nanos: Int32(millis - seconds * 1000) * 1_000_000)
  }
}

extension Role {
  var proto: Onewindow_V1_Role {
    switch self {
    case .citizen: .citizen
    case .enterprise: .enterprise
    case .caseworker: .caseworker
    case .admin: .admin
    }
  }

  init(proto: Onewindow_V1_Role, field: String) throws(ValidationError) {
    switch proto {
    case .citizen: self = .citizen
    case .enterprise: self = .enterprise
    case .caseworker: self = .caseworker
    case .admin: self = .admin
    case .unspecified: throw ValidationError(field, "is required")
    case .UNRECOGNIZED(let n): throw ValidationError(field, "has unknown value \(n)")
    }
  }
}

extension Onewindow_V1_Account {
  init(_ a: Account) {
    self.init()
    id = a.id
    role = a.role.proto
    displayName = a.displayName
    trustLevel = Int32(a.trustLevel)
    phoneMasked = a.phone.map(Redact.phone) ?? ""
    idNumberMasked = a.idNumber.map(Redact.idNumber) ?? ""
    creditCode = a.creditCode ?? ""
    legalRepresentativeID = a.legalRepresentativeID ?? ""
    departmentCode = a.departmentCode ?? ""
    username = a.username ?? ""
    hasPassword_p = a.hasPassword
    createdAt = .init(a.createdAt)
  }
}

extension Onewindow_V1_Department {
  init(_ d: Department) {
    self.init()
    code = d.code
    name = d.name
  }
}

// MARK: - Catalog

extension ItemCategory {
  var proto: Onewindow_V1_ItemCategory {
    switch self {
    case .administrativeLicense: .administrativeLicense
    case .administrativePayment: .administrativePayment
    case .administrativeConfirmation: .administrativeConfirmation
    case .publicService: .publicService
    case .other: .other
    }
  }

  /// nil for UNSPECIFIED (meaning "any" in filters).
  static func from(proto: Onewindow_V1_ItemCategory, field: String) throws(ValidationError) -> ItemCategory? {
    switch proto {
    case .unspecified: nil
    case .administrativeLicense: .administrativeLicense
    case .administrativePayment: .administrativePayment
    case .administrativeConfirmation: .administrativeConfirmation
    case .publicService: .publicService
    case .other: .other
    case .UNRECOGNIZED(let n): throw ValidationError(field, "has unknown value \(n)")
    }
  }
}

extension ServiceTarget {
  var proto: Onewindow_V1_ServiceTarget {
    switch self {
    case .citizen: .citizen
    case .enterprise: .enterprise
    case .both: .both
    }
  }

  init(proto: Onewindow_V1_ServiceTarget, field: String) throws(ValidationError) {
    switch proto {
    case .citizen: self = .citizen
    case .enterprise: self = .enterprise
    case .both: self = .both
    case .unspecified: throw ValidationError(field, "is required")
    case .UNRECOGNIZED(let n): throw ValidationError(field, "has unknown value \(n)")
    }
  }
}

extension ItemStatus {
  var proto: Onewindow_V1_ItemStatus {
    switch self {
    case .draft: .draft
    case .published: .published
    case .withdrawn: .withdrawn
    }
  }
}

extension MaterialForm {
  var proto: Onewindow_V1_MaterialForm {
    switch self {
    case .original: .original
    case .copy: .copy
    case .electronic: .electronic
    }
  }

  init(proto: Onewindow_V1_MaterialForm, field: String) throws(ValidationError) {
    switch proto {
    case .original: self = .original
    case .copy: self = .copy
    case .electronic: self = .electronic
    case .unspecified: throw ValidationError(field, "is required")
    case .UNRECOGNIZED(let n): throw ValidationError(field, "has unknown value \(n)")
    }
  }
}

extension FormFieldType {
  var proto: Onewindow_V1_FormFieldType {
    switch self {
    case .text: .text
    case .integer: .integer
    case .decimal: .decimal
    case .boolean: .boolean
    case .date: .date
    case .phone: .phone
    case .idNumber: .idNumber
    case .choice: .choice
    }
  }

  init(proto: Onewindow_V1_FormFieldType, field: String) throws(ValidationError) {
    switch proto {
    case .text: self = .text
    case .integer: self = .integer
    case .decimal: self = .decimal
    case .boolean: self = .boolean
    case .date: self = .date
    case .phone: self = .phone
    case .idNumber: self = .idNumber
    case .choice: self = .choice
    case .unspecified: throw ValidationError(field, "is required")
    case .UNRECOGNIZED(let n): throw ValidationError(field, "has unknown value \(n)")
    }
  }
}

extension ServiceItemSpec {
  /// Decodes the wire form; enum checks only (limits are `validated(departments:)`'s job).
  init(proto p: Onewindow_V1_ServiceItemSpec) throws(ValidationError) {
    guard let category = try ItemCategory.from(proto: p.category, field: "spec.category") else {
      throw ValidationError("spec.category", "is required")
    }
    var materials: [Material] = []
    for (i, m) in p.materials.enumerated() {
      materials.append(Material(
        name: m.name, form: try MaterialForm(proto: m.form, field: "spec.materials[\(i)].form"),
        copies: Int(m.copies), notes: m.notes, ecertSubstitutable: m.ecertSubstitutable, required: m.required))
    }
    var fields: [FormField] = []
    for (i, f) in p.formSchema.fields.enumerated() {
      fields.append(FormField(
        name: f.name, label: f.label, type: try FormFieldType(proto: f.type, field: "spec.form_schema.fields[\(i)].type"),
        required: f.required, pattern: f.pattern, maxLength: Int(f.maxLength), options: f.options))
    }
    self.init(
      code: p.code, name: p.name, departmentCode: p.departmentCode, category: category,
      target: try ServiceTarget(proto: p.target, field: "spec.target"), summary: p.summary, legalBasis: p.legalBasis,
      acceptanceConditions: p.acceptanceConditions, materials: materials,
      processSteps: p.processSteps.map { ProcessStep(name: $0.name, departmentCode: $0.departmentCode, description: $0.description_p) },
      statutoryLimitDays: Int(p.statutoryLimitDays), promisedLimitDays: Int(p.promisedLimitDays),
      fees: p.fees.map { FeeItem(name: $0.name, amountFen: $0.amountFen, legalBasis: $0.legalBasis) },
      onlineDepth: Int(p.onlineDepth), onsiteVisits: Int(p.onsiteVisits), supportsAppointment: p.supportsAppointment,
      supportsCourierDelivery: p.supportsCourierDelivery, supportsOnlinePayment: p.supportsOnlinePayment,
      faq: p.faq.map { FAQEntry(question: $0.question, answer: $0.answer) }, formFields: fields,
      handlingLocation: p.handlingLocation, contactPhone: p.contactPhone,
      certificate: p.hasCertificate
        ? CertificateTemplate(type: p.certificate.type, validityYears: Int(p.certificate.validityYears), fields: p.certificate.fields)
        : nil)
  }

  var proto: Onewindow_V1_ServiceItemSpec {
    .with { p in
      p.code = code
      p.name = name
      p.departmentCode = departmentCode
      p.category = category.proto
      p.target = target.proto
      p.summary = summary
      p.legalBasis = legalBasis
      p.acceptanceConditions = acceptanceConditions
      p.materials = materials.map { m in
        .with {
          $0.name = m.name; $0.form = m.form.proto; $0.copies = Int32(m.copies); $0.notes = m.notes
          $0.ecertSubstitutable = m.ecertSubstitutable; $0.required = m.required
        }
      }
      p.processSteps = processSteps.map { s in
        .with { $0.name = s.name; $0.departmentCode = s.departmentCode; $0.description_p = s.description }
      }
      p.statutoryLimitDays = Int32(statutoryLimitDays)
      p.promisedLimitDays = Int32(promisedLimitDays)
      p.fees = fees.map { f in .with { $0.name = f.name; $0.amountFen = f.amountFen; $0.legalBasis = f.legalBasis } }
      p.onlineDepth = Int32(onlineDepth)
      p.onsiteVisits = Int32(onsiteVisits)
      p.supportsAppointment = supportsAppointment
      p.supportsCourierDelivery = supportsCourierDelivery
      p.supportsOnlinePayment = supportsOnlinePayment
      p.faq = faq.map { e in .with { $0.question = e.question; $0.answer = e.answer } }
      p.formSchema.fields = formFields.map { f in
        .with {
          $0.name = f.name; $0.label = f.label; $0.type = f.type.proto; $0.required = f.required
          $0.pattern = f.pattern; $0.maxLength = Int32(f.maxLength); $0.options = f.options
        }
      }
      p.handlingLocation = handlingLocation
      p.contactPhone = contactPhone
      if let certificate {
        p.certificate = .with {
          $0.type = certificate.type; $0.validityYears = Int32(certificate.validityYears); $0.fields = certificate.fields
        }
      }
    }
  }
}

extension Onewindow_V1_ServiceItem {
  init(_ item: ServiceItem, departmentName: String) {
    self.init()
    spec = item.spec.proto
    status = item.status.proto
    version = item.version
    createdAt = .init(item.createdAt)
    updatedAt = .init(item.updatedAt)
    if let p = item.publishedAt { publishedAt = .init(p) }
    self.departmentName = departmentName
  }
}

extension Onewindow_V1_ServiceItemSummary {
  init(_ item: ServiceItem, departmentName: String) {
    self.init()
    code = item.spec.code
    name = item.spec.name
    departmentCode = item.spec.departmentCode
    self.departmentName = departmentName
    category = item.spec.category.proto
    target = item.spec.target.proto
    onlineDepth = Int32(item.spec.onlineDepth)
    onsiteVisits = Int32(item.spec.onsiteVisits)
    totalFeeFen = item.spec.totalFeeFen
    promisedLimitDays = Int32(item.spec.promisedLimitDays)
    status = item.status.proto
    version = item.version
  }
}
