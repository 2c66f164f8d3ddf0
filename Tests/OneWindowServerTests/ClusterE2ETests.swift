import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import OneWindowAPI
import OneWindowClientPosix
import OneWindowCore
import OneWindowServer
import OneWindowStore
import Synchronization
import Testing
import OneWindowTestSupport

/// Three real `onewindow serve` processes on one PostgreSQL database (each with its own data
/// directory, all with the same keys), reached on loopback through real gRPC clients: the
/// cluster must behave as one server.
///
/// The design bound for live delivery across nodes is 1 s (a doorbell, with a 500 ms poll
/// behind it). These tests allow 5 s, because a 2-core CI machine runs them beside other suites
/// (1.6 s was seen there; tens of milliseconds on an idle machine); they print the latency they
/// saw. 5 s still fails without the doorbells: the fallbacks are the 15 s stream heartbeat and the
/// 30 s catalog reload.
final class Cluster: @unchecked Sendable {
  let database: TestDatabase
  let nodes: [ServerProcess]
  let keys: String

  static let adminName = "cluster-admin"
  static let adminPassword = "Admin-pass-12345"

  /// The keys directory of a cluster on `database`.
  static func keys(of database: TestDatabase) -> String { database.directory + "/keys" }

  /// Starts `count` nodes on a fresh database (or on `existing`); `extraArguments` go to every node.
  /// `databasePort`: the nodes reach PostgreSQL through this loopback port (a relay).
  static func start(
    _ count: Int = 3, on existing: TestDatabase? = nil, databasePort: Int? = nil, extraArguments: [String] = []
  ) async throws -> Cluster {
    let database: TestDatabase
    if let existing { database = existing } else { database = try await TestDatabase.create(.postgres) }
    let keys = keys(of: database)
    try ServerKeys.createMissing(in: keys)
    var nodes: [ServerProcess] = []
    for i in 0..<count {
      nodes.append(
        try ServerProcess(
          database: database, dataDirectory: database.directory + "/node-\(i)", keysDirectory: keys, databasePort: databasePort))
    }
    let cluster = Cluster(database: database, nodes: nodes, keys: keys)
    try nodes[0].createAdmin(username: adminName, password: adminPassword)
    // One at a time: the first migrates, the others find the schema ready.
    for (i, node) in nodes.enumerated() {
      try await node.start(extraArguments: ["--node-id", "node-\(i)"] + extraArguments)
    }
    return cluster
  }

  private init(database: TestDatabase, nodes: [ServerProcess], keys: String) {
    self.database = database
    self.nodes = nodes
    self.keys = keys
  }

  /// Kills every node and drops the database.
  func stop() async {
    for node in nodes { node.crash() }
    await database.drop()
  }

  func options(_ node: Int) -> ConnectionOptions { ConnectionOptions(host: "127.0.0.1", port: nodes[node].port) }

  /// Runs `body` with a client to each node, in node order.
  func withClients<T: Sendable>(_ body: ([OneWindowClients]) async throws -> T) async throws -> T {
    func nest(_ opened: [OneWindowClients]) async throws -> T {
      if opened.count == nodes.count { return try await body(opened) }
      return try await OneWindowClients.with(options(opened.count)) { try await nest(opened + [$0]) }
    }
    return try await nest([])
  }

  /// Opens the database as a node would, for looking under the API.
  func withStore<T>(_ body: (any Store) async throws -> T) async throws -> T {
    let opened = try await database.open()
    do {
      let result = try await body(opened.store)
      try await opened.close()
      return result
    } catch {
      try? await opened.close()
      throw error
    }
  }
}

/// What the Watch streams of a test received.
final class WatchLog: Sendable {
  let changes = Mutex<[Onewindow_V1_Change]>([])
  /// Events that said the stream is live (caught up, or a heartbeat).
  let watching = Mutex(0)
}

/// What a load against the cluster has had acknowledged, and which nodes it may call.
final class LoadState: Sendable {
  let alive = Mutex<Set<Int>>([0, 1, 2])
  /// Each device's last acknowledged mutation id.
  let acknowledged = Mutex<[Int: Int64]>([:])
  /// Idempotency keys of acknowledged publications.
  let published = Mutex<Set<String>>([])

