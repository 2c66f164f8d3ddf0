import GRPCCore
import GRPCNIOTransportHTTP2Posix
import Logging
import NIOCore
import OneWindowAPI
import OneWindowCore
import OneWindowDatabase
import OneWindowStore
import ServiceLifecycle
import Synchronization

/// The composition root: wires the store, adapters, services and interceptors into a gRPC
/// server on the HTTP/2 Posix transport.
public final class ServerApp: Sendable {
  public let config: ServerConfig
  public let store: any Store
  /// The opened database; `runUntilSignalled` closes it after the drain.
  let database: OpenedDatabase
  public let health: HealthService
  let server: GRPCServer<HTTP2ServerTransport.Posix>
  let transport: HTTP2ServerTransport.Posix
  let logger: Logger
  let clock: any WallClock
  /// Long-lived streams (sync Watch) to end when shutdown begins.
  let streams = StreamShutdown()
  /// The deemed-acceptance job (also run by tests with a manual clock).
  public let caseClock: CaseClockService
  /// Background notification work, public so tests can drive it with a manual clock.
  public let systemEvents: SystemEventNotifier
  public let notificationScheduler: NotificationScheduler
  public let deliveries: DeliveryDispatcher
  let hub: NotificationHub
  let published: PublishedCatalog
  /// Which singleton jobs this node runs (leases), and their cross-node wake-ups.
  let jobs: ClusterJobs
  let housekeeping: HousekeepingService
  /// Watches the database for the health service.
  let readiness: DatabaseReadiness
  /// The payments background job (expiry, repair, automatic refunds), public for tests.
  public let paymentJobs: PaymentJobs
  /// The sandbox provider (tests read how often it was queried).
  public let sandbox: SandboxProvider
  /// Every route of the plain-HTTP listener: /healthz, /metrics, then the ones passed to `make`
  /// (tests) and those other modules contribute in `init`.
  let httpRoutes: [HTTPRoute]
  let http: HTTPListener
  private let lifecycle = Mutex(Lifecycle())

  /// Under `serve()` + `serveHTTP()` the HTTP listener outlives the gRPC drain, so /healthz
  /// answers 503 while calls finish: whichever of `beginGracefulShutdown()` and the end of
  /// `serve()` comes last stops it. (In `runUntilSignalled` the service group's reverse-order
  /// shutdown does the same, and a listener stopping by itself there would fail the group.)
  private struct Lifecycle {
    var grpcServing = false
    var shuttingDown = false
    var httpFollowsDrain = false

    var httpShouldStop: Bool { httpFollowsDrain && shuttingDown && !grpcServing }
  }

  /// Builds the server from its dependencies and loads the published catalog. Does not start
  /// listening, and does not close the database (the caller owns `dependencies.database`).
  public static func make(
    config: ServerConfig, dependencies: ServerDependencies, logger: Logger, httpRoutes: [HTTPRoute] = []
  ) async throws -> ServerApp {
    try config.validate()
    let store = dependencies.store
    let clock = dependencies.clock
    let published = PublishedCatalog(store: store.catalog, doorbells: store.doorbells, logger: logger)
    try await published.reload()
    published.follow()
    let syncPublisher = CatalogSyncPublisher(
      published: published, store: store.sync,
      coordination: store.doorbells.isShared ? (store.leases, config.nodeID) : nil, clock: clock, logger: logger)
    try await syncPublisher.refresh()
    try await store.notifications.seedTemplates(SystemTemplates.all, now: clock.now())
    return try ServerApp(
      config: config, dependencies: dependencies, published: published, syncPublisher: syncPublisher, logger: logger,
      codeSender: dependencies.codeSender
        ?? DevelopmentCodeSender(outbox: store.outbox, templates: store.notifications, clock: clock, logger: logger),
      httpRoutes: httpRoutes)
  }

