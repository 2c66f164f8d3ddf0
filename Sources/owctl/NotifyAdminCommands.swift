import ArgumentParser
import Foundation
import GRPCCore
import OneWindowAPI
import OneWindowClientPosix
import SwiftProtobuf

// Administrators and notifications (NotifyService): publishing to an account, a segment or a
// topic (now or scheduled), templates, topics, and the webhook endpoints of third-party
// platforms with their deliveries. docs/notifications.md has the semantics.

// MARK: - admin notify

struct AdminNotifyCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "notify",
    abstract: "Publish a notification from a template (the default), and list, show or cancel publications.",
    discussion: """
      `owctl admin notify --to ACCOUNT-ID --template NAME --set key=value …` renders the template \
      and sends it. See `owctl admin templates list` for the templates and their placeholders.
      """,
    subcommands: [Send.self, Cancel.self, List.self, Show.self],
    defaultSubcommand: Send.self)

  enum Priority: String, CaseIterable, ExpressibleByArgument {
    case normal, high

    var proto: Onewindow_V1_MessagePriority { self == .high ? .high : .normal }
  }

  struct Send: OwctlCommand {
    static let configuration = CommandConfiguration(
      commandName: "send",
      abstract: "Render a template and publish it to one account, a segment or a topic (the default).",
      discussion: """
        Exactly one of --to, --segment, --topic. A segment is resolved when the message is sent \
        (at --at for a scheduled one): role=citizen|enterprise|caseworker|admin, department=CODE \
        (caseworkers of a department), region=31|3101|310104 (by resident ID number or credit \
        code), combined with commas. Publishing is idempotent by key: when the answer is lost, \
        run the same command again with the --idempotency-key it printed and you get the same \
        publication, never a second one.
        """)

    @OptionGroup var global: GlobalOptions

    @Option(help: ArgumentHelp("One account.", valueName: "account-id"))
    var to: String?

    @Option(help: ArgumentHelp("Accounts matching every given field, e.g. role=citizen,region=31.", valueName: "key=value,…"))
    var segment: String?

    @Option(help: ArgumentHelp("A topic's subscribers (stored once, read by each subscriber).", valueName: "code"))
    var topic: String?

    @Option(help: "The template's name (see `owctl admin templates list`).")
    var template: String

    @Option(help: "Render this version of the template (default: the latest).")
    var version: Int32?

    @Option(name: .customLong("set"), help: ArgumentHelp("A placeholder's value (repeatable).", valueName: "key=value"))
    var personalisation: [String] = []

    @Option(name: .customLong("data"), help: ArgumentHelp(
      "Machine-readable context for the app, e.g. case_id=… (repeatable).", valueName: "key=value"))
    var data: [String] = []

    @Option(help: "normal (the default) or high: high-priority messages are never pruned while unread.")
    var priority: Priority?

    @Option(help: ArgumentHelp("Expire if not delivered within this time (1s to 28d), e.g. 90s, 30m, 1h, 2d, 1h30m.", valueName: "duration"))
    var ttl: String?

    @Option(name: .customLong("collapse-key"), help: ArgumentHelp(
      "A newer message with the same key replaces an undelivered older one.", valueName: "key"))
    var collapseKey: String?

    @Option(help: ArgumentHelp("Send later, at this ISO 8601 time, e.g. 2026-11-24T09:30:00+08:00.", valueName: "time"))
    var at: String?

    @Option(help: "The message's category (default: the template's).")
    var category: String?

    @Option(name: .customLong("idempotency-key"), help: ArgumentHelp(
      "1–64 printable ASCII characters (default: a new random key, printed).", valueName: "key"))
    var idempotencyKey: String?

    func validate() throws {
      let targets = [to, segment, topic].compactMap { $0 }
      guard targets.count == 1 else {
        throw ArgumentParser.ValidationError(
          targets.isEmpty
            ? "Say who receives it: --to ACCOUNT-ID, --segment role=citizen,region=31 or --topic CODE."
            : "Give only one of --to, --segment, --topic.")
      }
      if let to, to.isEmpty { throw ArgumentParser.ValidationError("--to needs an account id.") }
      if let segment { _ = try SegmentSpec.parse(segment) }
      if let version, version < 1 { throw ArgumentParser.ValidationError("--version must be 1 or more (omit it for the latest).") }
      _ = try KeyValues.parse(personalisation, option: "--set")
      _ = try KeyValues.parse(data, option: "--data")
      if let ttl { _ = try DurationText.seconds(ttl, option: "--ttl", max: 28 * 86_400) }
      if let at { _ = try TimeText.date(at, option: "--at") }
      if let collapseKey, collapseKey.isEmpty { throw ArgumentParser.ValidationError("--collapse-key must not be empty.") }
      if let idempotencyKey, !(1...64).contains(idempotencyKey.count) || !idempotencyKey.unicodeScalars.allSatisfy({ $0.isASCII && $0.value > 0x20 && $0.value < 0x7F }) {
        throw ArgumentParser.ValidationError("--idempotency-key must be 1–64 printable ASCII characters without spaces.")
      }
    }

    func execute() async throws {
      var request = Onewindow_V1_PublishRequest()
      request.audience = try audience()
      request.template = template
      request.templateVersion = version ?? 0
      request.personalisation = try KeyValues.parse(personalisation, option: "--set")
      request.data = try KeyValues.parse(data, option: "--data")
      request.priority = priority?.proto ?? .unspecified
      if let ttl { request.ttlSeconds = try DurationText.seconds(ttl, option: "--ttl", max: 28 * 86_400) }
      request.collapseKey = collapseKey ?? ""
      if let at { request.sendAt = Google_Protobuf_Timestamp(date: try TimeText.date(at, option: "--at")) }
      request.category = category ?? ""
      let key = idempotencyKey ?? UUID().uuidString.lowercased()
      request.idempotencyKey = key
      if idempotencyKey == nil {
        Console.error("idempotency key \(key)  (to retry safely, run the same command with --idempotency-key \(key))")
      }
      let sent = request
      try await global.connect { remote in
        let response = try await remote.authorized { metadata in
          try await remote.notify.publish(sent, metadata: metadata, options: remote.call)
        }
        try remote.output.show(response) {
          let p = response.publication
          let verb = p.status == .scheduled ? "scheduled" : "published"
          Console.out(response.replayed ? "already published with this key: the original publication" : "\(verb) \(p.id)")
          PublicationView.summary(p).print()
        }
      }
    }

    func audience() throws -> Onewindow_V1_Audience {
      var audience = Onewindow_V1_Audience()
      if let to {
        audience.accountID = to
      } else if let segment {
        audience.segment = try SegmentSpec.parse(segment)
      } else if let topic {
        audience.topic = topic
      }
      return audience
    }
  }

  struct Cancel: OwctlCommand {
    static let configuration = CommandConfiguration(
      abstract: "Cancel a scheduled publication before its send time (FAILED_PRECONDITION once sent).")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The publication id.")
    var id: String

    func execute() async throws {
      try await global.connect { remote in
        let p = try await remote.authorized { metadata in
          try await remote.notify.cancelPublication(.with { $0.id = id }, metadata: metadata, options: remote.call)
        }
        try remote.output.show(p) {
          Console.out("cancelled \(p.id)")
          PublicationView.summary(p).print()
        }
      }
    }
  }

  struct List: OwctlCommand {
    static let configuration = CommandConfiguration(abstract: "Publications, newest first.")

    @OptionGroup var global: GlobalOptions

    @OptionGroup var page: PageOptions

    func execute() async throws {
      try await global.connect { remote in
        let response = try await remote.authorized { metadata in
          try await remote.notify.listPublications(.with {
            $0.pageSize = page.pageSize
            $0.pageToken = page.token
          }, metadata: metadata, options: remote.call)
        }
        try remote.output.show(response) {
          if response.publications.isEmpty {
            Console.out("no publications")
          } else {
            var table = Table(["ID", "CREATED", "STATUS", "SEND TIME", "AUDIENCE", "TEMPLATE", "RECIPIENTS", "TITLE"], right: [6])
            for p in response.publications {
              let time = p.hasSentAt ? p.sentAt : p.sendAt
              table.add([
                p.id, p.hasCreatedAt ? Format.minute(p.createdAt) : "", p.status.label,
                p.hasSentAt || p.hasSendAt ? Format.minute(time) : "", PublicationView.audience(p.audience),
                "\(p.template) v\(p.templateVersion)", p.status == .sent ? "\(p.recipientCount)" : "-",
                NotificationView.clip(p.title, width: 30),
              ])
            }
            table.print()
          }
          if !response.nextPageToken.isEmpty { Console.out("more: --page-token \(response.nextPageToken)") }
        }
      }
    }
  }

  struct Show: OwctlCommand {
    static let configuration = CommandConfiguration(abstract: "Show a publication with its rendered text.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The publication id.")
    var id: String

    func execute() async throws {
      try await global.connect { remote in
        let p = try await remote.authorized { metadata in
          try await remote.notify.getPublication(.with { $0.id = id }, metadata: metadata, options: remote.call)
        }
        try remote.output.show(p) { PublicationView.print(p) }
      }
    }
  }
}

