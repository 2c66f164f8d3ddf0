import CZlib
import Metrics
import NIOCore
import NIOHPACK
import NIOHTTP2

/// Answers a request message larger than `--max-message-bytes` with `RESOURCE_EXHAUSTED` and a
/// message naming the limit, where the transport alone would reset the stream (`RST_STREAM
/// CANCEL`, which clients report as `CANCELLED "Stream removed"`).
///
/// It sits first in each HTTP/2 stream's pipeline, ahead of the transport's gRPC handler, and
/// follows the gRPC length-prefixed framing of the request. When the gRPC handler closes the
/// stream while reading a DATA frame (it does so only when it cannot decode a message), this
/// handler writes the status itself: trailers (trailers-only when no response headers went
/// out), then `RST_STREAM NO_ERROR` if the client is still sending, as RFC 9113 §8.1 allows. The
/// connection keeps serving. A compressed message is inflated once more, only then, to tell one
/// too large after decompression (`RESOURCE_EXHAUSTED`) from corrupt data (`INTERNAL`).
final class RequestSizeGuard: ChannelDuplexHandler, RemovableChannelHandler {
  typealias InboundIn = HTTP2Frame.FramePayload
  typealias InboundOut = HTTP2Frame.FramePayload
  typealias OutboundIn = HTTP2Frame.FramePayload
  typealias OutboundOut = HTTP2Frame.FramePayload

  private var framing: GRPCFraming
  private var encoding: String?
  private var readingData = false
  private var responseStarted = false
  private var requestEnded = false
  private var answered = false

  init(limit: Int) {
    framing = GRPCFraming(limit: limit)
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    guard !answered else { return }  // the rest of a refused request is discarded
    let frame = unwrapInboundIn(data)
    switch frame {
    case .headers(let headers):
      if encoding == nil { encoding = headers.headers.first(name: "grpc-encoding") }
      requestEnded = requestEnded || headers.endStream
      context.fireChannelRead(data)
    case .data(let payload):
      if case .byteBuffer(let buffer) = payload.data { framing.consume(buffer) }
      requestEnded = requestEnded || payload.endStream
      readingData = true
      context.fireChannelRead(data)
      readingData = false
    default:
      context.fireChannelRead(data)
    }
  }

  func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
    guard !answered else {
      // Our status is the response; the gRPC handler's late writes go nowhere.
      promise?.fail(ChannelError.ioOnClosedChannel)
      return
    }
    if case .headers = unwrapOutboundIn(data) { responseStarted = true }
    context.write(data, promise: promise)
  }

  func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
    guard readingData || answered else {
      context.close(mode: mode, promise: promise)
      return
    }
    if !answered { answer(context: context) }
    // The stream closes once our trailers (and reset) are out; the closer learns of it then.
    if let promise { context.channel.closeFuture.cascade(to: promise) }
  }

  private func answer(context: ChannelHandlerContext) {
    answered = true
    let (code, message) = framing.diagnose(encoding: encoding)
    Counter(label: "onewindow_grpc_requests_refused_total", dimensions: [("reason", code == 8 ? "too_large" : "undecodable")])
      .increment()
    var trailers = HPACKHeaders()
    if !responseStarted {
      trailers.add(name: ":status", value: "200")
      trailers.add(name: "content-type", value: "application/grpc")
    }
    trailers.add(name: "grpc-status", value: "\(code)")
    trailers.add(name: "grpc-message", value: Self.percentEncoded(message))
    context.write(wrapOutboundOut(.headers(.init(headers: trailers, endStream: true))), promise: nil)
    if !requestEnded { context.write(wrapOutboundOut(.rstStream(.noError)), promise: nil) }
    context.flush()
  }

  /// grpc-message encoding (gRPC over HTTP/2 spec): printable ASCII but '%' as is, the rest %XX.
  static func percentEncoded(_ text: String) -> String {
    var out = ""
    for byte in text.utf8 {
      if (0x20...0x7E).contains(byte) && byte != UInt8(ascii: "%") {
        out.unicodeScalars.append(Unicode.Scalar(byte))
      } else {
        out += "%" + String(byte, radix: 16, uppercase: true).leftPadded(to: 2)
      }
    }
    return out
  }
}

extension String {
  fileprivate func leftPadded(to width: Int) -> String {
    count >= width ? self : String(repeating: "0", count: width - count) + self
  }
}