  private init(
    config: ServerConfig, dependencies: ServerDependencies, published: PublishedCatalog,
    syncPublisher: CatalogSyncPublisher, logger: Logger, codeSender: any LoginCodeSender, httpRoutes extraRoutes: [HTTPRoute]
  ) throws {
    let store = dependencies.store
    let clock = dependencies.clock
    let registry = dependencies.registry
    self.database = dependencies.database
    self.published = published
    self.config = config
    self.store = store
    self.logger = logger
    self.clock = clock
    let identity = IdentityService(
      store: store.identity, catalog: store.catalog, codeSender: codeSender, registry: registry, clock: clock, logger: logger,
      rateLimits: store.rateLimits)
    let catalog = CatalogService(
      store: store.catalog, published: published, syncPublisher: syncPublisher, clock: clock, logger: logger)
    let sync = SyncService(
      store: store.sync, identity: store.identity, clock: clock, settings: config.sync, shutdown: streams, logger: logger)
    let issuer = dependencies.issuer
    let trackLimiter = PeerLimiter(
      store: store.rateLimits, name: "track", limit: config.cases.trackFailureLimit, window: config.cases.trackFailureWindow,
      what: "failed progress queries")
    let secrets = dependencies.secrets
    let hub = NotificationHub(doorbells: store.doorbells)
    self.hub = hub
    let jobs = ClusterJobs(store: store, node: config.nodeID, duration: config.leaseDuration, logger: logger)
    self.jobs = jobs
    let webhookChannel = WebhookChannel(
      store: store.notifications, secrets: secrets, timeout: config.notifications.webhookTimeout, clock: clock, logger: logger)
    deliveries = DeliveryDispatcher(
      store: store.notifications, channels: [webhookChannel], policy: config.notifications.retry, clock: clock, logger: logger)
    deliveries.leaseGate.withLock { $0 = JobGate(jobs: jobs, job: .deliveries) }
    let scheduled = WakeSignal()
    let publisher = NotificationPublisher(
      store: store.notifications, hub: hub, limits: config.notifications.inboxLimits,
      deliveriesQueued: { jobs.kick(.deliveries) }, scheduled: { jobs.kick(.notificationScheduler) })
    systemEvents = SystemEventNotifier(
      store: store.notifications, publisher: publisher, clock: clock, logger: logger, gate: JobGate(jobs: jobs, job: .systemEvents))
    notificationScheduler = NotificationScheduler(
      store: store, publisher: publisher,
      reminders: DeadlineReminders(cases: store.cases, publisher: publisher, calendar: config.cases.calendar, logger: logger),
      clock: clock, logger: logger, interval: config.notifications.schedulerInterval, wake: scheduled,
      gate: JobGate(jobs: jobs, job: .notificationScheduler))
    let inbox = InboxService(
      store: store, hub: hub, sentPositions: SentPositionRecorder(store: store.notifications), settings: config.notifications,
      clock: clock, shutdown: streams, logger: logger)
    let notify = NotifyService(
      store: store, publisher: publisher, secrets: secrets, settings: config.notifications, clock: clock, logger: logger)
    sandbox = SandboxProvider(
      book: dependencies.database.sandboxBook, secret: dependencies.sandboxSecret, clock: clock,
      callbackDelay: config.payments.sandboxCallbackDelay, publicBaseURL: try config.publicHTTPURL.map(ServerConfig.publicBaseURL),
      logger: logger)
    let desk = PaymentDesk(
      store: store, provider: sandbox, issuer: issuer, settings: config.payments, clock: clock, logger: logger,
      eventsQueued: { jobs.kick(.systemEvents) })
    let paymentJobs = PaymentJobs(
      desk: desk, settings: config.payments, clock: clock, logger: logger, gate: JobGate(jobs: jobs, job: .payments))
    self.paymentJobs = paymentJobs
    let payments = PaymentService(store: store, desk: desk, issuer: issuer, settings: config.payments, clock: clock, logger: logger)
    let cases = CaseService(
      store: store, published: published, issuer: issuer, settings: config.cases, trackLimiter: trackLimiter, clock: clock,
      logger: logger, caseChanged: { jobs.kick(.systemEvents); jobs.kick(.payments) })
    let materials = MaterialService(
      store: store, vault: try MaterialVault(dataDirectory: config.dataDirectory, blobs: store.blobs), settings: config.cases,
      clock: clock, logger: logger)
    let certificates = CertificateService(store: store, issuer: issuer, clock: clock, logger: logger)
    let evaluations = EvaluationService(store: store, published: published, settings: config.cases, clock: clock, logger: logger)
    let audit = AuditService(store: store)
    caseClock = CaseClockService(
      store: store, calendar: config.cases.calendar, clock: clock, logger: logger, interval: config.cases.clockInterval,
      caseChanged: { jobs.kick(.systemEvents) }, gate: JobGate(jobs: jobs, job: .caseClock))
    housekeeping = HousekeepingService(
      store: store, retention: config.sync.retention, clock: clock, logger: logger, gate: JobGate(jobs: jobs, job: .housekeeping))
    jobs.register(.caseClock, wake: caseClock.wake.kick)
    jobs.register(.housekeeping, wake: housekeeping.wake.kick)
    jobs.register(.systemEvents, wake: systemEvents.kick)
    jobs.register(.notificationScheduler, wake: scheduled.kick)
    jobs.register(.payments, wake: paymentJobs.kick)
    jobs.register(.deliveries, wake: deliveries.kick)
    let health = HealthService(services: [
      Onewindow_V1_IdentityService.descriptor.fullyQualifiedService,
      Onewindow_V1_CatalogService.descriptor.fullyQualifiedService,
      Onewindow_V1_SyncService.descriptor.fullyQualifiedService,
      Onewindow_V1_CaseService.descriptor.fullyQualifiedService,
      Onewindow_V1_MaterialService.descriptor.fullyQualifiedService,
      Onewindow_V1_CertificateService.descriptor.fullyQualifiedService,
      Onewindow_V1_EvaluationService.descriptor.fullyQualifiedService,
      Onewindow_V1_AuditService.descriptor.fullyQualifiedService,
      Onewindow_V1_InboxService.descriptor.fullyQualifiedService,
      Onewindow_V1_NotifyService.descriptor.fullyQualifiedService,
      Onewindow_V1_PaymentService.descriptor.fullyQualifiedService,
    ])
    self.health = health
    readiness = DatabaseReadiness(store: store, health: health, interval: config.readinessInterval, logger: logger)
    let clients = ClientAddresses(trusted: try TrustedProxies.parse(config.trustedProxies))
    let guards = GRPCListenerGuards(config: config, clients: clients, logger: logger)
    transport = HTTP2ServerTransport.Posix(
      address: Self.address(host: config.host, port: config.port),
      transportSecurity: try Self.security(config),
      config: .defaults { c in
        c.compression.enabledAlgorithms = [.gzip, .deflate]
        c.rpc.maxRequestPayloadSize = config.maxMessageBytes
        c.connection.keepalive.clientBehavior = .init(minPingIntervalWithoutCalls: .seconds(30), allowWithoutCalls: true)
        c.connection.maxIdleTime = .seconds(30 * 60)
        c.http2.maxConcurrentStreams = 256
        c.channelDebuggingCallbacks = guards.callbacks
      })
    server = GRPCServer(
      transport: transport,
      services: [health, identity, catalog, SyncEndpoints(service: sync), cases, materials, certificates, evaluations, audit, inbox, notify, payments],
      interceptors: [
        MetricsInterceptor(), StatusInterceptor(logger: logger), AvailabilityInterceptor(health: health),
        ClientAddressInterceptor(clients: clients),
        AuthInterceptor(identity: store.identity, clock: clock),
      ])
    // Operational routes, payment callbacks, the sandbox cashier, then any the caller passed (tests).
    httpRoutes = OperationalRoutes.make(health: health, metrics: .shared)
      + [PaymentCallbacks(desk: desk, clock: clock, logger: logger).route] + sandbox.routes + extraRoutes
    var httpLimits = HTTPListener.Limits()
    httpLimits.connections = .init(total: config.maxConnections, perAddress: config.maxConnectionsPerAddress)
    httpLimits.deadlines = .init(
      headers: TimeAmount(config.handshakeTimeout), bodyIdle: TimeAmount(config.handshakeTimeout),
      bodyTotal: TimeAmount(config.httpBodyTimeout))
    http = HTTPListener(
      host: config.host, port: config.httpPort, routes: httpRoutes, limits: httpLimits, clients: clients, logger: logger)
    sandbox.bind(to: http, host: config.host)
  }

