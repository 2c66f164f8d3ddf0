import Foundation
import OneWindowCore
import OneWindowStore

/// Notifications: webhook retries and timeouts, which webhook URLs are accepted, inbox limits,
/// stream heartbeats and how often the scheduler looks for due publications.
public struct NotificationSettings: Sendable {
  /// Webhook (and other outbound channel) retries: 6 attempts, exponential backoff from 30 s.
  public var retry = RetryPolicy()
  /// How long one webhook request may take, connecting included.
  public var webhookTimeout: Duration = .seconds(10)
  /// Development and tests only: accept `http://` webhook URLs to a loopback address
  /// (127.0.0.0/8, ::1, localhost). Production endpoints must be https.
  public var allowLoopbackHTTPWebhooks = false
  /// Messages kept per inbox (see `InboxRules`).
  public var inboxCap = InboxRules.defaultCap
  /// How often a live inbox stream sends a heartbeat.
  public var heartbeat: Duration = .seconds(15)
  /// Inbox Subscribe streams one account may hold open at once (each device needs one).
  public var maxStreamsPerAccount = 32
  /// Accounts one segment publication may reach.
  public var maxSegmentRecipients = 200_000
  /// The scheduler's longest sleep between passes (it is also woken when a publication is scheduled).
  public var schedulerInterval: Duration = .seconds(30)

  public init() {}

  /// The inbox limits the store applies on publish.
  public var inboxLimits: InboxLimits { InboxLimits(cap: inboxCap, maxSegmentRecipients: maxSegmentRecipients) }

  public static let maxWebhookURLLength = 2000

  /// Checks a webhook URL given to AddWebhook and returns it (surrounding whitespace removed):
  /// `https://` with a host, no user info, no fragment, at most 2000 characters. `http://` is
  /// accepted only to a loopback host and only when `allowLoopbackHTTP` (development, tests);
  /// without it, loopback, unspecified and link-local hosts (e.g. 169.254.169.254, a cloud
  /// metadata service) are refused whatever the scheme, so a webhook cannot be pointed at the
  /// server's own machine.
  public static func validateWebhookURL(_ raw: String, allowLoopbackHTTP: Bool) throws(ValidationError) -> String {
    let field = "url"
    let text = raw.trimmingCharacters(in: .whitespacesAndNewlines)
    guard !text.isEmpty else { throw ValidationError(field, "is required") }
    guard text.count <= maxWebhookURLLength else {
      throw ValidationError(field, "must be at most \(maxWebhookURLLength) characters (got \(text.count))")
    }
    guard !text.unicodeScalars.contains(where: { $0.value <= 0x20 || $0.value == 0x7F }) else {
      throw ValidationError(field, "must not contain spaces or control characters")
    }
    guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased() else {
      throw ValidationError(field, "is not a valid absolute URL")
    }
    guard let rawHost = components.host, !rawHost.isEmpty else { throw ValidationError(field, "must name a host") }
    guard components.user == nil, components.password == nil else {
      throw ValidationError(field, "must not contain user info (user:password@)")
    }
    guard components.fragment == nil else { throw ValidationError(field, "must not contain a fragment (#…)") }
    let host = rawHost.lowercased().trimmingCharacters(in: ["[", "]"])
    let loopback = isLoopbackHost(host)
    switch scheme {
    case "https":
      break
    case "http":
      guard allowLoopbackHTTP, loopback else {
        throw ValidationError(
          field,
          allowLoopbackHTTP
            ? "must use https (http is allowed only to 127.0.0.1, ::1 or localhost)" : "must use https")
      }
    default:
      throw ValidationError(field, "must use https")
    }
    if !allowLoopbackHTTP && (loopback || isUnroutableHost(host)) {
      throw ValidationError(field, "must not point at a loopback, unspecified or link-local address")
    }
    return text
  }

  /// Checks AddWebhook's event types: at least one, each known, none twice. Returns them as given.
  public static func validateEventTypes(_ types: [String]) throws(ValidationError) -> [String] {
    let field = "event_types"
    guard !types.isEmpty else {
      throw ValidationError(field, "give at least one of \(WebhookEvent.knownTypes.sorted().joined(separator: ", "))")
    }
    var seen = Set<String>()
    for type in types {
      guard WebhookEvent.knownTypes.contains(type) else {
        throw ValidationError(
          field, "unknown event type '\(type)'; known: \(WebhookEvent.knownTypes.sorted().joined(separator: ", "))")
      }
      guard seen.insert(type).inserted else { throw ValidationError(field, "'\(type)' is listed twice") }
    }
    return types
  }

  /// 127.0.0.0/8, ::1 (and its IPv4-mapped forms) or localhost (and *.localhost).
  static func isLoopbackHost(_ host: String) -> Bool {
    if host == "localhost" || host.hasSuffix(".localhost") { return true }
    if let v4 = ipv4Octets(host) { return v4[0] == 127 }
    let v6 = host.lowercased()
    if v6 == "::1" || v6 == "0:0:0:0:0:0:0:1" { return true }
    if v6.hasPrefix("::ffff:"), let v4 = ipv4Octets(String(v6.dropFirst(7))) { return v4[0] == 127 }
    return false
  }

  /// 0.0.0.0/8, 169.254.0.0/16 (link-local, cloud metadata), ::, fe80::/10.
  static func isUnroutableHost(_ host: String) -> Bool {
    if let v4 = ipv4Octets(host) { return v4[0] == 0 || (v4[0] == 169 && v4[1] == 254) }
    let v6 = host.lowercased()
    if v6 == "::" { return true }
    if v6.hasPrefix("fe8") || v6.hasPrefix("fe9") || v6.hasPrefix("fea") || v6.hasPrefix("feb") { return v6.contains(":") }
    if v6.hasPrefix("::ffff:"), let v4 = ipv4Octets(String(v6.dropFirst(7))) {
      return v4[0] == 0 || (v4[0] == 169 && v4[1] == 254)
    }
    return false
  }

  /// The four octets of a dotted-quad IPv4 literal, or nil.
  static func ipv4Octets(_ host: String) -> [Int]? {
    let parts = host.split(separator: ".", omittingEmptySubsequences: false)
    guard parts.count == 4 else { return nil }
    var octets: [Int] = []
    for part in parts {
      guard (1...3).contains(part.utf8.count), part.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
            let value = Int(part), value <= 255
      else { return nil }
      octets.append(value)
    }
    return octets
  }
}