// MARK: - admin templates

struct AdminTemplatesCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "templates",
    abstract: "Notification templates: list, show, and put (create, or save a new version).",
    discussion: """
      Title and body use ((placeholder)) personalisation, filled by `owctl admin notify --set \
      name=value`. Saving makes a new version; earlier versions stay readable. System templates \
      (case events, login codes, reminders) may be reworded but must keep their placeholders.
      """,
    subcommands: [List.self, Show.self, Put.self])

  struct List: OwctlCommand {
    static let configuration = CommandConfiguration(abstract: "The latest version of every template.")

    @OptionGroup var global: GlobalOptions

    func execute() async throws {
      try await global.connect { remote in
        let response = try await remote.authorized { metadata in
          try await remote.notify.listTemplates(.init(), metadata: metadata, options: remote.call)
        }
        try remote.output.show(response) {
          guard !response.templates.isEmpty else { return Console.out("no templates") }
          var table = Table(["NAME", "VERSION", "CATEGORY", "SYSTEM", "PLACEHOLDERS", "TITLE"], right: [1])
          for t in response.templates {
            table.add([t.name, "\(t.version)", t.category, t.system ? "yes" : "-", TemplateView.placeholders(t), t.title])
          }
          table.print()
        }
      }
    }
  }

  struct Show: OwctlCommand {
    static let configuration = CommandConfiguration(abstract: "Show a template (its latest version, or --version N).")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The template's name, e.g. case.accepted.")
    var name: String

    @Option(help: "This version instead of the latest.")
    var version: Int32?

    func validate() throws {
      if let version, version < 1 { throw ArgumentParser.ValidationError("--version must be 1 or more (omit it for the latest).") }
    }

    func execute() async throws {
      try await global.connect { remote in
        let t = try await remote.authorized { metadata in
          try await remote.notify.getTemplate(.with {
            $0.name = name
            $0.version = version ?? 0
          }, metadata: metadata, options: remote.call)
        }
        try remote.output.show(t) { TemplateView.print(t) }
      }
    }
  }

  struct Put: OwctlCommand {
    static let configuration = CommandConfiguration(
      abstract: "Create a template, or save a new version of one.",
      discussion: """
        Without --expected-version the current latest version is read first and the new one is \
        saved on top of it (0 for a new template); with it, the save is refused (ABORTED) when \
        someone saved another version since the one you edited. Without --category an existing \
        template keeps its category (a new one gets general).
        """)

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The template's name: 2–64 characters of a-z, 0-9, '-', '_', '.' (e.g. district.water_outage).")
    var name: String

    @Option(help: "The title (up to 100 characters), may use ((placeholders)).")
    var title: String

    @Option(help: "The body (up to 2000 characters), may use ((placeholders)).")
    var body: String?

    @Option(name: .customLong("body-file"), help: ArgumentHelp("Read the body from this file (- for standard input).", valueName: "file"))
    var bodyFile: String?

    @Option(help: "The category, e.g. general, announcement, case.")
    var category: String?

    @Option(name: .customLong("expected-version"), help: "The version you edited (0 for a new template).")
    var expectedVersion: Int32?

    func validate() throws {
      switch (body, bodyFile) {
      case (nil, nil): throw ArgumentParser.ValidationError("Give the body with --body TEXT or --body-file FILE.")
      case (.some, .some): throw ArgumentParser.ValidationError("Give --body or --body-file, not both.")
      default: break
      }
      if let expectedVersion, expectedVersion < 0 {
        throw ArgumentParser.ValidationError("--expected-version must be 0 (a new template) or more.")
      }
    }

    func execute() async throws {
      let text = try body ?? readBody()
      try await global.connect { remote in
        var expected = expectedVersion
        var category = self.category
        if expected == nil || category == nil {
          let current = try await currentTemplate(remote)
          if expected == nil { expected = current?.version ?? 0 }
          if category == nil { category = current?.category }
        }
        let request = Onewindow_V1_PutTemplateRequest.with {
          $0.name = name
          $0.title = title
          $0.body = text
          $0.category = category ?? ""
          $0.expectedVersion = expected ?? 0
        }
        let t = try await remote.authorized { metadata in
          try await remote.notify.putTemplate(request, metadata: metadata, options: remote.call)
        }
        try remote.output.show(t) {
          Console.out("saved \(t.name) version \(t.version)  (placeholders: \(TemplateView.placeholders(t)))")
        }
      }
    }

    /// The latest version, or nil when there is none yet.
    private func currentTemplate(_ remote: Remote) async throws -> Onewindow_V1_NotificationTemplate? {
      do {
        return try await remote.authorized { metadata in
          try await remote.notify.getTemplate(.with { $0.name = name }, metadata: metadata, options: remote.call)
        }
      } catch let error as RPCError where error.code == .notFound {
        return nil
      }
    }

    private func readBody() throws -> String {
      guard let bodyFile else { throw CLIError("give --body or --body-file") }
      let data: Data
      if bodyFile == "-" {
        data = FileHandle.standardInput.readDataToEndOfFile()
      } else {
        guard FileManager.default.fileExists(atPath: bodyFile) else { throw CLIError("no such file: \(bodyFile)") }
        do { data = try Data(contentsOf: URL(fileURLWithPath: bodyFile)) } catch {
          throw CLIError("cannot read \(bodyFile): \(ErrorReport.describe(error))")
        }
      }
      guard let text = String(data: data, encoding: .utf8) else { throw CLIError("\(bodyFile) is not UTF-8 text") }
      // A file's final newline is not part of the message.
      return text.hasSuffix("\n") ? String(text.dropLast()) : text
    }
  }
}

