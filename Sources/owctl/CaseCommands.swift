import ArgumentParser
import Crypto
import Foundation
import GRPCCore
import OneWindowAPI
import OneWindowClientPosix
import OneWindowCore

// Applying (办件) as a citizen or enterprise: drafts are edited offline in the local replica
// (`case.drafts`), materials are uploaded, and `case submit` pushes the draft and submits it.

struct CaseCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "case",
    abstract: "Apply for a service item and follow your cases (办件).",
    discussion: """
      Drafts live in this account's local replica (collection case.drafts) and are edited offline: \
      `case new`, `case edit` and `case attach --cert` need no network; `case attach FILE` uploads \
      the file now; `case submit` syncs the draft and submits it.
      Form values are text; boolean fields take true/false. With the item in this device's copy \
      of the catalog (after `owctl sync`), field names are checked and what is still missing is shown.
      """,
    subcommands: [
      New.self, Edit.self, Attach.self, Upload.self, Drafts.self, Submit.self, Status.self, List.self, Withdraw.self, Supply.self,
      Confirm.self, Access.self, Download.self,
    ])

  // MARK: drafts (offline)

  struct New: OwctlCommand {
    static let configuration = CommandConfiguration(
      abstract: "Start a draft application offline; prints the draft id.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The item code, e.g. SF-SC-0001 (see `owctl catalog show`).")
    var itemCode: String

    @Option(name: .customLong("set"), help: ArgumentHelp("A form field (repeatable).", valueName: "field=value"))
    var assignments: [String] = []

    @Option(help: "A note for yourself (up to 500 characters).")
    var note: String?

    func execute() async throws {
      let code = itemCode.trimmingCharacters(in: .whitespaces)
      guard !code.isEmpty else { throw CLIError("the item code is empty") }
      try await LocalReplica.with(global) { replica in
        let item = await DraftRecords.item(replica, code: code)
        var form: [String: SyncValue] = [:]
        for assignment in assignments {
          let (name, value) = try DraftRecords.formAssignment(assignment, fields: DraftRecords.formFields(item))
          form[name] = value
        }
        var fields: [String: SyncValue] = ["item_code": .string(code)]
        if !form.isEmpty { fields["form"] = .map(form) }
        if let note { fields["note"] = .string(note) }
        let id = ULID.make()
        let mutation = try await replica.put(collection: DraftRecords.collection, id: id, fields: fields)
        let record = try await replica.get(collection: DraftRecords.collection, id: id)
        if global.json {
          DraftRecords.report(global, id: id, mutation: mutation, record: record, verb: "created")
        } else {
          Console.out(id)
          Console.error("draft for \(item.map { "\($0.spec.name) (\(code))" } ?? code) saved offline")
          await DraftRecords.hint(replica, id: id)
        }
      }
    }
  }

  struct Edit: OwctlCommand {
    static let configuration = CommandConfiguration(abstract: "Change a draft's form fields or note offline.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The draft id (see `owctl case drafts`).")
    var draftID: String

    @Option(name: .customLong("set"), help: ArgumentHelp("A form field (repeatable).", valueName: "field=value"))
    var assignments: [String] = []

    @Option(help: ArgumentHelp("Clear a form field (repeatable).", valueName: "field"))
    var unset: [String] = []

    @Option(help: "Replace the note.")
    var note: String?

    func execute() async throws {
      guard !assignments.isEmpty || !unset.isEmpty || note != nil else {
        throw CLIError("nothing to change: give --set field=value, --unset field or --note")
      }
      try await LocalReplica.with(global) { replica in
        let record = try await DraftRecords.load(replica, id: draftID)
        let item = await DraftRecords.item(replica, code: DraftRecords.itemCode(record))
        var form = DraftRecords.formMap(record)
        for assignment in assignments {
          let (name, value) = try DraftRecords.formAssignment(assignment, fields: DraftRecords.formFields(item))
          form[name] = value
        }
        for name in unset { form.removeValue(forKey: name) }
        var fields: [String: SyncValue] = [:]
        if !assignments.isEmpty || !unset.isEmpty { fields["form"] = .map(form) }
        if let note { fields["note"] = .string(note) }
        let mutation = try await replica.put(collection: DraftRecords.collection, id: draftID, fields: fields)
        let updated = try await replica.get(collection: DraftRecords.collection, id: draftID)
        DraftRecords.report(global, id: draftID, mutation: mutation, record: updated, verb: "edited offline")
        if !global.json { await DraftRecords.hint(replica, id: draftID) }
      }
    }
  }

  struct Attach: OwctlCommand {
    static let configuration = CommandConfiguration(
      abstract: "Upload a file for one of the item's materials (or name an e-certificate) and record it in the draft.",
      discussion: """
        A file is uploaded now (PDF, JPEG, PNG or OFD; the type comes from the extension unless \
        --type is given). --cert records one of your e-certificates instead (offline), where the \
        item accepts one.
        """)

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The draft id.")
    var draftID: String

    @Argument(help: "The material's name as the item's guide lists it, e.g. 经营者居民身份证.")
    var materialName: String

    @Argument(help: "The file to upload.")
    var file: String?

    @Option(help: ArgumentHelp("The content type (default: from the file's extension).", valueName: "content-type"))
    var type: String?

    @Option(help: ArgumentHelp("Use this e-certificate of yours instead of a file.", valueName: "number"))
    var cert: String?

    func validate() throws {
      switch (file, cert) {
      case (nil, nil): throw ArgumentParser.ValidationError("Give a file to upload, or --cert NUMBER.")
      case (.some, .some): throw ArgumentParser.ValidationError("Give either a file or --cert, not both.")
      default: break
      }
      if cert != nil, type != nil { throw ArgumentParser.ValidationError("--type applies to files only.") }
    }

    func execute() async throws {
      try await LocalReplica.with(global) { replica in
        let record = try await DraftRecords.load(replica, id: draftID)
        if let item = await DraftRecords.item(replica, code: DraftRecords.itemCode(record)) {
          guard let material = item.spec.materials.first(where: { $0.name == materialName }) else {
            throw CLIError(
              "\(materialName) is not a material of \(item.spec.code); its materials: "
                + item.spec.materials.map(\.name).joined(separator: ", "))
          }
          if cert != nil, !material.ecertSubstitutable {
            throw CLIError("\(item.spec.code) does not accept an e-certificate for \(materialName): attach a file")
          }
        }
        let value: String
        if let cert {
          let number = cert.trimmingCharacters(in: .whitespaces)
          guard !number.isEmpty else { throw CLIError("--cert is empty") }
          value = CaseDraft.certificatePrefix + number
        } else if let file {
          let contentType = try MaterialTransfer.contentType(for: file, override: type)
          let info = try await global.connect { remote in
            try await MaterialTransfer.upload(remote, path: file, contentType: contentType)
          }
          if !global.json {
            Console.out(
              "uploaded \(info.fileName) (\(MaterialTransfer.size(info.size)), \(info.contentType), sha256 \(info.sha256.prefix(16))…) "
                + "as material \(info.materialID)" + (info.deduplicated ? " (content already stored)" : ""))
          }
          value = info.materialID
        } else {
          throw CLIError("give a file or --cert")
        }
        var materials = DraftRecords.materialsMap(record)
        materials[materialName] = .string(value)
        let mutation = try await replica.put(
          collection: DraftRecords.collection, id: draftID, fields: ["materials": .map(materials)])
        let updated = try await replica.get(collection: DraftRecords.collection, id: draftID)
        DraftRecords.report(global, id: draftID, mutation: mutation, record: updated, verb: "\(materialName) = \(value)")
        if !global.json { await DraftRecords.hint(replica, id: draftID) }
      }
    }
  }

  struct Upload: OwctlCommand {
    static let configuration = CommandConfiguration(
      abstract: "Upload a file without a draft; prints its material id (e.g. for `case supply`).")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The file (PDF, JPEG, PNG or OFD).")
    var file: String

    @Option(help: ArgumentHelp("The content type (default: from the file's extension).", valueName: "content-type"))
    var type: String?

    func execute() async throws {
      let contentType = try MaterialTransfer.contentType(for: file, override: type)
      try await global.connect { remote in
        let info = try await MaterialTransfer.upload(remote, path: file, contentType: contentType)
        try remote.output.show(info) {
          Console.out(info.materialID)
          Console.error(
            "uploaded \(info.fileName) (\(MaterialTransfer.size(info.size)), \(info.contentType), sha256 \(info.sha256.prefix(16))…)"
              + (info.deduplicated ? " (content already stored)" : ""))
        }
      }
    }
  }

  struct Drafts: OwctlCommand {
    static let configuration = CommandConfiguration(abstract: "List your drafts in the local replica (offline).")

    @OptionGroup var global: GlobalOptions

    func execute() async throws {
      try await LocalReplica.with(global) { replica in
        let records = try await replica.list(collection: DraftRecords.collection)
        if global.json {
          Console.out(JSONPretty.indent(JSONText.array(records.map(RecordView.json))))
          return
        }
        guard !records.isEmpty else { return Console.out("no drafts (start one with `owctl case new ITEM-CODE`)") }
        var table = Table(["DRAFT ID", "ITEM", "FORM", "MATERIALS", "UNSYNCED", "NOTE"], right: [2, 3, 4])
        for r in records {
          var note = ""
          if case .string(let s)? = r.fields["note"] { note = s }
          table.add([
            r.id, DraftRecords.itemCode(r), String(DraftRecords.formMap(r).count), String(DraftRecords.materialsMap(r).count),
            String(r.pendingMutations), note,
          ])
        }
        table.print()
      }
    }
  }

  // MARK: submit

  struct Submit: OwctlCommand {
    static let configuration = CommandConfiguration(
      abstract: "Sync a draft to the server and submit it; prints the tracking code.",
      discussion: """
        Submission is idempotent by key: when the answer is lost, run the command again with the \
        --key it printed and you get the same case, never a second one.
        """)

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The draft id.")
    var draftID: String

    @Option(help: "The idempotency key (8–64 characters; default: a new UUID, printed).")
    var key: String?

    func validate() throws {
      if let key, !(8...64).contains(key.count) {
        throw ArgumentParser.ValidationError("--key must be 8–64 characters.")
      }
    }

    func execute() async throws {
      let retry = key != nil
      let key = self.key ?? UUID().uuidString.lowercased()
      if !retry { Console.error("idempotency key \(key)  (if this fails, retry with: owctl case submit \(draftID) --key \(key))") }
      let draftID = self.draftID
      let submitted = try await DraftSession.with(global) { replica, remote, engine in
        if try await replica.get(collection: DraftRecords.collection, id: draftID) != nil {
          let push = try await engine.push()
          let record = RecordKey(collection: DraftRecords.collection, id: draftID)
          if let rejected = push.rejected.first(where: { $0.record == record }) {
            throw CLIError("the server refused the draft (\(rejected.reason)): \(rejected.message)")
          }
          if let conflict = push.conflicts.first(where: { $0.record == record }) {
            throw CLIError("the draft's edit conflicts with another device's: \(conflict.message)")
          }
        } else if !retry {
          throw CLIError("no draft \(draftID) in this account's local replica (see `owctl case drafts`)")
        }
        let submitted = try await remote.authorized { metadata in
          try await remote.cases.submitCase(.with {
            $0.draftID = draftID
            $0.idempotencyKey = key
          }, metadata: metadata, options: remote.call)
        }
        // The server deleted the draft; pull so this device forgets it too (best effort).
        _ = try? await engine.pull()
        return submitted
      }
      try global.output.show(submitted) {
        Console.out("submitted \(submitted.itemName) (\(submitted.itemCode))")
        Table.keyValue([
          ("Tracking code", submitted.trackingCode),
          ("State", submitted.state.label),
          ("Case id", submitted.id),
          ("Decision due", submitted.deadlines.decisionDue),
        ]).print()
        Console.out("follow it with `owctl case status \(submitted.trackingCode)`, or without login: "
          + "`owctl track \(submitted.trackingCode) --phone-last4 NNNN`")
      }
    }
  }

  // MARK: cases (online)

  struct Status: OwctlCommand {
    static let configuration = CommandConfiguration(
      abstract: "Show a case: state, steps, deadlines, history, materials, what can be done now.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The case id or its tracking code.")
    var caseID: String

    func execute() async throws {
      try await global.connect { remote in
        let c = try await remote.authorized { metadata in
          try await remote.cases.getCase(.with { $0.caseID = caseID }, metadata: metadata, options: remote.call)
        }
        try remote.output.show(c) { CaseView.print(c, staff: remote.isStaff) }
      }
    }
  }

  struct List: OwctlCommand {
    static let configuration = CommandConfiguration(abstract: "List your cases, newest first.")

    @OptionGroup var global: GlobalOptions

    @Option(help: "Page size (1–100; default 20).")
    var limit: Int32?

    @Option(help: "Continue from a previous page's next-page token.")
    var pageToken: String?

    func execute() async throws {
      try await global.connect { remote in
        let response = try await remote.authorized { metadata in
          try await remote.cases.listMyCases(.with {
            $0.pageSize = limit ?? 0
            $0.pageToken = pageToken ?? ""
          }, metadata: metadata, options: remote.call)
        }
        try remote.output.show(response) {
          if response.cases.isEmpty {
            Console.out("no cases")
          } else {
            CaseView.table(response.cases).print()
          }
          if !response.nextPageToken.isEmpty { Console.out("more: --page-token \(response.nextPageToken)") }
        }
      }
    }
  }

  struct Withdraw: OwctlCommand {
    static let configuration = CommandConfiguration(abstract: "Withdraw your application (before a decision).")

    @OptionGroup var global: GlobalOptions
    @OptionGroup var target: CaseTarget

    @Option(help: "Why (optional, up to 500 characters).")
    var reason: String?

    func execute() async throws {
      try await ActOnCase.run(global, target, .withdraw) { $0.reason = reason ?? "" }
    }
  }

  struct Supply: OwctlCommand {
    static let configuration = CommandConfiguration(
      abstract: "Supply the materials a correction notice (补正告知) asked for.",
      discussion: "Upload each file first with `owctl case upload FILE`, which prints its material id.")

    @OptionGroup var global: GlobalOptions
    @OptionGroup var target: CaseTarget

    @Option(name: .customLong("material"), help: ArgumentHelp(
      "A material (repeatable): its name and an uploaded material id, or cert:NUMBER.", valueName: "name=material-id"))
    var materials: [String] = []

    @Option(help: "A note (optional).")
    var reason: String?

    func validate() throws {
      if materials.isEmpty { throw ArgumentParser.ValidationError("Give at least one --material name=material-id.") }
    }

    func execute() async throws {
      let supplied = try Pairs.parse(materials, option: "--material")
      try await ActOnCase.run(global, target, .supplyCorrection) {
        $0.materials = supplied
        $0.reason = reason ?? ""
      }
    }
  }

  struct Confirm: OwctlCommand {
    static let configuration = CommandConfiguration(abstract: "Confirm you received the result (确认送达).")

    @OptionGroup var global: GlobalOptions
    @OptionGroup var target: CaseTarget

    func execute() async throws {
      try await ActOnCase.run(global, target, .confirmDelivery)
    }
  }

  struct Access: OwctlCommand {
    static let configuration = CommandConfiguration(
      abstract: "Who (which departments and roles) read or changed your cases.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "Only this case (id or tracking code); default: all your cases.")
    var caseID: String?

    @OptionGroup var page: PageOptions

    func execute() async throws {
      try await global.connect { remote in
        let response = try await remote.authorized { metadata in
          try await remote.cases.listCaseAccess(.with {
            $0.caseID = caseID ?? ""
            $0.pageSize = page.pageSize
            $0.pageToken = page.token
          }, metadata: metadata, options: remote.call)
        }
        try remote.output.show(response) {
          if response.entries.isEmpty {
            Console.out("no access recorded")
          } else {
            var table = Table(["TIME", "TRACKING CODE", "ACTION", "ROLE", "DEPARTMENT"])
            for e in response.entries {
              let department = e.actorDepartmentName.isEmpty
                ? e.actorDepartmentCode : "\(e.actorDepartmentName) (\(e.actorDepartmentCode))"
              table.add([e.hasAt ? Format.minute(e.at) : "", e.trackingCode, e.action, e.actorRole.label, department])
            }
            table.print()
          }
          if !response.nextPageToken.isEmpty { Console.out("more: --page-token \(response.nextPageToken)") }
        }
      }
    }
  }

  struct Download: OwctlCommand {
    static let configuration = CommandConfiguration(
      abstract: "Download a material; its size and SHA-256 are checked before the file is kept.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The material id (see `owctl case status`).")
    var materialID: String

    @Option(name: [.short, .customLong("output")], help: ArgumentHelp(
      "Where to write it; - for standard output (default: the material's file name in this directory).", valueName: "file"))
    var output: String?

    @Flag(help: "Overwrite an existing file.")
    var force = false

    func execute() async throws {
      let output = self.output
      let force = self.force
      let materialID = self.materialID
      let (info, path) = try await global.connect { remote in
        try await remote.authorized { metadata in
          try await remote.materials.downloadMaterial(
            .with { $0.materialID = materialID }, metadata: metadata, options: remote.call
          ) { response in
            var info: Onewindow_V1_MaterialInfo?
            var sink: DownloadSink?
            var hasher = SHA256()
            var size: Int64 = 0
            do {
              for try await message in response.messages {
                switch message.part {
                case .info(let i)?:
                  guard info == nil else { throw CLIError("the server sent the material info twice") }
                  info = i
                  sink = try DownloadSink(destination: output ?? DownloadSink.safeName(i.fileName, fallback: materialID), force: force)
                case .chunk(let data)?:
                  guard let sink else { throw CLIError("the server sent content before the material info") }
                  try sink.write(data)
                  hasher.update(data: data)
                  size += Int64(data.count)
                case nil:
                  continue
                }
              }
              guard let info, let sink else { throw CLIError("the server sent no material info") }
              let digest = Hex.encode(Array(hasher.finalize()))
              guard size == info.size, digest == info.sha256.lowercased() else {
                throw CLIError(
                  "the download is corrupt: received \(size) bytes with SHA-256 \(digest), expected \(info.size) bytes with \(info.sha256)"
                    + (sink.isStandardOutput ? " (already written to standard output: discard it)" : "; nothing was kept"))
              }
              try sink.commit()
              return (info, sink.path)
            } catch {
              sink?.discard()
              throw error
            }
          }
        }
      }
      if global.json {
        try global.output.printJSON(info)
      } else if path != "-" {
        Console.out("saved \(path) (\(MaterialTransfer.size(info.size)), \(info.contentType), SHA-256 verified: \(info.sha256))")
      } else {
        Console.error("SHA-256 verified: \(info.sha256)")
      }
    }
  }
}

