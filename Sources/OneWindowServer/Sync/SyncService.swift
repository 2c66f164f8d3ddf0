import GRPCCore
import Logging
import OneWindowAPI
import OneWindowCore
import OneWindowStore

/// Offline sync (docs/sync-protocol.md): decode and check at the edge, then the store applies the
/// core's write rules in one transaction per push. Every response carries the server's HLC.
struct SyncService: Onewindow_V1_SyncService.SimpleServiceProtocol {
  let store: any SyncStore
  let identity: any IdentityStore
  let clock: any WallClock
  let settings: SyncSettings
  let shutdown: StreamShutdown
  let logger: Logger

  static let maxMutationsPerPush = 1000
  static let maxPageSize = 1000
  /// Record bodies per page; with protobuf framing a page stays under 4 MiB (the default
  /// largest message a gRPC client accepts).
  static let maxPageBodyBytes = 3 * 1024 * 1024

  var rules: SyncWriteRules { SyncWriteRules(skew: SkewPolicy(maxSkew: settings.maxClockSkew)) }

  func serverClock() -> Onewindow_V1_HlcStamp { Onewindow_V1_HlcStamp(store.clockReading(now: clock.now())) }

  func listCollections(
    request: Onewindow_V1_ListCollectionsRequest, context: ServerContext
  ) async throws -> Onewindow_V1_ListCollectionsResponse {
    .with {
      $0.collections = SyncCollections.all.map(Onewindow_V1_Collection.init)
      $0.serverClock = serverClock()
    }
  }

  // MARK: - Pull and Watch

  func pull(request: Onewindow_V1_PullRequest, context: ServerContext) async throws -> Onewindow_V1_PullResponse {
    let principal = SyncPrincipal(try RequestContext.requirePrincipal())
    let collections = try Self.collections(request.collections)
    let limit = request.limit == 0 ? Self.maxPageSize : Int(request.limit)
    guard (1...Self.maxPageSize).contains(limit) else {
      throw ValidationError("limit", "must be between 1 and \(Self.maxPageSize)")
    }
    if !request.clientID.isEmpty { try SyncClientID.validate(request.clientID) }
    let cursor = try SyncCursor.decode(request.cursor)
    let page = try await store.pull(PullQuery(
      audiences: principal.audiences, collections: collections, after: cursor?.sequence ?? 0, liveOnly: cursor == nil,
      limit: limit, maxBytes: Self.maxPageBodyBytes, clientID: request.clientID.isEmpty ? nil : request.clientID,
      accountID: principal.accountID))
    let fingerprint = principal.cursorFingerprint(collections: collections)
    if let reason = ResetReason.check(
      cursor, epoch: page.log.epoch, sequence: page.log.sequence, horizon: page.log.horizon, audiences: fingerprint)
    {
      return .with {
        $0.reset = Onewindow_V1_ResetReason(reason)
        $0.serverClock = serverClock()
      }
    }
    return .with {
      $0.changes = page.records.map(Onewindow_V1_Change.init)
      $0.cursor = SyncCursor(epoch: page.log.epoch, sequence: page.position, audiences: fingerprint).encoded
      $0.hasMore_p = page.hasMore
      $0.lastMutationID = page.lastMutationID ?? 0
      $0.serverClock = serverClock()
    }
  }

  func watch(
    request: Onewindow_V1_WatchRequest, response: RPCWriter<Onewindow_V1_WatchEvent>, context: ServerContext
  ) async throws {
    let caller = try RequestContext.requirePrincipal()
    let principal = SyncPrincipal(caller)
    let collections = try Self.collections(request.collections)
    let cursor = try SyncCursor.decode(request.cursor)
    let watcher = ChangeWatcher(
      store: store, principal: principal, collections: collections, settings: settings,
      stillAuthorized: { [identity] in
        guard try await identity.isSessionActive(familyID: caller.sessionFamilyID) else { return .loggedOut }
        guard let account = try await identity.account(id: caller.accountID),
              account.role == caller.role && account.departmentCode == caller.departmentCode
        else { return .accessChanged }
        return .authorized
      },
      serverClock: serverClock, shutdown: shutdown)
    try await watcher.run(from: cursor, response: response, context: context)
  }

  // MARK: - Push

  func push(request: Onewindow_V1_PushRequest, context: ServerContext) async throws -> Onewindow_V1_PushResponse {
    try await push(DecodedPush(request), context: context)
  }

  /// The one implementation of Push; `SyncEndpoints` calls it with mutations the wire scan
  /// already rejected in place.
  func push(_ request: DecodedPush, context: ServerContext) async throws -> Onewindow_V1_PushResponse {
    let principal = SyncPrincipal(try RequestContext.requirePrincipal())
    try SyncClientID.validate(request.clientID)
    guard request.mutations.count <= Self.maxMutationsPerPush else {
      throw ValidationError("mutations", "at most \(Self.maxMutationsPerPush) per push (got \(request.mutations.count)); send the rest in the next push")
    }
    var previous: Int64 = 0
    for (i, id) in request.mutationIDs.enumerated() {
      guard id > previous else {
        throw ValidationError("mutations[\(i)].mutation_id", "must be positive and increase through the push")
      }
      previous = id
    }
    let outcome = try await store.push(PushBatch(
      clientID: request.clientID, principal: principal, mutations: request.incoming, rules: rules, now: clock.now()))
    return .with {
      $0.results = outcome.results.map(Onewindow_V1_MutationResult.init)
      $0.lastMutationID = outcome.lastMutationID
      $0.gapExpectedID = outcome.gapExpected ?? 0
      $0.lostFromID = outcome.lostFrom ?? 0
      $0.serverClock = Onewindow_V1_HlcStamp(outcome.serverClock)
    }
  }