  /// Calls `body` on a random live node until one answers (a device retrying elsewhere).
  func onSomeNode<T: Sendable>(_ nodes: [OneWindowClients], _ body: (OneWindowClients) async throws -> T) async throws -> T {
    var attempts = 0
    while true {
      let node = alive.withLock { $0.randomElement() ?? 0 }
      do {
        return try await body(nodes[node])
      } catch let error as RPCError
        where [.unavailable, .unknown, .cancelled, .deadlineExceeded, .internalError].contains(error.code)
      {
        attempts += 1
        guard attempts < 50 else { throw error }
        try await Task.sleep(for: .milliseconds(50))
      }
    }
  }
}

/// Polls `condition` every 10 ms until it holds or `timeout` passes; returns the time it took.
@discardableResult
func within(
  _ timeout: Duration, _ what: String, sourceLocation: SourceLocation = #_sourceLocation, _ condition: () async throws -> Bool
) async throws -> Duration {
  let start = ContinuousClock.now
  while ContinuousClock.now - start < timeout {
    if try await condition() { return ContinuousClock.now - start }
    try await Task.sleep(for: .milliseconds(10))
  }
  Issue.record("\(what): not within \(timeout)", sourceLocation: sourceLocation)
  throw CancellationError()
}

@Suite(.serialized, .enabled(if: TestEngine.enabled.contains(.postgres), "needs PostgreSQL (ONEWINDOW_TEST_POSTGRES_URL)"))
struct ClusterE2ETests {
  static let crossNodeBound: Duration = .seconds(5)

  func register(_ clients: OneWindowClients, phone: String, idNumber: String = "11010519491231002X") async throws -> String {
    _ = try await clients.identity.registerCitizen(.with {
      $0.name = "王五"; $0.phone = phone; $0.idNumber = idNumber; $0.password = "Citizen-pass-1"
    })
    return try await clients.identity.loginWithPassword(.with { $0.login = phone; $0.password = "Citizen-pass-1" }).accessToken
  }

  /// The template the publications use: its body is the `text` value.
  func plainTemplate(_ notify: Onewindow_V1_NotifyService.Client<HTTP2ClientTransport.Posix>, admin: String) async throws {
    _ = try await notify.putTemplate(.with {
      $0.name = "test.plain"; $0.title = "通知"; $0.body = "((text))"; $0.category = "general"
    }, metadata: bearer(admin))
  }

  func admin(_ clients: OneWindowClients) async throws -> String {
    try await clients.identity.loginWithPassword(.with { $0.login = Cluster.adminName; $0.password = Cluster.adminPassword }).accessToken
  }

  /// M1: a Watch on node A sees a push made through node B, once; a Watch on C too.
  @Test func aWatchOnOneNodeSeesAPushThroughAnother() async throws {
    let cluster = try await Cluster.start()
    defer { Task { await cluster.stop() } }
    try await cluster.withClients { c in
      let token = try await register(c[1], phone: "13900000101")
      let seen = WatchLog()
      var watches: [Task<Void, any Error>] = []
      for node in [0, 2] {
        let sync = c[node].sync
        watches.append(Task {
          try await sync.watch(.with { $0.collections = ["preferences"] }, metadata: bearer(token)) { response in
            for try await event in response.messages {
              if event.heartbeat || event.changes.isEmpty { seen.watching.withLock { $0 += 1 } }
              seen.changes.withLock { $0.append(contentsOf: event.changes) }
            }
          }
        })
      }
      defer { for watch in watches { watch.cancel() } }
      try await within(.seconds(30), "both watches caught up") { seen.watching.withLock { $0 >= 2 } }
      var device = RawDevice("cluster-device")
      let pushedAt = ContinuousClock.now
      let pushed = try await c[1].sync.push(.with {
        $0.clientID = "cluster-device"
        $0.mutations = [device.upsert("preferences", newRecordID(), ["lang": .string("zh")], now: Date())]
      }, metadata: bearer(token))
      #expect(pushed.results.allSatisfy { $0.outcome == .applied })
      try await within(Self.crossNodeBound, "the push reached the watches on nodes 0 and 2") { seen.changes.withLock { $0.count >= 2 } }
      print("cluster: push on node 1 seen by watches on nodes 0 and 2 after \(ContinuousClock.now - pushedAt)")
      try await Task.sleep(for: .milliseconds(700))
      #expect(seen.changes.withLock { $0.count } == 2, "each watch got the change exactly once")
    }
    await cluster.stop()
  }

