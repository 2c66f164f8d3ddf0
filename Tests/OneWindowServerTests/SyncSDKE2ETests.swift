import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import OneWindowAPI
import OneWindowClient
import OneWindowClientPosix
import OneWindowCore
import Testing
import OneWindowTestSupport

/// A wall clock offset from the server's, for devices whose clocks are wrong.
struct OffsetClock: WallClock {
  let base: ManualClock
  let offset: TimeInterval
  func now() -> Date { base.now().addingTimeInterval(offset) }
}

/// SDK devices against one test server, each with its own replica file.
struct Devices {
  let env: TestEnvironment
  let directory: String

  init(_ env: TestEnvironment) throws {
    self.env = env
    directory = FileManager.default.temporaryDirectory.appendingPathComponent("ow-replicas-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
  }

  func remove() { try? FileManager.default.removeItem(atPath: directory) }

  func make(
    _ name: String, token: String, skew: TimeInterval = 0, collections: [String] = ["preferences"], pageSize: Int32 = 1000
  ) throws -> SyncEngine<HTTP2ClientTransport.Posix> {
    let replica = try SyncReplica(path: "\(directory)/\(name).sqlite", clock: OffsetClock(base: env.clock, offset: skew))
    return SyncEngine(
      replica: replica, client: env.sync, options: .init(collections: collections, pageSize: pageSize),
      metadata: { bearer(token) })
  }
}

/// Every device holds exactly the server's records: Verify matches and nothing is pending.
func expectConverged(_ devices: [SyncEngine<HTTP2ClientTransport.Posix>], collection: String = "preferences", seed: UInt64? = nil) async throws {
  var views: [[String: [String: SyncValue]]] = []
  for device in devices {
    let report = try await device.verify()
    #expect(report.allMatch, "verify mismatch on \(device.replica.clientID) \(report.collections) seed \(seed.map(String.init) ?? "-")")
    let status = try await device.replica.status()
    #expect(status.unsentMutations == 0, "seed \(seed.map(String.init) ?? "-")")
    let records = try await device.replica.list(collection: collection)
    views.append(Dictionary(records.map { ($0.id, $0.fields) }, uniquingKeysWith: { a, _ in a }))
  }
  for view in views.dropFirst() { #expect(view == views.first, "local views differ, seed \(seed.map(String.init) ?? "-")") }
}

@Suite struct SyncSDKE2ETests {
  /// T1: two devices of one person edit different fields offline; both edits survive.
  @Test(arguments: TestEngine.enabled) func editsToDifferentFieldsBothSurvive(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      let token = try await env.citizenSession().accessToken
      let devices = try Devices(env)
      defer { devices.remove() }
      let phone = try devices.make("phone", token: token)
      let tablet = try devices.make("tablet", token: token)
      let id = newRecordID()
      _ = try await phone.replica.put(collection: "preferences", id: id, fields: ["language": .string("zh-CN"), "city": .string("杭州")])
      _ = try await phone.sync()
      _ = try await tablet.sync()
      // Offline on both: the phone changes the city, the tablet the language.
      _ = try await phone.replica.put(collection: "preferences", id: id, fields: ["city": .string("宁波")])
      env.clock.advance(by: 1)
      _ = try await tablet.replica.put(collection: "preferences", id: id, fields: ["language": .string("en")])
      _ = try await phone.sync()
      let tabletReport = try await tablet.sync()
      #expect(tabletReport.push.applied == 1 && tabletReport.push.merged.isEmpty)
      _ = try await phone.sync()
      try await expectConverged([phone, tablet])
      #expect(try await phone.replica.get(collection: "preferences", id: id)?.fields == ["language": .string("en"), "city": .string("宁波")])
    }
  }

  /// T2: both edit the same field; the later HLC wins everywhere, and the loser learns it lost.
  @Test(arguments: TestEngine.enabled) func theSameFieldHasOneDeterministicWinner(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      let token = try await env.citizenSession().accessToken
      let devices = try Devices(env)
      defer { devices.remove() }
      let a = try devices.make("a", token: token)
      let b = try devices.make("b", token: token)
      let id = newRecordID()
      _ = try await a.replica.put(collection: "preferences", id: id, fields: ["theme": .string("light")])
      _ = try await a.sync()
      _ = try await b.sync()
      _ = try await a.replica.put(collection: "preferences", id: id, fields: ["theme": .string("dark")])
      env.clock.advance(by: 2)
      _ = try await b.replica.put(collection: "preferences", id: id, fields: ["theme": .string("sepia")])  // later
      // B pushes first, A's older edit arrives second and loses.
      _ = try await b.sync()
      let late = try await a.sync()
      #expect(late.push.merged.map(\.lostFields) == [["theme"]])
      _ = try await b.sync()
      try await expectConverged([a, b])
      #expect(try await a.replica.get(collection: "preferences", id: id)?.fields["theme"] == .string("sepia"))
    }
  }