// MARK: - admin topics

struct AdminTopicsCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "topics",
    abstract: "Create topics (everyone lists them with `owctl topics list`).",
    subcommands: [Create.self])

  struct Create: OwctlCommand {
    static let configuration = CommandConfiguration(abstract: "Create a topic (ALREADY_EXISTS when the code is taken).")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The topic code: 2–64 characters of a-z, 0-9, '-', '_', '.' (e.g. district.310104).")
    var code: String

    @Option(help: "The title people see.")
    var title: String

    @Option(help: "A description.")
    var description: String?

    func execute() async throws {
      try await global.connect { remote in
        let topic = try await remote.authorized { metadata in
          try await remote.notify.createTopic(.with {
            $0.code = code
            $0.title = title
            $0.description_p = description ?? ""
          }, metadata: metadata, options: remote.call)
        }
        try remote.output.show(topic) {
          Console.out("created topic \(topic.code): \(topic.title)")
          Console.out("publish to it with `owctl admin notify --topic \(topic.code) --template NAME …`; "
            + "people subscribe with `owctl topics subscribe \(topic.code)`")
        }
      }
    }
  }
}

// MARK: - admin webhooks

struct AdminWebhooksCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "webhooks",
    abstract: "Webhook endpoints of third-party platforms: add, list, enable, disable; deliveries and replay.",
    discussion: """
      Each event is POSTed as JSON to the endpoint's URL with an OneWindow-Signature header \
      (HMAC-SHA256 with the endpoint's secret); docs/notifications.md shows how a receiver \
      verifies it. Failed deliveries are retried with backoff; the last failure is a dead letter \
      (technical-failure) that `replay` sends again.
      """,
    subcommands: [Add.self, List.self, Enable.self, Disable.self, Deliveries.self, Replay.self])

  struct Add: OwctlCommand {
    static let configuration = CommandConfiguration(
      abstract: "Register an HTTPS endpoint for event types; prints its signing secret once.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The endpoint's URL (https://; http:// only to a loopback address on a server run with --allow-loopback-webhooks).")
    var url: String

    @Option(help: ArgumentHelp(
      "Event types, comma-separated or repeated: case.transition, notification.published.", valueName: "type,…"))
    var events: [String] = []

    @Option(help: "What the endpoint is (up to 200 characters).")
    var description: String?

    var eventTypes: [String] {
      events.flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    func validate() throws {
      if eventTypes.isEmpty {
        throw ArgumentParser.ValidationError("Give the event types with --events, e.g. --events case.transition,notification.published.")
      }
    }

    func execute() async throws {
      let types = eventTypes
      try await global.connect { remote in
        let response = try await remote.authorized { metadata in
          try await remote.notify.addWebhook(.with {
            $0.url = url
            $0.eventTypes = types
            $0.description_p = description ?? ""
          }, metadata: metadata, options: remote.call)
        }
        try remote.output.show(response) {
          let e = response.endpoint
          Console.out("added webhook \(e.id) → \(e.url)  (events: \(e.eventTypes.joined(separator: ", ")))")
          Console.out("signing secret: \(response.secret)")
        }
        Console.error(
          "warning: the signing secret is shown only this once; store it now with the receiver (it verifies the "
            + "OneWindow-Signature header). If it is lost, add a new endpoint and disable this one.")
      }
    }
  }

  struct List: OwctlCommand {
    static let configuration = CommandConfiguration(abstract: "Every webhook endpoint.")

    @OptionGroup var global: GlobalOptions

    func execute() async throws {
      try await global.connect { remote in
        let response = try await remote.authorized { metadata in
          try await remote.notify.listWebhooks(.init(), metadata: metadata, options: remote.call)
        }
        try remote.output.show(response) {
          guard !response.endpoints.isEmpty else { return Console.out("no webhook endpoints") }
          var table = Table(["ID", "URL", "EVENTS", "ENABLED", "CREATED", "DESCRIPTION"])
          for e in response.endpoints {
            table.add([
              e.id, e.url, e.eventTypes.joined(separator: ","), e.enabled ? "yes" : "no",
              e.hasCreatedAt ? Format.minute(e.createdAt) : "", e.description_p,
            ])
          }
          table.print()
        }
      }
    }
  }

  struct Enable: OwctlCommand {
    static let configuration = CommandConfiguration(abstract: "Resume deliveries to an endpoint.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The endpoint id (see `owctl admin webhooks list`).") var id: String
    func execute() async throws { try await SetEnabled.run(global, id: id, enabled: true) }
  }

  struct Disable: OwctlCommand {
    static let configuration = CommandConfiguration(
      abstract: "Stop deliveries to an endpoint (queued ones fail as permanent-failure when they come due).")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The endpoint id (see `owctl admin webhooks list`).") var id: String
    func execute() async throws { try await SetEnabled.run(global, id: id, enabled: false) }
  }

  enum SetEnabled {
    static func run(_ global: GlobalOptions, id: String, enabled: Bool) async throws {
      try await global.connect { remote in
        let e = try await remote.authorized { metadata in
          try await remote.notify.setWebhookEnabled(.with {
            $0.id = id
            $0.enabled = enabled
          }, metadata: metadata, options: remote.call)
        }
        try remote.output.show(e) { Console.out("\(e.enabled ? "enabled" : "disabled") \(e.id) → \(e.url)") }
      }
    }
  }

  /// `--status` values: the delivery statuses, and `failed` for the three failure statuses.
  enum StatusFilter: String, CaseIterable, ExpressibleByArgument {
    case created, sending, delivered
    case temporaryFailure = "temporary-failure"
    case permanentFailure = "permanent-failure"
    case technicalFailure = "technical-failure"
    case failed

    var statuses: [Onewindow_V1_DeliveryStatus] {
      switch self {
      case .created: [.created]
      case .sending: [.sending]
      case .delivered: [.delivered]
      case .temporaryFailure: [.temporaryFailure]
      case .permanentFailure: [.permanentFailure]
      case .technicalFailure: [.technicalFailure]
      case .failed: [.temporaryFailure, .permanentFailure, .technicalFailure]
      }
    }
  }

  struct Deliveries: OwctlCommand {
    static let configuration = CommandConfiguration(
      abstract: "Outbound deliveries, newest first, with every attempt (number, time, HTTP status, error).")

    @OptionGroup var global: GlobalOptions

    @Option(help: ArgumentHelp("Only this endpoint's deliveries.", valueName: "endpoint-id"))
    var endpoint: String?

    @Option(help: ArgumentHelp(
      "Only this status: created, sending, delivered, temporary-failure, permanent-failure, technical-failure (dead letters), or failed (any of the three failures).",
      valueName: "status"))
    var status: StatusFilter?

    @OptionGroup var page: PageOptions

    func validate() throws {
      if status == .failed, page.pageToken != nil {
        throw ArgumentParser.ValidationError("--status failed combines three lists and has no pages; page through one status instead.")
      }
    }

    func execute() async throws {
      let statuses = status?.statuses ?? [.unspecified]
      try await global.connect { remote in
        var response = Onewindow_V1_ListDeliveriesResponse()
        for s in statuses {
          let batch = try await remote.authorized { metadata in
            try await remote.notify.listDeliveries(.with {
              $0.endpointID = endpoint ?? ""
              $0.status = s
              $0.pageSize = page.pageSize
              $0.pageToken = page.token
            }, metadata: metadata, options: remote.call)
          }
          response.deliveries += batch.deliveries
          if statuses.count == 1 { response.nextPageToken = batch.nextPageToken }
        }
        if statuses.count > 1 {
          // Newest first across the lists (by creation time: replays' ids have another form), cut to the page size.
          response.deliveries.sort { a, b in
            let (x, y) = (a.createdAt.date, b.createdAt.date)
            return x != y ? x > y : a.id > b.id
          }
          response.deliveries = Array(response.deliveries.prefix(Int(page.limit ?? 50)))
        }
        try remote.output.show(response) {
          if response.deliveries.isEmpty {
            Console.out("no deliveries")
          } else {
            Console.out(response.deliveries.map(DeliveryView.render).joined(separator: "\n\n"))
          }
          if !response.nextPageToken.isEmpty { Console.out("more: --page-token \(response.nextPageToken)") }
        }
      }
    }
  }

  struct Replay: OwctlCommand {
    static let configuration = CommandConfiguration(
      abstract: "Send a failed delivery again, as a new delivery (only permanent-failure or technical-failure).")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The delivery id (see `owctl admin webhooks deliveries --status failed`).")
    var id: String

    func execute() async throws {
      try await global.connect { remote in
        let d = try await remote.authorized { metadata in
          try await remote.notify.replayDelivery(.with { $0.id = id }, metadata: metadata, options: remote.call)
        }
        try remote.output.show(d) {
          Console.out("queued \(d.id), a replay of \(d.replayOf.isEmpty ? id : d.replayOf)")
          Console.out(DeliveryView.render(d))
        }
      }
    }
  }
}

