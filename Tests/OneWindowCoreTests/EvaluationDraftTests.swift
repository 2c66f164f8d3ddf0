import Foundation
import Testing
@testable import OneWindowCore

// MARK: - Drafts from sync fields

@Suite struct CaseDraftTests {
  @Test func readsItemCodeFormAndMaterialChoices() throws {
    let draft = try CaseDraft(fields: [
      "item_code": .string("  SC-FOOD-0001 "),
      "form": .map(["shop_name": .string("老王面馆"), "staff": .int(3)]),
      "materials": .map(["营业执照": .string("cert:GS-2026-0001"), "场所平面图": .string("01JABCDEF")]),
      "note": .string("ignored here"),
    ])
    #expect(draft.itemCode == "SC-FOOD-0001")
    #expect(draft.form == ["shop_name": .string("老王面馆"), "staff": .int(3)])
    #expect(draft.materials == ["营业执照": .certificate(number: "GS-2026-0001"), "场所平面图": .upload(materialID: "01JABCDEF")])
  }

  @Test func formAndMaterialsMayBeAbsentOrNull() throws {
    let bare = try CaseDraft(fields: ["item_code": .string("SC-FOOD-0001")])
    #expect(bare.form.isEmpty && bare.materials.isEmpty)
    let nulls = try CaseDraft(fields: ["item_code": .string("SC-FOOD-0001"), "form": .null, "materials": .null])
    #expect(nulls.form.isEmpty && nulls.materials.isEmpty)
  }

  @Test func malformedDraftsAreInvalid() {
    func field(of fields: [String: SyncValue]) -> String? {
      do {
        _ = try CaseDraft(fields: fields)
        return nil
      } catch { return error.field }
    }
    #expect(field(of: [:]) == "draft.item_code")
    #expect(field(of: ["item_code": .int(1)]) == "draft.item_code")
    #expect(field(of: ["item_code": .string("a/b")]) == "draft.item_code")
    #expect(field(of: ["item_code": .string("ab")]) == "draft.item_code")
    #expect(field(of: ["item_code": .string("SC-1"), "form": .string("x")]) == "draft.form")
    #expect(field(of: ["item_code": .string("SC-1"), "form": .list([])]) == "draft.form")
    #expect(field(of: ["item_code": .string("SC-1"), "materials": .list([.string("x")])]) == "draft.materials")
    #expect(field(of: ["item_code": .string("SC-1"), "materials": .map(["营业执照": .string("")])]) == "draft.materials.营业执照")
    #expect(field(of: ["item_code": .string("SC-1"), "materials": .map(["营业执照": .int(5)])]) == "draft.materials.营业执照")
  }
}

// MARK: - Form validation

let draftSchema: [FormField] = [
  FormField(name: "shop_name", label: "店名", type: .text, required: true, pattern: "", maxLength: 10, options: []),
  FormField(name: "postcode", label: "邮编", type: .text, required: true, pattern: "[0-9]{6}", maxLength: 0, options: []),
  FormField(name: "staff", label: "从业人数", type: .integer, required: true, pattern: "", maxLength: 0, options: []),
  FormField(name: "area", label: "经营面积", type: .decimal, required: true, pattern: "", maxLength: 0, options: []),
  FormField(name: "chain", label: "连锁经营", type: .boolean, required: true, pattern: "", maxLength: 0, options: []),
  FormField(name: "opened_on", label: "开业日期", type: .date, required: true, pattern: "", maxLength: 0, options: []),
  FormField(name: "mobile", label: "联系电话", type: .phone, required: true, pattern: "", maxLength: 0, options: []),
  FormField(name: "legal_id", label: "法人身份证号", type: .idNumber, required: true, pattern: "", maxLength: 0, options: []),
  FormField(name: "kind", label: "经营类别", type: .choice, required: true, pattern: "", maxLength: 0, options: ["餐饮", "零售"]),
  FormField(name: "remark", label: "备注", type: .text, required: false, pattern: "", maxLength: 0, options: []),
]

let validDraftForm: [String: SyncValue] = [
  "shop_name": .string(" 老王面馆 "), "postcode": .string("100020"), "staff": .int(12), "area": .double(85.5),
  "chain": .bool(false), "opened_on": .string("2026-03-01"), "mobile": .string("13812345678"),
  "legal_id": .string("11010519491231002X"), "kind": .string("餐饮"),
]