  /// M2: a Subscribe on node B gets a message published through node A exactly once; a topic
  /// message reaches subscribers' streams on every node.
  @Test func aSubscribeOnOneNodeGetsAPublishThroughAnotherOnce() async throws {
    let cluster = try await Cluster.start()
    defer { Task { await cluster.stop() } }
    try await cluster.withClients { c in
      let admin = try await admin(c[0])
      let notify = Onewindow_V1_NotifyService.Client(wrapping: c[0].grpc)
      try await plainTemplate(notify, admin: admin)
      let citizen = try await register(c[1], phone: "13900000102")
      let account = try await c[1].identity.whoAmI(.init(), metadata: bearer(citizen)).id
      let recorders = (0..<3).map { InboxRecorder.open(c[$0].grpc, token: citizen) }
      for recorder in recorders { try await recorder.waitCaughtUp() }
      let publishedAt = ContinuousClock.now
      _ = try await notify.publish(.with {
        $0.audience = .account(account); $0.template = "test.plain"; $0.personalisation = ["text": "直达"]
        $0.idempotencyKey = UUID().uuidString
      }, metadata: bearer(admin))
      try await within(Self.crossNodeBound, "the message reached streams on all three nodes") {
        recorders.allSatisfy { $0.messages.count >= 1 }
      }
      print("cluster: publish on node 0 reached streams on nodes 0–2 after \(ContinuousClock.now - publishedAt)")

      // A topic: subscribed through node 2, published through node 0.
      let inbox = Onewindow_V1_InboxService.Client(wrapping: c[2].grpc)
      _ = try await notify.createTopic(.with { $0.code = "cluster.news"; $0.title = "新闻" }, metadata: bearer(admin))
      _ = try await inbox.subscribeTopic(.with { $0.topic = "cluster.news" }, metadata: bearer(citizen))
      // The subscription reaches the open streams on every node (doorbell, or the heartbeat).
      try await Task.sleep(for: .milliseconds(500))
      _ = try await notify.publish(.with {
        $0.audience = .topic("cluster.news"); $0.template = "test.plain"; $0.personalisation = ["text": "广播"]
        $0.idempotencyKey = UUID().uuidString
      }, metadata: bearer(admin))
      try await within(Self.crossNodeBound, "the topic message reached streams on all three nodes") {
        recorders.allSatisfy { $0.messages.count >= 2 }
      }
      try await Task.sleep(for: .milliseconds(700))
      for (i, recorder) in recorders.enumerated() {
        let texts = recorder.messages.map(\.body)
        #expect(texts == ["直达", "广播"], "node \(i) stream got \(texts)")
        await recorder.stop()
      }
    }
    await cluster.stop()
  }

  /// A catalog write on one node is visible on the others' published snapshots.
  @Test func aCatalogWriteOnOneNodeIsVisibleOnTheOthers() async throws {
    let cluster = try await Cluster.start()
    defer { Task { await cluster.stop() } }
    try await cluster.withClients { c in
      let admin = try await admin(c[0])
      _ = try await c[0].catalog.upsertDepartment(.with { $0.department = .with { $0.code = "cluster-dept"; $0.name = "集群局" } }, metadata: bearer(admin))
      let created = try await c[0].catalog.createItem(.with {
        $0.spec = .with {
          $0.code = "CL-0001"; $0.name = "集群事项"; $0.departmentCode = "cluster-dept"; $0.category = .publicService
          $0.target = .citizen; $0.summary = "说明"; $0.acceptanceConditions = ["本市居民"]
          $0.processSteps = [.with { $0.name = "受理"; $0.departmentCode = "cluster-dept" }]
          $0.statutoryLimitDays = 20; $0.promisedLimitDays = 10; $0.onlineDepth = 3; $0.onsiteVisits = 0
        }
      }, metadata: bearer(admin))
      let writtenAt = ContinuousClock.now
      _ = try await c[0].catalog.publishItem(.with { $0.code = "CL-0001"; $0.expectedVersion = created.version }, metadata: bearer(admin))
      for node in [1, 2] {
        try await within(Self.crossNodeBound, "node \(node) serves the published item") {
          (try? await c[node].catalog.getItem(.with { $0.code = "CL-0001" }))?.status == .published
        }
      }
      print("cluster: item published on node 0 served by nodes 1 and 2 after \(ContinuousClock.now - writtenAt)")
    }
    await cluster.stop()
  }

