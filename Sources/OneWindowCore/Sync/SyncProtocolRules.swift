import Crypto

/// Where a mutation stands against the last mutation id processed for its client (Replicache's
/// rules): already processed (answer from the stored result, change nothing), the next one
/// (apply it and advance, in the same transaction), or beyond a gap (stop and report).
public enum MutationOrder: Sendable, Equatable {
  case alreadyProcessed
  case next
  case gap(expected: Int64)

  public static func classify(_ mutationID: Int64, lastProcessed: Int64) -> MutationOrder {
    if mutationID <= lastProcessed { return .alreadyProcessed }
    if mutationID == lastProcessed + 1 { return .next }
    return .gap(expected: lastProcessed + 1)
  }

  /// Where a push's processing starts after a restore from a backup. A client whose mutation
  /// ids were counted by a database state the restore replaced (`mayRebase`) may have had ids
  /// acknowledged that the restored database never saw, and it dropped those from its queue: its
  /// first mutation is then taken as the next one instead of stopping at a gap that nobody can
  /// fill. Returns the last processed id to continue from, and the first id lost, if any.
  public static func rebased(firstMutationID: Int64?, lastProcessed: Int64, mayRebase: Bool) -> (last: Int64, lostFrom: Int64?) {
    guard mayRebase, startsPastGap(firstMutationID, lastProcessed: lastProcessed), let first = firstMutationID else {
      return (lastProcessed, nil)
    }
    return (first - 1, lastProcessed + 1)
  }

  /// Whether a push's first mutation skips ahead: only then can a restore matter, so engines
  /// look the restore up (`mayRebase`) for such pushes alone.
  public static func startsPastGap(_ firstMutationID: Int64?, lastProcessed: Int64) -> Bool {
    guard let first = firstMutationID else { return false }
    return first > lastProcessed + 1
  }

  /// Whether a client may be rebased (above): only in a database restored from a backup
  /// (`restore-finish` gave it a new epoch), for a client unknown to it (`clientEpoch` nil) or
  /// whose ids were last counted under another epoch. Once it has pushed in the new epoch, the
  /// strict order holds again.
  public static func mayRebase(clientEpoch: UInt32?, currentEpoch: UInt32, restored: Bool) -> Bool {
    guard restored else { return false }
    guard let clientEpoch else { return true }
    return clientEpoch != currentEpoch
  }
}

/// The change log's epoch: a random non-zero id, new with each database and after each restore.
public enum SyncEpoch {
  /// A random epoch other than `old` (and than 0).
  public static func next(after old: UInt32) -> UInt32 {
    var new = UInt32.random(in: 1...UInt32.max)
    while new == old { new = UInt32.random(in: 1...UInt32.max) }
    return new
  }
}

/// A position in the server's change log, opaque to clients. It carries the log's epoch (a
/// random id made when the database was created) so that a cursor from another database — a
/// restored backup, a different server — is refused with a reset instead of silently skipping,
/// and a fingerprint of the caller's audiences when it was issued, so a caller whose access
/// changed (moved department) is reset and purges what it may no longer see.
public struct SyncCursor: Sendable, Equatable {
  public var epoch: UInt32
  /// The last server sequence number the client has.
  public var sequence: Int64
  /// `SyncPrincipal.audienceFingerprint` of the caller the cursor was issued to.
  public var audiences: UInt32

  public init(epoch: UInt32, sequence: Int64, audiences: UInt32 = 0) {
    self.epoch = epoch
    self.sequence = sequence
    self.audiences = audiences
  }

  static let formatVersion: UInt8 = 1

  /// base64url of: format (1 byte), epoch (4), sequence (8), audiences (4), big-endian.
  public var encoded: String {
    var bytes: [UInt8] = [Self.formatVersion]
    for shift in stride(from: 24, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: epoch >> UInt32(shift))) }
    for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: UInt64(bitPattern: sequence) >> UInt64(shift))) }
    for shift in stride(from: 24, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: audiences >> UInt32(shift))) }
    return Base64URL.encode(bytes)
  }

  /// The empty cursor "" means "from the beginning" and decodes to nil.
  public static func decode(_ text: String, field: String = "cursor") throws(ValidationError) -> SyncCursor? {
    if text.isEmpty { return nil }
    guard let bytes = Base64URL.decode(text), bytes.count == 17, bytes[0] == formatVersion else {
      throw ValidationError(field, "is not a cursor this server issued; start from an empty cursor")
    }
    let epoch = bytes[1..<5].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
    let raw = bytes[5..<13].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
    let audiences = bytes[13..<17].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
    let sequence = Int64(bitPattern: raw)
    guard sequence >= 0 else { throw ValidationError(field, "is not a cursor this server issued; start from an empty cursor") }
    return SyncCursor(epoch: epoch, sequence: sequence, audiences: audiences)
  }
}

/// An order-independent summary of a set of records, so a client can prove its replica holds
/// exactly what the server holds without sending the records: the count, and the wrapping sum
/// of a 64-bit hash of each live record's id and canonical field values.
public struct ReplicaChecksum: Sendable, Equatable {
  public private(set) var count: Int = 0
  public private(set) var sum: UInt64 = 0

  public init() {}

  public mutating func add(id: String, values: [String: SyncValue]) {
    add(hash: Self.hash(id: id, values: values))
  }

  /// Adds a record by its precomputed `hash(id:values:)` (stores keep it beside the record).
  public mutating func add(hash: UInt64) {
    count += 1
    sum &+= hash
  }

  public static func hash(id: String, values: [String: SyncValue]) -> UInt64 {
    var bytes = Array(id.utf8)
    bytes.append(0)
    SyncValue.map(values).appendCanonical(to: &bytes)
    let digest = Array(SHA256.hash(data: bytes))
    return digest.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
  }

  /// Lowercase hex of the sum, as sent on the wire.
  public var hex: String { Hex.encode((0..<8).map { UInt8(truncatingIfNeeded: sum >> UInt64(56 - 8 * $0)) }) }
}

/// Why a cursor cannot be continued and the client must re-download a snapshot.
public enum ResetReason: String, Sendable, Equatable {
  /// Older than the retention horizon: deletes it needs were compacted away.
  case cursorExpired = "cursor_expired"
  /// From another database (restored backup, another server), or ahead of this log.
  case epochChanged = "epoch_changed"
  /// Issued for other audiences or another collection filter: the replica may hold records
  /// the caller can no longer see.
  case accessChanged = "access_changed"

  /// The reset a cursor needs against the log (`epoch`, last `sequence`, compaction `horizon`)
  /// for a caller whose fingerprint is `audiences`; nil when it can be continued.
  public static func check(_ cursor: SyncCursor?, epoch: UInt32, sequence: Int64, horizon: Int64, audiences: UInt32) -> ResetReason? {
    guard let cursor else { return nil }
    if cursor.epoch != epoch || cursor.sequence > sequence { return .epochChanged }
    if cursor.audiences != audiences { return .accessChanged }
    if cursor.sequence < horizon { return .cursorExpired }
    return nil
  }
}