  // MARK: - Verify and conflicts

  func verify(request: Onewindow_V1_VerifyRequest, context: ServerContext) async throws -> Onewindow_V1_VerifyResponse {
    let principal = SyncPrincipal(try RequestContext.requirePrincipal())
    let collections = try Self.collections(request.collections)
    let (sums, log) = try await store.checksums(audiences: principal.audiences, collections: collections)
    return .with {
      $0.collections = sums.keys.sorted().map { name in
        .with {
          $0.collection = name
          $0.count = Int64(sums[name]?.count ?? 0)
          $0.checksum = sums[name]?.hex ?? ReplicaChecksum().hex
        }
      }
      $0.cursor = SyncCursor(
        epoch: log.epoch, sequence: log.sequence, audiences: principal.cursorFingerprint(collections: collections)
      ).encoded
      $0.serverClock = serverClock()
    }
  }

  func listConflicts(
    request: Onewindow_V1_ListConflictsRequest, context: ServerContext
  ) async throws -> Onewindow_V1_ListConflictsResponse {
    let principal = SyncPrincipal(try RequestContext.requirePrincipal())
    if !request.collection.isEmpty { _ = try Self.collections([request.collection]) }
    let records = try await store.liveRecords(
      collection: SyncCollections.conflicts.name, audience: AudienceLabel.account(principal.accountID))
    return .with {
      $0.conflicts = records.compactMap { SyncConflict(id: $0.id, values: $0.state.values) }
        .filter { request.collection.isEmpty || $0.collection == request.collection }
        .map(Onewindow_V1_Conflict.init)
      $0.serverClock = serverClock()
    }
  }

  func resolveConflict(
    request: Onewindow_V1_ResolveConflictRequest, context: ServerContext
  ) async throws -> Onewindow_V1_ResolveConflictResponse {
    let principal = SyncPrincipal(try RequestContext.requirePrincipal())
    try SyncLimits.validateRecordID(request.conflictID, field: "conflict_id")
    var resolution = ConflictResolution()
    for (field, choice) in request.choices {
      switch choice {
      case .server: resolution.choices[field] = .server
      case .client: resolution.choices[field] = .client
      default: throw ValidationError("choices.\(field)", "must be CHOICE_SERVER or CHOICE_CLIENT")
      }
    }
    for (field, value) in request.values { resolution.values[field] = try value.domain(field: "values.\(field)") }
    let record = try await store.resolveConflict(id: request.conflictID, principal: principal, resolution: resolution, now: clock.now())
    return .with {
      if let record { $0.record = Onewindow_V1_Change(record) }
      $0.serverClock = serverClock()
    }
  }

  /// Validates a collection filter; nil means every collection.
  static func collections(_ names: [String]) throws(ValidationError) -> [String]? {
    guard !names.isEmpty else { return nil }
    guard names.count <= SyncCollections.maxFilterEntries else {
      throw ValidationError("collections", "at most \(SyncCollections.maxFilterEntries) entries (got \(names.count))")
    }
    for name in names where SyncCollections.named(name) == nil {
      throw ValidationError("collections", "'\(name)' is not a collection of this server (see ListCollections)")
    }
    return Array(Set(names)).sorted()
  }
}

/// How sync behaves; part of `ServerConfig`.
public struct SyncSettings: Sendable {
  /// Tombstones and stored push results are kept this long; older cursors reset.
  public var retention: Duration = .seconds(30 * 24 * 3600)
  /// A Watch stream sends a heartbeat this often when nothing changes.
  public var heartbeat: Duration = .seconds(15)
  /// Device stamps further ahead of server time are clamped (seconds).
  public var maxClockSkew: Double = 60

  public init() {}
}

extension Onewindow_V1_Change {
  init(_ record: StoredRecord) {
    self.init(collection: record.collection, id: record.id, ownerID: record.ownerID, state: record.state)
  }
}

extension Onewindow_V1_ResetReason {
  init(_ reason: ResetReason) {
    switch reason {
    case .cursorExpired: self = .cursorExpired
    case .epochChanged: self = .epochChanged
    case .accessChanged: self = .accessChanged
    }
  }
}

extension Onewindow_V1_Collection {
  init(_ spec: CollectionSpec) {
    self.init()
    name = spec.name
    switch spec.scope {
    case .private: scope = .private
    case .department: scope = .department
    case .public: scope = .public
    case .case: scope = .case
    }
    switch spec.policy {
    case .fieldLWW: policy = .fieldLww
    case .serverWins: policy = .serverWins
    case .manual: policy = .manual
    }
    clientWritable = spec.clientWritable
    schemaless = spec.fields == nil
    fields = (spec.fields ?? []).map { field in
      .with {
        $0.name = field.name
        $0.type = field.type.rawValue
        $0.required = field.required
        $0.maxLength = Int32(field.maxLength ?? 0)
      }
    }
    maxRecordBytes = Int32(spec.maxRecordBytes)
  }
}
