import ArgumentParser
import Crypto
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import OneWindowAPI
import OneWindowClientPosix
import OneWindowCore
import SwiftProtobuf

// Plumbing shared by the case, worker, certificate, evaluation and audit commands.

extension Remote {
  var cases: Onewindow_V1_CaseService.Client<HTTP2ClientTransport.Posix> { clients.cases }
  var materials: Onewindow_V1_MaterialService.Client<HTTP2ClientTransport.Posix> { clients.materials }
  var certificates: Onewindow_V1_CertificateService.Client<HTTP2ClientTransport.Posix> { clients.certificates }
  var evaluations: Onewindow_V1_EvaluationService.Client<HTTP2ClientTransport.Posix> { clients.evaluations }
  var audit: Onewindow_V1_AuditService.Client<HTTP2ClientTransport.Posix> { clients.audit }

  /// The saved login is a caseworker's or an administrator's (for hints only).
  var isStaff: Bool {
    guard let role = (try? sessions.load(server))??.role else { return false }
    return role == Onewindow_V1_Role.caseworker.label || role == Onewindow_V1_Role.admin.label
  }
}

/// The case a command acts on, and the optimistic-concurrency guard.
struct CaseTarget: ParsableArguments {
  @Argument(help: "The case id or its tracking code (全程一码).")
  var caseID: String

  @Option(help: "Act only if the case is still at this version (see `owctl case status`); otherwise ABORTED.")
  var expectedVersion: Int64?

  func validate() throws {
    if let expectedVersion, expectedVersion < 1 { throw ArgumentParser.ValidationError("--expected-version must be 1 or more.") }
  }
}

/// Sends one ActOnCase and prints the outcome.
enum ActOnCase {
  static func run(
    _ global: GlobalOptions, _ target: CaseTarget, _ event: Onewindow_V1_CaseEvent,
    _ configure: (inout Onewindow_V1_ActOnCaseRequest) -> Void = { _ in }
  ) async throws {
    var request = Onewindow_V1_ActOnCaseRequest()
    request.caseID = target.caseID
    request.event = event
    request.expectedVersion = target.expectedVersion ?? 0
    configure(&request)
    let sent = request
    try await global.connect { remote in
      let updated = try await remote.authorized { metadata in
        try await remote.cases.actOnCase(sent, metadata: metadata, options: remote.call)
      }
      try remote.output.show(updated) { print(event: event, updated, staff: remote.isStaff) }
    }
  }

  static func print(event: Onewindow_V1_CaseEvent, _ c: Onewindow_V1_Case, staff: Bool) {
    Console.out("\(event.label): case \(c.trackingCode) is now \(c.state.label), version \(c.version)")
    if event == .approve, !c.certificateNumber.isEmpty {
      Console.out("certificate issued: \(c.certificateNumber)  (owctl cert show \(c.certificateNumber))")
    }
    if event == .dispatchResult, !c.deliveryReference.isEmpty {
      Console.out("courier tracking number: \(c.deliveryReference)")
    }
    CaseView.printAvailable(c, indent: "", staff: staff)
  }
}

// MARK: - Drafts

enum DraftRecords {
  static let collection = SyncCollections.caseDrafts.name

  /// The draft in the local replica, or a clear error.
  static func load(_ replica: SyncReplica, id: String) async throws -> LocalRecord {
    guard let record = try await replica.get(collection: collection, id: id) else {
      throw CLIError(
        "no draft \(id) in this account's local replica (see `owctl case drafts`; a submitted draft is removed at the next sync)")
    }
    return record
  }

  /// The item from the local copy of the catalog (the synced `catalog.items` collection), or
  /// nil when this device has not synced it.
  static func item(_ replica: SyncReplica, code: String) async -> Onewindow_V1_ServiceItem? {
    guard !code.isEmpty, let record = try? await replica.get(collection: SyncCollections.catalogItems.name, id: code),
          case .bytes(let bytes)? = record.fields["item"],
          let item = try? Onewindow_V1_ServiceItem(serializedBytes: bytes)
    else { return nil }
    return item
  }