  /// A token issued by one node works on every node; a logout through another node refuses it
  /// everywhere at once (every check reads the database).
  @Test func tokensWorkOnEveryNodeAndALogoutEndsThemEverywhere() async throws {
    let cluster = try await Cluster.start()
    defer { Task { await cluster.stop() } }
    try await cluster.withClients { c in
      let token = try await register(c[0], phone: "13900000103")
      for node in 0..<3 { _ = try await c[node].identity.whoAmI(.init(), metadata: bearer(token)) }
      _ = try await c[1].identity.logout(.init(), metadata: bearer(token))
      try await within(.seconds(2), "the logout is seen on nodes 0 and 2") {
        for node in [0, 2] {
          do {
            _ = try await c[node].identity.whoAmI(.init(), metadata: bearer(token))
            return false
          } catch let error as RPCError where error.code == .unauthenticated {}
        }
        return true
      }
    }
    await cluster.stop()
  }

  /// A limit of 30 login-code requests per address admits 30 in all, however the requests are
  /// spread over the nodes.
  @Test func aPerAddressLimitHoldsAcrossNodes() async throws {
    let cluster = try await Cluster.start()
    defer { Task { await cluster.stop() } }
    let outcomes = try await cluster.withClients { c in
      try await withThrowingTaskGroup(of: Bool.self) { group in
        for i in 0..<45 {
          group.addTask {
            do {
              _ = try await c[i % 3].identity.requestLoginCode(.with { $0.phone = "139" + String(format: "%08d", 2000 + i) })
              return true
            } catch let error as RPCError where error.code == .resourceExhausted {
              return false
            }
          }
        }
        return try await group.reduce(into: [Bool]()) { $0.append($1) }
      }
    }
    #expect(outcomes.count(where: { $0 }) == 30)
    #expect(outcomes.count(where: { !$0 }) == 15)
    await cluster.stop()
  }

  /// Webhook deliveries run on the node holding the `deliveries` lease (claimed rows besides):
  /// 50 publications made through all three nodes give 50 webhooks, none twice, and each
  /// publishing node's kick wakes the holder (no waiting for its timed pass).
  @Test func fiftyPublicationsThroughThreeNodesGiveFiftyWebhooksOnce() async throws {
    let receiver = try await WebhookReceiver.start()
    defer { Task { await receiver.stop() } }
    let cluster = try await Cluster.start(extraArguments: ["--allow-loopback-webhooks"])
    defer { Task { await cluster.stop() } }
    try await cluster.withClients { c in
      let admin = try await admin(c[0])
      try await plainTemplate(c[0].notify, admin: admin)
      _ = try await c[0].notify.createTopic(.with { $0.code = "cluster.hooks"; $0.title = "推送" }, metadata: bearer(admin))
      _ = try await c[1].notify.addWebhook(.with {
        $0.url = receiver.url
        $0.eventTypes = ["notification.published"]
      }, metadata: bearer(admin))
      let started = ContinuousClock.now
      try await withThrowingTaskGroup(of: Void.self) { group in
        for i in 0..<50 {
          let notify = c[i % 3].notify
          group.addTask {
            _ = try await notify.publish(.with {
              $0.audience = .topic("cluster.hooks"); $0.template = "test.plain"; $0.personalisation = ["text": "第\(i)条"]
              $0.idempotencyKey = "hook-\(i)"
            }, metadata: bearer(admin))
          }
        }
        try await group.waitForAll()
      }
      // The dispatcher's idle wait is 60 s: arriving well before it means the kicks reached the holder.
      try await within(.seconds(20), "50 webhooks arrive") { receiver.requests.count >= 50 }
      print("cluster: 50 publications through 3 nodes delivered as webhooks in \(ContinuousClock.now - started)")
      try await Task.sleep(for: .seconds(2))
      let events = receiver.requests.compactMap { $0.header("OneWindow-Event-Id") }
      #expect(events.count == 50)
      #expect(Set(events).count == 50, "no event delivered twice")
    }
    await cluster.stop()
  }

