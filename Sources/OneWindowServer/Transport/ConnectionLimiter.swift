import Foundation
import Logging
import Metrics
import NIOCore
import Synchronization

/// Caps a listener's open connections, in all and per client address, so one client cannot
/// exhaust file descriptors and memory. A connection beyond either cap is closed as soon as it
/// is accepted, counted in `/metrics`, and logged at most once a minute. Trusted proxies
/// (`--trusted-proxies`) carry many callers' connections, so only the total cap applies to them.
final class ConnectionLimiter: Sendable {
  struct Limits: Sendable, Equatable {
    var total: Int
    var perAddress: Int
  }

  enum Verdict: Equatable { case admitted, refusedTotal, refusedPerAddress }

  private let limits: Limits
  private let listener: String
  private let logger: Logger
  private let trusted: TrustedProxies
  private let state = Mutex(State())

  private struct State {
    var total = 0
    var byAddress: [String: Int] = [:]
    var lastLog: ContinuousClock.Instant?
    var refusedSinceLog = 0
  }

  init(limits: Limits, listener: String, logger: Logger, trusted: TrustedProxies = .none) {
    self.limits = limits
    self.trusted = trusted
    self.listener = listener
    self.logger = logger
    Gauge(label: "onewindow_connections_open", dimensions: [("listener", listener)]).record(0)
  }

  /// Counts a new connection from `address`, or says which cap refuses it (nothing is counted).
  func admit(_ address: String, perAddressCap: Bool = true) -> Verdict {
    let (verdict, open, log) = state.withLock { s -> (Verdict, Int, Int?) in
      let verdict: Verdict
      if s.total >= limits.total {
        verdict = .refusedTotal
      } else if perAddressCap && s.byAddress[address, default: 0] >= limits.perAddress {
        verdict = .refusedPerAddress
      } else {
        s.total += 1
        s.byAddress[address, default: 0] += 1
        return (.admitted, s.total, nil)
      }
      s.refusedSinceLog += 1
      let now = ContinuousClock.now
      guard s.lastLog.map({ now - $0 >= .seconds(60) }) ?? true else { return (verdict, s.total, nil) }
      s.lastLog = now
      defer { s.refusedSinceLog = 0 }
      return (verdict, s.total, s.refusedSinceLog)
    }
    if verdict == .admitted {
      Gauge(label: "onewindow_connections_open", dimensions: [("listener", listener)]).record(open)
      return verdict
    }
    let reason = verdict == .refusedTotal ? "max_connections" : "max_connections_per_address"
    Counter(label: "onewindow_connections_refused_total", dimensions: [("listener", listener), ("reason", reason)]).increment()
    if let log {
      // The address is not logged: it can be personal data.
      logger.warning(
        "refusing connections over the cap",
        metadata: ["listener": "\(listener)", "cap": "\(reason)", "refused_since_last_log": "\(log)"])
    }
    return verdict
  }

  /// Forgets a connection `admit` counted.
  func release(_ address: String) {
    let open = state.withLock { s -> Int in
      s.total -= 1
      if let n = s.byAddress[address], n > 1 { s.byAddress[address] = n - 1 } else { s.byAddress[address] = nil }
      return s.total
    }
    Gauge(label: "onewindow_connections_open", dimensions: [("listener", listener)]).record(open)
  }

  /// Admits `channel` or closes it at once; an admitted one is released when it closes.
  /// Returns whether it was admitted.
  @discardableResult
  func guardConnection(_ channel: any Channel) -> Bool {
    let address = channel.remoteAddress?.ipAddress ?? "unknown"
    let proxy = !trusted.isEmpty && (IPAddress(channel.remoteAddress).map(trusted.contains) ?? false)
    guard admit(address, perAddressCap: !proxy) == .admitted else {
      channel.close(promise: nil)
      return false
    }
    channel.closeFuture.whenComplete { [self] _ in release(address) }
    return true
  }

  var openConnections: Int { state.withLock { $0.total } }
}

/// Closes a connection that has not finished its opening within `timeout` of being accepted:
/// for gRPC, the HTTP/2 client preface and the client's first SETTINGS frame (after TLS, when
/// configured — it sits behind the TLS handler, so a stalled TLS handshake times out too).
/// It only watches the bytes and removes itself once the opening is complete.
final class HandshakeDeadline: ChannelInboundHandler, RemovableChannelHandler {
  typealias InboundIn = ByteBuffer
  typealias InboundOut = ByteBuffer

  static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

  private let timeout: TimeAmount
  private let listener: String
  private var timer: Scheduled<Void>?
  /// Bytes of the opening still expected: the preface, then a 9-byte frame header whose length
  /// field says how much SETTINGS payload follows.
  private var seen: [UInt8] = []
  private var needed = preface.count + 9
  private var done = false

  init(timeout: TimeAmount, listener: String) {
    self.timeout = timeout
    self.listener = listener
  }

  func handlerAdded(context: ChannelHandlerContext) {
    let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
    let listener = self.listener
    timer = context.eventLoop.scheduleTask(in: timeout) {
      Counter(label: "onewindow_handshake_timeouts_total", dimensions: [("listener", listener)]).increment()
      loopBound.value.close(promise: nil)
    }
  }

  func handlerRemoved(context: ChannelHandlerContext) {
    timer?.cancel()
    timer = nil
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    if !done {
      var buffer = unwrapInboundIn(data)
      while !done, let byte = buffer.readInteger(as: UInt8.self) {
        seen.append(byte)
        if seen.count == Self.preface.count + 9 {
          // The frame after the preface: length (24 bits) and type (4 = SETTINGS).
          let length = Int(seen[24]) << 16 | Int(seen[25]) << 8 | Int(seen[26])
          needed = Self.preface.count + 9 + length
        }
        if seen.count >= needed { done = true }
      }
    }
    context.fireChannelRead(data)
    if done {
      timer?.cancel()
      timer = nil
      context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
  }
}
