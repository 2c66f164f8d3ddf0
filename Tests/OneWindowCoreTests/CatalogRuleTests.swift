import Foundation
import Testing
@testable import OneWindowCore

func sampleSpec(code: String = "SF-TEST-0001", name: String = "居民身份证换领", department: String = "gongan") -> ServiceItemSpec {
  ServiceItemSpec(
    code: code, name: name, departmentCode: department, category: .administrativeConfirmation, target: .citizen,
    summary: "有效期满换领", materials: [Material(name: "居民户口簿", form: .original, copies: 1, notes: "", ecertSubstitutable: true, required: true)],
    processSteps: [ProcessStep(name: "受理", departmentCode: department, description: "")],
    statutoryLimitDays: 60, promisedLimitDays: 20, fees: [FeeItem(name: "工本费", amountFen: 2000, legalBasis: "")],
    onlineDepth: 3, onsiteVisits: 1,
    formFields: [FormField(name: "reason", label: "换领原因", type: .choice, required: true, pattern: "", maxLength: 0, options: ["有效期满", "损坏"])])
}

@Suite struct ItemValidationTests {
  let departments: Set<String> = ["gongan", "renshe"]

  @Test func acceptsAndTrimsAValidGuide() throws {
    var spec = sampleSpec()
    spec.name = "  居民身份证换领 "
    let valid = try spec.validated(departments: departments)
    #expect(valid.name == "居民身份证换领")
    #expect(valid.totalFeeFen == 2000)
  }

  @Test func rejectsUnknownDepartmentsInOwnerAndSteps() {
    #expect(throws: ValidationError("spec.department_code", "unknown department 'minzheng'")) {
      try sampleSpec(department: "minzheng").validated(departments: departments)
    }
    var spec = sampleSpec()
    spec.processSteps.append(ProcessStep(name: "审查", departmentCode: "nowhere", description: ""))
    #expect(throws: ValidationError("spec.process_steps[1].department_code", "unknown department 'nowhere'")) {
      try spec.validated(departments: departments)
    }
  }

  @Test func promisedLimitMayNotExceedStatutory() {
    var spec = sampleSpec()
    spec.promisedLimitDays = 61
    #expect(throws: ValidationError.self) { try spec.validated(departments: departments) }
  }

  @Test func formSchemaRules() {
    var duplicate = sampleSpec()
    duplicate.formFields.append(duplicate.formFields[0])
    #expect(throws: ValidationError("spec.form_schema.fields[1].name", "duplicates field 'reason'")) {
      try duplicate.validated(departments: departments)
    }
    var badRegex = sampleSpec()
    badRegex.formFields = [FormField(name: "plate", label: "车牌", type: .text, required: false, pattern: "([a-z", maxLength: 10, options: [])]
    #expect(throws: ValidationError("spec.form_schema.fields[0].pattern", "is not a valid regular expression")) {
      try badRegex.validated(departments: departments)
    }
    var emptyChoice = sampleSpec()
    emptyChoice.formFields[0].options = []
    #expect(throws: ValidationError.self) { try emptyChoice.validated(departments: departments) }
  }

  @Test(arguments: ["ab", "has space", String(repeating: "x", count: 65), "代码"])
  func rejectsBadCodes(_ code: String) {
    #expect(throws: ValidationError.self) { try sampleSpec(code: code).validated(departments: ["gongan"]) }
  }

  @Test func rejectsOutOfRangeNumbers() {
    var fee = sampleSpec()
    fee.fees[0].amountFen = 0
    #expect(throws: ValidationError.self) { try fee.validated(departments: departments) }
    var depth = sampleSpec()
    depth.onlineDepth = 5
    #expect(throws: ValidationError.self) { try depth.validated(departments: departments) }
  }
}

@Suite struct SearchQueryTests {
  @Test func longTermsGoToTheTrigramIndex() throws {
    let q = try SearchQuery.parse("身份证")
    #expect(q == SearchQuery(terms: ["身份证"], substrings: []))
  }

  @Test func shortTermsFallBackToSubstringFilters() throws {
    #expect(try SearchQuery.parse("护照") == SearchQuery(terms: [], substrings: ["护照"]))
    #expect(try SearchQuery.parse("证 身份证 换领，身份证") == SearchQuery(terms: ["身份证"], substrings: ["证", "换领"]))
  }

  @Test func quotesSeparateTerms() throws {
    let q = try SearchQuery.parse("abc\" OR name:*")
    #expect(q.terms == ["abc", "name:*"])
    #expect(q.substrings == ["OR"])
  }

  @Test func rejectsEmptyAndOverlongQueries() {
    #expect(throws: ValidationError("query", "is required")) { try SearchQuery.parse("   ") }
    #expect(throws: ValidationError("query", "is required")) { try SearchQuery.parse("\"\"") }
    #expect(throws: ValidationError.self) { try SearchQuery.parse(String(repeating: "证", count: 65)) }
  }
}

@Suite struct CatalogPagingTests {
  func items(_ count: Int) -> [ServiceItem] {
    (0..<count).map { i in
      var spec = sampleSpec(code: String(format: "SF-%04d", i))
      spec.onsiteVisits = i % 3
      return ServiceItem(spec: spec, status: i % 5 == 4 ? .withdrawn : .published, version: 1, createdAt: .now, updatedAt: .now, publishedAt: .now)
    }
  }

  @Test func walksEveryMatchingItemExactlyOnce() throws {
    let all = items(47)
    let filter = CatalogFilter(maxOnsiteVisits: 1)
    var seen: [String] = []
    var token = ""
    var pages = 0
    repeat {
      let page = try CatalogPaging.page(all, filter: filter, pageSize: 5, pageToken: token)
      seen += page.elements.map(\.spec.code)
      token = page.nextPageToken
      pages += 1
    } while !token.isEmpty && pages < 100
    let expected = all.filter(filter.matches).map(\.spec.code)
    #expect(seen == expected)
    #expect(pages == (expected.count + 4) / 5)
  }

  @Test func lastFullPageHasNoNextToken() throws {
    let page = try CatalogPaging.page(items(4), filter: CatalogFilter(), pageSize: 4, pageToken: "")
    #expect(page.elements.count == 4)
    #expect(page.nextPageToken.isEmpty)
  }

  @Test func rejectsGarbageTokensAndSizes() throws {
    #expect(throws: ValidationError.self) { try CatalogPaging.page(items(3), filter: CatalogFilter(), pageSize: 2, pageToken: "%%%") }
    #expect(throws: ValidationError.self) { try CatalogPaging.pageSize(101, max: 100) }
    #expect(throws: ValidationError.self) { try CatalogPaging.pageSize(-1, max: 100) }
    #expect(try CatalogPaging.pageSize(0, max: 100) == 20)
  }
}
