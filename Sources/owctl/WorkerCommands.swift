import ArgumentParser
import Foundation
import OneWindowAPI
import OneWindowClientPosix

// Handling cases as a caseworker (窗口人员): the department's queue and every transition, each
// one CaseService.ActOnCase.

struct WorkerCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "worker",
    abstract: "Caseworkers: the department's queue and acting on cases (log in as a caseworker).",
    discussion: """
      CASE is a case id or tracking code. `owctl case status CASE` shows a case with its \
      history and what you can do now. Every action takes --expected-version N to act only on \
      the version you looked at (ABORTED if it changed). `reopen` is for administrators.
      """,
    subcommands: [
      Queue.self, Accept.self, Correct.self, Reject.self, StartReview.self, Suspend.self, Resume.self, Extend.self,
      Advance.self, Approve.self, Deny.self, Complete.self, Deliver.self, Reopen.self, WorkerFeeCommand.self,
    ])

  struct Queue: OwctlCommand {
    static let configuration = CommandConfiguration(
      abstract: "Cases awaiting your department, earliest deadline first (paused cases last).")

    @OptionGroup var global: GlobalOptions

    @Flag(help: "Only cases past their deadline.")
    var overdue = false

    @Flag(help: "Only cases due within --days working days (overdue included).")
    var dueSoon = false

    @Option(help: "With --due-soon: working days ahead (default 3).")
    var days: Int32?

    @Option(help: "Administrators: the department whose queue to list.")
    var department: String?

    @Option(help: "Page size (1–100; default 50).")
    var limit: Int32?

    @Option(help: "Continue from a previous page's next-page token.")
    var pageToken: String?

    func validate() throws {
      if overdue && dueSoon { throw ArgumentParser.ValidationError("Give --overdue or --due-soon, not both.") }
      if days != nil && !dueSoon { throw ArgumentParser.ValidationError("--days goes with --due-soon.") }
      if let days, days < 0 { throw ArgumentParser.ValidationError("--days must not be negative.") }
    }

    func execute() async throws {
      try await global.connect { remote in
        let response = try await remote.authorized { metadata in
          try await remote.cases.listQueue(.with {
            $0.filter = overdue ? .overdue : dueSoon ? .dueSoon : .all
            $0.dueSoonDays = days ?? 0
            $0.departmentCode = department ?? ""
            $0.pageSize = limit ?? 0
            $0.pageToken = pageToken ?? ""
          }, metadata: metadata, options: remote.call)
        }
        try remote.output.show(response) {
          if response.entries.isEmpty {
            Console.out(overdue ? "no overdue cases" : dueSoon ? "no cases due soon" : "the queue is empty")
          } else {
            var table = Table(["DUE", "DAYS LEFT", "STATE", "TRACKING CODE", "ITEM", "APPLICANT", "STEP", "VERSION"], right: [1, 7])
            for e in response.entries {
              let due = e.dueOn.isEmpty ? "(paused)" : e.dueOn
              let left = e.dueOn.isEmpty ? "-" : e.overdue ? "\(e.workingDaysLeft) OVERDUE" : "\(e.workingDaysLeft)"
              table.add([due, left, e.state.label, e.trackingCode, "\(e.itemName) (\(e.itemCode))", e.applicantName, e.stepName, "\(e.version)"])
            }
            table.print()
          }
          Console.out("\(response.overdueCount) overdue, \(response.dueSoonCount) due within \(days ?? 3) working days")
          if !response.nextPageToken.isEmpty { Console.out("more: --page-token \(response.nextPageToken)") }
        }
      }
    }
  }

  // MARK: actions

  struct Accept: OwctlCommand {
    static let configuration = CommandConfiguration(abstract: "Accept the application (受理).")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var target: CaseTarget
    @Option(help: "A note (optional).") var reason: String?
    func execute() async throws { try await ActOnCase.run(global, target, .accept) { $0.reason = reason ?? "" } }
  }

  struct Correct: OwctlCommand {
    static let configuration = CommandConfiguration(
      abstract: "Send the one-time correction notice (一次性告知补正), listing everything missing.")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var target: CaseTarget
    @Option(name: .customLong("missing"), help: ArgumentHelp("A missing item (repeatable, 1–50).", valueName: "item"))
    var missing: [String] = []
    @Option(help: "A note (optional).") var reason: String?
    func validate() throws {
      if missing.isEmpty { throw ArgumentParser.ValidationError("List what is missing with --missing (repeatable).") }
    }
    func execute() async throws {
      try await ActOnCase.run(global, target, .requestCorrection) {
        $0.missingItems = missing
        $0.reason = reason ?? ""
      }
    }
  }

  struct Reject: OwctlCommand {
    static let configuration = CommandConfiguration(abstract: "Refuse to accept the application (不予受理).")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var target: CaseTarget
    @Option(help: "Why (required).") var reason: String
    func execute() async throws { try await ActOnCase.run(global, target, .reject) { $0.reason = reason } }
  }

  struct StartReview: OwctlCommand {
    static let configuration = CommandConfiguration(commandName: "start-review", abstract: "Start the review (审查).")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var target: CaseTarget
    @Option(help: "A note (optional).") var reason: String?
    func execute() async throws { try await ActOnCase.run(global, target, .startReview) { $0.reason = reason ?? "" } }
  }

  struct Suspend: OwctlCommand {
    static let configuration = CommandConfiguration(
      abstract: "Enter a special procedure (特别程序: hearing, inspection …); the decision clock pauses.")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var target: CaseTarget
    @Option(help: "Why (required).") var reason: String
    func execute() async throws { try await ActOnCase.run(global, target, .suspend) { $0.reason = reason } }
  }

  struct Resume: OwctlCommand {
    static let configuration = CommandConfiguration(abstract: "End the special procedure; the clock runs again.")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var target: CaseTarget
    @Option(help: "A note (optional).") var reason: String?
    func execute() async throws { try await ActOnCase.run(global, target, .resume) { $0.reason = reason ?? "" } }
  }

  struct Extend: OwctlCommand {
    static let configuration = CommandConfiguration(
      abstract: "Extend the decision deadline once by 10 working days (延长期限).")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var target: CaseTarget
    @Option(help: "Why (required).") var reason: String
    @Option(help: "Who approved the extension (本机关负责人).") var approver: String
    func execute() async throws {
      try await ActOnCase.run(global, target, .extend) {
        $0.reason = reason
        $0.approver = approver
      }
    }
  }

  struct Advance: OwctlCommand {
    static let configuration = CommandConfiguration(
      abstract: "Hand the case to its next process step (another department's).")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var target: CaseTarget
    @Option(help: "A note (optional).") var reason: String?
    func execute() async throws { try await ActOnCase.run(global, target, .advanceStep) { $0.reason = reason ?? "" } }
  }

  struct Approve: OwctlCommand {
    static let configuration = CommandConfiguration(
      abstract: "Grant (准予许可); issues the item's e-certificate, if it has one.")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var target: CaseTarget
    @Option(help: "A note (optional).") var reason: String?
    func execute() async throws { try await ActOnCase.run(global, target, .approve) { $0.reason = reason ?? "" } }
  }

  struct Deny: OwctlCommand {
    static let configuration = CommandConfiguration(abstract: "Refuse (不予许可).")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var target: CaseTarget
    @Option(help: "Why (required).") var reason: String
    func execute() async throws { try await ActOnCase.run(global, target, .deny) { $0.reason = reason } }
  }

  struct Complete: OwctlCommand {
    static let configuration = CommandConfiguration(abstract: "Close the case after the decision (办结).")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var target: CaseTarget
    @Option(help: "A note (optional).") var reason: String?
    func execute() async throws { try await ActOnCase.run(global, target, .complete) { $0.reason = reason ?? "" } }
  }

  struct Deliver: OwctlCommand {
    static let configuration = CommandConfiguration(
      abstract: "Deliver the result: by courier (--courier NO, 寄递) or picked up / e-licence (--pickup, 确认送达).")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var target: CaseTarget
    @Option(help: ArgumentHelp("The courier tracking number.", valueName: "tracking-no")) var courier: String?
    @Flag(help: "The applicant collected the result (or it is electronic): delivered now.") var pickup = false
    @Option(help: "A note (optional).") var reason: String?
    func validate() throws {
      switch (courier, pickup) {
      case (nil, false): throw ArgumentParser.ValidationError("Give --courier TRACKING-NO or --pickup.")
      case (.some, true): throw ArgumentParser.ValidationError("Give --courier or --pickup, not both.")
      default: break
      }
    }
    func execute() async throws {
      if let courier {
        try await ActOnCase.run(global, target, .dispatchResult) {
          $0.deliveryReference = courier
          $0.reason = reason ?? ""
        }
      } else {
        try await ActOnCase.run(global, target, .confirmDelivery) { $0.reason = reason ?? "" }
      }
    }
  }

  struct Reopen: OwctlCommand {
    static let configuration = CommandConfiguration(
      abstract: "Administrators: put a completed case back under review (重新审查).")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var target: CaseTarget
    @Option(help: "Why (required).") var reason: String
    func execute() async throws { try await ActOnCase.run(global, target, .reopen) { $0.reason = reason } }
  }
}