/// Follows gRPC's length-prefixed messages (1 byte compressed flag, 4 bytes big-endian length)
/// through a request's DATA frames, keeping only what a diagnosis needs: the declared length of a
/// message over the limit, and the bytes of compressed messages completed in the latest frame.
struct GRPCFraming {
  let limit: Int
  private var header: [UInt8] = []
  private var remaining = 0
  private var inBody = false
  private var compressed = false
  private var pending: [ByteBuffer] = []
  /// Compressed messages completed in the frame consumed last.
  private(set) var completedCompressed: [[ByteBuffer]] = []
  /// The declared length of the first message over the limit; nothing is followed after it.
  private(set) var oversizeDeclared: Int?
  private(set) var sawCompressedFlag = false

  init(limit: Int) {
    self.limit = limit
  }

  mutating func consume(_ frame: ByteBuffer) {
    completedCompressed.removeAll()
    guard oversizeDeclared == nil else { return }
    var buffer = frame
    while buffer.readableBytes > 0 || (inBody && remaining == 0) {
      if !inBody {
        guard let byte = buffer.readInteger(as: UInt8.self) else { return }
        header.append(byte)
        guard header.count == 5 else { continue }
        compressed = header[0] == 1
        sawCompressedFlag = sawCompressedFlag || compressed
        let length = header[1...4].reduce(0) { $0 << 8 | Int($1) }
        header.removeAll(keepingCapacity: true)
        if length > limit {
          oversizeDeclared = length
          pending.removeAll()
          return
        }
        inBody = true
        remaining = length
      } else {
        let n = min(remaining, buffer.readableBytes)
        if n > 0, let slice = buffer.readSlice(length: n), compressed { pending.append(slice) }
        remaining -= n
        if remaining == 0 {
          if compressed { completedCompressed.append(pending) }
          pending = []
          inBody = false
        }
      }
    }
  }

  /// The gRPC status code and message for a request the transport could not decode.
  func diagnose(encoding: String?) -> (code: Int, message: String) {
    let flag = "--max-message-bytes"
    if let declared = oversizeDeclared {
      return (8, "the request message is \(declared) bytes; this server accepts at most \(limit) bytes per message (\(flag))")
    }
    for message in completedCompressed {
      switch Inflation.check(message, encoding: encoding, limit: limit) {
      case .exceeds:
        return (8, "the request message is larger than \(limit) bytes after decompression; this server accepts at most \(limit) bytes per message (\(flag))")
      case .corrupt:
        return (13, "the request message could not be decompressed as \(encoding ?? "identity") (grpc-encoding)")
      case .fits:
        continue
      }
    }
    if sawCompressedFlag && (encoding == nil || encoding == "identity") {
      return (13, "a request message is marked compressed but the call has no grpc-encoding")
    }
    return (13, "the request message could not be read")
  }
}

/// Bounded inflation with zlib: how a compressed message compares with the limit.
enum Inflation {
  enum Outcome: Equatable { case fits, exceeds, corrupt }

  static func check(_ parts: [ByteBuffer], encoding: String?, limit: Int) -> Outcome {
    let windowBits: Int32
    switch encoding {
    case "gzip": windowBits = 15 + 16
    case "deflate": windowBits = 15
    default: return .corrupt
    }
    var stream = z_stream()
    guard inflateInit2_(&stream, windowBits, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else { return .corrupt }
    defer { inflateEnd(&stream) }
    var produced = 0
    var output = [UInt8](repeating: 0, count: 64 * 1024)
    var finished = false
    for part in parts {
      let outcome: Outcome? = part.withUnsafeReadableBytes { input -> Outcome? in
        guard let base = input.baseAddress else { return nil }
        stream.next_in = UnsafeMutablePointer(mutating: base.assumingMemoryBound(to: Bytef.self))
        stream.avail_in = uInt(input.count)
        while stream.avail_in > 0 && !finished {
          let status = output.withUnsafeMutableBufferPointer { out -> Int32 in
            stream.next_out = out.baseAddress
            stream.avail_out = uInt(out.count)
            let status = inflate(&stream, Z_NO_FLUSH)
            produced += out.count - Int(stream.avail_out)
            return status
          }
          if produced > limit { return .exceeds }
          switch status {
          case Z_STREAM_END: finished = true
          case Z_OK, Z_BUF_ERROR: continue
          default: return .corrupt
          }
        }
        return nil
      }
      if let outcome { return outcome }
    }
    return finished ? .fits : .corrupt
  }
}
