import ArgumentParser
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import OneWindowAPI
import OneWindowClientPosix
import OneWindowCore

// Offline records and sync: `records` edits the local replica without any network; `sync`,
// `sync verify` and `conflicts` talk to the server through the SDK's SyncEngine.

// MARK: - records (offline)

struct RecordsCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "records",
    abstract: "Read and edit synced records offline, in this account's local replica.",
    discussion: """
      These commands never contact the server: edits are queued and sent by `owctl sync`. They \
      need a saved login only to know the account, whose replica is \
      $OWCTL_CONFIG_DIR/replicas/<server>-<account>.sqlite.
      Values: 12 is an integer, 1.5 or 1e3 a double, true/false, null, "quoted" a string, [..] \
      a list, {..} a map, {"$timestamp": millis} a timestamp, {"$bytes": "base64"} bytes; \
      anything else is taken as a plain string.
      """,
    subcommands: [Put.self, Get.self, List.self, Delete.self, Pending.self])

  struct Put: OwctlCommand {
    static let configuration = CommandConfiguration(
      abstract: "Create or change a record; only fields whose value changes are queued.")

    @OptionGroup var global: GlobalOptions

    @Option(name: [.short, .long], help: "The collection, e.g. favorites or preferences.")
    var collection: String

    @Option(help: "The record id (a ULID or UUID); default: a new ULID, printed.")
    var id: String?

    @Option(name: .customLong("set"), help: ArgumentHelp("A field value (repeatable).", valueName: "field=value"))
    var assignments: [String] = []

    @Option(name: .customLong("json-fields"), help: ArgumentHelp("Fields as one JSON object.", valueName: "json"))
    var jsonFields: String?

    func execute() async throws {
      var fields: [String: SyncValue] = [:]
      if let jsonFields {
        guard case .map(let map) = try FieldInput.value(json: jsonFields, what: "--json-fields") else {
          throw CLIError("--json-fields must be a JSON object")
        }
        fields = map
      }
      for assignment in assignments {
        let (name, value) = try FieldInput.assignment(assignment)
        fields[name] = value
      }
      guard !fields.isEmpty else { throw CLIError("nothing to set: give --set field=value or --json-fields") }
      let recordID = id ?? ULID.make()
      try await LocalReplica.with(global) { replica in
        let mutation = try await replica.put(collection: collection, id: recordID, fields: fields)
        let record = try await replica.get(collection: collection, id: recordID)
        DraftRecords.report(global, id: recordID, mutation: mutation, record: record, verb: nil)
      }
    }
  }

  struct Get: OwctlCommand {
    static let configuration = CommandConfiguration(abstract: "Show a record as this device sees it.")

    @OptionGroup var global: GlobalOptions

    @Option(name: [.short, .long], help: "The collection.")
    var collection: String

    @Option(help: "The record id.")
    var id: String

    func execute() async throws {
      try await LocalReplica.with(global) { replica in
        guard let record = try await replica.get(collection: collection, id: id) else {
          throw SyncClientError.notFound(collection: collection, id: id)
        }
        if global.json {
          Console.out(JSONPretty.indent(RecordView.json(record)))
        } else {
          RecordView.print(record)
        }
      }
    }
  }

  struct List: OwctlCommand {
    static let configuration = CommandConfiguration(abstract: "List the records of a collection in the local replica.")

    @OptionGroup var global: GlobalOptions

    @Option(name: [.short, .long], help: "The collection.")
    var collection: String

    func execute() async throws {
      try await LocalReplica.with(global) { replica in
        let records = try await replica.list(collection: collection)
        if global.json {
          Console.out(JSONPretty.indent(JSONText.array(records.map(RecordView.json))))
          return
        }
        guard !records.isEmpty else { return Console.out("no records in \(collection)") }
        var table = Table(["ID", "VERSION", "PENDING", "FIELDS"], right: [1, 2])
        for r in records {
          table.add([r.id, String(r.version), String(r.pendingMutations), RecordView.short(r.fields)])
        }
        table.print()
      }
    }
  }

  struct Delete: OwctlCommand {
    static let configuration = CommandConfiguration(abstract: "Delete a record (queued until the next sync).")

    @OptionGroup var global: GlobalOptions

    @Option(name: [.short, .long], help: "The collection.")
    var collection: String

    @Option(help: "The record id.")
    var id: String

    func execute() async throws {
      try await LocalReplica.with(global) { replica in
        let mutation = try await replica.delete(collection: collection, id: id)
        if global.json {
          Console.out(JSONPretty.indent(JSONText.object([
            ("id", JSONText.string(id)), ("mutationId", String(mutation.mutationID)),
          ])))
        } else {
          Console.out("\(id)  deleted; queued as mutation \(mutation.mutationID)")
        }
      }
    }
  }

  struct Pending: OwctlCommand {
    static let configuration = CommandConfiguration(
      abstract: "List queued local edits.",
      discussion: """
        unsent: not yet processed by the server. sent: processed; kept in the local view until \
        its result arrives with the next pull.
        """)

    @OptionGroup var global: GlobalOptions

    func execute() async throws {
      try await LocalReplica.with(global) { replica in
        let pending = try await replica.pending()
        if global.json {
          Console.out(JSONPretty.indent(JSONText.array(pending.map(MutationView.json))))
          return
        }
        guard !pending.isEmpty else { return Console.out("no queued edits") }
        var table = Table(["ID", "STATE", "OP", "RECORD", "BASE", "FIELDS"], right: [0, 4])
        for m in pending {
          let (op, fields): (String, String)
          switch m.operation {
          case .upsert(let changes): (op, fields) = ("upsert", RecordView.short(changes.mapValues(\.value)))
          case .delete: (op, fields) = ("delete", "")
          }
          table.add([String(m.mutationID), m.acknowledged ? "sent" : "unsent", op, m.key.description, String(m.baseVersion), fields])
        }
        table.print()
      }
    }
  }
}

