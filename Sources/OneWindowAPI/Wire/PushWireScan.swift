import OneWindowCore

/// A scan of a `PushRequest`'s wire bytes, made before SwiftProtobuf decodes them, so that one
/// mutation the decoder could not take (a value nested deeper than its recursion limit, invalid
/// UTF-8, a malformed nested message) is rejected alone instead of failing the whole push and
/// jamming the device's queue (docs/sync-protocol.md §6.3).
///
/// The scan is iterative: its stack is bounded by `SyncLimits.maxDepth`, whatever the input's
/// nesting, and it stops descending into a mutation at the first problem, skipping the rest of
/// it by its length prefix. A push is read once more than before, without copying unless a
/// mutation is rejected.
public struct PushWireScan: Sendable, Equatable {
  /// A mutation the scan rejected, with what could be read of its identity.
  public struct Rejected: Sendable, Equatable {
    /// Its position among the request's mutations.
    public var index: Int
    public var mutationID: Int64
    public var collection: String
    public var recordID: String
    public var problem: ValidationError
  }

  /// Every mutation, in order.
  public var mutationCount = 0
  public var rejected: [Rejected] = []
  /// The byte ranges to decode when some mutation was rejected: everything but those mutations.
  public var kept: [Range<Int>] = []

  /// The request's top level is not protobuf (a truncated field, a bad wire type): the whole
  /// request is refused, as the decoder would.
  public struct Malformed: Error, Sendable, Equatable {
    public var reason: String
  }

  /// Scans `bytes`, a serialized `onewindow.v1.PushRequest`.
  public static func scan(_ bytes: UnsafeRawBufferPointer) throws(Malformed) -> PushWireScan {
    var result = PushWireScan()
    var reader = WireReader(bytes: bytes, start: 0, end: bytes.count)
    while !reader.atEnd {
      let fieldStart = reader.position
      guard let (field, type) = reader.tag() else { throw Malformed(reason: "a field tag is malformed") }
      if field == 2 {
        guard type == .lengthDelimited, let body = reader.lengthDelimited() else {
          throw Malformed(reason: "mutations[\(result.mutationCount)] is truncated")
        }
        let index = result.mutationCount
        result.mutationCount += 1
        if let problem = scanMutation(bytes, body) {
          result.rejected.append(identity(of: bytes, body, index: index, problem: problem))
          continue
        }
      } else {
        guard reader.skip(type) else { throw Malformed(reason: "field \(field) is malformed") }
      }
      // Adjacent kept fields share one range.
      if let last = result.kept.last, last.upperBound == fieldStart {
        result.kept[result.kept.count - 1] = last.lowerBound..<reader.position
      } else {
        result.kept.append(fieldStart..<reader.position)
      }
    }
    return result
  }

  // MARK: - One mutation

  /// The messages inside a mutation whose fields the scan checks; everything else is skipped by
  /// its wire type.
  private enum Kind {
    case mutation, upsert, upsertEntry, fieldEdit, stamp, delete, value, list, map, mapEntry
  }

  private struct Frame {
    var kind: Kind
    var end: Int
    /// For a value: how many lists and maps enclose it.
    var depth: Int
  }

  private enum Expect {
    case utf8, message(Kind), varint, fixed64, bytes
  }

  private static func expected(_ kind: Kind, _ field: UInt64) -> Expect? {
    switch (kind, field) {
    case (.mutation, 1), (.mutation, 4): .varint
    case (.mutation, 2), (.mutation, 3): .utf8
    case (.mutation, 5): .message(.upsert)
    case (.mutation, 6): .message(.delete)
    case (.upsert, 1): .message(.upsertEntry)
    case (.upsertEntry, 1): .utf8
    case (.upsertEntry, 2): .message(.fieldEdit)
    case (.fieldEdit, 1): .message(.value)
    case (.fieldEdit, 2), (.delete, 1): .message(.stamp)
    case (.stamp, 1), (.stamp, 2): .varint
    case (.stamp, 3): .utf8
    case (.value, 1), (.value, 2), (.value, 3), (.value, 7): .varint
    case (.value, 4): .fixed64
    case (.value, 5): .utf8
    case (.value, 6): .bytes
    case (.value, 8): .message(.list)
    case (.value, 9): .message(.map)
    case (.list, 1): .message(.value)
    case (.map, 1): .message(.mapEntry)
    case (.mapEntry, 1): .utf8
    case (.mapEntry, 2): .message(.value)
    default: nil
    }
  }