  static func formFields(_ item: Onewindow_V1_ServiceItem?) -> [String: Onewindow_V1_FormField]? {
    guard let item else { return nil }
    return Dictionary(item.spec.formSchema.fields.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
  }

  /// What the draft still lacks for submission, judged against the local copy of the item.
  static func missing(_ fields: [String: SyncValue], item: Onewindow_V1_ServiceItem) -> [String] {
    var form: [String: SyncValue] = [:]
    if case .map(let m)? = fields["form"] { form = m }
    var materials: [String: SyncValue] = [:]
    if case .map(let m)? = fields["materials"] { materials = m }
    var out: [String] = []
    for field in item.spec.formSchema.fields where field.required {
      switch form[field.name] {
      case nil, .null?: out.append("form \(field.name) (\(field.label))")
      case .string(let s)? where s.trimmingCharacters(in: .whitespaces).isEmpty: out.append("form \(field.name) (\(field.label))")
      default: break
      }
    }
    for material in item.spec.materials where material.required && materials[material.name] == nil {
      out.append("material \(material.name)" + (material.ecertSubstitutable ? " (file or --cert)" : ""))
    }
    return out
  }

  /// One line on stderr: what is still missing, or that the draft looks complete.
  static func hint(_ replica: SyncReplica, id: String) async {
    guard let record = try? await replica.get(collection: collection, id: id) else { return }
    let code = itemCode(record)
    guard let item = await Self.item(replica, code: code) else {
      Console.error("note: \(code) is not in this device's copy of the catalog (run `owctl sync`); the draft is checked only on submission")
      return
    }
    let missing = Self.missing(record.fields, item: item)
    if missing.isEmpty {
      Console.error("complete: submit with `owctl case submit \(id)`")
    } else {
      Console.error("still missing: " + missing.joined(separator: "; "))
    }
  }

  /// `field=value` as a draft form value: a string, except for boolean fields (true/false, 是/否).
  /// Without the item's schema, `true`/`false` are booleans and everything else a string. A
  /// JSON-quoted value ('"true"') is always that string.
  static func formAssignment(_ text: String, fields: [String: Onewindow_V1_FormField]?) throws -> (String, SyncValue) {
    guard let equals = text.firstIndex(of: "="), equals != text.startIndex else {
      throw CLIError("'\(text)' is not field=value")
    }
    let name = String(text[..<equals])
    let raw = String(text[text.index(after: equals)...])
    if let fields {
      guard let field = fields[name] else {
        let known = fields.keys.sorted().joined(separator: ", ")
        throw CLIError("\(name) is not a field of this item's form (fields: \(known))")
      }
      if field.type == .boolean {
        switch raw.lowercased() {
        case "true", "yes", "是", "1": return (name, .bool(true))
        case "false", "no", "否", "0": return (name, .bool(false))
        default: throw CLIError("\(name) (\(field.label)) is yes/no: give true or false")
        }
      }
    }
    if raw.count >= 2, raw.hasPrefix("\""), raw.hasSuffix("\""), case .string(let s)? = try? SyncValue(jsonText: raw) {
      return (name, .string(s))
    }
    if fields == nil, raw == "true" || raw == "false" { return (name, .bool(raw == "true")) }
    return (name, .string(raw))
  }

  static func formMap(_ record: LocalRecord) -> [String: SyncValue] {
    if case .map(let form)? = record.fields["form"] { return form }
    return [:]
  }

  static func materialsMap(_ record: LocalRecord) -> [String: SyncValue] {
    if case .map(let materials)? = record.fields["materials"] { return materials }
    return [:]
  }

  static func itemCode(_ record: LocalRecord) -> String {
    if case .string(let code)? = record.fields["item_code"] { return code }
    return ""
  }

  /// Prints what a put of a local record queued (or its JSON form); shared with `records put`.
  static func report(_ global: GlobalOptions, id: String, mutation: PendingMutation?, record: LocalRecord?, verb: String?) {
    if global.json {
      Console.out(JSONPretty.indent(JSONText.object([
        ("id", JSONText.string(id)),
        ("mutationId", mutation.map { String($0.mutationID) } ?? "null"),
        ("record", record.map(RecordView.json) ?? "null"),
      ])))
    } else if let mutation {
      Console.out("\(id)  \(verb.map { "\($0); " } ?? "")queued as mutation \(mutation.mutationID) (\(MutationView.fieldList(mutation)))")
    } else {
      Console.out("\(id)  unchanged: nothing queued")
    }
  }
}

/// The local replica, a connection, and a sync engine over both (for commands that push a draft
/// or record an upload in it).
enum DraftSession {
  static func with<T: Sendable>(
    _ global: GlobalOptions,
    _ body: @escaping (SyncReplica, Remote, SyncEngine<HTTP2ClientTransport.Posix>) async throws -> T
  ) async throws -> T {
    try await LocalReplica.with(global) { replica in
      try await global.connect { remote in
        let credentials = Credentials(remote: remote)
        let engine = SyncEngine(
          replica: replica, client: remote.clients.sync, options: .init(callOptions: remote.call),
          metadata: { try await credentials.metadata() })
        return try await body(replica, remote, engine)
      }
    }
  }
}

// MARK: - Materials

enum MaterialTransfer {
  static let chunkSize = 1 << 20

  static let contentTypes: [String: String] = [
    "pdf": "application/pdf", "jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "ofd": "application/ofd",
  ]