  static func address(host: String, port: Int) -> GRPCNIOTransportCore.SocketAddress {
    if host == "localhost" { return .ipv4(host: "127.0.0.1", port: port) }
    if host.contains(":") { return .ipv6(host: host.trimmingCharacters(in: ["[", "]"]), port: port) }
    return .ipv4(host: host, port: port)
  }

  static func security(_ config: ServerConfig) throws -> HTTP2ServerTransport.Posix.TransportSecurity {
    guard let cert = config.tlsCertificatePath, let key = config.tlsKeyPath else { return .plaintext }
    return .tls(certificateChain: [.file(path: cert, format: .pem)], privateKey: .file(path: key, format: .pem))
  }

  /// The bound port (useful with port 0). Waits until the server is listening.
  public func listeningPort() async throws -> Int {
    let address = try await transport.listeningAddress
    guard let port = address.ipv4?.port ?? address.ipv6?.port else {
      throw RPCError(code: .internalError, message: "server is not listening on an IP address")
    }
    return port
  }

  /// Serves until `beginGracefulShutdown()`; in-flight RPCs finish first.
  public func serve() async throws {
    lifecycle.withLock { $0.grpcServing = true }
    defer {
      let stopHTTP = lifecycle.withLock { s -> Bool in
        s.grpcServing = false
        return s.httpShouldStop
      }
      if stopHTTP { http.stop() }
    }
    try await server.serve()
  }

