import Foundation
import PropertyBased
import Testing
@testable import OneWindowCore

/// Invariants checked over generated inputs (seeded; a failure prints the seed to replay).
@Suite struct PropertyTests {
  static let digits = Array("0123456789")

  @Test func everyWellFormedIDNumberValidatesAndAnySingleSubstitutionIsCaught() async {
    await propertyCheck(
      input: Gen.int(in: 110_000...659_999), Gen.int(in: 1900...2099), Gen.int(in: 1...12), Gen.int(in: 1...28),
      Gen.int(in: 0...999), Gen.int(in: 0...16), Gen.int(in: 1...9)
    ) { region, year, month, day, sequence, position, shift in
      let first17 = String(format: "%06d%04d%02d%02d%03d", region, year, month, day, sequence)
      guard let check = ResidentIDNumber.checkCharacter(forFirst17: first17) else {
        Issue.record("no check character for \(first17)")
        return
      }
      #expect((try? ResidentIDNumber(first17 + String(check)))?.value == first17 + String(check))
      // ISO 7064 MOD 11-2 detects every single-digit substitution.
      var chars = Array(first17)
      let old = chars[position].wholeNumberValue ?? 0
      chars[position] = Self.digits[(old + shift) % 10]
      #expect((try? ResidentIDNumber(String(chars) + String(check))) == nil, "\(String(chars))\(check) should be rejected")
    }
  }

  @Test func everyWellFormedCreditCodeValidatesAndAnySingleSubstitutionIsCaught() async {
    let alphabet = CreditCode.alphabet
    await propertyCheck(
      input: Gen.int(in: 0...30).array(of: 17), Gen.int(in: 0...16), Gen.int(in: 1...30)
    ) { indices, position, shift in
      let body = indices.map { alphabet[$0] }
      let first17 = String(body)
      guard let check = CreditCode.checkCharacter(forFirst17: first17) else {
        Issue.record("no check character for \(first17)")
        return
      }
      #expect((try? CreditCode(first17 + String(check))) != nil)
      var chars = body
      let old = alphabet.firstIndex(of: chars[position]) ?? 0
      chars[position] = alphabet[(old + shift) % 31]
      #expect((try? CreditCode(String(chars) + String(check))) == nil, "\(String(chars))\(check) should be rejected")
    }
  }

  @Test func pagingVisitsEveryMatchingItemOnceInOrder() async {
    await propertyCheck(input: Gen.int(in: 0...60), Gen.int(in: 1...10), Gen.int(in: -1...2)) { count, pageSize, maxVisits in
      let items = (0..<count).map { i in
        var spec = sampleSpec(code: String(format: "SF-%03d", i))
        spec.onsiteVisits = (i * 7) % 3
        return ServiceItem(spec: spec, status: i % 4 == 3 ? .draft : .published, version: 1, createdAt: .now, updatedAt: .now, publishedAt: nil)
      }
      let filter = CatalogFilter(maxOnsiteVisits: maxVisits < 0 ? nil : maxVisits)
      var seen: [String] = []
      var token = ""
      var pages = 0
      repeat {
        guard let page = try? CatalogPaging.page(items, filter: filter, pageSize: pageSize, pageToken: token) else {
          Issue.record("paging failed")
          return
        }
        #expect(page.elements.count <= pageSize)
        seen += page.elements.map(\.spec.code)
        token = page.nextPageToken
        pages += 1
      } while !token.isEmpty && pages <= count + 1
      #expect(seen == items.filter(filter.matches).map(\.spec.code))
    }
  }

  @Test func searchTermsNeverCarryAQuote() async {
    let characters = Array("身份证明护照 \"'*:()-^ANDORNOTabc\u{3000}，、%_\\")
    await propertyCheck(input: Gen.int(in: 0...(characters.count - 1)).array(of: 0...40)) { indices in
      let text = String(indices.map { characters[$0] })
      guard let query = try? SearchQuery.parse(text) else { return }  // rejected input is fine
      #expect(!query.terms.isEmpty || !query.substrings.isEmpty)
      #expect(query.terms.allSatisfy { !$0.contains("\"") && $0.count >= 3 })
      #expect(query.substrings.allSatisfy { !$0.contains("\"") && $0.count < 3 })
    }
  }
}

/// Stream cursors under any interleaving of streams, sends and acknowledgements.
@Suite struct StreamCursorPropertyTests {
  @Test func acknowledgementsNeverMoveBackAndNeverPassWhatWasSent() async {
    await propertyCheck(input: Gen.int(in: 0...2).array(of: 1...60), Gen.int(in: 0...50).array(of: 60)) { ops, values in
      var cursor = StreamCursor()
      var highestAck: Int64 = 0
      for (i, op) in ops.enumerated() {
        let v = Int64(values[i % values.count])
        switch op {
        case 0: cursor = cursor.beginningStream()
        case 1: cursor.sent = max(cursor.sent, v)
        default: cursor = cursor.acknowledging(v)
        }
        #expect(cursor.acked >= highestAck)
        #expect(cursor.sent >= cursor.acked)
        #expect(cursor.rounds >= 0)
        if cursor.acked >= cursor.sent { #expect(cursor.deliveryCount(of: cursor.sent + 1) == 1) }
        highestAck = cursor.acked
      }
    }
  }
}
