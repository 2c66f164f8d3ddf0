import Foundation
import GRPCCore
import OneWindowAPI
import OneWindowClientPosix
import OneWindowCore
import OneWindowServer
import Synchronization
import Testing

/// A code sender that holds each send until released, to keep an RPC in flight on purpose.
final class GatedCodeSender: LoginCodeSender {
  private let entered = AsyncStream<Void>.makeStream()
  private let gate = Mutex<[CheckedContinuation<Void, Never>]>([])
  private let released = Mutex(false)

  func send(code: String, to phone: PhoneNumber) async throws {
    entered.continuation.yield()
    await withCheckedContinuation { continuation in
      let open = released.withLock { $0 }
      if open { continuation.resume() } else { gate.withLock { $0.append(continuation) } }
    }
  }

  /// Waits until a send has started inside the server.
  func waitUntilEntered() async {
    var iterator = entered.stream.makeAsyncIterator()
    _ = await iterator.next()
  }

  func release() {
    released.withLock { $0 = true }
    for c in gate.withLock({ g in defer { g.removeAll() }; return g }) { c.resume() }
  }
}

@Suite struct ShutdownE2ETests {
  @Test func inFlightCallsFinishDuringGracefulShutdown() async throws {
    let sender = GatedCodeSender()
    try await TestEnvironment.run(codeSender: sender) { (env) async throws in
      _ = try await env.identity.registerCitizen(.with { $0.name = "周八"; $0.phone = "13900000031"; $0.idNumber = "11010519491231002X" })
      async let inFlight = env.identity.requestLoginCode(.with { $0.phone = "13900000031" })
      await sender.waitUntilEntered()
      env.app.beginGracefulShutdown()
      sender.release()
      // Shutdown waits for the call that was already running, which completes normally.
      let response = try await inFlight
      #expect(response.resendAfterSeconds == 60)
    }
  }
}
