import Testing
@testable import OneWindowCore

@Suite struct ResidentIDNumberTests {
  @Test(arguments: ["11010519491231002X", "440524198001010013", "11010519491231002x"])
  func acceptsValidNumbers(_ raw: String) throws {
    let id = try ResidentIDNumber(raw)
    #expect(id.value == raw.uppercased())
  }

  @Test func rejectsWrongCheckCharacter() {
    #expect(throws: ValidationError("id_number", "check character does not match (mistyped number?)")) {
      try ResidentIDNumber("110105194912310021")
    }
  }

  @Test(arguments: ["11010519491231002", "11010519491231002X1", ""])
  func rejectsWrongLength(_ raw: String) {
    #expect(throws: ValidationError.self) { try ResidentIDNumber(raw) }
  }

  @Test func rejectsImpossibleBirthDateAndLetters() {
    // 1949-02-30 does not exist; the check character is recomputed so only the date is wrong.
    let first17 = "11010519490230002"
    let check = ResidentIDNumber.checkCharacter(forFirst17: first17).map(String.init) ?? "?"
    #expect(throws: ValidationError("id_number", "birth date is invalid")) { try ResidentIDNumber(first17 + check) }
    #expect(throws: ValidationError.self) { try ResidentIDNumber("1101051949123100AX") }
  }

  @Test func masksForDisplay() throws {
    #expect(try ResidentIDNumber("11010519491231002X").masked == "1101**********002X")
    #expect(Redact.phone("13812345678") == "138****5678")
  }
}

@Suite struct CreditCodeTests {
  @Test(arguments: ["91350100M000100Y43", "91330100799655058B"])
  func acceptsValidCodes(_ raw: String) throws {
    #expect(try CreditCode(raw).value == raw)
  }

  @Test func normalisesLowercase() throws {
    #expect(try CreditCode("91350100m000100y43").value == "91350100M000100Y43")
  }

  @Test func rejectsWrongCheckCharacter() {
    #expect(throws: ValidationError("credit_code", "check character does not match (mistyped code?)")) {
      try CreditCode("91350100M000100Y44")
    }
  }

  @Test(arguments: ["91350100M000100Y4", "91350100M000100Y433", "91350100M0001O0Y43", "91350100I000100Y43"])
  func rejectsWrongLengthOrAlphabet(_ raw: String) {
    #expect(throws: ValidationError.self) { try CreditCode(raw) }
  }
}

@Suite struct PhoneNumberTests {
  @Test func acceptsMainlandMobiles() throws {
    #expect(try PhoneNumber("13812345678").value == "13812345678")
    #expect(try PhoneNumber("+86 138-1234-5678").value == "13812345678")
  }

  @Test(arguments: ["12812345678", "1381234567", "138123456789", "abcdefghijk", ""])
  func rejectsOthers(_ raw: String) {
    #expect(throws: ValidationError.self) { try PhoneNumber(raw) }
  }
}

@Suite struct TextRuleTests {
  @Test func countsCharactersNotBytes() throws {
    let fifty = String(repeating: "张", count: 50)
    #expect(try AccountRules.personName(fifty) == fifty)
    #expect(throws: ValidationError.self) { try AccountRules.personName(fifty + "张") }
  }

  @Test func rejectsBlankAndControlCharacters() {
    #expect(throws: ValidationError("name", "is required")) { try AccountRules.personName(" \u{3000} ") }
    #expect(throws: ValidationError.self) { try AccountRules.personName("张\u{0007}三") }
  }

  @Test func usernames() throws {
    #expect(try AccountRules.username("cw-gongan") == "cw-gongan")
    #expect(throws: ValidationError.self) { try AccountRules.username("Admin") }
    #expect(throws: ValidationError.self) { try AccountRules.username("ab") }
    #expect(throws: ValidationError.self) { try AccountRules.username("1abc") }
  }

  @Test func ulids() {
    let id = ULID.make()
    #expect(id.count == 26)
    #expect(ULID.isValid(id))
    #expect(!ULID.isValid("not-an-id"))
    #expect(!ULID.isValid(String(repeating: "I", count: 26)))
  }
}
