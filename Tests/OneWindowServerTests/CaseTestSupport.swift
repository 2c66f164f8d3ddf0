import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import OneWindowAPI
import OneWindowClientPosix
import OneWindowCore
import OneWindowServer
import Testing

// Helpers for the case E2E tests (CasesE2ETests, CaseMaterialsE2ETests,
// CaseAuthorizationE2ETests): clients of the case services, absolute clock settings, uploads,
// drafts, and a world with two departments, their caseworkers, a citizen and a published item.

typealias PosixTransport = HTTP2ClientTransport.Posix

extension TestEnvironment {
  // Built from the shared connection, so they work whether or not OneWindowClients has its own.
  var caseAPI: Onewindow_V1_CaseService.Client<PosixTransport> { .init(wrapping: clients.grpc) }
  var materialAPI: Onewindow_V1_MaterialService.Client<PosixTransport> { .init(wrapping: clients.grpc) }
  var certificateAPI: Onewindow_V1_CertificateService.Client<PosixTransport> { .init(wrapping: clients.grpc) }
  var evaluationAPI: Onewindow_V1_EvaluationService.Client<PosixTransport> { .init(wrapping: clients.grpc) }
  var auditAPI: Onewindow_V1_AuditService.Client<PosixTransport> { .init(wrapping: clients.grpc) }

  /// Moves the server's clock to `date` (forwards or backwards).
  func setClock(_ date: Date) {
    clock.advance(by: date.timeIntervalSince(clock.now()))
  }

  /// Logs in again (access tokens last 15 minutes; tests that jump days need fresh ones).
  func login(_ login: String, password: String) async throws -> String {
    try await identity.loginWithPassword(.with { $0.login = login; $0.password = password }).accessToken
  }

  /// Uploads `bytes` as one material; header fields can be falsified to test the checks.
  @discardableResult
  func upload(
    _ token: String, _ bytes: [UInt8], fileName: String = "营业执照.pdf", contentType: String = "application/pdf",
    declaredSize: Int64? = nil, sha256: String? = nil, chunkSize: Int = 64 * 1024
  ) async throws -> Onewindow_V1_MaterialInfo {
    try await materialAPI.uploadMaterial(metadata: bearer(token)) { writer in
      try await writer.write(.with {
        $0.header = .with {
          $0.fileName = fileName
          $0.contentType = contentType
          $0.size = declaredSize ?? Int64(bytes.count)
          $0.sha256 = sha256 ?? Hex.sha256(bytes)
        }
      })
      var offset = 0
      while offset < bytes.count {
        let end = min(offset + chunkSize, bytes.count)
        try await writer.write(.with { $0.chunk = Data(bytes[offset..<end]) })
        offset = end
      }
    }
  }

  /// Downloads a material: its info and the concatenated chunks.
  func download(_ token: String, _ materialID: String) async throws -> (info: Onewindow_V1_MaterialInfo, data: Data) {
    try await materialAPI.downloadMaterial(.with { $0.materialID = materialID }, metadata: bearer(token)) { response in
      var info = Onewindow_V1_MaterialInfo()
      var data = Data()
      for try await message in response.messages {
        switch message.part {
        case .info(let i)?: info = i
        case .chunk(let c)?: data.append(c)
        case nil: break
        }
      }
      return (info, data)
    }
  }

  /// Pushes a `case.drafts` record through the raw Sync.Push RPC and returns its id.
  @discardableResult
  func pushDraft(
    _ token: String, itemCode: String, form: [String: SyncValue], materials: [String: String], draftID: String? = nil
  ) async throws -> String {
    let id = draftID ?? UUID().uuidString.lowercased()
    // A fresh client id per push (each starts its mutation ids at 1); stamps carry it as node.
    let clientID = "ct-\(UUID().uuidString)"
    var hlc = HybridLogicalClock(node: clientID)
    let stamp = hlc.tick(now: clock.now())
    let fields: [String: SyncValue] = [
      "item_code": .string(itemCode), "form": .map(form), "materials": .map(materials.mapValues { .string($0) }),
    ]
    let mutation = Onewindow_V1_Mutation.with {
      $0.mutationID = 1
      $0.collection = "case.drafts"
      $0.recordID = id
      $0.baseVersion = 0
      $0.upsert = .with { u in
        for (name, value) in fields {
          u.fields[name] = .with {
            $0.value = Onewindow_V1_Value(value)
            $0.stamp = Onewindow_V1_HlcStamp(stamp)
          }
        }
      }
    }
    let response = try await sync.push(.with { $0.clientID = clientID; $0.mutations = [mutation] }, metadata: bearer(token))
    #expect(response.results.map(\.outcome) == [.applied], "draft push: \(response.results.map(\.message))")
    return id
  }