// MARK: - Argument parsing

/// `key=value` options (--set, --data). Values may be empty; a key given twice is an error.
enum KeyValues {
  static func parse(_ items: [String], option: String) throws -> [String: String] {
    var out: [String: String] = [:]
    for item in items {
      guard let equals = item.firstIndex(of: "="), equals != item.startIndex else {
        throw ArgumentParser.ValidationError("\(option) '\(item)' is not key=value.")
      }
      let key = String(item[..<equals])
      guard out[key] == nil else { throw ArgumentParser.ValidationError("\(option) gives \(key) twice.") }
      out[key] = String(item[item.index(after: equals)...])
    }
    return out
  }
}

/// `--segment role=citizen,department=scjg,region=31`.
enum SegmentSpec {
  static let roles: [String: Onewindow_V1_Role] = [
    "citizen": .citizen, "enterprise": .enterprise, "caseworker": .caseworker, "admin": .admin,
  ]

  static func parse(_ text: String) throws -> Onewindow_V1_Segment {
    var segment = Onewindow_V1_Segment()
    var seen = Set<String>()
    for part in text.split(separator: ",") {
      let pair = part.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
      guard pair.count == 2, !pair[1].isEmpty else {
        throw ArgumentParser.ValidationError("--segment '\(part)' is not key=value (keys: role, department, region).")
      }
      let key = pair[0] == "department_code" ? "department" : pair[0]
      guard seen.insert(key).inserted else { throw ArgumentParser.ValidationError("--segment gives \(key) twice.") }
      switch key {
      case "role":
        guard let role = roles[pair[1]] else {
          throw ArgumentParser.ValidationError("--segment role must be one of citizen, enterprise, caseworker, admin.")
        }
        segment.role = role
      case "department":
        segment.departmentCode = pair[1]
      case "region":
        guard [2, 4, 6].contains(pair[1].count), pair[1].allSatisfy({ $0.isASCII && $0.isNumber }) else {
          throw ArgumentParser.ValidationError(
            "--segment region must be a 2-, 4- or 6-digit administrative division code, e.g. 31, 3101, 310104.")
        }
        segment.region = pair[1]
      default:
        throw ArgumentParser.ValidationError("--segment: unknown key '\(pair[0])'; use role=, department= and region=.")
      }
    }
    guard !seen.isEmpty else {
      throw ArgumentParser.ValidationError("--segment needs at least one of role=, department=, region=.")
    }
    return segment
  }
}

