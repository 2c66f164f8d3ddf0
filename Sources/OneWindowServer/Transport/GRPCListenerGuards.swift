import GRPCNIOTransportHTTP2Posix
import Logging
import NIOCore
import NIOHTTP2

/// What the gRPC transport's configuration has no setting for, placed through its channel
/// callbacks: the connection caps, the PROXY protocol header from a trusted proxy and the
/// handshake deadline on each accepted connection, and `RequestSizeGuard` on each HTTP/2 stream.
struct GRPCListenerGuards: Sendable {
  let connections: ConnectionLimiter
  let clients: ClientAddresses
  let handshakeTimeout: TimeAmount
  let maxMessageBytes: Int

  init(config: ServerConfig, clients: ClientAddresses, logger: Logger) {
    self.clients = clients
    connections = ConnectionLimiter(
      limits: .init(total: config.maxConnections, perAddress: config.maxConnectionsPerAddress), listener: "grpc",
      logger: logger, trusted: clients.trusted)
    handshakeTimeout = TimeAmount(config.handshakeTimeout)
    maxMessageBytes = config.maxMessageBytes
  }

  var callbacks: HTTP2ServerTransport.Config.ChannelDebuggingCallbacks {
    .init(
      onBindTCPListener: nil,
      onAcceptTCPConnection: { [connections, handshakeTimeout, clients] channel in
        channel.eventLoop.makeCompletedFuture {
          guard connections.guardConnection(channel) else { return }
          if let peer = IPAddress(channel.remoteAddress), clients.trusted.contains(peer) {
            try channel.pipeline.syncOperations.addHandler(ProxyProtocolDecoder(connections: clients.proxied), position: .first)
          }
          // Behind TLS when configured: the deadline watches decrypted HTTP/2 bytes.
          let http2 = try channel.pipeline.syncOperations.handler(type: NIOHTTP2Handler.self)
          try channel.pipeline.syncOperations.addHandler(
            HandshakeDeadline(timeout: handshakeTimeout, listener: "grpc"), position: .before(http2))
        }
      },
      onAcceptHTTP2Stream: { [maxMessageBytes] channel in
        channel.eventLoop.makeCompletedFuture {
          try channel.pipeline.syncOperations.addHandler(RequestSizeGuard(limit: maxMessageBytes), position: .first)
        }
      })
  }
}