@Suite struct DraftFormTests {
  /// The field the error names after applying `changes` (nil value removes the key) to a valid form.
  func failingField(_ changes: [String: SyncValue?]) -> String? {
    var form = validDraftForm
    for (k, v) in changes { form[k] = v }
    do {
      _ = try DraftRules.validateForm(form, schema: draftSchema)
      return nil
    } catch { return error.field }
  }

  func canonical(_ name: String, _ value: SyncValue) throws -> String? {
    var form = validDraftForm
    form[name] = value
    return try DraftRules.validateForm(form, schema: draftSchema)[name]
  }

  @Test func aValidFormComesBackInCanonicalForm() throws {
    let out = try DraftRules.validateForm(validDraftForm, schema: draftSchema)
    #expect(out == [
      "shop_name": "老王面馆", "postcode": "100020", "staff": "12", "area": "85.5", "chain": "false",
      "opened_on": "2026-03-01", "mobile": "13812345678", "legal_id": "11010519491231002X", "kind": "餐饮",
    ])
  }

  @Test func unknownFieldsAreRefusedFirstInNameOrder() {
    #expect(throws: ValidationError("draft.form.bogus", "is not a field of this item's form")) {
      var form = validDraftForm
      form["bogus"] = .string("x")
      form["zzz"] = .string("y")
      return try DraftRules.validateForm(form, schema: draftSchema)
    }
  }

  @Test func requiredFieldsMustBeGiven() {
    #expect(throws: ValidationError("draft.form.shop_name", "is required (店名)")) {
      var form = validDraftForm
      form["shop_name"] = nil
      return try DraftRules.validateForm(form, schema: draftSchema)
    }
    #expect(failingField(["shop_name": .null]) == "draft.form.shop_name")
    #expect(failingField(["shop_name": .string(" \u{3000} ")]) == "draft.form.shop_name")
    #expect(failingField(["kind": nil]) == "draft.form.kind")
    #expect(failingField(["chain": .null]) == "draft.form.chain")
  }

  @Test func optionalFieldsMayBeAbsentNullOrBlank() throws {
    for remark in [SyncValue.null, .string(""), .string("   ")] {
      #expect(try canonical("remark", remark) == nil)
    }
    #expect(try canonical("remark", .string(" 第二家分店 ")) == "第二家分店")
  }

  @Test func textFieldsHonourMaxLengthAndWholeMatchPattern() throws {
    #expect(try canonical("shop_name", .string("一二三四五六七八九十")) == "一二三四五六七八九十")  // 10 characters
    #expect(failingField(["shop_name": .string("一二三四五六七八九十一")]) == "draft.form.shop_name")
    #expect(failingField(["shop_name": .int(5)]) == "draft.form.shop_name")
    #expect(failingField(["postcode": .string("10002")]) == "draft.form.postcode")
    #expect(failingField(["postcode": .string("1000201")]) == "draft.form.postcode", "the pattern must match the whole value")
    #expect(failingField(["postcode": .string("10002a")]) == "draft.form.postcode")
    #expect(try canonical("postcode", .string(" 100020 ")) == "100020")
  }

  @Test func integers() throws {
    #expect(try canonical("staff", .int(-3)) == "-3")
    #expect(try canonical("staff", .string("42")) == "42")
    #expect(try canonical("staff", .string(" 042 ")) == "42")
    #expect(failingField(["staff": .string("12a")]) == "draft.form.staff")
    #expect(failingField(["staff": .string("1.5")]) == "draft.form.staff")
    #expect(failingField(["staff": .double(3)]) == "draft.form.staff")
    #expect(failingField(["staff": .bool(true)]) == "draft.form.staff")
  }

  @Test func decimals() throws {
    #expect(try canonical("area", .int(85)) == "85")
    #expect(try canonical("area", .double(0.25)) == "0.25")
    #expect(try canonical("area", .string(" 85.50 ")) == "85.50")
    #expect(failingField(["area": .double(.nan)]) == "draft.form.area")
    #expect(failingField(["area": .double(.infinity)]) == "draft.form.area")
    #expect(failingField(["area": .string("inf")]) == "draft.form.area")
    #expect(failingField(["area": .string("八十五")]) == "draft.form.area")
    #expect(failingField(["area": .bool(true)]) == "draft.form.area")
  }

  @Test func booleans() throws {
    #expect(try canonical("chain", .bool(true)) == "true")
    #expect(try canonical("chain", .bool(false)) == "false")
    #expect(failingField(["chain": .string("true")]) == "draft.form.chain")
    #expect(failingField(["chain": .int(1)]) == "draft.form.chain")
  }

  @Test func dates() throws {
    #expect(try canonical("opened_on", .string(" 2024-02-29 ")) == "2024-02-29")
    #expect(failingField(["opened_on": .string("2026-02-29")]) == "draft.form.opened_on")
    #expect(failingField(["opened_on": .string("2026/03/01")]) == "draft.form.opened_on")
    #expect(failingField(["opened_on": .string("2026-3-1")]) == "draft.form.opened_on")
    #expect(failingField(["opened_on": .timestamp(1_800_000_000_000)]) == "draft.form.opened_on")
  }

  @Test func phones() throws {
    #expect(try canonical("mobile", .string("+86 138-1234-5678")) == "13812345678")
    #expect(failingField(["mobile": .string("12812345678")]) == "draft.form.mobile")
    #expect(failingField(["mobile": .string("1381234567")]) == "draft.form.mobile")
    #expect(failingField(["mobile": .string("010-12345678")]) == "draft.form.mobile")
    #expect(failingField(["mobile": .int(13_812_345_678)]) == "draft.form.mobile")
  }

  @Test func residentIDNumbers() throws {
    #expect(try canonical("legal_id", .string("11010519491231002x")) == "11010519491231002X")
    // The wrong check character, an impossible birth date, the wrong length.
    #expect(failingField(["legal_id": .string("110105194912310021")]) == "draft.form.legal_id")
    #expect(failingField(["legal_id": .string("110105194913310028")]) == "draft.form.legal_id")
    #expect(failingField(["legal_id": .string("11010519491231002")]) == "draft.form.legal_id")
    #expect(failingField(["legal_id": .int(110_105_194_912_310_021)]) == "draft.form.legal_id")
  }

  @Test func choices() throws {
    #expect(try canonical("kind", .string(" 零售 ")) == "零售")
    #expect(failingField(["kind": .string("其他")]) == "draft.form.kind")
    #expect(failingField(["kind": .int(0)]) == "draft.form.kind")
  }
}