  /// Every change of `collections` visible to `token`, all pages.
  func pullChanges(_ token: String, collections: [String]) async throws -> [Onewindow_V1_Change] {
    var cursor = ""
    var changes: [Onewindow_V1_Change] = []
    for _ in 0..<100 {
      let page = try await sync.pull(.with { $0.cursor = cursor; $0.collections = collections }, metadata: bearer(token))
      changes += page.changes
      cursor = page.cursor
      if !page.hasMore_p { break }
    }
    return changes
  }

  /// The stored blobs as `ab/abcdef…` (files under `<data>/materials` on SQLite, rows of
  /// `material_blobs` on PostgreSQL), and what the node's `tmp/` holds.
  func materialFiles() async throws -> (blobs: [String], tmp: [String], topLevel: [String]) {
    var files = materialDirectory()
    if engine == .postgres {
      files.blobs = try await store.inspection.strings("SELECT DISTINCT sha256 FROM material_blobs ORDER BY sha256")
        .map { "\($0.prefix(2))/\($0)" }
    }
    return files
  }

  /// What `<data>/materials` holds: blob files, `tmp/` entries, top-level names.
  func materialDirectory() -> (blobs: [String], tmp: [String], topLevel: [String]) {
    let fm = FileManager.default
    let root = (app.config.dataDirectory as NSString).appendingPathComponent("materials")
    let top = ((try? fm.contentsOfDirectory(atPath: root)) ?? []).sorted()
    let tmp = ((try? fm.contentsOfDirectory(atPath: (root as NSString).appendingPathComponent("tmp"))) ?? []).sorted()
    var blobs: [String] = []
    for dir in top where dir != "tmp" {
      for file in (try? fm.contentsOfDirectory(atPath: (root as NSString).appendingPathComponent(dir))) ?? [] {
        blobs.append("\(dir)/\(file)")
      }
    }
    return (blobs.sorted(), tmp, top)
  }
}

/// A date from an ISO 8601 text with offset, e.g. `2026-11-20T10:00:00+08:00`.
func cst(_ text: String) -> Date {
  let formatter = ISO8601DateFormatter()
  formatter.formatOptions = [.withInternetDateTime]
  guard let date = formatter.date(from: text) else { fatalError("bad date \(text)") }
  return date
}

/// A small PDF-looking file; `tag` makes its content (and hash) unique.
func pdfBytes(_ tag: String = "") -> [UInt8] {
  Array("%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n% \(tag)\n%%EOF\n".utf8)
}

let pngMagic: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

/// Bounded polling for effects the server completes after the client has moved on (a cancelled
/// upload's clean-up): no fixed sleep, just re-checking until true or the limit.
func eventually(_ limit: Duration = .seconds(30), _ condition: () async throws -> Bool) async rethrows -> Bool {
  let clock = ContinuousClock()
  let deadline = clock.now.advanced(by: limit)
  while clock.now < deadline {
    if try await condition() { return true }
    try? await Task.sleep(for: .milliseconds(5))
  }
  return try await condition()
}

/// Two departments with a two-step licensing item, one caseworker in each (two in the first),
/// a caseworker of an unrelated department, an administrator and a citizen.
struct CaseWorld {
  static let itemCode = "XK-SPJY-0001"
  static let itemName = "食品经营许可"
  /// Step 1 (受理) — 市场监管局.
  static let d1 = "scjg"
  static let d1Name = "市市场监督管理局"
  /// Step 2 (审查决定) — 卫生健康委.
  static let d2 = "wsjk"
  static let d2Name = "市卫生健康委员会"
  /// No step in the item.
  static let d3 = "jtys"
  static let certificateType = "食品经营许可证"
  static let citizenPhone = "13900000001"
  static let citizenPassword = "Citizen-pass-1"
  static let otherPhone = "13900000002"
  static let otherIDNumber = "110105199001011232"

  let env: TestEnvironment
  var admin: String
  var citizen: String
  var citizenID: String
  /// Caseworkers of step 1's department (two, for races).
  var d1: String
  var d1b: String
  var d2: String
  var d3: String

  static func itemSpec(fees: [Onewindow_V1_FeeItem] = []) -> Onewindow_V1_ServiceItemSpec {
    .with {
      $0.fees = fees
      $0.code = itemCode
      $0.name = itemName
      $0.departmentCode = d1
      $0.category = .administrativeLicense
      $0.target = .citizen
      $0.summary = "从事食品销售和餐饮服务的经营许可"
      $0.materials = [
        .with { $0.name = "营业执照"; $0.form = .original; $0.copies = 1; $0.ecertSubstitutable = false; $0.required = true },
      ]
      $0.processSteps = [
        .with { $0.name = "受理"; $0.departmentCode = d1 },
        .with { $0.name = "审查决定"; $0.departmentCode = d2 },
      ]
      $0.statutoryLimitDays = 20
      $0.promisedLimitDays = 10
      $0.onlineDepth = 4
      $0.onsiteVisits = 0
      $0.formSchema.fields = [
        .with { $0.name = "shop_name"; $0.label = "店铺名称"; $0.type = .text; $0.required = true },
        .with { $0.name = "open_date"; $0.label = "开业日期"; $0.type = .date; $0.required = false },
      ]
      $0.certificate = .with { $0.type = certificateType; $0.validityYears = 5; $0.fields = ["shop_name"] }
    }
  }