  /// Serves the plain-HTTP listener (/healthz, /metrics, `httpRoutes`) until graceful shutdown
  /// has begun and the gRPC calls have drained; in-flight HTTP requests finish first.
  public func serveHTTP() async throws {
    let stopHTTP = lifecycle.withLock { s -> Bool in
      s.httpFollowsDrain = true
      return s.httpShouldStop
    }
    if stopHTTP { http.stop() }
    try await http.run()
  }

  /// The HTTP listener's bound port (useful with port 0). Waits until it is listening.
  public func httpListeningPort() async throws -> Int {
    try await http.listeningPort()
  }

  public func beginGracefulShutdown() {
    let stopHTTP = lifecycle.withLock { s -> Bool in
      s.shuttingDown = true
      return s.httpShouldStop
    }
    health.shutDown()
    streams.close()
    hub.close()
    published.stopFollowing()
    sandbox.shutDown()
    server.beginGracefulShutdown()
    // Otherwise the end of `serve()` stops it, once the in-flight calls have finished.
    if stopHTTP { http.stop() }
  }

  /// Serves until SIGINT or SIGTERM, then drains in-flight calls and closes the database.
  public func runUntilSignalled() async throws {
    let group = ServiceGroup(
      services: [
        // First, so shut down last (services stop in reverse order): closed after everything drained.
        DatabaseService(database: database, logger: logger),
        // Next, so shut down after the gRPC drain: probes see 503 during it.
        http,
        GRPCServerService(app: self),
        readiness,
        // Before the jobs, so stopped after them: then it releases their leases.
        jobs,
        housekeeping,
        caseClock,
        systemEvents,
        notificationScheduler,
        deliveries,
        paymentJobs,
      ],
      gracefulShutdownSignals: [.sigterm, .sigint],
      logger: logger)
    try await group.run()
  }
}

/// Runs the gRPC server as a ServiceLifecycle service (grpc-swift-extras' glue is not available
/// here, and a wrapper avoids a retroactive conformance).
struct GRPCServerService: Service {
  let app: ServerApp

  func run() async throws {
    try await withGracefulShutdownHandler {
      try await app.serve()
    } onGracefulShutdown: {
      app.logger.info("shutting down: finishing in-flight calls")
      app.beginGracefulShutdown()
    }
  }
}

/// Hourly removal of expired tokens and login codes, and compaction of the sync change log
/// (tombstones and push results older than the retention period).
struct HousekeepingService: Service {
  let store: any Store
  let retention: Duration
  let clock: any WallClock
  let logger: Logger
  var interval: Duration = .seconds(3600)
  /// Passes run only while this node holds the job's lease.
  var gate: JobGate = .always
  let wake = WakeSignal()

  func run() async throws {
    await cancelWhenGracefulShutdown {
      while !Task.isCancelled {
        do {
          if gate.isOpen { try await runOnce() }
        } catch is CancellationError {
          return
        } catch {
          logger.error("housekeeping failed", metadata: ["error": "\(String(reflecting: type(of: error)))"])
        }
        await wake.wait(upTo: interval)
      }
    }
  }

  func runOnce() async throws {
    let now = clock.now()
    let removed = try await store.identity.purgeExpired(now: now) + store.rateLimits.purgeExpired(now: now)
    if removed > 0 { logger.info("housekeeping: removed expired credentials", metadata: ["rows": "\(removed)"]) }
    let cutoff = now.addingTimeInterval(-Double(retention.components.seconds))
    let compacted = try await store.sync.compact(before: cutoff)
    if compacted.tombstones + compacted.results > 0 {
      logger.info(
        "housekeeping: compacted the sync log",
        metadata: ["tombstones": "\(compacted.tombstones)", "results": "\(compacted.results)"])
    }
  }
}
