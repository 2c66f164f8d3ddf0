import Foundation
import GRPCCore
import NIOCore
import OneWindowCore
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An IPv4 or IPv6 address as bytes, so addresses written differently (`::ffff:10.0.0.1` and
/// `10.0.0.1`, `::1` and `0:0::1`) compare equal and match CIDR ranges.
struct IPAddress: Hashable, Sendable {
  /// 4 bytes for IPv4 (an IPv4-mapped IPv6 address is stored as its IPv4 address), else 16.
  let bytes: [UInt8]

  init?(_ text: some StringProtocol) {
    var text = String(text)
    if text.hasPrefix("[") && text.hasSuffix("]") { text = String(text.dropFirst().dropLast()) }
    guard !text.isEmpty, text.utf8.count <= 64 else { return nil }
    var v4 = in_addr()
    if inet_pton(AF_INET, text, &v4) == 1 {
      bytes = withUnsafeBytes(of: &v4) { Array($0) }
      return
    }
    var v6 = in6_addr()
    guard inet_pton(AF_INET6, text, &v6) == 1 else { return nil }
    let all = withUnsafeBytes(of: &v6) { Array($0) }
    let mappedPrefix: [UInt8] = Array(repeating: 0, count: 10) + [0xFF, 0xFF]
    bytes = all.prefix(12).elementsEqual(mappedPrefix) ? Array(all.suffix(4)) : all
  }

  init(bytes: [UInt8]) {
    let mappedPrefix: [UInt8] = Array(repeating: 0, count: 10) + [0xFF, 0xFF]
    self.bytes = bytes.count == 16 && bytes.prefix(12).elementsEqual(mappedPrefix) ? Array(bytes.suffix(4)) : bytes
  }

  /// The address of a socket peer; nil for a Unix socket.
  init?(_ address: NIOCore.SocketAddress?) {
    guard let text = address?.ipAddress else { return nil }
    self.init(text)
  }

  var isIPv4: Bool { bytes.count == 4 }

  /// The per-address key limits count under, in the form gRPC peers are written without the
  /// port: `ipv4:10.1.2.3`, `ipv6:[2001:db8::1]`.
  var key: String {
    if isIPv4 { return "ipv4:" + bytes.map(String.init).joined(separator: ".") }
    var address = in6_addr()
    withUnsafeMutableBytes(of: &address) { $0.copyBytes(from: bytes) }
    var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
    guard inet_ntop(AF_INET6, &address, &text, socklen_t(text.count)) != nil else { return "ipv6:[?]" }
    return "ipv6:[" + String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) + "]"
  }
}

/// The load balancers and proxies (`--trusted-proxies`: addresses and CIDR ranges) whose word on
/// the caller's address is believed: `X-Forwarded-For` on HTTP and gRPC, the PROXY protocol on a
/// gRPC connection. From any other peer such claims are ignored, so a caller cannot pick the
/// address its limits are counted under.
struct TrustedProxies: Sendable, Equatable {
  struct Range: Sendable, Equatable {
    var network: [UInt8]
    var prefixLength: Int

    func contains(_ address: IPAddress) -> Bool {
      guard address.bytes.count == network.count else { return false }
      var left = prefixLength
      for (a, n) in zip(address.bytes, network) where left > 0 {
        let bits = min(8, left)
        let mask = UInt8(truncatingIfNeeded: 0xFF << (8 - bits))
        if a & mask != n & mask { return false }
        left -= bits
      }
      return true
    }
  }

  private(set) var ranges: [Range] = []

  static let none = TrustedProxies()

  var isEmpty: Bool { ranges.isEmpty }

  /// Parses a comma-separated list such as `10.0.0.0/8, 192.168.1.10, ::1`; throws a message
  /// naming the entry that is neither an address nor a CIDR range.
  static func parse(_ text: String) throws(ServerConfig.ConfigError) -> TrustedProxies {
    var result = TrustedProxies()
    let entries = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    guard entries.count <= 256 else { throw .badTrustedProxies("at most 256 entries") }
    for entry in entries {
      let parts = entry.split(separator: "/", omittingEmptySubsequences: false)
      guard parts.count <= 2, let address = IPAddress(parts[0]) else {
        throw .badTrustedProxies("'\(entry)' is not an IP address or a CIDR range such as 10.0.0.0/8")
      }
      let maxLength = address.bytes.count * 8
      var length = maxLength
      if parts.count == 2 {
        guard let n = Int(parts[1]), (0...maxLength).contains(n) else {
          throw .badTrustedProxies("'\(entry)': the prefix length must be 0–\(maxLength)")
        }
        length = n
      }
      result.ranges.append(Range(network: address.bytes, prefixLength: length))
    }
    return result
  }

  func contains(_ address: IPAddress) -> Bool {
    ranges.contains { $0.contains(address) }
  }
}

