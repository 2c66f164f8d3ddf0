import Metrics
import NIOCore

/// The PROXY protocol header (versions 1 and 2, haproxy.org's proxy-protocol.txt) a TCP load
/// balancer such as HAProxy (`send-proxy`, `send-proxy-v2`) or an AWS NLB writes before the
/// connection's own bytes, naming the caller it accepted the connection from.
enum ProxyProtocolHeader: Equatable {
  /// The header is complete: the caller's address (nil for `UNKNOWN`, `LOCAL` or a family
  /// other than TCP over IPv4/IPv6: the proxy speaks for itself) and the header's length.
  case header(source: IPAddress?, length: Int)
  /// Not a PROXY header: the bytes are the connection's own.
  case absent
  /// Too few bytes yet to tell.
  case incomplete
  /// Starts like a PROXY header but breaks its grammar.
  case invalid(String)

  static let v2Signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]
  static let v1Prefix = Array("PROXY ".utf8)
  /// A version 1 line is at most 107 bytes with its CRLF.
  static let v1MaxLength = 107
  /// Version 2 allows 65 535 bytes of addresses and TLVs; real proxies send a few hundred.
  static let v2MaxLength = 16 + 4096

  static func parse(_ bytes: some Collection<UInt8>) -> ProxyProtocolHeader {
    let bytes = Array(bytes.prefix(v2MaxLength))
    if bytes.starts(with: v1Prefix) { return parseV1(bytes) }
    if bytes.starts(with: v2Signature) { return parseV2(bytes) }
    if v1Prefix.starts(with: bytes) || v2Signature.starts(with: bytes) { return .incomplete }
    return .absent
  }

  private static func parseV1(_ bytes: [UInt8]) -> ProxyProtocolHeader {
    guard let lf = bytes.prefix(v1MaxLength).firstIndex(of: 0x0A) else {
      return bytes.count >= v1MaxLength ? .invalid("a PROXY v1 line longer than 107 bytes") : .incomplete
    }
    guard lf > 0, bytes[lf - 1] == 0x0D else { return .invalid("a PROXY v1 line not ended by CRLF") }
    let line = String(decoding: bytes[..<(lf - 1)], as: UTF8.self)
    let fields = line.split(separator: " ", omittingEmptySubsequences: false)
    guard fields.count >= 2 else { return .invalid("a PROXY v1 line without a protocol") }
    switch fields[1] {
    case "UNKNOWN":
      return .header(source: nil, length: lf + 1)
    case "TCP4", "TCP6":
      guard fields.count == 6, let source = IPAddress(fields[2]), IPAddress(fields[3]) != nil,
        source.isIPv4 == (fields[1] == "TCP4"), UInt16(fields[4]) != nil, UInt16(fields[5]) != nil
      else { return .invalid("a malformed PROXY v1 \(fields[1]) line") }
      return .header(source: source, length: lf + 1)
    default:
      return .invalid("an unknown PROXY v1 protocol")
    }
  }

  private static func parseV2(_ bytes: [UInt8]) -> ProxyProtocolHeader {
    guard bytes.count >= 16 else { return .incomplete }
    let versionCommand = bytes[12]
    guard versionCommand >> 4 == 2 else { return .invalid("an unknown PROXY protocol version") }
    let length = Int(bytes[14]) << 8 | Int(bytes[15])
    guard 16 + length <= v2MaxLength else { return .invalid("a PROXY v2 header longer than \(v2MaxLength) bytes") }
    guard bytes.count >= 16 + length else { return .incomplete }
    switch versionCommand & 0x0F {
    case 0:  // LOCAL: the proxy's own connection (health checks)
      return .header(source: nil, length: 16 + length)
    case 1:  // PROXY
      let block = bytes[16..<(16 + length)]
      switch bytes[13] >> 4 {
      case 1:
        guard length >= 12 else { return .invalid("a PROXY v2 IPv4 header with a short address block") }
        return .header(source: IPAddress(bytes: Array(block.prefix(4))), length: 16 + length)
      case 2:
        guard length >= 36 else { return .invalid("a PROXY v2 IPv6 header with a short address block") }
        return .header(source: IPAddress(bytes: Array(block.prefix(16))), length: 16 + length)
      default:  // UNSPEC or UNIX: nothing to take as the caller
        return .header(source: nil, length: 16 + length)
      }
    default:
      return .invalid("an unknown PROXY v2 command")
    }
  }
}

/// Reads the PROXY protocol header on a connection from a trusted proxy, records the caller it
/// names for the connection's calls (`ProxiedConnections`), and passes the rest on. It sits
/// first in the pipeline (before TLS) and removes itself once it has decided. A connection that
/// does not start with a header (a proxy's own health check) is served as the proxy's; one
/// whose header is malformed is closed. Installed only for trusted peers: from anyone else a
/// PROXY header is just bytes that are not HTTP/2, and the connection fails.
final class ProxyProtocolDecoder: ChannelInboundHandler, RemovableChannelHandler {
  typealias InboundIn = ByteBuffer
  typealias InboundOut = ByteBuffer

  private let connections: ProxiedConnections
  private var buffered: ByteBuffer?
  private var decided = false

  init(connections: ProxiedConnections) {
    self.connections = connections
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    guard !decided else {
      context.fireChannelRead(data)
      return
    }
    var incoming = unwrapInboundIn(data)
    if var held = buffered {
      held.writeBuffer(&incoming)
      buffered = held
    } else {
      buffered = incoming
    }
    guard var bytes = buffered else { return }
    switch ProxyProtocolHeader.parse(bytes.readableBytesView) {
    case .incomplete:
      return
    case .absent:
      pass(bytes, context: context)
    case .header(let source, let length):
      if let source { connections.record(source, for: context.channel) }
      Counter(label: "onewindow_proxy_protocol_headers_total", dimensions: [("outcome", source == nil ? "local" : "caller")])
        .increment()
      bytes.moveReaderIndex(forwardBy: length)
      pass(bytes, context: context)
    case .invalid:
      decided = true
      buffered = nil
      Counter(label: "onewindow_proxy_protocol_headers_total", dimensions: [("outcome", "invalid")]).increment()
      context.close(promise: nil)
    }
  }

  private func pass(_ rest: ByteBuffer, context: ChannelHandlerContext) {
    decided = true
    buffered = nil
    if rest.readableBytes > 0 {
      context.fireChannelRead(wrapInboundOut(rest))
      context.fireChannelReadComplete()
    }
    context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
  }
}
