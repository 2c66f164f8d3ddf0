import GRPCCore
import OneWindowAPI
import OneWindowCore

/// Checking the replica against the server, and the conflict RPCs.
extension SyncEngine {
  /// Pulls until current, asks the server for per-collection counts and checksums, and compares
  /// them with checksums over the replica's server state (not the local view: queued edits are
  /// not on the server yet).
  ///
  /// The comparison is only meaningful when both sides describe the same state: the server's
  /// checksums are at the cursor it returns. When that is not the replica's cursor, the replica
  /// pulls again; if that pull brings nothing, nothing visible changed since, so the states
  /// agree. Otherwise it tries again (three times at most) and reports `consistent: false`.
  public func verify() async throws -> VerifyReport {
    var attempt = 0
    while true {
      attempt += 1
      _ = try await pull()
      let before = try await replica.cursor()
      let response = try await client.verify(
        .with { $0.collections = options.collections }, metadata: try await metadata(), options: options.callOptions)
      if let clock = try ServerPage.clock(response.hasServerClock ? response.serverClock : nil) {
        try await replica.receive(serverClock: clock)
      }
      var consistent = response.cursor == before
      if !consistent {
        let after = try await pull()
        consistent = after.changes == 0 && after.reset == nil
      }
      if consistent || attempt >= 3 {
        return try await compare(response, consistent: consistent)
      }
    }
  }

  private func compare(_ response: Onewindow_V1_VerifyResponse, consistent: Bool) async throws -> VerifyReport {
    let serverNames = response.collections.map(\.collection)
    let local = try await replica.checksums(collections: options.collections.isEmpty ? [] : options.collections + serverNames)
    var results: [CollectionVerification] = []
    for server in response.collections {
      let sum = local[server.collection] ?? ReplicaChecksum()
      results.append(CollectionVerification(
        collection: server.collection, localCount: sum.count, localChecksum: sum.hex, serverCount: server.count,
        serverChecksum: server.checksum.lowercased()))
    }
    // Records of a collection the server did not report at all cannot be on the server.
    for (name, sum) in local where !serverNames.contains(name) && sum.count > 0 {
      results.append(CollectionVerification(
        collection: name, localCount: sum.count, localChecksum: sum.hex, serverCount: 0, serverChecksum: "-"))
    }
    return VerifyReport(
      collections: results.sorted { $0.collection < $1.collection }, cursor: response.cursor, consistent: consistent)
  }

  /// The account's open conflicts (manual-policy collections), optionally of one collection.
  public func listConflicts(collection: String? = nil) async throws -> [SyncConflict] {
    let response = try await client.listConflicts(
      .with { $0.collection = collection ?? "" }, metadata: try await metadata(), options: options.callOptions)
    if let clock = try ServerPage.clock(response.hasServerClock ? response.serverClock : nil) {
      try await replica.receive(serverClock: clock)
    }
    return try response.conflicts.map(SyncConflict.init(wire:))
  }

  /// Settles a conflict: per field keep the server's value or take the client's, or write a
  /// given value (which overrides the choice). Returns the record after the resolution. The
  /// replica learns of it, and of the conflict's removal, with the next pull.
  @discardableResult
  public func resolveConflict(
    id: String, choices: [String: ConflictResolution.Choice] = [:], values: [String: SyncValue] = [:]
  ) async throws -> ServerChange? {
    let request = Onewindow_V1_ResolveConflictRequest.with {
      $0.conflictID = id
      $0.choices = choices.mapValues { $0 == .server ? .server : .client }
      $0.values = values.mapValues(Onewindow_V1_Value.init)
    }
    let response = try await client.resolveConflict(request, metadata: try await metadata(), options: options.callOptions)
    if let clock = try ServerPage.clock(response.hasServerClock ? response.serverClock : nil) {
      try await replica.receive(serverClock: clock)
    }
    return response.hasRecord ? try ServerChange(response.record) : nil
  }
}