  /// Sets the clock to `start`, then creates the accounts, departments and the published item.
  static func make(
    _ env: TestEnvironment, start: Date = cst("2026-11-16T10:00:00+08:00"), fees: [Onewindow_V1_FeeItem] = []
  ) async throws -> CaseWorld {
    env.setClock(start)
    // Caseworkers first: their helper writes the departments directly; the RPCs below then
    // name them and reload the published catalog.
    let d1 = try await env.caseworkerSession(username: "d1-worker", department: Self.d1).accessToken
    let d1b = try await env.caseworkerSession(username: "d1-second", department: Self.d1).accessToken
    let d2 = try await env.caseworkerSession(username: "d2-worker", department: Self.d2).accessToken
    let d3 = try await env.caseworkerSession(username: "d3-worker", department: Self.d3).accessToken
    let admin = try await env.adminSession().accessToken
    for (code, name) in [(Self.d1, Self.d1Name), (Self.d2, Self.d2Name), (Self.d3, "市交通运输局")] {
      _ = try await env.catalog.upsertDepartment(.with { $0.department = .with { $0.code = code; $0.name = name } }, metadata: bearer(admin))
    }
    let created = try await env.catalog.createItem(.with { $0.spec = itemSpec(fees: fees) }, metadata: bearer(admin))
    _ = try await env.catalog.publishItem(.with { $0.code = itemCode; $0.expectedVersion = created.version }, metadata: bearer(admin))
    let citizen = try await env.citizenSession(phone: citizenPhone, password: citizenPassword)
    return CaseWorld(
      env: env, admin: admin, citizen: citizen.accessToken, citizenID: citizen.account.id, d1: d1, d1b: d1b, d2: d2, d3: d3)
  }

  /// Fresh access tokens for everyone (after the clock jumped by more than 15 minutes).
  mutating func relogin() async throws {
    admin = try await env.login("root", password: "Admin-pass-1")
    citizen = try await env.login(Self.citizenPhone, password: Self.citizenPassword)
    d1 = try await env.login("d1-worker", password: "Worker-pass-1")
    d1b = try await env.login("d1-second", password: "Worker-pass-1")
    d2 = try await env.login("d2-worker", password: "Worker-pass-1")
    d3 = try await env.login("d3-worker", password: "Worker-pass-1")
  }

  /// A second citizen (B).
  func otherCitizen() async throws -> Onewindow_V1_Session {
    try await env.citizenSession(phone: Self.otherPhone, idNumber: Self.otherIDNumber, password: "Citizen-pass-2")
  }

  /// Uploads a licence, pushes a draft and submits it. Returns the case and the material id.
  func submitCase(
    _ token: String? = nil, shopName: String = "老王面馆", key: String = UUID().uuidString
  ) async throws -> (case: Onewindow_V1_Case, materialID: String) {
    let token = token ?? citizen
    let material = try await env.upload(token, pdfBytes("\(shopName)-\(key)"))
    let draft = try await env.pushDraft(
      token, itemCode: Self.itemCode, form: ["shop_name": .string(shopName), "open_date": .string("2026-12-01")],
      materials: ["营业执照": material.materialID])
    let submitted = try await env.caseAPI.submitCase(.with { $0.draftID = draft; $0.idempotencyKey = key }, metadata: bearer(token))
    return (submitted, material.materialID)
  }

  @discardableResult
  func act(
    _ token: String, _ caseID: String, _ event: Onewindow_V1_CaseEvent, reason: String = "", approver: String = "",
    expectedVersion: Int64 = 0, missingItems: [String] = []
  ) async throws -> Onewindow_V1_Case {
    try await env.caseAPI.actOnCase(
      .with {
        $0.caseID = caseID
        $0.event = event
        $0.reason = reason
        $0.approver = approver
        $0.expectedVersion = expectedVersion
        $0.missingItems = missingItems
      }, metadata: bearer(token))
  }

  /// Accept and review at step 1, advance to step 2.
  @discardableResult
  func bringToSecondStep(_ caseID: String) async throws -> Onewindow_V1_Case {
    try await act(d1, caseID, .accept)
    try await act(d1, caseID, .startReview)
    return try await act(d1, caseID, .advanceStep)
  }

  /// Through approval (issuing the certificate) and completion.
  @discardableResult
  func complete(_ caseID: String) async throws -> Onewindow_V1_Case {
    try await bringToSecondStep(caseID)
    try await act(d2, caseID, .approve)
    return try await act(d2, caseID, .complete)
  }

  func getCase(_ token: String, _ caseID: String) async throws -> Onewindow_V1_Case {
    try await env.caseAPI.getCase(.with { $0.caseID = caseID }, metadata: bearer(token))
  }
}
