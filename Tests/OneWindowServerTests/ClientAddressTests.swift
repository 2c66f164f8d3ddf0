import Testing

@testable import OneWindowServer

/// The pure rules behind `--trusted-proxies`: addresses, ranges, `X-Forwarded-For` and the
/// PROXY protocol header.
@Suite struct ClientAddressTests {
  @Test func addressesAreComparedAsBytes() throws {
    #expect(IPAddress("10.0.0.1")?.key == "ipv4:10.0.0.1")
    #expect(IPAddress("::ffff:10.0.0.1") == IPAddress("10.0.0.1"))
    #expect(IPAddress("0:0::1") == IPAddress("::1"))
    #expect(IPAddress("[2001:db8::1]")?.key == "ipv6:[2001:db8::1]")
    for bad in ["", "10.0.0", "10.0.0.256", "example.com", "1.2.3.4:80", String(repeating: "1", count: 100)] {
      #expect(IPAddress(bad) == nil, "\(bad)")
    }
  }

  @Test func trustedProxiesAreAddressesAndRanges() throws {
    let trusted = try TrustedProxies.parse(" 10.0.0.0/8, 192.168.1.10 ,fd00::/8,127.0.0.1/32")
    #expect(trusted.contains(try #require(IPAddress("10.255.0.1"))))
    #expect(!trusted.contains(try #require(IPAddress("11.0.0.1"))))
    #expect(trusted.contains(try #require(IPAddress("192.168.1.10"))))
    #expect(!trusted.contains(try #require(IPAddress("192.168.1.11"))))
    #expect(trusted.contains(try #require(IPAddress("fd12::1"))))
    #expect(!trusted.contains(try #require(IPAddress("fe80::1"))))
    #expect(trusted.contains(try #require(IPAddress("::ffff:127.0.0.1"))))
    // Prefix lengths at and past their bounds.
    #expect(try TrustedProxies.parse("0.0.0.0/0").contains(try #require(IPAddress("8.8.8.8"))))
    #expect(try TrustedProxies.parse("10.1.2.3/31").contains(try #require(IPAddress("10.1.2.2"))))
    #expect(try !TrustedProxies.parse("10.1.2.3/31").contains(try #require(IPAddress("10.1.2.4"))))
    _ = try TrustedProxies.parse("::/128")
    for bad in ["10.0.0.0/33", "::/129", "10.0.0.0/-1", "10.0.0.0/8/8", "proxy.local", "10.0.0.0/x"] {
      #expect(throws: ServerConfig.ConfigError.self, "\(bad)") { try TrustedProxies.parse(bad) }
    }
    #expect(try TrustedProxies.parse("").isEmpty)
    let many = (0..<257).map { "10.0.0.\($0 % 256)" }.joined(separator: ",")
    #expect(throws: ServerConfig.ConfigError.self) { try TrustedProxies.parse(many) }
    #expect(try !TrustedProxies.parse((0..<256).map { "10.0.0.\($0)" }.joined(separator: ",")).isEmpty)
  }

  @Test func forwardedForIsWalkedFromTheRightPastTrustedProxies() throws {
    let trusted = try TrustedProxies.parse("10.0.0.0/8")
    let proxy = try #require(IPAddress("10.0.0.5"))
    let stranger = try #require(IPAddress("203.0.113.1"))
    func client(_ peer: IPAddress, _ header: [String]) -> String {
      ClientAddressRule.client(peer: peer, forwardedFor: header, trusted: trusted).key
    }
    #expect(client(proxy, ["198.51.100.7"]) == "ipv4:198.51.100.7")
    #expect(client(proxy, []) == "ipv4:10.0.0.5")
    // The caller's own claim, left of the address the proxy saw, is not believed.
    #expect(client(proxy, ["1.1.1.1, 198.51.100.7"]) == "ipv4:198.51.100.7")
    #expect(client(proxy, ["1.1.1.1", "198.51.100.7, 10.0.0.9"]) == "ipv4:198.51.100.7")
    // Only trusted hops: the leftmost.
    #expect(client(proxy, ["10.0.0.7, 10.0.0.9"]) == "ipv4:10.0.0.7")
    // Junk ends the walk at the proxy that added it.
    #expect(client(proxy, ["198.51.100.7, junk"]) == "ipv4:10.0.0.5")
    #expect(client(proxy, ["[2001:db8::1]:443"]) == "ipv6:[2001:db8::1]")
    #expect(client(proxy, ["198.51.100.7:5555"]) == "ipv4:198.51.100.7")
    // From a peer that is no proxy, the header is not read.
    #expect(client(stranger, ["198.51.100.7"]) == "ipv4:203.0.113.1")
    // A long header is read only from its last 64 entries.
    let long = Array(repeating: "10.0.0.1", count: 1000).joined(separator: ",")
    #expect(client(proxy, [long]) == "ipv4:10.0.0.1")
  }