  static func contentType(for path: String, override: String?) throws -> String {
    if let override { return override }
    let ext = URL(fileURLWithPath: path).pathExtension.lowercased()
    guard let type = contentTypes[ext] else {
      throw CLIError(
        "cannot tell the content type of \(path) from its extension; pass --type (application/pdf, image/jpeg, image/png, application/ofd)")
    }
    return type
  }

  /// Size and lowercase hex SHA-256 of a regular file, read in chunks.
  static func digest(path: String) throws -> (size: Int64, sha256: String) {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { throw CLIError("no such file: \(path)") }
    guard !isDirectory.boolValue else { throw CLIError("\(path) is a directory") }
    let handle: FileHandle
    do { handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path)) } catch {
      throw CLIError("cannot read \(path): \(ErrorReport.describe(error))")
    }
    defer { try? handle.close() }
    var hasher = SHA256()
    var size: Int64 = 0
    do {
      while let chunk = try handle.read(upToCount: chunkSize), !chunk.isEmpty {
        hasher.update(data: chunk)
        size += Int64(chunk.count)
      }
    } catch {
      throw CLIError("cannot read \(path): \(ErrorReport.describe(error))")
    }
    return (size, Hex.encode(Array(hasher.finalize())))
  }

  /// Uploads a file: the header, then chunks of at most 1 MiB.
  static func upload(_ remote: Remote, path: String, contentType: String) async throws -> Onewindow_V1_MaterialInfo {
    let (size, sha256) = try digest(path: path)
    guard size > 0 else { throw CLIError("\(path) is empty") }
    let header = Onewindow_V1_UploadMaterialRequest.with {
      $0.header = .with {
        $0.fileName = URL(fileURLWithPath: path).lastPathComponent
        $0.contentType = contentType
        $0.size = size
        $0.sha256 = sha256
      }
    }
    return try await remote.authorized { metadata in
      try await remote.materials.uploadMaterial(metadata: metadata, options: remote.call) { writer in
        try await writer.write(header)
        let handle: FileHandle
        do { handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path)) } catch {
          throw CLIError("cannot read \(path): \(ErrorReport.describe(error))")
        }
        defer { try? handle.close() }
        while let chunk = try handle.read(upToCount: chunkSize), !chunk.isEmpty {
          try await writer.write(.with { $0.chunk = chunk })
        }
      }
    }
  }

  static func size(_ bytes: Int64) -> String {
    switch bytes {
    case ..<1024: "\(bytes) B"
    case ..<(1 << 20): String(format: "%.1f KiB", Double(bytes) / 1024)
    default: String(format: "%.1f MiB", Double(bytes) / 1_048_576)
    }
  }
}

// MARK: - Views

extension Format {
  /// `2026-11-25 14:03` in the local time zone.
  static func minute(_ timestamp: Google_Protobuf_Timestamp) -> String {
    let text = Format.date(timestamp.date)
    // ISO 8601 "2026-11-25T14:03:27+08:00" → "2026-11-25 14:03".
    guard text.count >= 16 else { return text }
    return String(text.prefix(16)).replacing("T", with: " ")
  }
}

enum CaseView {
  static func actor(_ a: Onewindow_V1_CaseActor) -> String {
    if a.accountID.isEmpty && a.role == .unspecified { return "system" }
    var text = a.role.label
    if !a.departmentCode.isEmpty { text += " (\(a.departmentCode))" }
    return text
  }