  /// T3: one device deletes while another edits offline: the delete wins and nothing comes back.
  @Test(arguments: TestEngine.enabled) func aDeleteBeatsAConcurrentEdit(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      let token = try await env.citizenSession().accessToken
      let devices = try Devices(env)
      defer { devices.remove() }
      let a = try devices.make("a", token: token)
      let b = try devices.make("b", token: token)
      let id = newRecordID()
      _ = try await a.replica.put(collection: "preferences", id: id, fields: ["note": .string("draft")])
      _ = try await a.sync()
      _ = try await b.sync()
      _ = try await a.replica.delete(collection: "preferences", id: id)
      _ = try await b.replica.put(collection: "preferences", id: id, fields: ["note": .string("edited offline")])
      _ = try await a.sync()
      let report = try await b.sync()
      #expect(report.push.rejected.map(\.reason) == ["deleted"])
      _ = try await a.sync()
      try await expectConverged([a, b])
      #expect(try await b.replica.get(collection: "preferences", id: id) == nil)
    }
  }

  /// T9: a device offline past the retention horizon is reset: it re-downloads a snapshot and
  /// keeps (then pushes) the edits it made offline.
  @Test(arguments: TestEngine.enabled) func aResetAfterTheRetentionHorizonKeepsUnsyncedEdits(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      var token = try await env.citizenSession().accessToken
      let devices = try Devices(env)
      defer { devices.remove() }
      let a = try devices.make("a", token: token)
      let keep = newRecordID()
      let gone = newRecordID()
      _ = try await a.replica.put(collection: "preferences", id: keep, fields: ["v": .int(1)])
      _ = try await a.replica.put(collection: "preferences", id: gone, fields: ["v": .int(1)])
      _ = try await a.sync()
      // Another device deletes a record while A is offline; A edits offline.
      let b = try devices.make("b", token: token)
      _ = try await b.sync()
      _ = try await b.replica.delete(collection: "preferences", id: gone)
      _ = try await b.sync()
      _ = try await a.replica.put(collection: "preferences", id: keep, fields: ["v": .int(2), "offline": .bool(true)])
      env.clock.advance(by: 40 * 24 * 3600)
      _ = try await env.store.sync.compact(before: env.clock.now().addingTimeInterval(-30 * 24 * 3600))
      token = try await env.identity.loginWithPassword(.with { $0.login = "13900000001"; $0.password = "Citizen-pass-1" }).accessToken
      let a2 = try devices.make("a", token: token)
      let b2 = try devices.make("b", token: token)
      // The app pulls first on start: the cursor is too old, so a reset runs.
      let pulled = try await a2.pull()
      #expect(pulled.reset == .cursorExpired)
      #expect(try await a2.replica.get(collection: "preferences", id: gone) == nil)  // purged, not resurrected
      #expect(try await a2.replica.get(collection: "preferences", id: keep)?.fields["offline"] == .bool(true))
      _ = try await a2.sync()
      _ = try await b2.sync()
      try await expectConverged([a2, b2])
      #expect(try await b2.replica.get(collection: "preferences", id: keep)?.fields == ["v": .int(2), "offline": .bool(true)])
    }
  }

  /// T10: a caseworker moved to another department while offline: the old department's records
  /// are purged, and queued edits to them are rejected without blocking later ones.
  @Test(arguments: TestEngine.enabled) func revokedAccessPurgesRecordsAndRejectsQueuedEditsWithoutJamming(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      let admin = try await env.adminSession().accessToken
      let worker = try await env.caseworkerSession(username: "sun.yu", department: "D-OLD")
      _ = try await env.store.catalog.upsertDepartment(Department(code: "D-NEW", name: "新"), now: Date())
      let devices = try Devices(env)
      defer { devices.remove() }
      let tablet = try devices.make("tablet", token: worker.accessToken, collections: ["site.inspections", "preferences"])
      let site = newRecordID()
      _ = try await tablet.replica.put(collection: "site.inspections", id: site, fields: ["subject": .string("旧部门现场")])
      _ = try await tablet.sync()
      // Offline: an edit to the department record, then an unrelated private edit.
      _ = try await tablet.replica.put(collection: "site.inspections", id: site, fields: ["findings": .string("离线记录")])
      let pref = newRecordID()
      _ = try await tablet.replica.put(collection: "preferences", id: pref, fields: ["lang": .string("zh")])
      _ = try await env.identity.moveCaseworker(.with { $0.accountID = worker.account.id; $0.departmentCode = "D-NEW" }, metadata: bearer(admin))
      let pulled = try await tablet.pull()
      #expect(pulled.reset == .accessChanged)
      #expect(pulled.purged >= 1)
      let pushed = try await tablet.push()
      #expect(pushed.rejected.map(\.reason) == ["permission_denied"])
      #expect(pushed.applied == 1)
      _ = try await tablet.pull()
      #expect(try await tablet.replica.get(collection: "site.inspections", id: site) == nil)
      #expect(try await tablet.replica.get(collection: "preferences", id: pref)?.fields == ["lang": .string("zh")])
      try await expectConverged([tablet], collection: "preferences")
    }
  }

  /// The randomized convergence property: 3–5 devices of one person with skewed clocks make
  /// random offline upserts and deletes on a small id space and sync in random interleavings.
  /// After syncing until quiet, every replica equals the server (Verify) and each other, and no
  /// accepted write is lost except to a higher-stamped write or a later delete. Seeded; the seed
  /// is printed in every failure message.
  @Test(arguments: TestEngine.enabled) func randomOfflineEditsAlwaysConverge(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      let session = try await env.citizenSession()
      let devicesDir = try Devices(env)
      defer { devicesDir.remove() }
      let baseSeed = UInt64.random(in: 0...UInt64.max)
      for round in 0..<3 {
        let seed = baseSeed &+ UInt64(round)
        var random = SeededGenerator(seed: seed)
        var devices: [SyncEngine<HTTP2ClientTransport.Posix>] = []
        for d in 0..<Int.random(in: 3...5, using: &random) {
          // Hours behind, or ahead by less than the server's 60 s clamp (clamping is tested on
          // its own; a clamped stamp is the server's, which this oracle cannot predict).
          let skew = Double(Int.random(in: -3 * 3600...50, using: &random))
          devices.append(try devicesDir.make("r\(round)-d\(d)", token: session.accessToken, skew: skew, pageSize: Int32.random(in: 2...50, using: &random)))
        }
        let ids = (0..<5).map { _ in newRecordID() }
        let fields = ["a", "b", "c"]
        var oracle = AcceptedWrites()
        for _ in 0..<60 {
          env.clock.advance(by: Double(Int.random(in: 0...3, using: &random)))
          let device = devices[Int.random(in: 0..<devices.count, using: &random)]
          switch Int.random(in: 0..<10, using: &random) {
          case 0..<6:
            let id = ids[Int.random(in: 0..<ids.count, using: &random)]
            var values: [String: SyncValue] = [:]
            for field in fields where Bool.random(using: &random) { values[field] = .int(Int64.random(in: 0...99, using: &random)) }
            if values.isEmpty { values["a"] = .int(0) }
            do {
              _ = try await device.replica.put(collection: "preferences", id: id, fields: values)
            } catch SyncClientError.invalid {
              // The device saw this id deleted: the SDK refuses to resurrect it (deletes win).
            }
          case 6:
            let id = ids[Int.random(in: 0..<ids.count, using: &random)]
            if try await device.replica.get(collection: "preferences", id: id) != nil {
              _ = try await device.replica.delete(collection: "preferences", id: id)
            }
          default:
            try await oracle.sync(device, pushFirst: Bool.random(using: &random))
          }
        }
        // Sync until quiet: two full passes bring every device every change.
        for _ in 0..<2 { for device in devices { try await oracle.sync(device, pushFirst: true) } }
        try await expectConverged(devices, seed: seed)
        try await oracle.check(env: env, token: session.accessToken, ids: Set(ids), seed: seed)
      }
    }
  }
}