  @Test func proxyProtocolVersion1() {
    let line = Array("PROXY TCP4 198.51.100.7 10.0.0.1 55000 50051\r\nPRI".utf8)
    #expect(ProxyProtocolHeader.parse(line) == .header(source: IPAddress("198.51.100.7"), length: line.count - 3))
    let v6 = Array("PROXY TCP6 2001:db8::1 2001:db8::2 55000 50051\r\n".utf8)
    #expect(ProxyProtocolHeader.parse(v6) == .header(source: IPAddress("2001:db8::1"), length: v6.count))
    #expect(ProxyProtocolHeader.parse(Array("PROXY UNKNOWN\r\n".utf8)) == .header(source: nil, length: 15))
    // Prefixes wait for more; other bytes are the connection's own.
    #expect(ProxyProtocolHeader.parse(Array("PRO".utf8)) == .incomplete)
    #expect(ProxyProtocolHeader.parse(Array("PROXY TCP4 1.2.3.4".utf8)) == .incomplete)
    #expect(ProxyProtocolHeader.parse(Array("PRI * HTTP/2.0\r\n".utf8)) == .absent)
    #expect(ProxyProtocolHeader.parse([0x16, 0x03, 0x01]) == .absent)  // a TLS ClientHello
    // Broken lines are refused, the 107-byte bound included.
    for bad in [
      "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "PROXY TCP4 ::1 ::1 1 2\r\n",
      "PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n", "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
    ] {
      guard case .invalid = ProxyProtocolHeader.parse(Array(bad.utf8)) else {
        Issue.record("accepted \(bad.debugDescription)")
        continue
      }
    }
    let atBound = Array(("PROXY UNKNOWN " + String(repeating: "x", count: 107 - 16) + "\r\n").utf8)
    #expect(atBound.count == 107)
    #expect(ProxyProtocolHeader.parse(atBound) == .header(source: nil, length: 107))
    let overBound = Array(("PROXY UNKNOWN " + String(repeating: "x", count: 200)).utf8)
    #expect(ProxyProtocolHeader.parse(overBound) == .invalid("a PROXY v1 line longer than 107 bytes"))
  }

  @Test func proxyProtocolVersion2() {
    let signature = ProxyProtocolHeader.v2Signature
    let v4: [UInt8] = signature + [0x21, 0x11, 0x00, 0x0C] + [198, 51, 100, 7] + [10, 0, 0, 1] + [0xD6, 0xD8, 0xC3, 0x53]
    #expect(ProxyProtocolHeader.parse(v4 + [0x50]) == .header(source: IPAddress("198.51.100.7"), length: 28))
    var v6: [UInt8] = signature + [0x21, 0x21, 0x00, 0x24]
    v6 += [0x20, 0x01, 0x0D, 0xB8] + Array(repeating: 0, count: 11) + [1] + Array(repeating: 0, count: 16) + [0, 1, 0, 2]
    #expect(ProxyProtocolHeader.parse(v6) == .header(source: IPAddress("2001:db8::1"), length: 52))
    // LOCAL (a health check) and TLVs after the addresses.
    #expect(ProxyProtocolHeader.parse(signature + [0x20, 0x00, 0x00, 0x00]) == .header(source: nil, length: 16))
    let withTLV = signature + [0x21, 0x11, 0x00, 0x10] + [198, 51, 100, 7, 10, 0, 0, 1, 0, 1, 0, 2] + [0x04, 0x00, 0x01, 0x00]
    #expect(ProxyProtocolHeader.parse(withTLV) == .header(source: IPAddress("198.51.100.7"), length: 32))
    #expect(ProxyProtocolHeader.parse(Array(v4.prefix(20))) == .incomplete)
    #expect(ProxyProtocolHeader.parse(Array(signature.prefix(5))) == .incomplete)
    // Wrong version, command, a short address block, and a length past the bound.
    #expect(ProxyProtocolHeader.parse(signature + [0x11, 0x11, 0x00, 0x00]) == .invalid("an unknown PROXY protocol version"))
    #expect(ProxyProtocolHeader.parse(signature + [0x2F, 0x11, 0x00, 0x00]) == .invalid("an unknown PROXY v2 command"))
    #expect(ProxyProtocolHeader.parse(signature + [0x21, 0x11, 0x00, 0x04, 1, 2, 3, 4]) == .invalid("a PROXY v2 IPv4 header with a short address block"))
    let atBound = signature + [0x20, 0x00, 0x10, 0x00] + Array(repeating: 0, count: 4096)
    #expect(ProxyProtocolHeader.parse(atBound) == .header(source: nil, length: 16 + 4096))
    #expect(ProxyProtocolHeader.parse(signature + [0x20, 0x00, 0x10, 0x01]) == .invalid("a PROXY v2 header longer than 4112 bytes"))
  }
}