/// Which address a request comes from, when proxies stand between the caller and this node:
/// the one rule every per-address limit (and the audit trail) uses.
enum ClientAddressRule {
  /// The caller behind `peer` according to `X-Forwarded-For` (`forwardedFor`: the header's
  /// values, in order). Walks the list from the right, past every address that is a trusted
  /// proxy; the first one that is not is the caller. An unreadable entry ends the walk at the
  /// proxy that added it, so junk sent by a caller never replaces a real address. Without a
  /// trusted peer the header is not read at all.
  static func client(peer: IPAddress, forwardedFor: [String], trusted: TrustedProxies) -> IPAddress {
    guard trusted.contains(peer) else { return peer }
    var current = peer
    let hops = forwardedFor.joined(separator: ",").split(separator: ",").suffix(64)
    for hop in hops.reversed() {
      guard let address = parseHop(hop.trimmingCharacters(in: .whitespaces)) else { return current }
      current = address
      if !trusted.contains(address) { return address }
    }
    return current
  }

  /// An `X-Forwarded-For` entry: an address, `[v6]:port` or `v4:port`.
  static func parseHop(_ text: String) -> IPAddress? {
    if let address = IPAddress(text) { return address }
    if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
      return IPAddress(text[text.index(after: text.startIndex)..<close])
    }
    let parts = text.split(separator: ":")
    if parts.count == 2, parts[1].allSatisfy(\.isNumber) { return IPAddress(parts[0]) }
    return nil
  }
}

/// The callers behind trusted proxies on open gRPC connections, as their PROXY protocol headers
/// said, keyed by the connection's peer as gRPC reports it (`ipv4:10.0.0.5:53122`: the proxy's
/// address and the port of that one connection, unique among open connections).
final class ProxiedConnections: Sendable {
  private let callers = Mutex<[String: IPAddress]>([:])

  /// Remembers the caller behind `channel` until the channel closes.
  func record(_ caller: IPAddress, for channel: any Channel) {
    guard let peer = Self.peer(of: channel) else { return }
    callers.withLock { $0[peer] = caller }
    channel.closeFuture.whenComplete { [self] _ in _ = callers.withLock { $0.removeValue(forKey: peer) } }
  }

  func caller(behind remotePeer: String) -> IPAddress? {
    callers.withLock { $0[remotePeer] }
  }

  var count: Int { callers.withLock { $0.count } }

  /// The connection's peer written as grpc-swift writes `ServerContext.remotePeer`.
  static func peer(of channel: any Channel) -> String? {
    guard let address = channel.remoteAddress, let ip = address.ipAddress, let port = address.port else { return nil }
    switch address {
    case .v4: return "ipv4:\(ip):\(port)"
    case .v6: return "ipv6:[\(ip)]:\(port)"
    default: return nil
    }
  }
}

/// Resolves the caller's address for each request from the direct peer, the PROXY protocol
/// header of its connection and `X-Forwarded-For`, believing the latter two only from trusted
/// proxies.
struct ClientAddresses: Sendable {
  let trusted: TrustedProxies
  let proxied: ProxiedConnections

  init(trusted: TrustedProxies, proxied: ProxiedConnections = ProxiedConnections()) {
    self.trusted = trusted
    self.proxied = proxied
  }

  /// A gRPC call's caller: the PROXY header's source (if any), then `x-forwarded-for` metadata
  /// (set by an HTTP/2-aware proxy such as Envoy or nginx `grpc_pass`) when that is trusted.
  func grpcCaller(remotePeer: String, metadata: Metadata) -> String {
    guard !trusted.isEmpty else { return SlidingWindowLimit.peerAddress(remotePeer) }
    let direct = proxied.caller(behind: remotePeer) ?? Self.address(ofPeer: remotePeer)
    guard let direct else { return SlidingWindowLimit.peerAddress(remotePeer) }
    return ClientAddressRule.client(peer: direct, forwardedFor: Array(metadata[stringValues: "x-forwarded-for"]), trusted: trusted).key
  }

  /// An HTTP request's caller, from its connection's peer and `X-Forwarded-For`.
  func httpCaller(peer: NIOCore.SocketAddress?, forwardedFor: [String]) -> String {
    guard let direct = IPAddress(peer) else { return "unknown" }
    return ClientAddressRule.client(peer: direct, forwardedFor: forwardedFor, trusted: trusted).key
  }

  /// The IP address in a gRPC peer string (`ipv4:1.2.3.4:5`, `ipv6:[::1]:5`).
  static func address(ofPeer peer: String) -> IPAddress? {
    let bare = SlidingWindowLimit.peerAddress(peer)
    if bare.hasPrefix("ipv4:") { return IPAddress(bare.dropFirst(5)) }
    if bare.hasPrefix("ipv6:") { return IPAddress(bare.dropFirst(5)) }
    return nil
  }
}
