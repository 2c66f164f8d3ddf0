import Foundation

// Framework-neutral request and response values for the plain-HTTP listener, so code in other
// modules (payment provider callbacks, for instance) can add routes without importing Hummingbird,
// and can be unit-tested by calling a handler with a hand-made request.

/// One HTTP request as a route handler sees it: the body is already collected (at most
/// `HTTPListener.maxBodyBytes`), header names are lowercased, and repeated headers are joined.
public struct HTTPRequestData: Sendable {
  /// Upper-case method: "GET", "POST", …
  public var method: String
  /// The path without the query string, as sent (not percent-decoded).
  public var path: String
  /// The raw query string without the leading "?", empty when there is none.
  public var query: String
  /// Names lowercased; repeated headers joined with ", " (RFC 9110 §5.3).
  public var headers: [String: String]
  public var body: [UInt8]
  /// Values of the route's `{name}` path segments, percent-decoded.
  public var parameters: [String: String]
  /// The caller's address, e.g. `ipv4:10.1.2.3`: the connection's peer, or behind a trusted
  /// proxy the one its `X-Forwarded-For` names (`--trusted-proxies`).
  public var clientAddress: String

  public init(
    method: String, path: String, query: String = "", headers: [String: String] = [:], body: [UInt8] = [],
    parameters: [String: String] = [:], clientAddress: String = "unknown"
  ) {
    self.method = method
    self.path = path
    self.query = query
    self.headers = headers
    self.body = body
    self.parameters = parameters
    self.clientAddress = clientAddress
  }
}

/// What a route handler answers. A status outside 100–599 or an invalid header name is replaced
/// by the listener (500, or the header dropped) rather than trapping.
public struct HTTPResponseData: Sendable {
  public var status: Int
  public var headers: [String: String]
  public var body: [UInt8]

  public init(status: Int, headers: [String: String] = [:], body: [UInt8] = []) {
    self.status = status
    self.headers = headers
    self.body = body
  }

  /// A `text/plain; charset=utf-8` response.
  public static func text(_ status: Int, _ text: String) -> Self {
    Self(status: status, headers: ["content-type": "text/plain; charset=utf-8"], body: Array(text.utf8))
  }

  /// An `application/json` response with sorted keys (stable output for clients and tests). A value
  /// that cannot be encoded (a non-finite number, say) becomes a 500 instead of a crash.
  public static func json(_ status: Int, _ value: some Encodable) -> Self {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    guard let data = try? encoder.encode(value) else {
      return Self(
        status: 500, headers: ["content-type": "application/json"], body: Array(#"{"error":"response encoding failed"}"#.utf8))
    }
    return Self(status: status, headers: ["content-type": "application/json"], body: Array(data))
  }
}

/// A route on the plain-HTTP listener. `path` segments written `{name}` match any one segment and
/// reach the handler in `parameters["name"]`. Handlers cannot throw: they answer every failure
/// with a status of their own choosing.
public struct HTTPRoute: Sendable {
  public var method: String
  /// For example `/callbacks/{provider}`.
  public var path: String
  public var handler: @Sendable (HTTPRequestData) async -> HTTPResponseData

  public init(method: String, path: String, handler: @escaping @Sendable (HTTPRequestData) async -> HTTPResponseData) {
    self.method = method
    self.path = path
    self.handler = handler
  }

  /// The names of the `{name}` segments, in order.
  var parameterNames: [String] {
    path.split(separator: "/").compactMap { segment in
      guard segment.hasPrefix("{"), segment.hasSuffix("}"), segment.count > 2 else { return nil }
      return String(segment.dropFirst().dropLast())
    }
  }
}
