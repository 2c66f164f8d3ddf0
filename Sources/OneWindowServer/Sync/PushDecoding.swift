import GRPCCore
import GRPCProtobuf
import OneWindowAPI
import OneWindowCore
import SwiftProtobuf

/// A `Push` request as the service handles it: every mutation in order, each either decoded or
/// already rejected by the wire scan.
struct DecodedPush: Sendable {
  enum Entry: Sendable {
    case decoded(Onewindow_V1_Mutation)
    /// Could not be decoded (too deep, invalid UTF-8, malformed): rejected `INVALID` in order.
    case rejected(PushWireScan.Rejected)
  }

  var clientID: String
  var mutations: [Entry]

  init(clientID: String, mutations: [Entry]) {
    self.clientID = clientID
    self.mutations = mutations
  }

  /// A request SwiftProtobuf decoded whole (the generated handler's path).
  init(_ request: Onewindow_V1_PushRequest) {
    self.init(clientID: request.clientID, mutations: request.mutations.map(Entry.decoded))
  }

  var mutationIDs: [Int64] {
    mutations.map {
      switch $0 {
      case .decoded(let m): m.mutationID
      case .rejected(let r): r.mutationID
      }
    }
  }

  var incoming: [IncomingMutation] {
    mutations.map {
      switch $0 {
      case .decoded(let m): IncomingMutation(wire: m)
      case .rejected(let r):
        IncomingMutation(mutationID: r.mutationID, collection: r.collection, recordID: r.recordID, body: .malformed(r.problem))
      }
    }
  }
}

/// Decodes `Push` requests after `PushWireScan`: mutations SwiftProtobuf could not take are cut
/// out of the bytes and carried as rejected, so the rest of the batch still applies.
struct PushRequestDeserializer: MessageDeserializer {
  static let name = Onewindow_V1_PushRequest.protoMessageName

  func deserialize<Bytes: GRPCContiguousBytes>(_ serializedMessageBytes: Bytes) throws -> DecodedPush {
    let outcome = serializedMessageBytes.withUnsafeBytes { buffer -> Result<(PushWireScan, [UInt8]?), PushWireScan.Malformed> in
      do throws(PushWireScan.Malformed) {
        let scan = try PushWireScan.scan(buffer)
        guard !scan.rejected.isEmpty else { return .success((scan, nil)) }
        var kept: [UInt8] = []
        kept.reserveCapacity(scan.kept.reduce(0) { $0 + $1.count })
        for range in scan.kept { kept.append(contentsOf: UnsafeRawBufferPointer(rebasing: buffer[range])) }
        return .success((scan, kept))
      } catch {
        return .failure(error)
      }
    }
    let scan: PushWireScan
    let request: Onewindow_V1_PushRequest
    switch outcome {
    case .failure(let malformed):
      throw RPCError(code: .invalidArgument, message: "the request is not a valid \(Self.name): \(malformed.reason)")
    case .success((let s, nil)):
      scan = s
      do {
        request = try ProtobufDeserializer<Onewindow_V1_PushRequest>().deserialize(serializedMessageBytes)
      } catch let error as RPCError {
        guard let cause = error.cause as? BinaryDecodingError else { throw error }
        throw RPCError(code: .invalidArgument, message: StatusInterceptor.undecodable(Self.name, cause))
      }
    case .success((let s, let kept?)):
      scan = s
      do {
        request = try Onewindow_V1_PushRequest(serializedBytes: kept)
      } catch let cause as BinaryDecodingError {
        throw RPCError(code: .invalidArgument, message: StatusInterceptor.undecodable(Self.name, cause))
      }
    }
    var decoded = request.mutations.makeIterator()
    var rejected = scan.rejected.makeIterator()
    var nextRejected = rejected.next()
    var entries: [DecodedPush.Entry] = []
    entries.reserveCapacity(scan.mutationCount)
    for index in 0..<scan.mutationCount {
      if let r = nextRejected, r.index == index {
        entries.append(.rejected(r))
        nextRejected = rejected.next()
      } else if let m = decoded.next() {
        entries.append(.decoded(m))
      }
    }
    return DecodedPush(clientID: request.clientID, mutations: entries)
  }
}

/// `SyncService` with its `Push` handler registered through `PushRequestDeserializer` (registering
/// a method again replaces the generated handler; the generated code stays untouched).
struct SyncEndpoints: RegistrableRPCService {
  let service: SyncService

  func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
    service.registerMethods(with: &router)
    router.registerHandler(
      forMethod: Onewindow_V1_SyncService.Method.Push.descriptor,
      deserializer: PushRequestDeserializer(),
      serializer: ProtobufSerializer<Onewindow_V1_PushResponse>()
    ) { [service] request, context in
      let single = try await ServerRequest(stream: request)
      let response = try await service.push(single.message, context: context)
      return StreamingServerResponse(single: ServerResponse(message: response))
    }
  }
}
