import Metrics
import NIOCore
import NIOHTTPTypes

/// Deadlines for a plain-HTTP/1.1 connection, so a client that trickles a request cannot hold a
/// connection open: the headers must be complete within `headers` of the connection's accept or of
/// the request's first byte, the body may pause at most `bodyIdle` between parts and take at most
/// `bodyTotal` in all. A late request head gets `408 Request Timeout` and a close; a stalled body a
/// close (a response may already be under way). The listener's idle timeout still covers a
/// connection with no request at all.
///
/// Two handlers share one `HTTPRequestDeadlines` on the connection's event loop: `rawBytes` first
/// in the pipeline sees when a request begins, `parts` after HTTP decoding sees its head, body
/// and end.
final class HTTPRequestDeadlines {
  struct Timeouts: Sendable, Equatable {
    var headers: TimeAmount
    var bodyIdle: TimeAmount
    var bodyTotal: TimeAmount
  }

  private enum Phase { case waiting, headers, body, answered }

  private let timeouts: Timeouts
  private var phase = Phase.headers
  private var headerTimer: Scheduled<Void>?
  private var idleTimer: Scheduled<Void>?
  private var totalTimer: Scheduled<Void>?
  private var front: ChannelHandlerContext?

  init(timeouts: Timeouts) {
    self.timeouts = timeouts
  }

  var rawBytes: RawBytes { RawBytes(self) }
  var parts: Parts { Parts(self) }

  private func armHeaders(_ context: ChannelHandlerContext) {
    phase = .headers
    headerTimer?.cancel()
    let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
    headerTimer = context.eventLoop.scheduleTask(in: timeouts.headers) { bound.value.expired(headers: true) }
  }

  private func headReceived(_ context: ChannelHandlerContext) {
    headerTimer?.cancel()
    phase = .body
    let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
    totalTimer?.cancel()
    totalTimer = context.eventLoop.scheduleTask(in: timeouts.bodyTotal) { bound.value.expired(headers: false) }
    bodyProgress(context)
  }

  private func bodyProgress(_ context: ChannelHandlerContext) {
    idleTimer?.cancel()
    let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
    idleTimer = context.eventLoop.scheduleTask(in: timeouts.bodyIdle) { bound.value.expired(headers: false) }
  }

  private func requestEnded() {
    idleTimer?.cancel()
    totalTimer?.cancel()
    phase = .waiting
  }

  private func expired(headers: Bool) {
    guard let context = front, phase != .answered, phase != .waiting else { return }
    phase = .answered
    cancelAll()
    Counter(label: "onewindow_http_request_timeouts_total", dimensions: [("phase", headers ? "headers" : "body")]).increment()
    if headers {
      let response = "HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
      let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
      context.writeAndFlush(NIOAny(ByteBuffer(string: response))).whenComplete { _ in bound.value.close(promise: nil) }
    } else {
      context.close(promise: nil)
    }
  }

  private func cancelAll() {
    headerTimer?.cancel()
    idleTimer?.cancel()
    totalTimer?.cancel()
  }

  /// First in the pipeline: a request's first byte on an idle connection starts its header clock.
  final class RawBytes: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    private let deadlines: HTTPRequestDeadlines

    init(_ deadlines: HTTPRequestDeadlines) { self.deadlines = deadlines }

    func handlerAdded(context: ChannelHandlerContext) {
      deadlines.front = context
      deadlines.armHeaders(context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
      deadlines.cancelAll()
      deadlines.front = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
      if deadlines.phase == .waiting { deadlines.armHeaders(context) }
      context.fireChannelRead(data)
    }
  }

  /// After HTTP decoding: the head stops the header clock, body parts feed the idle clock.
  final class Parts: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    private let deadlines: HTTPRequestDeadlines

    init(_ deadlines: HTTPRequestDeadlines) { self.deadlines = deadlines }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
      switch unwrapInboundIn(data) {
      case .head: deadlines.headReceived(context)
      case .body: deadlines.bodyProgress(context)
      case .end: deadlines.requestEnded()
      }
      context.fireChannelRead(data)
    }
  }
}
