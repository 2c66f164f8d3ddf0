extension ServiceItemSpec {
  /// Checks every documented limit and returns the normalised (trimmed) guide.
  /// `departments` are the known department codes; steps and the owner must name one of them.
  public func validated(departments: Set<String>) throws(ValidationError) -> ServiceItemSpec {
    var s = self
    s.code = try Self.validateCode(code)
    s.name = try Check.text(name, field: "spec.name", max: 100)
    s.departmentCode = departmentCode.trimmingWhitespace()
    guard departments.contains(s.departmentCode) else {
      throw ValidationError("spec.department_code", "unknown department '\(s.departmentCode)'")
    }
    s.summary = try Check.optionalText(summary, field: "spec.summary", max: 500)
    s.legalBasis = try Check.optionalText(legalBasis, field: "spec.legal_basis", max: 2000)
    try Check.count(acceptanceConditions, field: "spec.acceptance_conditions", max: 30)
    s.acceptanceConditions = try acceptanceConditions.enumerated().map { i, c throws(ValidationError) in
      try Check.text(c, field: "spec.acceptance_conditions[\(i)]", max: 500)
    }
    try Check.count(materials, field: "spec.materials", max: 50)
    s.materials = try materials.enumerated().map { i, m throws(ValidationError) in
      let f = "spec.materials[\(i)]"
      var m = m
      m.name = try Check.text(m.name, field: "\(f).name", max: 100)
      m.notes = try Check.optionalText(m.notes, field: "\(f).notes", max: 500)
      try Check.range(m.copies, field: "\(f).copies", 0...20)
      return m
    }
    try Check.count(processSteps, field: "spec.process_steps", max: 20, min: 1)
    s.processSteps = try processSteps.enumerated().map { i, p throws(ValidationError) in
      let f = "spec.process_steps[\(i)]"
      var p = p
      p.name = try Check.text(p.name, field: "\(f).name", max: 50)
      p.description = try Check.optionalText(p.description, field: "\(f).description", max: 500)
      p.departmentCode = p.departmentCode.trimmingWhitespace()
      guard departments.contains(p.departmentCode) else {
        throw ValidationError("\(f).department_code", "unknown department '\(p.departmentCode)'")
      }
      return p
    }
    try Check.range(statutoryLimitDays, field: "spec.statutory_limit_days", 1...365)
    try Check.range(promisedLimitDays, field: "spec.promised_limit_days", 1...statutoryLimitDays)
    try Check.count(fees, field: "spec.fees", max: 20)
    s.fees = try fees.enumerated().map { i, fee throws(ValidationError) in
      let f = "spec.fees[\(i)]"
      var fee = fee
      fee.name = try Check.text(fee.name, field: "\(f).name", max: 100)
      fee.legalBasis = try Check.optionalText(fee.legalBasis, field: "\(f).legal_basis", max: 500)
      try Check.range(fee.amountFen, field: "\(f).amount_fen", 1...100_000_000)
      return fee
    }
    try Check.range(onlineDepth, field: "spec.online_depth", 1...4)
    try Check.range(onsiteVisits, field: "spec.onsite_visits", 0...5)
    try Check.count(faq, field: "spec.faq", max: 50)
    s.faq = try faq.enumerated().map { i, e throws(ValidationError) in
      FAQEntry(
        question: try Check.text(e.question, field: "spec.faq[\(i)].question", max: 200),
        answer: try Check.text(e.answer, field: "spec.faq[\(i)].answer", max: 2000))
    }
    s.formFields = try Self.validateForm(formFields)
    s.handlingLocation = try Check.optionalText(handlingLocation, field: "spec.handling_location", max: 200)
    s.contactPhone = try Check.optionalText(contactPhone, field: "spec.contact_phone", max: 30)
    if var template = certificate {
      template.type = try Check.text(template.type, field: "spec.certificate.type", max: 50)
      try Check.range(template.validityYears, field: "spec.certificate.validity_years", 0...50)
      try Check.count(template.fields, field: "spec.certificate.fields", max: 30)
      let formNames = Set(s.formFields.map(\.name))
      for (i, name) in template.fields.enumerated() where !formNames.contains(name) {
        throw ValidationError("spec.certificate.fields[\(i)]", "names '\(name)', which is not a field of the form schema")
      }
      s.certificate = template
    }
    return s
  }

  /// Item codes: 3–64 characters of letters, digits, '-', '_' or '.'.
  public static func validateCode(_ raw: String, field: String = "spec.code") throws(ValidationError) -> String {
    let code = raw.trimmingWhitespace()
    guard (3...64).contains(code.utf8.count), code.utf8.allSatisfy(isCodeByte) else {
      throw ValidationError(field, "must be 3–64 characters of letters, digits, '-', '_' or '.'")
    }
    return code
  }

  static func isCodeByte(_ b: UInt8) -> Bool {
    (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39) || b == 0x2D || b == 0x5F || b == 0x2E
  }

  static func validateForm(_ fields: [FormField]) throws(ValidationError) -> [FormField] {
    try Check.count(fields, field: "spec.form_schema.fields", max: 100)
    var seen = Set<String>()
    return try fields.enumerated().map { i, field throws(ValidationError) in
      let f = "spec.form_schema.fields[\(i)]"
      var field = field
      field.name = field.name.trimmingWhitespace()
      let scalars = Array(field.name.unicodeScalars)
      guard (1...64).contains(scalars.count), let first = scalars.first, first.isASCIILetter,
            scalars.allSatisfy({ $0.isASCIILetter || ("0"..."9").contains($0) || $0 == "_" })
      else { throw ValidationError("\(f).name", "must be 1–64 characters: a letter, then letters, digits or '_'") }
      guard seen.insert(field.name).inserted else {
        throw ValidationError("\(f).name", "duplicates field '\(field.name)'")
      }
      field.label = try Check.text(field.label, field: "\(f).label", max: 50)
      try Check.range(field.maxLength, field: "\(f).max_length", 0...2000)
      if !field.pattern.isEmpty {
        try Check.text(field.pattern, field: "\(f).pattern", max: 200)
        guard field.type == .text else { throw ValidationError("\(f).pattern", "is allowed on text fields only") }
        do { _ = try Regex(field.pattern) } catch {
          throw ValidationError("\(f).pattern", "is not a valid regular expression")
        }
      }
      if field.type == .choice {
        try Check.count(field.options, field: "\(f).options", max: 50, min: 1)
        field.options = try field.options.enumerated().map { j, o throws(ValidationError) in
          try Check.text(o, field: "\(f).options[\(j)]", max: 50)
        }
      } else if !field.options.isEmpty {
        throw ValidationError("\(f).options", "are allowed on choice fields only")
      }
      return field
    }
  }
}

extension Unicode.Scalar {
  var isASCIILetter: Bool { ("a"..."z").contains(self) || ("A"..."Z").contains(self) }
}