/// What the server accepted, in processing order: each field write (with its stamp) and each
/// delete, from the pending mutations pushed and the push reports.
struct AcceptedWrites {
  enum Event { case write(id: String, field: String, stamp: HLCStamp, value: SyncValue), delete(id: String) }
  var events: [Event] = []

  mutating func sync(_ device: SyncEngine<HTTP2ClientTransport.Posix>, pushFirst: Bool) async throws {
    if !pushFirst { _ = try await device.pull() }
    let queued = try await device.replica.pending().filter { !$0.acknowledged }
    let report = try await device.push()
    let lost = Dictionary(report.merged.map { ($0.mutationID, Set($0.lostFields)) }, uniquingKeysWith: { a, _ in a })
    let refused = Set(report.rejected.map(\.mutationID) + report.conflicts.map(\.mutationID))
    for mutation in queued.sorted(by: { $0.mutationID < $1.mutationID }) where mutation.mutationID <= report.lastMutationID {
      guard !refused.contains(mutation.mutationID) else { continue }
      switch mutation.operation {
      case .upsert(let changes):
        for (field, change) in changes.sorted(by: { $0.key < $1.key }) where !(lost[mutation.mutationID]?.contains(field) ?? false) {
          events.append(.write(id: mutation.recordID, field: field, stamp: change.stamp, value: change.value))
        }
      case .delete:
        events.append(.delete(id: mutation.recordID))
      }
    }
    _ = try await device.pull()
  }