// MARK: - Material choices

@Suite struct DraftMaterialTests {
  let item: ServiceItemSpec = {
    var spec = wfItem()
    spec.materials = [
      Material(name: "营业执照", form: .electronic, copies: 1, notes: "", ecertSubstitutable: true, required: true),
      Material(name: "场所平面图", form: .copy, copies: 1, notes: "", ecertSubstitutable: false, required: true),
      Material(name: "法人身份证", form: .copy, copies: 1, notes: "", ecertSubstitutable: true, required: true),
      Material(name: "委托书", form: .original, copies: 1, notes: "", ecertSubstitutable: false, required: false),
    ]
    return spec
  }()

  @Test func everyRequiredMaterialGivenPasses() throws {
    try DraftRules.validateMaterials(
      ["营业执照": .certificate(number: "GS-1"), "场所平面图": .upload(materialID: "m1"), "法人身份证": .upload(materialID: "m2")],
      item: item)
    try DraftRules.validateMaterials(
      [
        "营业执照": .upload(materialID: "m0"), "场所平面图": .upload(materialID: "m1"), "法人身份证": .certificate(number: "ID-1"),
        "委托书": .upload(materialID: "m3"),
      ], item: item)
  }

  @Test func theMissingErrorListsEveryMissingMaterial() {
    #expect(throws: ValidationError("draft.materials.营业执照", "is required; still missing: 营业执照, 法人身份证")) {
      try DraftRules.validateMaterials(["场所平面图": .upload(materialID: "m1")], item: item)
    }
    #expect(throws: ValidationError("draft.materials.营业执照", "is required; still missing: 营业执照, 场所平面图, 法人身份证")) {
      try DraftRules.validateMaterials([:], item: item)
    }
  }

  @Test func unknownMaterialNamesAreRefused() {
    #expect(throws: ValidationError("draft.materials.户口簿", "is not a material of this item")) {
      try DraftRules.validateMaterials(
        ["营业执照": .upload(materialID: "m0"), "场所平面图": .upload(materialID: "m1"), "法人身份证": .upload(materialID: "m2"),
         "户口簿": .upload(materialID: "m9")], item: item)
    }
  }

  @Test func eCertificatesOnlyWhereTheItemAllowsThem() {
    #expect(throws: ValidationError("draft.materials.场所平面图", "must be a file: this item does not accept an e-certificate for it")) {
      try DraftRules.validateMaterials(
        ["营业执照": .upload(materialID: "m0"), "场所平面图": .certificate(number: "X-1"), "法人身份证": .upload(materialID: "m2")],
        item: item)
    }
    #expect(throws: ValidationError.self) {
      try DraftRules.validateMaterials(
        ["营业执照": .upload(materialID: "m0"), "场所平面图": .upload(materialID: "m1"), "法人身份证": .upload(materialID: "m2"),
         "委托书": .certificate(number: "X-2")], item: item)
    }
  }
}