/// Durations like 90s, 30m, 1h, 2d, 1h30m.
enum DurationText {
  static func seconds(_ text: String, option: String, max: Int64) throws -> Int64 {
    let bad = ArgumentParser.ValidationError("\(option) '\(text)' is not a duration like 90s, 30m, 1h, 2d or 1h30m.")
    var total: Int64 = 0
    var number = ""
    var units = 0
    for character in text.lowercased() {
      if character.isASCII && character.isNumber {
        number.append(character)
        continue
      }
      let unit: Int64
      switch character {
      case "s": unit = 1
      case "m": unit = 60
      case "h": unit = 3600
      case "d": unit = 86_400
      default: throw bad
      }
      guard let value = Int64(number), value <= 100_000 else { throw bad }
      total += value * unit
      number = ""
      units += 1
    }
    guard number.isEmpty, units > 0 else { throw bad }
    guard total >= 1, total <= max else {
      throw ArgumentParser.ValidationError("\(option) must be from 1s to \(describe(max)).")
    }
    return total
  }

  /// 5400 → "1h30m".
  static func describe(_ seconds: Int64) -> String {
    var rest = seconds
    var out = ""
    for (unit, name) in [(Int64(86_400), "d"), (3600, "h"), (60, "m"), (1, "s")] where rest >= unit {
      out += "\(rest / unit)\(name)"
      rest %= unit
    }
    return out.isEmpty ? "0s" : out
  }
}