  /// Every live field holds the highest-stamped write accepted since the record's last delete;
  /// a record whose last accepted event is a delete is gone.
  func check(env: TestEnvironment, token: String, ids: Set<String>, seed: UInt64) async throws {
    let (changes, _) = try await env.pullAll(token, collections: ["preferences"])
    let server = Dictionary(changes.map { ($0.recordID, $0) }, uniquingKeysWith: { _, b in b })
    for id in ids {
      var since: [String: (HLCStamp, SyncValue)] = [:]
      var alive = false
      for event in events {
        switch event {
        case .delete(let d) where d == id:
          since = [:]
          alive = false
        case .write(let w, let field, let stamp, let value) where w == id:
          alive = true
          if let best = since[field], best.0 > stamp { continue }
          since[field] = (stamp, value)
        default: continue
        }
      }
      let record = server[id]
      #expect(alive == (record != nil), "record \(id) alive=\(alive) on server=\(record != nil), seed \(seed)")
      guard let record, alive else { continue }
      for (field, best) in since {
        let stored = try record.stamps[field].map { try $0.domain() }
        #expect(stored.map { $0 >= best.0 } == true, "field \(field) of \(id) lost an accepted write, seed \(seed)")
        if stored == best.0 { #expect(try record.fields[field]?.domain() == best.1, "seed \(seed)") }
      }
    }
  }
}
