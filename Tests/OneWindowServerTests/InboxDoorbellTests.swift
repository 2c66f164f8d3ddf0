import Testing
import OneWindowStore
@testable import OneWindowServer

/// The inbox doorbell's text form: what one node tells the others about committed messages.
@Suite struct InboxDoorbellTests {
  @Test func linesSurviveTheTextForm() {
    let lines: [InboxDoorbell.Line] = [
      .inbox(accountID: "01JACCOUNT", seq: 42), .topic("district.310104", seq: 7), .subscriptions(accountID: "01JOTHER"),
    ]
    let payloads = InboxDoorbell(lines: lines).payloads()
    #expect(payloads == ["a 42 01JACCOUNT\nt 7 district.310104\ns 01JOTHER"])
    #expect(InboxDoorbell(parsing: payloads[0]).lines == lines)
    #expect(InboxDoorbell(parsing: "*").lines == [.everyone])
  }

  @Test func unreadableLinesAreSkipped() {
    let parsed = InboxDoorbell(parsing: "a x 01J\nq 1 2\nt 3\n\na 5 01JOK\nz")
    #expect(parsed.lines == [.inbox(accountID: "01JOK", seq: 5)])
  }

  /// At the line limit one doorbell per fitting chunk; above it, one `*`.
  @Test func manyLinesAreSplitOrCollapsed() {
    let account = String(repeating: "A", count: 60)
    let atLimit = (0..<InboxDoorbell.maxLines).map { InboxDoorbell.Line.inbox(accountID: account, seq: Int64($0)) }
    let payloads = InboxDoorbell(lines: atLimit).payloads()
    #expect(payloads.count > 1)
    #expect(payloads.allSatisfy { $0.utf8.count <= DoorbellTopic.maxPayloadBytes })
    #expect(payloads.flatMap { InboxDoorbell(parsing: $0).lines } == atLimit)
    let above = atLimit + [.inbox(accountID: account, seq: 999)]
    #expect(InboxDoorbell(lines: above).payloads() == ["*"])
    #expect(InboxDoorbell(lines: [.everyone, .subscriptions(accountID: "x")]).payloads() == ["*"])
  }
}