/// ISO 8601 times for --at.
enum TimeText {
  static func date(_ text: String, option: String) throws -> Date {
    if let date = try? Date(text, strategy: .iso8601) { return date }
    throw ArgumentParser.ValidationError(
      "\(option) '\(text)' is not an ISO 8601 time with its offset, e.g. 2026-11-24T09:30:00+08:00.")
  }
}

// MARK: - Views

extension Onewindow_V1_PublicationStatus {
  var label: String {
    switch self {
    case .scheduled: "scheduled"
    case .sent: "sent"
    case .cancelled: "cancelled"
    case .unspecified: "-"
    case .UNRECOGNIZED(let n): "status \(n)"
    }
  }
}

extension Onewindow_V1_DeliveryStatus {
  var label: String {
    switch self {
    case .created: "created"
    case .sending: "sending"
    case .delivered: "delivered"
    case .temporaryFailure: "temporary-failure"
    case .permanentFailure: "permanent-failure"
    case .technicalFailure: "technical-failure"
    case .unspecified: "-"
    case .UNRECOGNIZED(let n): "status \(n)"
    }
  }
}

enum PublicationView {
  static func audience(_ a: Onewindow_V1_Audience) -> String {
    switch a.target {
    case .accountID(let id)?: return "account \(id)"
    case .topic(let code)?: return "topic \(code)"
    case .segment(let s)?:
      var parts: [String] = []
      if s.role != .unspecified { parts.append("role=\(s.role.label)") }
      if !s.departmentCode.isEmpty { parts.append("department=\(s.departmentCode)") }
      if !s.region.isEmpty { parts.append("region=\(s.region)") }
      return "segment " + parts.joined(separator: ",")
    case nil: return "-"
    }
  }

