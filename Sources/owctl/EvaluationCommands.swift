import ArgumentParser
import Foundation
import OneWindowAPI
import OneWindowClientPosix

// 好差评: applicants rate a finished case; departments answer bad ratings (rectification) or
// appeal them; administrators review appeals; the statistics are public.

struct RateCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "rate",
    abstract: "Rate a finished case (好差评), show a rating, or see the published statistics.",
    discussion: """
      `owctl rate CASE --level 1..5` rates (once per case, after completion or non-acceptance). \
      A level of 2 or less opens a rectification task for the department (10 working days).
      """,
    subcommands: [Give.self, Show.self, Stats.self],
    defaultSubcommand: Give.self)

  struct Give: OwctlCommand {
    static let configuration = CommandConfiguration(
      commandName: "case", abstract: "Rate one of your cases (the default: `owctl rate CASE --level N`).")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The case id or tracking code.")
    var caseID: String

    @Option(help: "1 非常不满意, 2 不满意, 3 基本满意, 4 满意, 5 非常满意.")
    var level: Int32

    @Option(name: .customLong("indicator"), help: ArgumentHelp(
      "An indicator (repeatable): overall, efficiency, guide_accuracy, convenience, usability.", valueName: "name=1..5"))
    var indicators: [String] = []

    @Option(help: "A comment (up to 1000 characters).")
    var text: String?

    func validate() throws {
      guard (1...5).contains(level) else { throw ArgumentParser.ValidationError("--level must be 1 to 5.") }
    }

    func execute() async throws {
      var scores: [String: Int32] = [:]
      for (name, value) in try Pairs.parse(indicators, option: "--indicator") {
        guard let score = Int32(value), (1...5).contains(score) else {
          throw CLIError("--indicator \(name)=\(value): the score must be 1 to 5")
        }
        scores[name] = score
      }
      try await global.connect { remote in
        let evaluation = try await remote.authorized { metadata in
          try await remote.evaluations.rateCase(.with {
            $0.caseID = caseID
            $0.level = level
            $0.indicators = scores
            $0.text = text ?? ""
          }, metadata: metadata, options: remote.call)
        }
        try remote.output.show(evaluation) {
          Console.out("rated \(evaluation.trackingCode): \(Levels.rating(evaluation.level)); \(evaluation.status.label)")
          if evaluation.status == .rectifying {
            Console.out("the department must respond by \(evaluation.rectificationDue)")
          }
        }
      }
    }
  }

  struct Show: OwctlCommand {
    static let configuration = CommandConfiguration(abstract: "Show a case's rating and the department's response.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The case id or tracking code.")
    var caseID: String

    func execute() async throws {
      try await global.connect { remote in
        let evaluation = try await remote.authorized { metadata in
          try await remote.evaluations.getEvaluation(.with { $0.caseID = caseID }, metadata: metadata, options: remote.call)
        }
        try remote.output.show(evaluation) { EvaluationView.print(evaluation) }
      }
    }
  }

  struct Stats: OwctlCommand {
    static let configuration = CommandConfiguration(abstract: "The published statistics per department and per item.")

    @OptionGroup var global: GlobalOptions

    func execute() async throws {
      try await global.connect { remote in
        let response = try await remote.evaluations.getEvaluationStats(.init(), options: remote.call)
        try remote.output.show(response) {
          guard !response.departments.isEmpty || !response.items.isEmpty else { return Console.out("no ratings yet") }
          Console.out("By department")
          print(response.departments)
          Console.out("")
          Console.out("By item")
          print(response.items)
        }
      }
    }

    func print(_ stats: [Onewindow_V1_EvaluationStats]) {
      var table = Table(["CODE", "NAME", "RATINGS", "AVERAGE", "BAD", "RECTIFIED ON TIME", "PENDING"], right: [2, 3, 4, 5, 6])
      table.indent = "  "
      for s in stats {
        table.add([
          s.key, s.name, "\(s.count)", String(format: "%.2f", s.average), percent(s.badShare),
          s.badShare > 0 ? percent(s.rectifiedOnTimeRate) : "-", "\(s.pendingRectifications)",
        ])
      }
      table.print()
    }

    func percent(_ share: Double) -> String { String(format: "%.0f%%", share * 100) }
  }
}