// MARK: - sync (online)

struct SyncCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "sync",
    abstract: "Send queued edits and fetch changes (`owctl sync`), stay live (--watch), or verify.",
    subcommands: [Now.self, Verify.self],
    defaultSubcommand: Now.self)

  struct Now: OwctlCommand {
    static let configuration = CommandConfiguration(
      commandName: "now",
      abstract: "Push queued edits, then pull the server's changes (the default).",
      discussion: """
        With --watch, stays connected and applies changes as they happen, pushing new local \
        edits every few seconds; Ctrl-C stops it (every applied change is already saved).
        """)

    @OptionGroup var global: GlobalOptions

    @Flag(help: "Stay connected and apply changes live.")
    var watch = false

    @Option(help: "With --watch: seconds between pushes of new local edits (default 5).")
    var pushEvery: Int = 5

    func execute() async throws {
      guard pushEvery >= 1 else { throw CLIError("--push-every must be at least 1 second") }
      try await SyncSession.with(global) { engine in
        if watch {
          let json = global.json
          try await engine.watch(pushEvery: .seconds(pushEvery)) { activity in WatchView.print(activity, json: json) }
        } else {
          let report = try await engine.sync()
          if global.json {
            try global.output.printJSON(encodable: report)
          } else {
            SyncReportView.print(report.push)
            SyncReportView.print(report.pull)
          }
        }
      }
    }
  }

  struct Verify: OwctlCommand {
    static let configuration = CommandConfiguration(
      abstract: "Compare per-collection counts and checksums with the server; exits 1 on a mismatch.")

    @OptionGroup var global: GlobalOptions

    func execute() async throws {
      let report = try await SyncSession.with(global) { engine in try await engine.verify() }
      if global.json {
        try global.output.printJSON(encodable: report)
      } else {
        var table = Table(["COLLECTION", "LOCAL", "SERVER", "LOCAL SUM", "SERVER SUM", "RESULT"], right: [1, 2])
        for c in report.collections {
          table.add([
            c.collection, String(c.localCount), String(c.serverCount), c.localChecksum, c.serverChecksum,
            c.matches ? "OK" : "MISMATCH",
          ])
        }
        table.print()
        if !report.consistent {
          Console.error("note: changes kept arriving while verifying; a mismatch may be a race, run it again")
        }
      }
      if !report.allMatch { throw ExitCode(1) }
    }
  }
}