  /// Id, status, audience, recipients, event id and send time.
  static func summary(_ p: Onewindow_V1_Publication) -> Table {
    var status = p.status.label
    if p.status == .scheduled, p.hasSendAt { status += " for \(Format.date(p.sendAt))" }
    let recipients: String
    switch p.status {
    case .sent:
      if case .topic? = p.audience.target {
        recipients = "the topic's subscribers (stored once)"
      } else {
        recipients = "\(p.recipientCount)"
      }
    case .scheduled: recipients = "resolved at the send time"
    default: recipients = "-"
    }
    return Table.keyValue([
      ("Publication", p.id),
      ("Status", status),
      ("Audience", audience(p.audience)),
      ("Template", "\(p.template) v\(p.templateVersion)"),
      ("Recipients", recipients),
      ("Event id", p.eventID.isEmpty && p.status == .sent ? "(one per inbox)" : p.eventID),
      ("Sent at", p.hasSentAt ? Format.date(p.sentAt) : ""),
    ], indent: "  ")
  }

  static func print(_ p: Onewindow_V1_Publication) {
    var lines = ["\(p.title)  [\(p.id)]"]
    lines.append(Table.keyValue([
      ("Status", p.status.label),
      ("Audience", audience(p.audience)),
      ("Template", "\(p.template) v\(p.templateVersion)"),
      ("Category", p.category),
      ("Priority", p.priority.label),
      ("Collapse key", p.collapseKey),
      ("TTL", p.ttlSeconds > 0 ? DurationText.describe(p.ttlSeconds) : ""),
      ("Created", p.hasCreatedAt ? Format.date(p.createdAt) : ""),
      ("Send at", p.hasSendAt ? Format.date(p.sendAt) : ""),
      ("Sent at", p.hasSentAt ? Format.date(p.sentAt) : ""),
      ("Recipients", p.status == .sent ? "\(p.recipientCount)" : ""),
      ("Event id", p.eventID),
      ("Data", p.data.keys.sorted().map { "\($0)=\(p.data[$0] ?? "")" }.joined(separator: " ")),
    ]).render())
    lines.append("")
    lines += p.body.split(separator: "\n", omittingEmptySubsequences: false).map { "  " + $0 }
    Console.out(lines.joined(separator: "\n"))
  }
}