  /// M3: three schedulers send one scheduled publication once; when the node holding the
  /// jobs' leases is killed, another node takes them within twice the lease and sends the next.
  @Test func aScheduledPublicationIsSentOnceAndTheJobMovesWhenItsNodeDies() async throws {
    let lease = 2
    let cluster = try await Cluster.start(extraArguments: ["--lease-seconds", "\(lease)"])
    defer { Task { await cluster.stop() } }
    let holder = try await cluster.withClients { c -> Int in
      let admin = try await admin(c[0])
      let notify = Onewindow_V1_NotifyService.Client(wrapping: c[0].grpc)
      try await plainTemplate(notify, admin: admin)
      let citizen = try await register(c[1], phone: "13900000104")
      let account = try await c[1].identity.whoAmI(.init(), metadata: bearer(citizen)).id
      let inbox = Onewindow_V1_InboxService.Client(wrapping: c[2].grpc)
      _ = try await notify.publish(.with {
        $0.audience = .account(account); $0.template = "test.plain"; $0.personalisation = ["text": "定时"]
        $0.idempotencyKey = UUID().uuidString
        $0.sendAt = .init(date: Date().addingTimeInterval(2))
      }, metadata: bearer(admin))
      try await within(.seconds(20), "the scheduled message is delivered") {
        try await inbox.listInbox(.init(), metadata: bearer(citizen)).messages.count >= 1
      }
      try await Task.sleep(for: .seconds(2))
      #expect(try await inbox.listInbox(.init(), metadata: bearer(citizen)).messages.count == 1)
      let holder = try await cluster.withStore { store in try await store.leases.holder(of: "notification-scheduler") }
      return try #require(holder.flatMap { Int($0.holder.dropFirst("node-".count)) })
    }
    // Kill the holder; the next scheduled publication is sent by another node.
    cluster.nodes[holder].crash()
    let killedAt = ContinuousClock.now
    let survivor = holder == 0 ? 1 : 0
    try await OneWindowClients.with(cluster.options(survivor)) { c in
      let admin = try await admin(c)
      let citizen = try await c.identity.loginWithPassword(.with { $0.login = "13900000104"; $0.password = "Citizen-pass-1" }).accessToken
      let account = try await c.identity.whoAmI(.init(), metadata: bearer(citizen)).id
      let notify = Onewindow_V1_NotifyService.Client(wrapping: c.grpc)
      let inbox = Onewindow_V1_InboxService.Client(wrapping: c.grpc)
      _ = try await notify.publish(.with {
        $0.audience = .account(account); $0.template = "test.plain"; $0.personalisation = ["text": "接管"]
        $0.idempotencyKey = UUID().uuidString
        $0.sendAt = .init(date: Date().addingTimeInterval(1))
      }, metadata: bearer(admin))
      // 2 × the lease, plus the poll and a loaded machine's slack.
      try await within(.seconds(lease * 2 + 8), "another node sends the next scheduled message") {
        try await inbox.listInbox(.init(), metadata: bearer(citizen)).messages.count >= 2
      }
      print("cluster: lease holder node-\(holder) killed; the next scheduled message was sent \(ContinuousClock.now - killedAt) later")
      let taken = try await cluster.withStore { store in try await store.leases.holder(of: "notification-scheduler") }
      #expect(taken?.holder != nil && taken?.holder != "node-\(holder)")
      try await Task.sleep(for: .seconds(1))
      #expect(try await inbox.listInbox(.init(), metadata: bearer(citizen)).messages.count == 2)
    }
    await cluster.stop()
  }