// MARK: - Upload headers

@Suite struct MaterialRulesTests {
  let sha = String(repeating: "ab", count: 32)

  func headerField(name: String = "scan.pdf", type: String = "application/pdf", size: Int64 = 1000, sha256: String? = nil,
                   max: Int64 = MaterialRules.defaultMaxMaterialBytes) -> String? {
    do {
      _ = try MaterialRules.header(fileName: name, contentType: type, size: size, sha256: sha256 ?? sha, maxBytes: max)
      return nil
    } catch { return error.field }
  }

  @Test func aValidHeaderIsNormalised() throws {
    let h = try MaterialRules.header(
      fileName: " 营业执照 扫描件.PDF ", contentType: " Application/PDF ", size: 1234, sha256: sha.uppercased(), maxBytes: 5000)
    #expect(h == MaterialRules.Header(fileName: "营业执照 扫描件.PDF", contentType: "application/pdf", size: 1234, sha256: sha))
    for type in ["image/jpeg", "image/png", "application/ofd"] { #expect(headerField(type: type) == nil, "\(type)") }
  }

  @Test func onlyAcceptedContentTypes() {
    for type in ["application/zip", "text/html", "application/x-msdownload", "", "image/gif", "application/pdf; charset=x"] {
      #expect(headerField(type: type) == "header.content_type", "\(type)")
    }
  }

  @Test func sizeMustBePositiveAndWithinTheLimit() {
    #expect(headerField(size: 0) == "header.size")
    #expect(headerField(size: -1) == "header.size")
    #expect(headerField(size: 5000, max: 5000) == nil)
    #expect(headerField(size: 5001, max: 5000) == "header.size")
    #expect(headerField(size: MaterialRules.defaultMaxMaterialBytes + 1) == "header.size")
  }

  @Test func sha256MustBe64HexCharacters() {
    #expect(headerField(sha256: String(sha.dropLast())) == "header.sha256")
    #expect(headerField(sha256: sha + "a") == "header.sha256")
    #expect(headerField(sha256: String(repeating: "g", count: 64)) == "header.sha256")
    #expect(headerField(sha256: "") == "header.sha256")
    #expect(headerField(sha256: String(repeating: "é", count: 32)) == "header.sha256")
  }

  @Test func fileNamesHaveNoDirectories() {
    #expect(headerField(name: "a/b.pdf") == "header.file_name")
    #expect(headerField(name: "../../etc/passwd") == "header.file_name")
    #expect(headerField(name: "C:\\Windows\\x.pdf") == "header.file_name")
    #expect(headerField(name: "") == "header.file_name")
    #expect(headerField(name: "   ") == "header.file_name")
    #expect(headerField(name: String(repeating: "文", count: 201)) == "header.file_name")
    #expect(headerField(name: "a\u{0}.pdf") == "header.file_name")
  }

  @Test func magicBytesMatchTheDeclaredType() {
    let pdf = Array("%PDF-1.7\n%âãÏÓ".utf8)
    let png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D]
    let jpeg: [UInt8] = [0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 0x4A, 0x46]
    let ofd: [UInt8] = [0x50, 0x4B, 0x03, 0x04, 0x14, 0x00]
    let exe: [UInt8] = [0x4D, 0x5A, 0x90, 0x00]
    let samples: [String: [UInt8]] = ["application/pdf": pdf, "image/png": png, "image/jpeg": jpeg, "application/ofd": ofd]
    for (type, bytes) in samples {
      #expect(MaterialRules.matchesContentType(bytes, contentType: type), "\(type)")
      for (other, _) in samples where other != type {
        #expect(!MaterialRules.matchesContentType(bytes, contentType: other), "\(type) bytes declared as \(other)")
      }
      #expect(!MaterialRules.matchesContentType(exe, contentType: type))
      #expect(!MaterialRules.matchesContentType([], contentType: type))
      // A prefix shorter than the signature does not match.
      let magic = MaterialRules.contentTypes[type]!
      #expect(!MaterialRules.matchesContentType(Array(magic.dropLast()), contentType: type))
      #expect(MaterialRules.matchesContentType(magic, contentType: type))
    }
    // A PNG signature with one byte changed (the CRLF check bytes) is not a PNG.
    var brokenPNG = png
    brokenPNG[4] = 0x0A
    #expect(!MaterialRules.matchesContentType(brokenPNG, contentType: "image/png"))
    #expect(!MaterialRules.matchesContentType(pdf, contentType: "text/plain"))
  }
}