enum TemplateView {
  static func placeholders(_ t: Onewindow_V1_NotificationTemplate) -> String {
    t.placeholders.isEmpty ? "none" : t.placeholders.map { "((\($0)))" }.joined(separator: " ")
  }

  static func print(_ t: Onewindow_V1_NotificationTemplate) {
    var lines = [Table.keyValue([
      ("Template", t.name),
      ("Version", "\(t.version)"),
      ("Category", t.category),
      ("System", t.system ? "yes: its placeholders cannot change" : ""),
      ("Placeholders", placeholders(t)),
      ("Created", t.hasCreatedAt ? Format.date(t.createdAt) : ""),
      ("Title", t.title),
    ]).render()]
    lines.append("")
    lines += t.body.split(separator: "\n", omittingEmptySubsequences: false).map { "  " + $0 }
    Console.out(lines.joined(separator: "\n"))
  }
}

enum DeliveryView {
  /// A delivery line, then one indented line per attempt.
  static func render(_ d: Onewindow_V1_Delivery) -> String {
    var head = "\(d.id)  \(d.status.label)  \(d.eventType)  \(d.eventID)  → \(d.channel) \(d.target)"
    if d.hasCreatedAt { head += "  created \(Format.date(d.createdAt))" }
    var lines = [head]
    if !d.replayOf.isEmpty { lines.append("  replay of \(d.replayOf)") }
    if d.hasNextAttemptAt, d.status == .created || d.status == .temporaryFailure { lines.append("  next attempt \(Format.date(d.nextAttemptAt))") }
    if d.attempts.isEmpty {
      lines.append("  no attempts yet")
    } else {
      var table = Table(["#", "TIME", "HTTP", "MS", "ERROR"], right: [0, 2, 3])
      table.indent = "  "
      for a in d.attempts {
        table.add([
          "\(a.number)", a.hasAt ? Format.date(a.at) : "", a.httpStatus == 0 ? "-" : "\(a.httpStatus)", "\(a.durationMs)", a.error,
        ])
      }
      lines.append(table.render())
    }
    return lines.joined(separator: "\n")
  }
}