  /// M4: one node is killed (-9) under a bounded mixed load of sync pushes and publications
  /// made through random nodes; clients retry on another node, as devices do. Afterwards every
  /// write that was acknowledged is there, through a surviving node, exactly once; each
  /// device's last mutation id is its last acknowledged one; the audit chain and the ledger
  /// check out.
  @Test func killingANodeUnderLoadLosesNoAcknowledgedWrite() async throws {
    let cluster = try await Cluster.start()
    defer { Task { await cluster.stop() } }
    let victim = 1
    let survivors = [0, 2]
    let devices = 4
    let batches = 12
    let perBatch = 20
    let publications = 40
    try await cluster.withClients { c in
      let admin = try await admin(c[0])
      try await plainTemplate(c[0].notify, admin: admin)
      var citizens: [(token: String, account: String)] = []
      for d in 0..<devices {
        let first17 = "110105" + "19900307" + String(format: "%03d", d)
        let idNumber = first17 + String(ResidentIDNumber.checkCharacter(forFirst17: first17) ?? "0")
        let token = try await register(c[d % 3], phone: "139000002\(String(format: "%02d", d))", idNumber: idNumber)
        citizens.append((token, try await c[0].identity.whoAmI(.init(), metadata: bearer(token)).id))
      }
      let load = LoadState()
      let nodes = c
      let recordIDs = (0..<devices).map { _ in (0..<batches * perBatch).map { _ in newRecordID() } }
      try await withThrowingTaskGroup(of: Void.self) { group in
        for d in 0..<devices {
          let token = citizens[d].token
          group.addTask {
            var device = RawDevice("m4-device-\(d)")
            for b in 0..<batches {
              let mutations = (0..<perBatch).map { i in
                device.upsert("preferences", recordIDs[d][b * perBatch + i], ["n": .int(Int64(i))], now: Date())
              }
              let response = try await load.onSomeNode(nodes) { node in
                try await node.sync.push(.with { $0.clientID = "m4-device-\(d)"; $0.mutations = mutations }, metadata: bearer(token))
              }
              #expect(response.results.allSatisfy { $0.outcome == .applied }, "\(response.results.map(\.message).prefix(1))")
              load.acknowledged.withLock { $0[d] = response.lastMutationID }
            }
          }
        }
        let accounts = citizens.map(\.account)
        group.addTask {
          for p in 0..<publications {
            let key = "m4-\(p)"
            _ = try await load.onSomeNode(nodes) { node in
              try await node.notify.publish(.with {
                $0.audience = .account(accounts[p % accounts.count]); $0.template = "test.plain"
                $0.personalisation = ["text": key]; $0.idempotencyKey = key
              }, metadata: bearer(admin))
            }
            load.published.withLock { _ = $0.insert(key) }
          }
        }
        group.addTask {
          // Kill the victim once the load is under way.
          try await within(.seconds(60), "the load got going") { load.acknowledged.withLock { $0.values.reduce(0, +) } >= 100 }
          load.alive.withLock { _ = $0.remove(victim) }
          cluster.nodes[victim].crash()
        }
        try await group.waitForAll()
      }
      // Through a survivor: each device's records, and its last acknowledged mutation id.
      let reader = c[survivors[0]]
      for d in 0..<devices {
        #expect(load.acknowledged.withLock { $0[d] } == Int64(batches * perBatch))
        var records = Set<String>()
        var cursor = ""
        while true {
          let page = try await reader.sync.pull(.with { $0.cursor = cursor; $0.collections = ["preferences"] }, metadata: bearer(citizens[d].token))
          for change in page.changes where Set(recordIDs[d]).contains(change.recordID) { records.insert(change.recordID) }
          cursor = page.cursor
          if !page.hasMore_p { break }
        }
        #expect(records.count == batches * perBatch, "device \(d) has \(records.count) records")
        // A retry of the last batch answers from the stored results: the same last id.
        var replay = RawDevice("m4-device-\(d)")
        let all = recordIDs[d].map { replay.upsert("preferences", $0, ["n": .int(0)], now: Date()) }
        let again = try await reader.sync.push(.with {
          $0.clientID = "m4-device-\(d)"; $0.mutations = Array(all.suffix(perBatch))
        }, metadata: bearer(citizens[d].token))
        #expect(again.lastMutationID == Int64(batches * perBatch))
      }
      // Every acknowledged publication is in its inbox exactly once.
      var texts: [String] = []
      for (token, _) in citizens {
        texts += try await reader.inbox.listInbox(.with { $0.pageSize = 100 }, metadata: bearer(token)).messages.map(\.body)
      }
      #expect(Set(texts) == load.published.withLock { $0 })
      #expect(texts.count == Set(texts).count, "no publication delivered twice")
    }
    let audit = try await PaymentCrashE2ETests.runCLI(["audit", "verify"] + cluster.nodes[0].databaseArguments)
    #expect(audit.status == 0, "audit verify: \(audit.output)")
    let payments = try await PaymentCrashE2ETests.runCLI(["payments", "check"] + cluster.nodes[0].databaseArguments)
    #expect(payments.status == 0, "payments check: \(payments.output)")
    await cluster.stop()
  }

