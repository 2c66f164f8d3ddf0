import ArgumentParser
import Foundation
import OneWindowAPI
import OneWindowClientPosix

struct CatalogCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "catalog",
    abstract: "Browse the public service catalog (办事指南).",
    subcommands: [Departments.self, List.self, Show.self, Search.self])

  struct Departments: OwctlCommand {
    static let configuration = CommandConfiguration(abstract: "List the departments.")

    @OptionGroup var global: GlobalOptions

    func execute() async throws {
      try await global.connect { remote in
        let response = try await remote.authorized(optional: true) { metadata in
          try await remote.catalog.listDepartments(.init(), metadata: metadata, options: remote.call)
        }
        try remote.output.show(response) {
          guard !response.departments.isEmpty else { return Console.out("no departments") }
          var table = Table(["CODE", "NAME"])
          for d in response.departments { table.add([d.code, d.name]) }
          table.print()
        }
      }
    }
  }

  struct List: OwctlCommand {
    static let configuration = CommandConfiguration(abstract: "List service items, filtered and paginated.")

    @OptionGroup var global: GlobalOptions

    @Option(help: "Only items of this department (code, see `owctl catalog departments`).")
    var department: String?

    @Option(help: "Only items of this category.")
    var category: CategoryFilter?

    @Option(help: "Only items needing at most this many on-site visits (0–5).")
    var maxVisits: Int32?

    @Option(help: "Only items with at least this online depth (1–4).")
    var minDepth: Int32?

    @Flag(help: "Administrators: include drafts and withdrawn items.")
    var all = false

    @Option(help: "Page size (1–100; default 20).")
    var limit: Int32?

    @Option(help: "Continue from a previous page's next-page token.")
    var pageToken: String?

    func execute() async throws {
      try await global.connect { remote in
        let response = try await remote.authorized(optional: true) { metadata in
          try await remote.catalog.listItems(.with {
            $0.departmentCode = department ?? ""
            $0.category = category?.proto ?? .unspecified
            if let maxVisits { $0.maxOnsiteVisits = maxVisits }
            if let minDepth { $0.minOnlineDepth = minDepth }
            $0.includeUnpublished = all
            $0.pageSize = limit ?? 0
            $0.pageToken = pageToken ?? ""
          }, metadata: metadata, options: remote.call)
        }
        try remote.output.show(response) {
          ItemSummaryView.print(response.items, withStatus: all, nextPageToken: response.nextPageToken)
        }
      }
    }
  }

  struct Show: OwctlCommand {
    static let configuration = CommandConfiguration(abstract: "Show an item's full guide.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The item code, e.g. SF-GA-0001.")
    var code: String

    func execute() async throws {
      try await global.connect { remote in
        let item = try await remote.authorized(optional: true) { metadata in
          try await remote.catalog.getItem(.with { $0.code = code }, metadata: metadata, options: remote.call)
        }
        try remote.output.show(item) { GuideView.print(item) }
      }
    }
  }

  struct Search: OwctlCommand {
    static let configuration = CommandConfiguration(abstract: "Full-text search over published items.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "What to look for (1–64 characters), e.g. 身份证.")
    var query: String

    @Option(help: "Page size (1–50; default 20).")
    var limit: Int32?

    @Option(help: "Continue from a previous page's next-page token.")
    var pageToken: String?

    func execute() async throws {
      try await global.connect { remote in
        let response = try await remote.authorized(optional: true) { metadata in
          try await remote.catalog.searchItems(.with {
            $0.query = query
            $0.pageSize = limit ?? 0
            $0.pageToken = pageToken ?? ""
          }, metadata: metadata, options: remote.call)
        }
        try remote.output.show(response) {
          if response.items.isEmpty {
            Console.out("no published items match \(query)")
          } else {
            ItemSummaryView.print(response.items, withStatus: false, nextPageToken: response.nextPageToken)
          }
        }
      }
    }
  }
}

enum CategoryFilter: String, CaseIterable, ExpressibleByArgument {
  case license
  case payment
  case confirmation
  case publicService = "public-service"
  case other

  var proto: Onewindow_V1_ItemCategory {
    switch self {
    case .license: .administrativeLicense
    case .payment: .administrativePayment
    case .confirmation: .administrativeConfirmation
    case .publicService: .publicService
    case .other: .other
    }
  }
}

enum ItemSummaryView {
  static func print(_ items: [Onewindow_V1_ServiceItemSummary], withStatus: Bool, nextPageToken: String) {
    var headers = ["CODE", "NAME", "DEPARTMENT", "CATEGORY", "DEPTH", "VISITS", "FEE", "DAYS"]
    if withStatus { headers += ["STATUS", "VERSION"] }
    var table = Table(headers, right: [4, 5, 6, 7, 9])
    for item in items {
      var row = [
        item.code, item.name, item.departmentCode, item.category.label, "\(item.onlineDepth)",
        "\(item.onsiteVisits)", Format.fee(fen: item.totalFeeFen), "\(item.promisedLimitDays)",
      ]
      if withStatus { row += [item.status.label, "\(item.version)"] }
      table.add(row)
    }
    if items.isEmpty {
      Console.out("no items")
    } else {
      table.print()
    }
    if !nextPageToken.isEmpty { Console.out("more: --page-token \(nextPageToken)") }
  }
}