  /// The first problem in one mutation's bytes, or nil when the decoder can take it and its
  /// values nest at most `SyncLimits.maxDepth` levels.
  private static func scanMutation(_ bytes: UnsafeRawBufferPointer, _ body: Range<Int>) -> ValidationError? {
    var reader = WireReader(bytes: bytes, start: body.lowerBound, end: body.upperBound)
    var stack = [Frame(kind: .mutation, end: body.upperBound, depth: 0)]
    var fieldName = "fields"
    while let top = stack.last {
      if reader.position == top.end {
        stack.removeLast()
        continue
      }
      guard let (field, type) = reader.tag(limit: top.end) else { return malformed }
      guard let expect = expected(top.kind, field) else {
        // Unknown fields are kept by the decoder as bytes; groups are refused (proto3 has none).
        guard type != .startGroup, type != .endGroup, reader.skip(type, limit: top.end) else { return malformed }
        continue
      }
      switch expect {
      case .varint:
        guard type == .varint, reader.varint(limit: top.end) != nil else { return malformed }
      case .fixed64:
        guard type == .fixed64, reader.skip(.fixed64, limit: top.end) else { return malformed }
      case .bytes:
        guard type == .lengthDelimited, reader.lengthDelimited(limit: top.end) != nil else { return malformed }
      case .utf8:
        guard type == .lengthDelimited, let range = reader.lengthDelimited(limit: top.end) else { return malformed }
        guard let text = String(validating: UnsafeRawBufferPointer(rebasing: bytes[range]), as: UTF8.self) else {
          return ValidationError(utf8Field(top.kind, field, fieldName), "is not valid UTF-8")
        }
        if top.kind == .upsertEntry { fieldName = "fields.\(text)" }
      case .message(let kind):
        guard type == .lengthDelimited, let range = reader.lengthDelimited(limit: top.end) else { return malformed }
        var depth = top.depth
        if kind == .value && (top.kind == .list || top.kind == .mapEntry) { depth += 1 }
        if kind == .value && depth > SyncLimits.maxDepth {
          return ValidationError(fieldName, "nests deeper than \(SyncLimits.maxDepth) levels")
        }
        if kind == .upsertEntry { fieldName = "fields" }
        // The reader continues inside the nested message; its frame ends where the message does.
        reader.position = range.lowerBound
        stack.append(Frame(kind: kind, end: range.upperBound, depth: depth))
      }
    }
    return nil
  }

  private static let malformed = ValidationError("mutation", "is not a valid onewindow.v1.Mutation")

  private static func utf8Field(_ kind: Kind, _ field: UInt64, _ fieldName: String) -> String {
    switch (kind, field) {
    case (.mutation, 2): "collection"
    case (.mutation, 3): "record_id"
    case (.upsertEntry, 1): "fields (a field name)"
    case (.stamp, 3): "\(fieldName).stamp.node"
    case (.mapEntry, 1): "\(fieldName) (a map key)"
    default: fieldName
    }
  }

  /// The id, collection and record id of a rejected mutation, read from its top-level fields
  /// only (so they can be reported whatever is wrong deeper inside).
  private static func identity(
    of bytes: UnsafeRawBufferPointer, _ body: Range<Int>, index: Int, problem: ValidationError
  ) -> Rejected {
    var rejected = Rejected(index: index, mutationID: 0, collection: "", recordID: "", problem: problem)
    var reader = WireReader(bytes: bytes, start: body.lowerBound, end: body.upperBound)
    while !reader.atEnd {
      guard let (field, type) = reader.tag() else { break }
      switch (field, type) {
      case (1, .varint):
        guard let v = reader.varint() else { return rejected }
        rejected.mutationID = Int64(bitPattern: v)
      case (2, .lengthDelimited), (3, .lengthDelimited):
        guard let range = reader.lengthDelimited() else { return rejected }
        let text = String(validating: UnsafeRawBufferPointer(rebasing: bytes[range]), as: UTF8.self) ?? ""
        if field == 2 { rejected.collection = text } else { rejected.recordID = text }
      default:
        guard type != .startGroup, type != .endGroup, reader.skip(type) else { return rejected }
      }
    }
    return rejected
  }
}

/// Reads protobuf wire format: tags, varints and length prefixes, always within bounds.
struct WireReader {
  enum WireType: UInt64 {
    case varint = 0, fixed64 = 1, lengthDelimited = 2, startGroup = 3, endGroup = 4, fixed32 = 5
  }

  let bytes: UnsafeRawBufferPointer
  var position: Int
  let end: Int

  init(bytes: UnsafeRawBufferPointer, start: Int, end: Int) {
    self.bytes = bytes
    position = start
    self.end = end
  }

  var atEnd: Bool { position >= end }

  mutating func varint(limit: Int? = nil) -> UInt64? {
    let limit = limit ?? end
    var value: UInt64 = 0
    var shift: UInt64 = 0
    while position < limit && shift < 64 {
      let byte = bytes[position]
      position += 1
      value |= UInt64(byte & 0x7F) << shift
      if byte & 0x80 == 0 { return value }
      shift += 7
    }
    return nil
  }

  mutating func tag(limit: Int? = nil) -> (field: UInt64, type: WireType)? {
    // Field numbers run from 1 to 2^29 - 1, as the decoder requires.
    guard let key = varint(limit: limit), let type = WireType(rawValue: key & 7), (1...0x1FFF_FFFF).contains(key >> 3)
    else { return nil }
    return (key >> 3, type)
  }

  /// The body's range, with the reader moved past it.
  mutating func lengthDelimited(limit: Int? = nil) -> Range<Int>? {
    let limit = limit ?? end
    guard let length = varint(limit: limit), length <= UInt64(limit - position) else { return nil }
    let range = position..<(position + Int(length))
    position = range.upperBound
    return range
  }

  mutating func skip(_ type: WireType, limit: Int? = nil) -> Bool {
    let limit = limit ?? end
    switch type {
    case .varint: return varint(limit: limit) != nil
    case .fixed64: return advance(8, limit: limit)
    case .fixed32: return advance(4, limit: limit)
    case .lengthDelimited: return lengthDelimited(limit: limit) != nil
    case .startGroup, .endGroup: return false
    }
  }

  private mutating func advance(_ n: Int, limit: Int) -> Bool {
    guard limit - position >= n else { return false }
    position += n
    return true
  }
}