  /// M3: a payment the provider took while no node heard of it (its callbacks were lost) is
  /// repaired once: the node holding the payments lease asks the provider and captures it; the
  /// ledger has one capture and checks out.
  @Test func aStuckPaymentIsRepairedOnce() async throws {
    let database = try await TestDatabase.create(.postgres)
    try ServerKeys.createMissing(in: Cluster.keys(of: database))
    // Phase 1 (in process, no background jobs): pay; the provider's callback is held back, so our
    // side stays `submitted` while the provider's books say "paid".
    let paymentID = try await TestEnvironment.run(
      configure: {
        $0.payments.sandboxCallbackDelay = .seconds(3600)
        $0.keysDirectory = Cluster.keys(of: database)
      }, database: database
    ) { env in
      let w = try await PaymentWorld.make(env, start: Date())
      let (_, order) = try await w.orderedCase()
      let payment = try await w.pay(order)
      #expect(try await w.authorise(payment).status == 202)
      #expect(try await w.payment(payment.id).state != .success)
      return payment.id
    }
    // Phase 2: three nodes; the lease holder's first payments pass queries the provider.
    let cluster = try await Cluster.start(on: database, extraArguments: ["--sandbox-callback-delay-seconds", "3600"])
    defer { Task { await cluster.stop() } }
    try await cluster.withClients { c in
      let admin = try await admin(c[2])
      var state = Onewindow_V1_PaymentState.unspecified
      try await within(.seconds(30), "the stuck payment is repaired") {
        state = try await c[2].payments.getPayment(.with { $0.paymentID = paymentID }, metadata: bearer(admin)).state
        return state == .success
      }
      try await Task.sleep(for: .seconds(2))
      for node in 0..<3 {
        let payment = try await c[node].payments.getPayment(.with { $0.paymentID = paymentID }, metadata: bearer(admin))
        #expect(payment.state == .success && !payment.receiptNumber.isEmpty)
      }
      let ledger = try await c[1].payments.checkLedger(.init(), metadata: bearer(admin))
      #expect(ledger.violations.isEmpty && ledger.transactions == 1, "one capture: \(ledger.transactions) transactions")
    }
    let check = try await PaymentCrashE2ETests.runCLI(["payments", "check"] + cluster.nodes[0].databaseArguments)
    #expect(check.status == 0 && check.output.contains("ledger OK"))
    await cluster.stop()
  }

  /// M3: 50 case transitions give 50 webhooks, none twice. The cases move through a fourth,
  /// in-process server on the same database (it runs no background jobs); the three nodes'
  /// system-event job turns the transitions into deliveries and their delivery job sends them,
  /// each on the one node holding its lease, woken by the fourth server's doorbells.
  @Test func fiftyCaseTransitionsGiveFiftyWebhooksOnce() async throws {
    let receiver = try await WebhookReceiver.start()
    defer { Task { await receiver.stop() } }
    let cluster = try await Cluster.start(extraArguments: ["--allow-loopback-webhooks"])
    defer { Task { await cluster.stop() } }
    try await TestEnvironment.run(
      configure: {
        $0.notifications.allowLoopbackHTTPWebhooks = true
        $0.keysDirectory = Cluster.keys(of: cluster.database)
      }, database: cluster.database
    ) { env in
      let world = try await CaseWorld.make(env, start: Date())
      _ = try await env.notifyAPI.addWebhook(.with {
        $0.url = receiver.url
        $0.eventTypes = ["case.transition"]
      }, metadata: bearer(world.admin))
      // Each submission is two transitions: submitted, then pending acceptance.
      for n in 0..<25 { _ = try await world.submitCase(shopName: "集群面馆\(n)") }
      try await within(.seconds(60), "50 webhooks arrive") { receiver.requests.count >= 50 }
      try await Task.sleep(for: .seconds(2))
      let events = receiver.requests.compactMap { $0.header("OneWindow-Event-Id") }
      #expect(events.count == 50)
      #expect(Set(events).count == 50, "no transition delivered twice")
    }
    await cluster.stop()
  }
}