// MARK: - conflicts

struct ConflictsCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "conflicts",
    abstract: "List and resolve edit conflicts (collections with the manual policy).",
    subcommands: [List.self, Resolve.self])

  struct List: OwctlCommand {
    static let configuration = CommandConfiguration(abstract: "List open conflicts.")

    @OptionGroup var global: GlobalOptions

    @Option(name: [.short, .long], help: "Only conflicts of this collection.")
    var collection: String?

    @Flag(help: "Read the copy in the local replica (as of the last sync) instead of asking the server.")
    var local = false

    func execute() async throws {
      var conflicts: [SyncConflict]
      if local {
        conflicts = try await LocalReplica.with(global) { replica in try await replica.conflicts() }
        if let collection { conflicts = conflicts.filter { $0.collection == collection } }
      } else {
        conflicts = try await SyncSession.with(global) { engine in try await engine.listConflicts(collection: collection) }
      }
      if global.json {
        Console.out(JSONPretty.indent(JSONText.array(conflicts.map(ConflictView.json))))
        return
      }
      guard !conflicts.isEmpty else { return Console.out("no open conflicts") }
      for conflict in conflicts.sorted(by: { $0.createdAt < $1.createdAt }) { ConflictView.print(conflict) }
    }
  }

  struct Resolve: OwctlCommand {
    static let configuration = CommandConfiguration(
      abstract: "Settle a conflict, then pull so the replica shows the result.",
      discussion: """
        Per conflicting field keep the server's value (--use-server, also the default for fields \
        not named), take this device's (--use-client), or write a new value (--set, which wins).
        """)

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The conflict id (see `owctl conflicts list`).")
    var conflictID: String

    @Option(name: .customLong("use-server"), help: ArgumentHelp("Keep the server's value (repeatable).", valueName: "field"))
    var serverFields: [String] = []

    @Option(name: .customLong("use-client"), help: ArgumentHelp("Take the client's value (repeatable).", valueName: "field"))
    var clientFields: [String] = []

    @Option(name: .customLong("set"), help: ArgumentHelp("Write this value (repeatable).", valueName: "field=value"))
    var assignments: [String] = []

    func execute() async throws {
      var choices: [String: ConflictResolution.Choice] = [:]
      for field in serverFields { choices[field] = .server }
      for field in clientFields {
        guard choices[field] == nil else { throw CLIError("field \(field) is named by both --use-server and --use-client") }
        choices[field] = .client
      }
      var values: [String: SyncValue] = [:]
      for assignment in assignments {
        let (name, value) = try FieldInput.assignment(assignment)
        values[name] = value
      }
      let (record, pull) = try await SyncSession.with(global) { engine in
        let record = try await engine.resolveConflict(id: conflictID, choices: choices, values: values)
        return (record, try await engine.pull())
      }
      if global.json {
        Console.out(JSONPretty.indent(JSONText.object([
          ("conflictId", JSONText.string(conflictID)),
          ("record", record.map(ChangeView.json) ?? "null"),
          ("pulledChanges", String(pull.changes)),
        ])))
      } else {
        Console.out("resolved \(conflictID)")
        if let record { ChangeView.print(record) }
      }
    }
  }
}

// MARK: - plumbing

/// The local replica of the account logged in to the chosen server.
enum LocalReplica {
  /// Opens the replica, runs `body`, and closes it (folding the WAL back into the file).
  static func with<T: Sendable>(_ global: GlobalOptions, _ body: (SyncReplica) async throws -> T) async throws -> T {
    let replica = try open(global)
    do {
      let result = try await body(replica)
      try? await replica.close()
      return result
    } catch {
      try? await replica.close()
      throw error
    }
  }