/// The readable guide of one item.
enum GuideView {
  static func print(_ item: Onewindow_V1_ServiceItem) {
    let spec = item.spec
    var lines: [String] = []
    func section(_ title: String) { lines += ["", title] }
    func paragraph(_ text: String) {
      for line in text.split(whereSeparator: \.isNewline) { lines.append("  " + line) }
    }

    lines.append("\(spec.name)  [\(spec.code)]")
    var status = "\(item.status.label), version \(item.version)"
    if item.hasPublishedAt { status += ", published \(Format.date(item.publishedAt))" }
    if item.hasUpdatedAt { status += ", updated \(Format.date(item.updatedAt))" }
    lines.append(Table.keyValue([
      ("Department", item.departmentName.isEmpty ? spec.departmentCode : "\(item.departmentName) (\(spec.departmentCode))"),
      ("Category", spec.category.label),
      ("For", spec.target.label),
      ("Status", status),
      ("Location", spec.handlingLocation),
      ("Phone", spec.contactPhone),
    ]).render())

    if !spec.summary.isEmpty {
      section("Summary (摘要)")
      paragraph(spec.summary)
    }
    if !spec.legalBasis.isEmpty {
      section("Legal basis (设定依据)")
      paragraph(spec.legalBasis)
    }
    if !spec.acceptanceConditions.isEmpty {
      section("Conditions (受理条件)")
      for (i, c) in spec.acceptanceConditions.enumerated() { lines.append("  \(i + 1). \(c)") }
    }

    section("Materials (申请材料)")
    if spec.materials.isEmpty {
      lines.append("  none")
    } else {
      var table = Table(["#", "MATERIAL", "FORM", "COPIES", "REQUIRED", "E-CERT OK", "NOTES"], right: [0, 3])
      table.indent = "  "
      for (i, m) in spec.materials.enumerated() {
        table.add([
          "\(i + 1)", m.name, m.form.label, "\(m.copies)", Format.yesNo(m.required), Format.yesNo(m.ecertSubstitutable),
          m.notes,
        ])
      }
      lines.append(table.render())
    }

    if !spec.processSteps.isEmpty {
      section("Process (办理流程)")
      for (i, step) in spec.processSteps.enumerated() {
        var line = "  \(i + 1). \(step.name) (\(step.departmentCode))"
        if !step.description_p.isEmpty { line += ": \(step.description_p)" }
        lines.append(line)
      }
    }

    section("Time limits (办结时限)")
    lines.append("  statutory \(spec.statutoryLimitDays) working days, promised \(spec.promisedLimitDays) working days")

    section("Fees (收费标准)")
    if spec.fees.isEmpty {
      lines.append("  免费")
    } else {
      var table = Table(["ITEM", "AMOUNT", "BASIS"], right: [1])
      table.indent = "  "
      for fee in spec.fees { table.add([fee.name, Format.fee(fen: fee.amountFen), fee.legalBasis]) }
      lines.append(table.render())
    }

    section("Service (服务方式)")
    lines.append(Table.keyValue([
      ("Online depth (网办深度)", Levels.onlineDepth(spec.onlineDepth)),
      ("On-site visits (到现场次数)", Levels.visits(spec.onsiteVisits)),
      ("Appointment (预约)", Format.yesNo(spec.supportsAppointment)),
      ("Courier delivery (快递送达)", Format.yesNo(spec.supportsCourierDelivery)),
      ("Online payment (在线支付)", Format.yesNo(spec.supportsOnlinePayment)),
    ], indent: "  ").render())

    if !spec.faq.isEmpty {
      section("FAQ (常见问题)")
      for (i, entry) in spec.faq.enumerated() {
        lines.append("  Q\(i + 1). \(entry.question)")
        for line in entry.answer.split(whereSeparator: \.isNewline) { lines.append("      \(line)") }
      }
    }

    if !spec.formSchema.fields.isEmpty {
      section("Form fields (申请表)")
      var table = Table(["FIELD", "LABEL", "TYPE", "REQUIRED", "CONSTRAINTS"])
      table.indent = "  "
      for field in spec.formSchema.fields {
        var constraints: [String] = []
        if field.maxLength > 0 { constraints.append("max \(field.maxLength) chars") }
        if !field.pattern.isEmpty { constraints.append("pattern \(field.pattern)") }
        if !field.options.isEmpty { constraints.append("one of: " + field.options.joined(separator: " / ")) }
        table.add([field.name, field.label, field.type.label, Format.yesNo(field.required), constraints.joined(separator: "; ")])
      }
      lines.append(table.render())
    }
    Console.out(lines.joined(separator: "\n"))
  }
}
