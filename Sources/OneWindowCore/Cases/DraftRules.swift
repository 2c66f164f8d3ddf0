#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A case draft as the applicant edits it offline: a record of the `case.drafts` sync
/// collection. Fields: `item_code` (string), `form` (map of form field name → value),
/// `materials` (map of the item's material name → an uploaded material id, or `cert:` and the
/// number of one of the applicant's e-certificates), `note` (string).
public struct CaseDraft: Sendable, Equatable {
  public enum MaterialChoice: Sendable, Equatable {
    case upload(materialID: String)
    case certificate(number: String)
  }

  public var itemCode: String
  public var form: [String: SyncValue]
  public var materials: [String: MaterialChoice]

  public static let certificatePrefix = "cert:"

  /// Reads the draft's fields; a missing item code or a malformed map is INVALID_ARGUMENT.
  public init(fields: [String: SyncValue]) throws(ValidationError) {
    guard case .string(let code)? = fields["item_code"] else {
      throw ValidationError("draft.item_code", "is required: set the code of the item to apply for")
    }
    itemCode = try ServiceItemSpec.validateCode(code, field: "draft.item_code")
    switch fields["form"] {
    case nil, .null?: form = [:]
    case .map(let entries)?: form = entries
    default: throw ValidationError("draft.form", "must be a map of form field name to value")
    }
    materials = [:]
    switch fields["materials"] {
    case nil, .null?: break
    case .map(let entries)?:
      for (name, value) in entries {
        guard case .string(let text) = value, !text.isEmpty else {
          throw ValidationError("draft.materials.\(name)", "must be a material id or cert:<certificate number>")
        }
        materials[name] = text.hasPrefix(Self.certificatePrefix)
          ? .certificate(number: String(text.dropFirst(Self.certificatePrefix.count)))
          : .upload(materialID: text)
      }
    default: throw ValidationError("draft.materials", "must be a map of material name to material id")
    }
  }
}

/// Submission checks against the item's form schema and material list (pure).
public enum DraftRules {
  /// The form as strings in canonical form, or the first field that breaks the item's schema.
  public static func validateForm(_ form: [String: SyncValue], schema: [FormField]) throws(ValidationError) -> [String: String] {
    let known = Set(schema.map(\.name))
    if let unknown = form.keys.sorted().first(where: { !known.contains($0) }) {
      throw ValidationError("draft.form.\(unknown)", "is not a field of this item's form")
    }
    var out: [String: String] = [:]
    for field in schema {
      let f = "draft.form.\(field.name)"
      let value = form[field.name] ?? .null
      if case .null = value {
        if field.required { throw ValidationError(f, "is required (\(field.label))") }
        continue
      }
      if case .string(let s) = value, s.trimmingWhitespace().isEmpty {
        if field.required { throw ValidationError(f, "is required (\(field.label))") }
        continue
      }
      out[field.name] = try canonical(value, for: field, f)
    }
    return out
  }

  static func canonical(_ value: SyncValue, for field: FormField, _ f: String) throws(ValidationError) -> String {
    switch field.type {
    case .text:
      guard case .string(let s) = value else { throw ValidationError(f, "must be text") }
      let text = try Check.text(s, field: f, max: field.maxLength > 0 ? field.maxLength : 2000)
      if !field.pattern.isEmpty {
        guard let regex = try? Regex(field.pattern), (try? regex.wholeMatch(in: text)) != nil else {
          throw ValidationError(f, "does not match the required format for \(field.label)")
        }
      }
      return text
    case .integer:
      switch value {
      case .int(let i): return String(i)
      case .string(let s) where Int64(s.trimmingWhitespace()) != nil: return String(Int64(s.trimmingWhitespace()) ?? 0)
      default: throw ValidationError(f, "must be a whole number")
      }
    case .decimal:
      switch value {
      case .int(let i): return String(i)
      case .double(let d) where d.isFinite: return String(d)
      case .string(let s) where Double(s.trimmingWhitespace())?.isFinite == true: return s.trimmingWhitespace()
      default: throw ValidationError(f, "must be a number")
      }
    case .boolean:
      guard case .bool(let b) = value else { throw ValidationError(f, "must be true or false") }
      return b ? "true" : "false"
    case .date:
      guard case .string(let s) = value, let day = CivilDate(s.trimmingWhitespace()) else {
        throw ValidationError(f, "must be a date like 2026-03-01")
      }
      return day.description
    case .phone:
      guard case .string(let s) = value else { throw ValidationError(f, "must be a mobile number") }
      return try PhoneNumber(s, field: f).value
    case .idNumber:
      guard case .string(let s) = value else { throw ValidationError(f, "must be a resident ID number") }
      do { return try ResidentIDNumber(s).value } catch { throw ValidationError(f, error.reason) }
    case .choice:
      guard case .string(let s) = value, field.options.contains(s.trimmingWhitespace()) else {
        throw ValidationError(f, "must be one of: \(field.options.joined(separator: ", "))")
      }
      return s.trimmingWhitespace()
    }
  }

  /// Checks materials supplied after a correction notice: at least one, every name on the
  /// item's list, e-certificates only where the item allows them.
  public static func validateSupplied(_ choices: [String: CaseDraft.MaterialChoice], item: ServiceItemSpec) throws(ValidationError) {
    guard !choices.isEmpty else {
      throw ValidationError("materials", "list the materials you supply (material name → material id)")
    }
    try checkNames(choices, item: item, field: "materials")
  }

  /// Every chosen name is on the item's list, and e-certificates stand in only where allowed.
  static func checkNames(_ choices: [String: CaseDraft.MaterialChoice], item: ServiceItemSpec, field: String) throws(ValidationError) {
    let byName = Dictionary(item.materials.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    for name in choices.keys.sorted() {
      guard let material = byName[name] else {
        throw ValidationError("\(field).\(name)", "is not a material of this item")
      }
      if case .certificate = choices[name], !material.ecertSubstitutable {
        throw ValidationError("\(field).\(name)", "must be a file: this item does not accept an e-certificate for it")
      }
    }
  }

  /// Checks the material choices against the item's list: every required material given,
  /// no unknown names, e-certificates only where the item allows them.
  public static func validateMaterials(_ choices: [String: CaseDraft.MaterialChoice], item: ServiceItemSpec) throws(ValidationError) {
    try checkNames(choices, item: item, field: "draft.materials")
    if let missing = item.materials.first(where: { $0.required && choices[$0.name] == nil }) {
      let all = item.materials.filter { $0.required && choices[$0.name] == nil }.map(\.name)
      throw ValidationError(
        "draft.materials.\(missing.name)", "is required; still missing: \(all.joined(separator: ", "))")
    }
  }
}
