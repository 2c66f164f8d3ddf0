import GRPCCore

extension StreamingServerResponse {
  /// A streaming response's body runs after the interceptors have returned, outside their
  /// task-local scopes: this gives it `local`'s `value` too.
  mutating func carrying<Value: Sendable>(_ local: TaskLocal<Value>, _ value: Value) {
    guard case .success(var contents) = accepted else { return }
    let producer = contents.producer
    contents.producer = { writer in try await local.withValue(value) { try await producer(writer) } }
    accepted = .success(contents)
  }
}
