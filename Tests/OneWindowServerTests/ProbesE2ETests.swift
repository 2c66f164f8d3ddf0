import Foundation
import GRPCCore
import OneWindowAPI
import OneWindowClientPosix
import OneWindowCore
import OneWindowServer
import OneWindowTestSupport
import Synchronization
import Testing

/// Liveness and readiness while the database comes and goes: two real nodes reach PostgreSQL
/// through a TCP relay (HAProxy) the test stops and starts, which is what a node sees of a
/// database restart or a network cut (every connection drops, new ones are refused). The
/// shared test cluster itself keeps running for the other suites.
@Suite(.serialized, .enabled(if: TestEngine.enabled.contains(.postgres), "needs PostgreSQL (ONEWINDOW_TEST_POSTGRES_URL)"))
struct ProbesE2ETests {
  static let relayConfig = """
    defaults
      mode tcp
      timeout connect 5s
      timeout client 1h
      timeout server 1h
    frontend db
      bind 127.0.0.1:{db}
      default_backend pg
    backend pg
      server pg 127.0.0.1:{pg}

    """

  /// The readiness interval the nodes run with, and the bound a probe must follow within.
  static let interval = 1
  /// Two intervals (a ping times out after one) plus slack for a loaded 2-core CI machine.
  static let followBound: Duration = .seconds(10)

  func ready(_ node: ServerProcess) async -> (status: Int, body: String)? {
    guard let reply = try? await httpRequest(port: node.httpPort, "/readyz") else { return nil }
    return (reply.status, reply.text)
  }

  func grpcHealth(_ clients: OneWindowClients) async -> Grpc_Health_V1_HealthCheckResponse.ServingStatus? {
    var options = CallOptions.defaults
    options.timeout = .seconds(3)
    return try? await clients.health.check(.init(), options: options).status
  }

  @Test func nodesAreNotServingWhileTheDatabaseIsUnreachableAndLoseNoAcknowledgedWrite() async throws {
    let url = try #require(TestEngine.postgresURL)
    let pgPort = try #require(URLComponents(string: url)?.port)
    guard let relay = try await HAProxy.start(config: Self.relayConfig, values: ["pg": "\(pgPort)"]) else { return }
    let relayPort = relay.port("db")
    let cluster = try await Cluster.start(
      2, databasePort: relayPort, extraArguments: ["--readiness-interval-seconds", "\(Self.interval)"])
    defer { Task { await cluster.stop() } }
    try await cluster.withClients { c in
      let token = try await ClusterE2ETests().register(c[0], phone: "13900000301")
      // The device keeps a mutation until the server applied it, and sends its whole queue each
      // time (as SyncEngine does): a push refused during the outage goes again afterwards.
      var device = RawDevice("probe-device")
      var queue: [(id: String, mutation: Onewindow_V1_Mutation)] = []
      var acknowledged: [String] = []
      func push(_ node: OneWindowClients, timeout: Duration = .seconds(30)) async throws {
        let id = newRecordID()
        queue.append((id, device.upsert("preferences", id, ["n": .int(Int64(acknowledged.count))], now: Date())))
        var options = CallOptions.defaults
        options.timeout = timeout
        let response = try await node.sync.push(
          .with { $0.clientID = "probe-device"; $0.mutations = queue.map(\.mutation) }, metadata: bearer(token), options: options)
        let applied = Set(response.results.filter { $0.outcome == .applied }.map(\.mutationID))
        acknowledged += queue.filter { applied.contains($0.mutation.mutationID) }.map(\.id)
        queue.removeAll { applied.contains($0.mutation.mutationID) }
      }
      for i in 0..<6 { try await push(c[i % 2]) }
      #expect(acknowledged.count == 6 && queue.isEmpty)
      for node in cluster.nodes { #expect(await ready(node)?.status == 200) }
      for clients in c { #expect(await grpcHealth(clients) == .serving) }

      // The database goes away.
      relay.stop()
      let cut = ContinuousClock.now
      for (n, node) in cluster.nodes.enumerated() {
        let took = try await within(Self.followBound, "node \(n) reported NOT_SERVING") {
          guard let r = await ready(node) else { return false }
          return r.status == 503 && r.body.contains("database unreachable")
        }
        print("probes: node \(n) NOT_SERVING \(took) after the cut")
        #expect(try await httpRequest(port: node.httpPort, "/livez").status == 200, "liveness does not follow the database")
      }
      for clients in c { #expect(await grpcHealth(clients) == .notServing) }
      // A write meanwhile is answered UNAVAILABLE (retry), not left waiting until its deadline.
      let attempt = ContinuousClock.now
      do {
        _ = try await push(c[1], timeout: .seconds(20))
        Issue.record("a push succeeded with the database unreachable")
      } catch let error as RPCError {
        #expect(error.code == .unavailable, "\(error.code): \(error.message)")
        #expect(error.message.contains("database"), "\(error.message)")
        print("probes: a push during the outage answered \(error.code) after \(ContinuousClock.now - attempt)")
      }
      _ = cut

      // The database comes back on the same address.
      let back = try #require(try await HAProxy.start(config: Self.relayConfig, values: ["pg": "\(pgPort)", "db": "\(relayPort)"]))
      for (n, node) in cluster.nodes.enumerated() {
        let took = try await within(.seconds(60), "node \(n) reported SERVING again") { await ready(node)?.status == 200 }
        print("probes: node \(n) SERVING \(took) after the database returned")
      }
      for clients in c { #expect(await grpcHealth(clients) == .serving) }
      for i in 0..<4 { try await push(c[i % 2]) }
      #expect(acknowledged.count == 11 && queue.isEmpty, "the refused edit went with the next push")
      // Every acknowledged write is there, seen through each node.
      for clients in c {
          let pulled = try await clients.sync.pull(.with { $0.collections = ["preferences"] }, metadata: bearer(token))
        let ids = Set(pulled.changes.map(\.recordID))
        #expect(Set(acknowledged).isSubset(of: ids), "missing: \(Set(acknowledged).subtracting(ids))")
      }
      // /metrics shows the database as up and the pool's use.
      let metrics = try await httpRequest(port: cluster.nodes[0].httpPort, "/metrics").text
      #expect(metricValue(metrics, "onewindow_database_up") == 1)
      #expect(metricValue(metrics, "onewindow_database_connections_max") == 20)
      #expect(metrics.contains("onewindow_database_connections_in_use"))
      _ = back
    }
  }
}