  static func open(_ global: GlobalOptions) throws -> SyncReplica {
    let server = try global.connectionOptions().display
    let sessions = SessionStore.fromEnvironment()
    guard let session = try sessions.load(server) else {
      throw CLIError("not logged in to \(server); run 'owctl login' first (each account has its own replica)")
    }
    let directory = sessions.directory.appendingPathComponent("replicas", isDirectory: true)
    // The replica holds the account's private records: only the owner may read it.
    try FileManager.default.createDirectory(
      at: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    let path = directory.appendingPathComponent(fileName(server: server, account: session.accountID)).path
    // Created empty with mode 0600 first: SQLite gives its -wal and -shm files the same mode.
    if !FileManager.default.fileExists(atPath: path) {
      _ = FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600])
    }
    return try SyncReplica(path: path)
  }

  /// `<server>-<account>.sqlite` with every character outside letters, digits, '.', '-' and
  /// '_' replaced by '_' (a server address has ':' and maybe '[' ']').
  static func fileName(server: String, account: String) -> String {
    let safe = "\(server)-\(account)".unicodeScalars.map { scalar -> Character in
      scalar.isASCII && (scalar.properties.isAlphabetic || ("0"..."9").contains(scalar) || "._-".unicodeScalars.contains(scalar))
        ? Character(scalar) : "_"
    }
    return String(safe) + ".sqlite"
  }
}

/// A connected sync engine over the local replica, with the saved session's credentials.
enum SyncSession {
  static func with<T: Sendable>(
    _ global: GlobalOptions, _ body: @escaping (SyncEngine<HTTP2ClientTransport.Posix>) async throws -> T
  ) async throws -> T {
    try await LocalReplica.with(global) { replica in
      try await global.connect { remote in
        let credentials = Credentials(remote: remote)
        let engine = SyncEngine(
          replica: replica, client: remote.clients.sync, options: .init(callOptions: remote.call),
          metadata: { try await credentials.metadata() })
        return try await body(engine)
      }
    }
  }
}

/// Hands out the bearer metadata, refreshing the saved session when it is about to expire.
/// Calls are serialized: a watch and its periodic push must not both spend the same refresh
/// token (the server would take the second use as theft and revoke the session).
actor Credentials {
  let remote: Remote
  private var inFlight: Task<Metadata, any Error>?

  init(remote: Remote) { self.remote = remote }

  func metadata() async throws -> Metadata {
    if let inFlight { return try await inFlight.value }
    let remote = remote
    let task = Task { try await remote.authorized { $0 } }
    inFlight = task
    defer { inFlight = nil }
    return try await task.value
  }
}

/// Field values typed on the command line.
enum FieldInput {
  /// `name=value`; the value is JSON when it parses as JSON (see `records --help`), else a string.
  static func assignment(_ text: String) throws -> (String, SyncValue) {
    guard let equals = text.firstIndex(of: "="), equals != text.startIndex else {
      throw CLIError("'\(text)' is not field=value")
    }
    let name = String(text[..<equals])
    let raw = String(text[text.index(after: equals)...])
    return (name, (try? SyncValue(jsonText: raw)) ?? .string(raw))
  }

  static func value(json: String, what: String) throws -> SyncValue {
    do { return try SyncValue(jsonText: json) } catch { throw CLIError("\(what) is not valid JSON: \(error.reason)") }
  }
}

/// Small JSON builders for output that embeds `SyncValue.jsonText` (exact values, not a lossy
/// Codable form).
enum JSONText {
  static func string(_ s: String) -> String { SyncValue.string(s).jsonText }

  static func object(_ members: [(String, String)]) -> String {
    "{" + members.map { string($0.0) + ":" + $0.1 }.joined(separator: ",") + "}"
  }

  static func array(_ items: [String]) -> String { "[" + items.joined(separator: ",") + "]" }
}

enum RecordView {
  static func json(_ r: LocalRecord) -> String {
    JSONText.object([
      ("collection", JSONText.string(r.collection)), ("id", JSONText.string(r.id)), ("version", String(r.version)),
      ("pendingMutations", String(r.pendingMutations)), ("fields", SyncValue.map(r.fields).jsonText),
    ])
  }