  static func print(_ c: Onewindow_V1_Case, staff: Bool) {
    var lines: [String] = []
    lines.append("\(c.itemName)  [\(c.itemCode) v\(c.itemVersion)]")
    var state = "\(c.state.label), version \(c.version)"
    if c.deadlines.overdue { state += "  OVERDUE" }
    lines.append(Table.keyValue([
      ("Case", c.id),
      ("Tracking code", c.trackingCode),
      ("State", state),
      ("Applicant", c.applicantName),
      ("Handled by", c.handlingDepartment),
      ("Submitted", c.hasSubmittedAt ? Format.minute(c.submittedAt) : ""),
      ("Updated", c.hasUpdatedAt ? Format.minute(c.updatedAt) : ""),
      ("Certificate", c.certificateNumber),
      ("Courier no.", c.deliveryReference),
      ("Evaluated", c.evaluated ? "yes" : ""),
    ]).render())

    if !c.steps.isEmpty {
      lines += ["", "Steps (办理环节)"]
      for (i, step) in c.steps.enumerated() {
        let marker = i == Int(c.currentStep) ? "▶" : " "
        lines.append("  \(marker) \(i + 1). \(step.name) (\(step.departmentCode))")
      }
    }

    let d = c.deadlines
    var left = ""
    if !d.decisionDue.isEmpty {
      left = d.workingDaysLeft < 0
        ? "\(-d.workingDaysLeft) working day(s) overdue" : "\(d.workingDaysLeft) working day(s) left"
    }
    let deadlines = Table.keyValue([
      ("Received on", d.receivedOn),
      ("Correction notice due", d.correctionNoticeDue),
      ("Accepted on", d.acceptedOn),
      ("Decision due", d.decisionDue.isEmpty ? "" : "\(d.decisionDue) (\(left))"),
      ("Next due", d.nextDue),
      ("Extended", d.extended ? "yes (+10 working days)" : ""),
      ("Suspended", d.suspended ? "yes: the clock is paused" : ""),
      ("Overdue", d.overdue ? "YES" : ""),
    ], indent: "  ")
    if !deadlines.rows.isEmpty {
      lines += ["", "Deadlines (办理时限)", deadlines.render()]
    }

    if !c.form.isEmpty {
      lines += ["", "Form (申请表)"]
      var table = Table([])
      table.indent = "  "
      for key in c.form.keys.sorted() { table.add([key, c.form[key] ?? ""]) }
      lines.append(table.render())
    }

    lines += ["", "Materials (申请材料)"]
    if c.materials.isEmpty {
      lines.append("  none")
    } else {
      var table = Table(["NAME", "SOURCE", "TYPE", "SIZE", "SHA-256"], right: [3])
      table.indent = "  "
      for m in c.materials {
        let source = m.certificateNumber.isEmpty ? m.materialID : "cert:\(m.certificateNumber)"
        table.add([
          m.name, source, m.contentType, m.size > 0 ? MaterialTransfer.size(m.size) : "",
          m.sha256.isEmpty ? "" : String(m.sha256.prefix(16)) + "…",
        ])
      }
      lines.append(table.render())
    }

    if !c.history.isEmpty {
      lines += ["", "History (办理记录)"]
      var table = Table(["TIME", "EVENT", "STATE", "BY", "STEP", "NOTE"], right: [4])
      table.indent = "  "
      for h in c.history {
        var note = h.reason
        if !h.missingItems.isEmpty { note += (note.isEmpty ? "" : "; ") + "missing: " + h.missingItems.joined(separator: ", ") }
        if !h.attachmentIds.isEmpty { note += (note.isEmpty ? "" : "; ") + "attachments: " + h.attachmentIds.joined(separator: ", ") }
        table.add([h.hasAt ? Format.minute(h.at) : "", h.event.label, h.state.label, actor(h.actor), "\(h.step + 1)", note])
      }
      lines.append(table.render())
    }
    Console.out(lines.joined(separator: "\n"))
    Console.out("")
    printAvailable(c, indent: "", staff: staff)
  }

  static func printAvailable(_ c: Onewindow_V1_Case, indent: String, staff: Bool) {
    guard !c.availableEvents.isEmpty else {
      Console.out("\(indent)Nothing for you to do on this case now.")
      return
    }
    Console.out("\(indent)You can now:")
    var table = Table([])
    table.indent = indent + "  "
    for event in c.availableEvents {
      var command = event.command
      // Staff confirm a pickup with `worker deliver`; the applicant with `case confirm`.
      if event == .confirmDelivery && staff { command = "worker deliver {} --pickup" }
      table.add([event.label, command.isEmpty ? "" : "owctl " + command.replacing("{}", with: c.trackingCode)])
    }
    table.print()
  }

  /// One row per case for lists.
  static func table(_ cases: [Onewindow_V1_Case]) -> Table {
    var table = Table(["SUBMITTED", "TRACKING CODE", "ITEM", "STATE", "DUE", "CASE ID"])
    for c in cases {
      table.add([
        c.hasSubmittedAt ? Format.minute(c.submittedAt) : "", c.trackingCode, "\(c.itemName) (\(c.itemCode))",
        c.state.label, c.deadlines.nextDue.isEmpty ? "-" : c.deadlines.nextDue + (c.deadlines.overdue ? " (overdue)" : ""),
        c.id,
      ])
    }
    return table
  }
}

/// `name=value` pairs (--material, --indicator).
enum Pairs {
  static func parse(_ items: [String], option: String) throws -> [String: String] {
    var out: [String: String] = [:]
    for item in items {
      guard let equals = item.firstIndex(of: "="), equals != item.startIndex, item.index(after: equals) != item.endIndex else {
        throw CLIError("\(option) '\(item)' is not name=value")
      }
      let name = String(item[..<equals])
      guard out[name] == nil else { throw CLIError("\(option) names \(name) twice") }
      out[name] = String(item[item.index(after: equals)...])
    }
    return out
  }
}