/// Writes a download to a temporary file next to the destination and renames it into place only
/// after the checksum matched (or streams to standard output for `-`).
final class DownloadSink {
  let path: String
  private let temp: String?
  private let handle: FileHandle

  var isStandardOutput: Bool { temp == nil }

  init(destination: String, force: Bool) throws {
    path = destination
    if destination == "-" {
      temp = nil
      handle = FileHandle.standardOutput
      return
    }
    let fm = FileManager.default
    var isDirectory: ObjCBool = false
    if fm.fileExists(atPath: destination, isDirectory: &isDirectory) {
      if isDirectory.boolValue { throw CLIError("\(destination) is a directory; give a file name with -o") }
      if !force { throw CLIError("\(destination) exists; use --force to overwrite it or -o to choose another name") }
    }
    let url = URL(fileURLWithPath: destination)
    let temp = url.deletingLastPathComponent()
      .appendingPathComponent(".\(url.lastPathComponent).\(ProcessInfo.processInfo.processIdentifier).part").path
    guard fm.createFile(atPath: temp, contents: nil, attributes: [.posixPermissions: 0o600]),
          let handle = FileHandle(forWritingAtPath: temp)
    else { throw CLIError("cannot write \(temp)") }
    self.temp = temp
    self.handle = handle
  }