// MARK: - Evaluations (好差评)

let evalNow = wfTime("2026-09-30")

func evalCase(_ state: CaseState = .completed) -> CaseRecord { wfRecord(state: state, acceptedOn: "2026-09-18") }

@Suite struct EvaluationRateTests {
  @Test func onlyFinishedOrRejectedCasesCanBeRated() throws {
    let allowed: Set<CaseState> = [.completed, .resultDelivering, .resultDelivered, .rejected]
    for state in CaseState.allCases {
      #expect(EvaluationRules.canRate(state) == allowed.contains(state), "\(state)")
      if allowed.contains(state) {
        let e = try EvaluationRules.rate(evalCase(state), level: 5, indicators: [:], text: "", now: evalNow, calendar: wfCalendar2026)
        #expect(e.status == .closed)
      } else {
        #expect(throws: PreconditionFailed.self, "\(state)") {
          try EvaluationRules.rate(evalCase(state), level: 5, indicators: [:], text: "", now: evalNow, calendar: wfCalendar2026)
        }
      }
    }
  }

  @Test func oneEvaluationPerCase() {
    var r = evalCase()
    r.evaluated = true
    #expect(throws: PreconditionFailed.self) {
      try EvaluationRules.rate(r, level: 5, indicators: [:], text: "", now: evalNow, calendar: wfCalendar2026)
    }
  }

  @Test func levelsAndIndicatorsAreValidated() {
    func field(level: Int = 4, indicators: [String: Int] = [:], text: String = "") -> String? {
      do {
        _ = try EvaluationRules.rate(evalCase(), level: level, indicators: indicators, text: text, now: evalNow, calendar: wfCalendar2026)
        return nil
      } catch let error as ValidationError { return error.field } catch { return "unexpected \(error)" }
    }
    #expect(field(level: 0) == "level")
    #expect(field(level: 6) == "level")
    #expect(field(level: -1) == "level")
    #expect(field(indicators: ["speed": 5]) == "indicators.speed")
    #expect(field(indicators: ["overall": 0]) == "indicators.overall")
    #expect(field(indicators: ["efficiency": 6]) == "indicators.efficiency")
    #expect(field(text: String(repeating: "差", count: 1001)) == "text")
    #expect(field(indicators: Dictionary(uniqueKeysWithValues: EvaluationRules.indicators.map { ($0, 3) })) == nil)
    for level in 1...5 { #expect(field(level: level) == nil) }
  }

  @Test func aGoodRatingIsClosedAndCarriesTheCaseDetails() throws {
    let e = try EvaluationRules.rate(
      evalCase(), level: 3, indicators: ["overall": 3, "efficiency": 4], text: " 还行 ", now: evalNow, calendar: wfCalendar2026)
    #expect(e.status == .closed)
    #expect(e.rectificationDue == nil)
    #expect(!e.isBad)
    #expect(e.caseID == "case-1" && e.trackingCode == "TC-1" && e.applicantID == "acct-applicant")
    #expect(e.departmentCode == "shichang" && e.itemCode == "SC-FOOD-0001")
    #expect(e.text == "还行")
    #expect(e.indicators == ["overall": 3, "efficiency": 4])
    #expect(e.createdAt == evalNow)
    #expect(e.version == 1)
  }

  @Test func aBadRatingOpensRectificationDueInTenWorkingDays() throws {
    for level in [1, 2] {
      let e = try EvaluationRules.rate(evalCase(), level: level, indicators: [:], text: "太慢", now: evalNow, calendar: wfCalendar2026)
      #expect(e.status == .rectifying)
      #expect(e.isBad)
      // From Wednesday 30 September 2026: 8, 9, Sat 10 (make-up), 12–16, 19, 20 October.
      #expect(e.rectificationDue == day("2026-10-20"))
    }
    let plain = try EvaluationRules.rate(evalCase(), level: 1, indicators: [:], text: "", now: wfTime("2026-11-23"), calendar: wfPlainCalendar)
    #expect(plain.rectificationDue == day("2026-12-07"))
    let custom = try EvaluationRules.rate(
      evalCase(), level: 2, indicators: [:], text: "", now: wfTime("2026-11-23"), calendar: wfPlainCalendar, rectificationDays: 3)
    #expect(custom.rectificationDue == day("2026-11-26"))
  }

  @Test func aMultiDepartmentCaseIsRatedForTheDepartmentOfItsCurrentStep() throws {
    let r = wfRecord(state: .completed, acceptedOn: "2026-09-18", departments: ["shichang", "weijian"], currentStep: 1)
    let e = try EvaluationRules.rate(r, level: 4, indicators: [:], text: "", now: evalNow, calendar: wfCalendar2026)
    #expect(e.departmentCode == "weijian")
  }
}

