import Foundation
#if canImport(Glibc)
import Glibc
#endif
import GRPCCore
import NIOCore
import NIOPosix
import OneWindowServer
import Synchronization

/// Protobuf wire bytes written by hand, for requests no generated encoder would produce (values
/// nested 100 000 levels deep would overflow a recursive encoder's stack).
enum Wire {
  static func varint(_ value: UInt64) -> [UInt8] {
    var v = value
    var out: [UInt8] = []
    repeat {
      let byte = UInt8(v & 0x7F)
      v >>= 7
      out.append(v == 0 ? byte : byte | 0x80)
    } while v != 0
    return out
  }

  static func varintField(_ field: Int, _ value: UInt64) -> [UInt8] { varint(UInt64(field << 3)) + varint(value) }

  static func bytesField(_ field: Int, _ body: [UInt8]) -> [UInt8] {
    varint(UInt64(field << 3 | 2)) + varint(UInt64(body.count)) + body
  }

  static func stringField(_ field: Int, _ text: String) -> [UInt8] { bytesField(field, Array(text.utf8)) }

  enum Nesting { case lists, maps }

  /// A `Value` holding `depth` nested lists (or maps with key "k") around the string "x",
  /// written front to back from precomputed sizes, so it costs O(depth).
  static func nestedValue(depth: Int, _ nesting: Nesting = .lists, leaf: [UInt8] = stringField(5, "x")) -> [UInt8] {
    // Per level, outermost first: Value{8|9: container}, container{1: inner} (lists) or
    // container{1: entry}, entry{1: "k", 2: inner} (maps).
    let key = stringField(1, "k")
    var sizes = [leaf.count]  // sizes[i]: the Value at i levels from the leaf
    sizes.reserveCapacity(depth + 1)
    var prefixes: [[UInt8]] = []
    prefixes.reserveCapacity(depth)
    for _ in 0..<depth {
      let inner = sizes[sizes.count - 1]
      var prefix: [UInt8]
      switch nesting {
      case .lists:
        let list = 1 + varint(UInt64(inner)).count + inner
        prefix = varint(8 << 3 | 2) + varint(UInt64(list)) + varint(1 << 3 | 2) + varint(UInt64(inner))
      case .maps:
        let entry = key.count + 1 + varint(UInt64(inner)).count + inner
        let map = 1 + varint(UInt64(entry)).count + entry
        prefix = varint(9 << 3 | 2) + varint(UInt64(map)) + varint(1 << 3 | 2) + varint(UInt64(entry)) + key
          + varint(2 << 3 | 2) + varint(UInt64(inner))
      }
      prefixes.append(prefix)
      sizes.append(prefix.count + inner)
    }
    var out: [UInt8] = []
    out.reserveCapacity(sizes[sizes.count - 1])
    for prefix in prefixes.reversed() { out += prefix }
    out += leaf
    return out
  }

  static func stamp(node: String, millis: UInt64) -> [UInt8] {
    varintField(1, millis) + stringField(3, node)
  }

  /// A `Mutation` upserting one field whose `Value` is `value` (raw bytes).
  static func upsert(
    id: Int64, collection: String = "preferences", recordID: [UInt8], field: [UInt8] = Array("theme".utf8),
    value: [UInt8], node: String
  ) -> [UInt8] {
    let edit = bytesField(1, value) + bytesField(2, stamp(node: node, millis: UInt64(Date().timeIntervalSince1970 * 1000)))
    let entry = bytesField(1, field) + bytesField(2, edit)
    return varintField(1, UInt64(id)) + stringField(2, collection) + bytesField(3, recordID) + varintField(4, 0)
      + bytesField(5, bytesField(1, entry))
  }

  static func pushRequest(clientID: String, mutations: [[UInt8]]) -> [UInt8] {
    stringField(1, clientID) + mutations.flatMap { bytesField(2, $0) }
  }
}

/// Sends bytes as they are.
struct RawSerializer: MessageSerializer {
  func serialize<Bytes: GRPCContiguousBytes>(_ message: [UInt8]) throws -> Bytes { Bytes(message) }
}

/// Receives bytes as they are.
struct RawDeserializer: MessageDeserializer {
  func deserialize<Bytes: GRPCContiguousBytes>(_ serializedMessageBytes: Bytes) throws -> [UInt8] {
    serializedMessageBytes.withUnsafeBytes { Array($0) }
  }
}

extension GRPCClient {
  /// Calls any method with one raw request message and reads every response; returns the
  /// error the call ended with (nil: OK).
  func rawCall(
    _ descriptor: MethodDescriptor, _ message: [UInt8], metadata: Metadata = [:], options: CallOptions = .defaults
  ) async -> RPCError? {
    do {
      try await bidirectionalStreaming(
        request: StreamingClientRequest(metadata: metadata) { writer in try await writer.write(message) },
        descriptor: descriptor, serializer: RawSerializer(), deserializer: RawDeserializer(), options: options
      ) { response in
        for try await _ in response.messages {}
      }
      return nil
    } catch let error as RPCError {
      return error
    } catch {
      return RPCError(code: .unknown, message: "\(error)")
    }
  }
}

/// A raw TCP connection to a listener on loopback, for clients that misbehave on purpose.
struct RawConnection: Sendable {
  let channel: any Channel
  let received: ReceivedBytes

  static func open(port: Int, from source: String? = nil, group: any EventLoopGroup) async throws -> RawConnection {
    let received = ReceivedBytes()
    var bootstrap = ClientBootstrap(group: group)
      .channelInitializer { channel in
        channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(Collector(received: received)) }
      }
    if let source { bootstrap = bootstrap.bind(to: try SocketAddress(ipAddress: source, port: 0)) }
    let channel = try await bootstrap.connect(host: "127.0.0.1", port: port).get()
    return RawConnection(channel: channel, received: received)
  }

  func send(_ bytes: [UInt8]) async throws {
    try await channel.writeAndFlush(ByteBuffer(bytes: bytes))
  }

  /// Whether the peer closed the connection within `seconds` (answers at the first of the two).
  func closed(within seconds: Double) async -> Bool {
    let answered = ReceivedBytes()
    return await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
      @Sendable func answer(_ closed: Bool) {
        let first = answered.bytes.withLock { flag -> Bool in
          defer { flag = [1] }
          return flag.isEmpty
        }
        if first { continuation.resume(returning: closed) }
      }
      channel.closeFuture.whenComplete { _ in answer(true) }
      channel.eventLoop.scheduleTask(in: .milliseconds(Int64(seconds * 1000))) { answer(false) }
    }
  }

  var isOpen: Bool { channel.isActive }
  var text: String { String(decoding: received.bytes.withLock { $0 }, as: UTF8.self) }

  func close() { channel.close(promise: nil) }

  final class Collector: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    let received: ReceivedBytes
    init(received: ReceivedBytes) { self.received = received }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
      let buffer = unwrapInboundIn(data)
      received.bytes.withLock { $0 += Array(buffer: buffer) }
    }
  }
}

final class ReceivedBytes: Sendable {
  let bytes = Mutex<[UInt8]>([])
}

/// A loopback TCP port bound but never listening: connections to it are refused, and no other
/// listener can take it until `release()`.
final class ReservedPort: Sendable {
  let port: Int
  private let descriptor: Int32

  struct Failed: Error {}

  init() throws {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw Failed() }
    var one: Int32 = 1
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer -> Bool in
        bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0
      }
    }
    guard bound else {
      close(fd)
      throw Failed()
    }
    descriptor = fd
    port = Int(UInt16(bigEndian: address.sin_port))
  }

  func release() { close(descriptor) }
}