struct RectifyCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "rectify",
    abstract: "Departments: answer bad ratings (整改) or appeal them; administrators review appeals.",
    subcommands: [List.self, Respond.self, Appeal.self, Review.self])

  struct List: OwctlCommand {
    static let configuration = CommandConfiguration(
      abstract: "Bad ratings of your department (administrators: all, or --department).")

    @OptionGroup var global: GlobalOptions

    @Flag(help: "Only those still awaiting a response.")
    var pending = false

    @Option(help: "Administrators: one department.")
    var department: String?

    func execute() async throws {
      try await global.connect { remote in
        let response = try await remote.authorized { metadata in
          try await remote.evaluations.listRectifications(.with {
            $0.pendingOnly = pending
            $0.departmentCode = department ?? ""
          }, metadata: metadata, options: remote.call)
        }
        try remote.output.show(response) {
          guard !response.evaluations.isEmpty else { return Console.out(pending ? "no pending rectifications" : "no rectifications") }
          var table = Table(["DUE", "TRACKING CODE", "ITEM", "DEPARTMENT", "LEVEL", "STATUS", "TEXT"])
          for e in response.evaluations {
            table.add([
              e.rectificationDue, e.trackingCode, e.itemCode, e.departmentCode, Levels.rating(e.level), e.status.label,
              e.text.count > 40 ? String(e.text.prefix(39)) + "…" : e.text,
            ])
          }
          table.print()
        }
      }
    }
  }

  struct Respond: OwctlCommand {
    static let configuration = CommandConfiguration(abstract: "Answer a bad rating of your department in writing.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The case id or tracking code.")
    var caseID: String

    @Option(help: "The response (1–2000 characters).")
    var response: String

    func execute() async throws {
      try await global.connect { remote in
        let evaluation = try await remote.authorized { metadata in
          try await remote.evaluations.respondToEvaluation(.with {
            $0.caseID = caseID
            $0.response = response
          }, metadata: metadata, options: remote.call)
        }
        try remote.output.show(evaluation) {
          Console.out("responded to \(evaluation.trackingCode): \(evaluation.status.label)"
            + (evaluation.hasRespondedAt ? (evaluation.respondedOnTime ? ", on time" : ", LATE") : ""))
        }
      }
    }
  }

  struct Appeal: OwctlCommand {
    static let configuration = CommandConfiguration(
      abstract: "Ask an administrator to invalidate a malicious or mistaken rating.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The case id or tracking code.")
    var caseID: String

    @Option(help: "Why (1–1000 characters).")
    var reason: String

    func execute() async throws {
      try await global.connect { remote in
        let evaluation = try await remote.authorized { metadata in
          try await remote.evaluations.appealEvaluation(.with {
            $0.caseID = caseID
            $0.reason = reason
          }, metadata: metadata, options: remote.call)
        }
        try remote.output.show(evaluation) { Console.out("appealed \(evaluation.trackingCode): \(evaluation.status.label)") }
      }
    }
  }

  struct Review: OwctlCommand {
    static let configuration = CommandConfiguration(
      abstract: "Administrators: decide an appeal: keep the rating (--uphold) or void it (--invalidate).")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The case id or tracking code.")
    var caseID: String

    @Flag(help: "The rating stands.")
    var uphold = false

    @Flag(help: "The rating is malicious or mistaken and no longer counts.")
    var invalidate = false

    @Option(help: "The decision's note (1–1000 characters).")
    var note: String

    func validate() throws {
      guard uphold != invalidate else { throw ArgumentParser.ValidationError("Give exactly one of --uphold or --invalidate.") }
    }

    func execute() async throws {
      try await global.connect { remote in
        let evaluation = try await remote.authorized { metadata in
          try await remote.evaluations.reviewAppeal(.with {
            $0.caseID = caseID
            $0.invalidate = invalidate
            $0.note = note
          }, metadata: metadata, options: remote.call)
        }
        try remote.output.show(evaluation) { Console.out("reviewed \(evaluation.trackingCode): \(evaluation.status.label)") }
      }
    }
  }
}