@Suite struct EvaluationFollowUpTests {
  func bad(level: Int = 1) throws -> Evaluation {
    try EvaluationRules.rate(evalCase(), level: level, indicators: [:], text: "太慢", now: evalNow, calendar: wfCalendar2026)
  }

  @Test func respondingOnTimeAndLate() throws {
    let e = try bad()
    // 23:00 CST on the due day is still on time.
    let onTime = try EvaluationRules.respond(e, response: " 已整改 ", now: wfTime("2026-10-20", hour: 23))
    #expect(onTime.status == .rectified)
    #expect(onTime.response == "已整改")
    #expect(onTime.respondedAt == wfTime("2026-10-20", hour: 23))
    #expect(onTime.respondedOnTime == true)
    #expect(onTime.version == e.version + 1)
    let late = try EvaluationRules.respond(e, response: "已整改", now: wfTime("2026-10-21", hour: 0))
    #expect(late.status == .rectified)
    #expect(late.respondedOnTime == false)
    // Answered once; a good rating needs no answer; an answer needs text.
    #expect(throws: PreconditionFailed.self) { try EvaluationRules.respond(onTime, response: "again", now: evalNow) }
    let good = try EvaluationRules.rate(evalCase(), level: 5, indicators: [:], text: "", now: evalNow, calendar: wfCalendar2026)
    #expect(throws: PreconditionFailed.self) { try EvaluationRules.respond(good, response: "谢谢", now: evalNow) }
    #expect(throws: ValidationError.self) { try EvaluationRules.respond(e, response: "  ", now: evalNow) }
  }

  @Test func appealingABadRating() throws {
    let rectifying = try bad()
    let appealed = try EvaluationRules.appeal(rectifying, reason: " 恶意差评 ")
    #expect(appealed.status == .appealed)
    #expect(appealed.statusBeforeAppeal == .rectifying)
    #expect(appealed.appealReason == "恶意差评")
    #expect(appealed.version == rectifying.version + 1)

    let rectified = try EvaluationRules.respond(rectifying, response: "已整改", now: evalNow)
    let appealedAfterAnswer = try EvaluationRules.appeal(rectified, reason: "恶意差评")
    #expect(appealedAfterAnswer.status == .appealed && appealedAfterAnswer.statusBeforeAppeal == .rectified)

    #expect(throws: PreconditionFailed.self) { try EvaluationRules.appeal(appealed, reason: "again") }
    #expect(throws: ValidationError.self) { try EvaluationRules.appeal(rectifying, reason: "") }
    let good = try EvaluationRules.rate(evalCase(), level: 3, indicators: [:], text: "", now: evalNow, calendar: wfCalendar2026)
    #expect(throws: PreconditionFailed.self) { try EvaluationRules.appeal(good, reason: "x") }
    let invalidated = try EvaluationRules.review(appealed, invalidate: true, note: "属实")
    #expect(throws: PreconditionFailed.self) { try EvaluationRules.appeal(invalidated, reason: "x") }
  }