  static func print(_ r: LocalRecord) {
    Table.keyValue([
      ("collection", r.collection), ("id", r.id),
      ("version", r.version == 0 ? "0 (not on the server yet)" : String(r.version)),
      ("pending", r.pendingMutations == 0 ? "" : "\(r.pendingMutations) unsynced edit(s)"),
    ]).print()
    var table = Table([])
    table.indent = "  "
    for name in r.fields.keys.sorted() { table.add([name, r.fields[name]?.jsonText ?? "null"]) }
    if !table.rows.isEmpty {
      Console.out("fields:")
      table.print()
    }
  }

  /// One line of fields for tables, cut at 80 characters.
  static func short(_ fields: [String: SyncValue]) -> String {
    let text = fields.keys.sorted().map { "\($0)=\(fields[$0]?.jsonText ?? "null")" }.joined(separator: " ")
    return text.count > 80 ? String(text.prefix(79)) + "…" : text
  }
}

enum MutationView {
  static func fieldList(_ m: PendingMutation) -> String {
    switch m.operation {
    case .upsert(let changes): "fields: " + changes.keys.sorted().joined(separator: ", ")
    case .delete: "delete"
    }
  }

  static func json(_ m: PendingMutation) -> String {
    var members: [(String, String)] = [
      ("mutationId", String(m.mutationID)), ("collection", JSONText.string(m.collection)),
      ("recordId", JSONText.string(m.recordID)), ("baseVersion", String(m.baseVersion)),
      ("state", JSONText.string(m.acknowledged ? "sent" : "unsent")), ("createdAtMillis", String(m.createdAt)),
    ]
    switch m.operation {
    case .upsert(let changes):
      members.append(("op", JSONText.string("upsert")))
      members.append(("fields", SyncValue.map(changes.mapValues(\.value)).jsonText))
      members.append(("stamps", JSONText.object(changes.keys.sorted().map { ($0, JSONText.string(changes[$0]?.stamp.description ?? "")) })))
    case .delete(let stamp):
      members.append(("op", JSONText.string("delete")))
      members.append(("stamp", JSONText.string(stamp.description)))
    }
    return JSONText.object(members)
  }
}

enum ChangeView {
  static func json(_ c: ServerChange) -> String {
    var members: [(String, String)] = [
      ("collection", JSONText.string(c.key.collection)), ("id", JSONText.string(c.key.id)), ("version", String(c.version)),
    ]
    switch c.kind {
    case .upsert(let values, _): members.append(("fields", SyncValue.map(values).jsonText))
    case .delete: members.append(("deleted", "true"))
    }
    return JSONText.object(members)
  }

  static func print(_ c: ServerChange) {
    switch c.kind {
    case .upsert(let values, _):
      Console.out("\(c.key) is now version \(c.version): \(RecordView.short(values))")
    case .delete:
      Console.out("\(c.key) is deleted")
    }
  }
}

enum ConflictView {
  static func json(_ c: SyncConflict) -> String {
    JSONText.object([
      ("id", JSONText.string(c.id)), ("collection", JSONText.string(c.collection)), ("recordId", JSONText.string(c.recordID)),
      ("baseVersion", String(c.baseVersion)), ("serverVersion", String(c.serverVersion)),
      ("clientId", JSONText.string(c.clientID)), ("mutationId", String(c.mutationID)),
      ("createdAtMillis", String(c.createdAt)),
      ("fields", JSONText.array(c.fields.map { f in
        JSONText.object([("field", JSONText.string(f.field)), ("server", f.server?.jsonText ?? "null"),
                         ("serverHasValue", f.server == nil ? "false" : "true"), ("client", f.client.jsonText)])
      })),
    ])
  }

  static func print(_ c: SyncConflict) {
    let created = Format.date(Date(timeIntervalSince1970: Double(c.createdAt) / 1000))
    Console.out("\(c.id)  \(c.collection)/\(c.recordID)  (edit of version \(c.baseVersion), server at \(c.serverVersion), \(created))")
    var table = Table(["FIELD", "SERVER", "CLIENT"])
    table.indent = "  "
    for f in c.fields { table.add([f.field, f.server?.jsonText ?? "(none)", f.client.jsonText]) }
    table.print()
  }
}