  func write(_ data: Data) throws {
    do { try handle.write(contentsOf: data) } catch {
      throw CLIError("cannot write \(temp ?? "standard output"): \(ErrorReport.describe(error))")
    }
  }

  func commit() throws {
    guard let temp else { return }
    try handle.close()
    guard rename(temp, path) == 0 else {
      let reason = String(cString: strerror(errno))
      unlink(temp)
      throw CLIError("cannot create \(path): \(reason)")
    }
  }

  func discard() {
    guard let temp else { return }
    try? handle.close()
    unlink(temp)
  }

  /// A material's file name as a plain name in the current directory.
  static func safeName(_ fileName: String, fallback: String) -> String {
    let base = fileName.split(separator: "/").last.map(String.init) ?? ""
    return base.isEmpty || base == "." || base == ".." || base.hasPrefix("-") ? fallback : base
  }
}

// MARK: - track (public)

struct TrackCommand: OwctlCommand {
  static let configuration = CommandConfiguration(
    commandName: "track",
    abstract: "Check a case's progress by tracking code (查询一单); no login needed.")

  @OptionGroup var global: GlobalOptions

  @Argument(help: "The tracking code, e.g. 7K3M-9QXT-2B8N-4WZP-3.")
  var code: String

  @Option(name: .customLong("phone-last4"), help: "The last four digits of the applicant's mobile number.")
  var phoneLast4: String

  func validate() throws {
    guard phoneLast4.count == 4, phoneLast4.allSatisfy({ $0.isASCII && $0.isNumber }) else {
      throw ArgumentParser.ValidationError("--phone-last4 must be four digits.")
    }
  }

  func execute() async throws {
    try await global.connect { remote in
      let response = try await remote.cases.trackCase(.with {
        $0.trackingCode = code
        $0.phoneLast4 = phoneLast4
      }, options: remote.call)
      try remote.output.show(response) {
        Console.out("\(response.itemName)  [\(response.trackingCode)]")
        Table.keyValue([("State", response.state.label), ("Decision due", response.decisionDue)]).print()
        guard !response.timeline.isEmpty else { return }
        Console.out("")
        var table = Table(["TIME", "STATE", "STEP", "DEPARTMENT"])
        for step in response.timeline {
          table.add([step.hasAt ? Format.minute(step.at) : "", step.state.label, step.stepName, step.departmentName])
        }
        table.print()
      }
    }
  }
}