  @Test func reviewingAnAppeal() throws {
    let rectifying = try bad(level: 2)
    #expect(throws: PreconditionFailed.self) { try EvaluationRules.review(rectifying, invalidate: true, note: "x") }
    let appealed = try EvaluationRules.appeal(rectifying, reason: "恶意差评")
    #expect(throws: ValidationError.self) { try EvaluationRules.review(appealed, invalidate: true, note: " ") }

    let invalidated = try EvaluationRules.review(appealed, invalidate: true, note: "经核实为恶意差评")
    #expect(invalidated.status == .invalidated)
    #expect(invalidated.reviewNote == "经核实为恶意差评")
    #expect(invalidated.version == appealed.version + 1)

    let upheld = try EvaluationRules.review(appealed, invalidate: false, note: "评价属实")
    #expect(upheld.status == .rectifying)
    // Back under rectification, the department must still answer.
    #expect(try EvaluationRules.respond(upheld, response: "已整改", now: evalNow).status == .rectified)

    let rectified = try EvaluationRules.respond(rectifying, response: "已整改", now: evalNow)
    let upheldAfterAnswer = try EvaluationRules.review(
      try EvaluationRules.appeal(rectified, reason: "恶意"), invalidate: false, note: "评价属实")
    #expect(upheldAfterAnswer.status == .rectified)
    #expect(upheldAfterAnswer.respondedOnTime == true)
    // One appeal per rating: once decided, it cannot be appealed again.
    #expect(throws: PreconditionFailed.self) { try EvaluationRules.appeal(upheld, reason: "再次申诉") }
    #expect(throws: PreconditionFailed.self) { try EvaluationRules.appeal(upheldAfterAnswer, reason: "再次申诉") }
  }

  @Test func statisticsExcludeInvalidatedRatings() throws {
    let today = day("2026-10-26")
    func rate(_ level: Int) throws -> Evaluation {
      try EvaluationRules.rate(evalCase(), level: level, indicators: [:], text: "", now: evalNow, calendar: wfCalendar2026)
    }
    let five = try rate(5)
    let four = try rate(4)
    let onTime = try EvaluationRules.respond(try rate(1), response: "已整改", now: wfTime("2026-10-15"))
    let late = try EvaluationRules.respond(try rate(2), response: "已整改", now: wfTime("2026-10-22"))
    let overdue = try rate(1)  // due 20 October, never answered
    var notYetDue = try EvaluationRules.rate(evalCase(), level: 2, indicators: [:], text: "", now: wfTime("2026-10-23"), calendar: wfCalendar2026)
    #expect(notYetDue.rectificationDue.map { $0 > today } == true)
    notYetDue.caseID = "case-2"
    let invalidated = try EvaluationRules.review(
      try EvaluationRules.appeal(try rate(1), reason: "恶意"), invalidate: true, note: "属实")

    let s = EvaluationRules.stats([five, four, onTime, late, overdue, notYetDue, invalidated], today: today)
    #expect(s.count == 6)
    #expect(s.average == 2.5)  // (5 + 4 + 1 + 2 + 1 + 2) / 6
    #expect(abs(s.badShare - 4.0 / 6.0) < 1e-12)
    // Judged: answered on time, answered late, overdue without answer; not the one still open.
    #expect(abs(s.rectifiedOnTimeRate - 1.0 / 3.0) < 1e-12)
    #expect(s.pendingRectifications == 2)

    // Invalidating a rating changes the statistics (here: no more ratings at all).
    #expect(EvaluationRules.stats([invalidated], today: today) == EvaluationRules.Stats())
    #expect(EvaluationRules.stats([], today: today) == EvaluationRules.Stats())
    let onlyGood = EvaluationRules.stats([five, four], today: today)
    #expect(onlyGood.count == 2 && onlyGood.average == 4.5 && onlyGood.badShare == 0 && onlyGood.rectifiedOnTimeRate == 0)
  }
}
