/// A compact binary form of a record's fields with their stamps, for storage. Values use the
/// canonical encoding (`SyncValue.appendCanonical`); decoding is strict and bounded, so a
/// corrupt blob is an error, never a crash.
public enum RecordCodec {
  static let format: UInt8 = 1

  public struct DecodingError: Error, Equatable, CustomStringConvertible {
    public var description: String { "stored record is corrupt" }
  }

  /// Encodes the fields and the tombstone stamp (version and the deleted flag are kept beside).
  public static func encode(_ state: RecordState) -> [UInt8] {
    var out: [UInt8] = [format]
    SyncValue.appendInteger(UInt64(state.fields.count), to: &out)
    for name in state.fields.keys.sorted() {
      guard let field = state.fields[name] else { continue }
      SyncValue.appendBlob(Array(name.utf8), to: &out)
      field.value.appendCanonical(to: &out)
      appendStamp(field.stamp, to: &out)
      SyncValue.appendInteger(UInt64(bitPattern: field.changedAt), to: &out)
    }
    if let stamp = state.deletedStamp {
      out.append(1)
      appendStamp(stamp, to: &out)
    } else {
      out.append(0)
    }
    return out
  }

  public static func decode(_ bytes: [UInt8], version: Int64, deleted: Bool) throws(DecodingError) -> RecordState {
    var reader = Reader(bytes: bytes)
    guard try reader.byte() == format else { throw DecodingError() }
    let count = try reader.count()
    var fields: [String: FieldState] = [:]
    fields.reserveCapacity(count)
    for _ in 0..<count {
      let name = try reader.string()
      let value = try reader.value(depth: 0)
      let stamp = try reader.stamp()
      let changedAt = Int64(bitPattern: try reader.integer())
      fields[name] = FieldState(value: value, stamp: stamp, changedAt: changedAt)
    }
    let deletedStamp: HLCStamp? = try reader.byte() == 1 ? try reader.stamp() : nil
    guard reader.atEnd else { throw DecodingError() }
    return RecordState(fields: fields, version: version, deleted: deleted, deletedStamp: deletedStamp)
  }

  /// Decodes a value's canonical bytes (the inverse of `SyncValue.canonicalBytes()`).
  public static func decodeValue(_ bytes: [UInt8]) throws(DecodingError) -> SyncValue {
    var reader = Reader(bytes: bytes)
    let value = try reader.value(depth: 0)
    guard reader.atEnd else { throw DecodingError() }
    return value
  }

  static func appendStamp(_ stamp: HLCStamp, to out: inout [UInt8]) {
    SyncValue.appendInteger(UInt64(bitPattern: stamp.millis), to: &out)
    out.append(UInt8(stamp.counter >> 8))
    out.append(UInt8(stamp.counter & 0xFF))
    SyncValue.appendBlob(Array(stamp.node.utf8), to: &out)
  }

  struct Reader {
    let bytes: [UInt8]
    var offset = 0

    var atEnd: Bool { offset == bytes.count }

    mutating func byte() throws(DecodingError) -> UInt8 {
      guard offset < bytes.count else { throw DecodingError() }
      defer { offset += 1 }
      return bytes[offset]
    }

    mutating func integer() throws(DecodingError) -> UInt64 {
      guard bytes.count - offset >= 8 else { throw DecodingError() }
      var v: UInt64 = 0
      for i in offset..<offset + 8 { v = v << 8 | UInt64(bytes[i]) }
      offset += 8
      return v
    }

    /// A length or element count, bounded by the bytes left (each element takes ≥ 1 byte).
    mutating func count() throws(DecodingError) -> Int {
      let n = try integer()
      guard n <= UInt64(bytes.count - offset) else { throw DecodingError() }
      return Int(n)
    }

    mutating func blob() throws(DecodingError) -> ArraySlice<UInt8> {
      let n = try count()
      defer { offset += n }
      return bytes[offset..<offset + n]
    }

    mutating func string() throws(DecodingError) -> String {
      guard let s = String(validating: try blob(), as: UTF8.self) else { throw DecodingError() }
      return s
    }

    mutating func stamp() throws(DecodingError) -> HLCStamp {
      let millis = Int64(bitPattern: try integer())
      let counter = UInt16(try byte()) << 8 | UInt16(try byte())
      return HLCStamp(millis: millis, counter: counter, node: try string())
    }

    mutating func value(depth: Int) throws(DecodingError) -> SyncValue {
      guard depth <= SyncLimits.maxDepth + 1 else { throw DecodingError() }
      switch try byte() {
      case 0: return .null
      case 1: return .bool(try byte() != 0)
      case 2: return .int(Int64(bitPattern: try integer()))
      case 3: return .double(Double(bitPattern: try integer()))
      case 4: return .string(try string())
      case 5: return .bytes(Array(try blob()))
      case 6: return .timestamp(Int64(bitPattern: try integer()))
      case 7:
        let n = try count()
        var items: [SyncValue] = []
        items.reserveCapacity(n)
        for _ in 0..<n { items.append(try value(depth: depth + 1)) }
        return .list(items)
      case 8:
        let n = try count()
        var entries: [String: SyncValue] = [:]
        entries.reserveCapacity(n)
        for _ in 0..<n {
          let key = try string()
          entries[key] = try value(depth: depth + 1)
        }
        return .map(entries)
      default: throw DecodingError()
      }
    }
  }
}