enum SyncReportView {
  static func print(_ push: PushReport) {
    guard push.sent > 0 else { return Console.out("push: nothing to send") }
    var line = "push: \(push.sent) sent, \(push.applied) applied, \(push.merged.count) merged, "
      + "\(push.conflicts.count) conflict(s), \(push.rejected.count) rejected"
    if push.replayed > 0 { line += " (\(push.replayed) already processed earlier)" }
    Console.out(line)
    for m in push.merged {
      Console.out("  merged    #\(m.mutationID) \(m.record): lost \(m.lostFields.joined(separator: ", ")) to newer edits")
    }
    for c in push.conflicts {
      Console.out("  conflict  #\(c.mutationID) \(c.record): " + (c.conflictID.map { "conflict \($0): " } ?? "") + c.message)
    }
    for r in push.rejected {
      Console.out("  rejected  #\(r.mutationID) \(r.record): \(r.reason): \(r.message)")
    }
    if push.clockClamped > 0 {
      Console.out("  note: \(push.clockClamped) edit(s) carried a clock ahead of the server's; the server restamped them")
    }
  }

  static func print(_ pull: PullReport) {
    var line = "pull: \(pull.changes) change(s) (\(pull.upserts) updated, \(pull.deletes) deleted)"
    if pull.acknowledged > 0 { line += ", \(pull.acknowledged) local edit(s) confirmed" }
    Console.out(line)
    if let reset = pull.reset {
      Console.out("  reset (\(reset.rawValue)): the replica was rebuilt from a snapshot; \(pull.purged) record(s) purged")
    }
  }
}

/// One line per watch activity: text, or one JSON object per line with --json.
enum WatchView {
  struct Line: Encodable {
    var event: String
    var changes: Int?
    var upserts: Int?
    var deletes: Int?
    var purged: Int?
    var reset: String?
    var records: [String]?
    var push: PushReport?
    var message: String?
    var retryInSeconds: Double?
  }

  static func print(_ activity: WatchActivity, json: Bool) {
    let line: Line
    switch activity {
    case .caughtUp(let pull):
      line = Line(event: "caught_up", changes: pull.changes, upserts: pull.upserts, deletes: pull.deletes, purged: pull.purged, reset: pull.reset?.rawValue)
      if !json {
        Console.out("caught up: \(pull.changes) change(s)" + (pull.reset.map { "; reset (\($0.rawValue)), \(pull.purged) purged" } ?? ""))
      }
    case .applied(let page):
      line = Line(event: "changes", changes: page.upserts + page.deletes, upserts: page.upserts, deletes: page.deletes, records: page.changed.map(\.description))
      if !json {
        let shown = page.changed.prefix(5).map(\.description).joined(separator: ", ")
        let more = page.changed.count > 5 ? " and \(page.changed.count - 5) more" : ""
        Console.out("\(page.upserts) updated, \(page.deletes) deleted: \(shown)\(more)")
      }
    case .heartbeat:
      guard json else { return }
      line = Line(event: "heartbeat")
    case .pushed(let push):
      line = Line(event: "pushed", push: push)
      if !json { SyncReportView.print(push) }
    case .pushFailed(let message):
      line = Line(event: "push_failed", message: message)
      if !json { Console.error("push failed: \(ErrorReport.oneLine(message))") }
    case .reconnecting(let delay, let reason):
      let seconds = Double(delay.components.seconds) + Double(delay.components.attoseconds) / 1e18
      line = Line(event: "reconnecting", message: reason, retryInSeconds: seconds)
      if !json { Console.error("reconnecting" + (seconds > 0 ? " in \(seconds) s" : "") + ": \(ErrorReport.oneLine(reason))") }
    }
    guard json else { return }
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    if let data = try? encoder.encode(line) { Console.out(String(decoding: data, as: UTF8.self)) }
  }
}