enum EvaluationView {
  static func print(_ e: Onewindow_V1_Evaluation) {
    Table.keyValue([
      ("Case", e.caseID),
      ("Tracking code", e.trackingCode),
      ("Item", e.itemCode),
      ("Department", e.departmentCode),
      ("Level", Levels.rating(e.level)),
      ("Status", e.status.label),
      ("Rated", e.hasCreatedAt ? Format.minute(e.createdAt) : ""),
      ("Comment", e.text),
      ("Response due", e.rectificationDue),
      ("Response", e.response),
      ("Responded", e.hasRespondedAt ? Format.minute(e.respondedAt) + (e.respondedOnTime ? " (on time)" : " (late)") : ""),
      ("Appeal", e.appealReason),
      ("Review note", e.reviewNote),
    ]).print()
    if !e.indicators.isEmpty {
      Console.out("Indicators:")
      var table = Table([])
      table.indent = "  "
      for key in e.indicators.keys.sorted() { table.add([key, "\(e.indicators[key] ?? 0)"]) }
      table.print()
    }
  }
}

// MARK: - audit

struct AuditCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "audit",
    abstract: "Administrators: the hash-chained audit log (权力公开).",
    subcommands: [Verify.self, List.self])

  struct Verify: OwctlCommand {
    static let configuration = CommandConfiguration(
      abstract: "Walk the whole chain; exits 1 and names the first broken entry when it is not intact.")

    @OptionGroup var global: GlobalOptions

    func execute() async throws {
      let response = try await global.connect { remote in
        try await remote.authorized { metadata in
          try await remote.audit.verifyAuditChain(.init(), metadata: metadata, options: remote.call)
        }
      }
      try global.output.show(response) {
        if response.intact {
          Console.out("intact: \(response.entriesChecked) entries checked")
        } else {
          Console.out("BROKEN at sequence \(response.firstBrokenSequence): \(response.problem) "
            + "(\(response.entriesChecked) entries checked)")
        }
      }
      if !response.intact { throw ExitCode(1) }
    }
  }

  struct List: OwctlCommand {
    static let configuration = CommandConfiguration(abstract: "Audit entries, newest first.")

    @OptionGroup var global: GlobalOptions

    @Option(help: "Only entries about this target (a case id, certificate number, …).")
    var target: String?

    @Option(help: "Only entries whose subject is this account id (e.g. an applicant).")
    var subject: String?

    @OptionGroup var page: PageOptions

    @Flag(help: "Show the hashes too.")
    var hashes = false

    func execute() async throws {
      try await global.connect { remote in
        let response = try await remote.authorized { metadata in
          try await remote.audit.listAuditEntries(.with {
            $0.targetID = target ?? ""
            $0.subjectID = subject ?? ""
            $0.pageSize = page.pageSize
            $0.pageToken = page.token
          }, metadata: metadata, options: remote.call)
        }
        try remote.output.show(response) {
          if response.entries.isEmpty {
            Console.out("no audit entries")
          } else {
            var headers = ["SEQ", "TIME", "ACTION", "ACTOR", "ROLE", "DEPT", "FROM", "TARGET", "SUBJECT", "REASON"]
            if hashes { headers.append("HASH") }
            var table = Table(headers, right: [0])
            for e in response.entries {
              var row = [
                "\(e.sequence)", e.hasAt ? Format.minute(e.at) : "", e.action, e.actorID.isEmpty ? "system" : e.actorID,
                e.actorRole, e.actorDepartmentCode, e.clientAddress, "\(e.targetType):\(e.targetID)", e.subjectID, e.reason,
              ]
              if hashes { row.append(String(e.hash.prefix(16)) + "…") }
              table.add(row)
            }
            table.print()
          }
          if !response.nextPageToken.isEmpty { Console.out("more: --page-token \(response.nextPageToken)") }
        }
      }
    }
  }
}
