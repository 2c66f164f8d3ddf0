/// The caller may not do this to this thing (a rule about who, not about the input). The edge
/// answers `PERMISSION_DENIED` with the message.
public struct PermissionDenied: Error, Equatable, Sendable, CustomStringConvertible {
  public var message: String
  public init(_ message: String) { self.message = message }
  public var description: String { message }
}

/// The thing is not in a state that allows this (a rule about when). The edge answers
/// `FAILED_PRECONDITION` with the message.
public struct PreconditionFailed: Error, Equatable, Sendable, CustomStringConvertible {
  public var message: String
  public init(_ message: String) { self.message = message }
  public var description: String { message }
}
