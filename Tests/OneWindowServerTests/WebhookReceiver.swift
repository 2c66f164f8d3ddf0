import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// A minimal HTTP/1.1 webhook receiver for tests, on 127.0.0.1 (an ephemeral port unless one is
/// given). It records every request (headers, body, time) and answers with a scripted sequence
/// of statuses — `[500, 200]`, `[400]`, or nothing but `otherwise: 503` — then `otherwise`.
/// Every response closes its connection, so a stopped receiver really refuses the next request.
final class WebhookReceiver: Sendable {
  struct Request: Sendable {
    var method: String
    var uri: String
    /// Lowercased names; the first value of each.
    var headers: [String: String]
    var body: [UInt8]
    var receivedAt: Date

    func header(_ name: String) -> String? { headers[name.lowercased()] }
  }

  private struct State {
    var requests: [Request] = []
    var script: [Int]
    var otherwise: Int
    var delay: Duration = .zero
    var location: String?
    var inFlight = 0
    var maxInFlight = 0
  }

  let port: Int
  private let channel: any Channel
  private let state: Mutex<State>

  private init(port: Int, channel: any Channel, state: State) {
    self.port = port
    self.channel = channel
    self.state = Mutex(state)
  }

  /// Starts listening. `statuses` answer the first requests in order; later ones get `otherwise`.
  static func start(statuses: [Int] = [], otherwise: Int = 200, port: Int = 0) async throws -> WebhookReceiver {
    let box = ReceiverBox()
    let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
      .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
      .childChannelInitializer { child in
        child.eventLoop.makeCompletedFuture {
          try child.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
          try child.pipeline.syncOperations.addHandler(ReceiverHandler(box: box))
        }
      }
      .bind(host: "127.0.0.1", port: port)
      .get()
    guard let bound = channel.localAddress?.port else {
      try? await channel.close()
      throw ReceiverError.notListening
    }
    let receiver = WebhookReceiver(port: bound, channel: channel, state: State(script: statuses, otherwise: otherwise))
    box.receiver.withLock { $0 = receiver }
    return receiver
  }

  enum ReceiverError: Error { case notListening }

  /// `http://127.0.0.1:<port>/hooks` (needs `allowLoopbackHTTPWebhooks`).
  var url: String { "http://127.0.0.1:\(port)/hooks" }

  var requests: [Request] { state.withLock { $0.requests } }

  /// The most requests that were being answered at once (delayed answers overlap when the
  /// sender sends concurrently; one after another keeps this at 1).
  var maxInFlight: Int { state.withLock { $0.maxInFlight } }

  /// Replaces the remaining script.
  func script(_ statuses: [Int], otherwise: Int? = nil) {
    state.withLock { s in
      s.script = statuses
      if let otherwise { s.otherwise = otherwise }
    }
  }

  /// Waits this long before answering (to provoke client timeouts).
  func setDelay(_ delay: Duration) { state.withLock { $0.delay = delay } }

  /// Sent as `Location` with every response (for redirect tests).
  func setLocation(_ location: String?) { state.withLock { $0.location = location } }

  fileprivate func answered() {
    state.withLock { $0.inFlight -= 1 }
  }

  /// Stops listening; later connections are refused.
  func stop() async {
    try? await channel.close()
  }

  fileprivate func record(_ request: Request) -> (status: Int, delay: Duration, location: String?) {
    state.withLock { s in
      s.requests.append(request)
      s.inFlight += 1
      s.maxInFlight = max(s.maxInFlight, s.inFlight)
      let status = s.script.isEmpty ? s.otherwise : s.script.removeFirst()
      return (status, s.delay, s.location)
    }
  }
}

/// Lets the child channels reach the receiver, which exists only once the listener is bound.
private final class ReceiverBox: Sendable {
  let receiver = Mutex<WebhookReceiver?>(nil)
}

private final class ReceiverHandler: ChannelInboundHandler {
  typealias InboundIn = HTTPServerRequestPart
  typealias OutboundOut = HTTPServerResponsePart

  let box: ReceiverBox
  private var head: HTTPRequestHead?
  private var body: [UInt8] = []

  init(box: ReceiverBox) {
    self.box = box
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    switch unwrapInboundIn(data) {
    case .head(let h):
      head = h
      body = []
    case .body(let buffer):
      body += buffer.readableBytesView
    case .end:
      guard let head, let receiver = box.receiver.withLock({ $0 }) else {
        context.close(promise: nil)
        return
      }
      var headers: [String: String] = [:]
      for (name, value) in head.headers where headers[name.lowercased()] == nil { headers[name.lowercased()] = value }
      let answer = receiver.record(
        WebhookReceiver.Request(method: "\(head.method)", uri: head.uri, headers: headers, body: body, receivedAt: Date()))
      self.head = nil
      body = []
      if answer.delay > .zero {
        context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(answer.delay)) {
          receiver.answered()
          self.respond(context: context, status: answer.status, location: answer.location)
        }
      } else {
        receiver.answered()
        respond(context: context, status: answer.status, location: answer.location)
      }
    }
  }

  private func respond(context: ChannelHandlerContext, status: Int, location: String?) {
    let text = "status \(status)"
    var headers = HTTPHeaders()
    headers.add(name: "Content-Type", value: "text/plain")
    headers.add(name: "Content-Length", value: "\(text.utf8.count)")
    headers.add(name: "Connection", value: "close")
    if let location { headers.add(name: "Location", value: location) }
    let head = HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: status), headers: headers)
    context.write(wrapOutboundOut(.head(head)), promise: nil)
    context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: text)))), promise: nil)
    context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
      context.close(promise: nil)
    }
  }
}
