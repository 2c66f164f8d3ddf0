import Foundation
import SwiftProtobuf
import Yams

/// Reading passwords, codes and documents.
enum Input {
  static var isInteractive: Bool { isatty(STDIN_FILENO) == 1 }

  /// One line of standard input; on a terminal, `prompt` is shown first (on stderr).
  static func line(prompt: String, what: String) throws -> String {
    if isInteractive { Console.prompt(prompt) }
    guard let line = readLine(strippingNewline: true) else {
      throw CLIError("expected \(what) on standard input")
    }
    return line
  }

  /// Like `line`, but with terminal echo turned off.
  static func secret(prompt: String, what: String) throws -> String {
    guard isInteractive else { return try line(prompt: prompt, what: what) }
    var saved = termios()
    guard tcgetattr(STDIN_FILENO, &saved) == 0 else { return try line(prompt: prompt, what: what) }
    var silent = saved
    silent.c_lflag &= ~tcflag_t(ECHO)
    tcsetattr(STDIN_FILENO, TCSANOW, &silent)
    defer {
      tcsetattr(STDIN_FILENO, TCSANOW, &saved)
      Console.prompt("\n")
    }
    return try line(prompt: prompt, what: what)
  }

  /// A new password: on a terminal asked twice, otherwise one line.
  static func newPassword(prompt: String = "New password: ") throws -> String {
    let password = try secret(prompt: prompt, what: "a password")
    if isInteractive {
      let again = try secret(prompt: "Repeat: ", what: "the password again")
      guard again == password else { throw CLIError("the passwords do not match") }
    }
    return password
  }

  /// Reads a protobuf message from protobuf JSON, or from YAML with the same keys
  /// (files ending in .yaml or .yml).
  static func document<M: SwiftProtobuf.Message>(_ type: M.Type, path: String) throws -> M {
    guard FileManager.default.fileExists(atPath: path) else { throw CLIError("no such file: \(path)") }
    let url = URL(fileURLWithPath: path)
    let data: Data
    do {
      data = try Data(contentsOf: url)
    } catch {
      throw CLIError("cannot read \(path): \(ErrorReport.describe(error))")
    }
    let json: Data
    switch url.pathExtension.lowercased() {
    case "yaml", "yml":
      json = try yamlToJSON(data, path: path)
    default:
      json = data
    }
    do {
      return try M(jsonUTF8Data: json)
    } catch {
      throw CLIError("\(path) is not a valid \(M.protoMessageName) in the protobuf JSON mapping: \(error)")
    }
  }

  private static func yamlToJSON(_ data: Data, path: String) throws -> Data {
    guard let text = String(data: data, encoding: .utf8) else { throw CLIError("\(path) is not UTF-8 text") }
    let object: Any?
    do {
      // Dates stay strings: protobuf JSON has no date type outside Timestamp fields.
      object = try Yams.load(yaml: text, Resolver.default.removing(.timestamp))
    } catch {
      throw CLIError("\(path) is not valid YAML: \(error)")
    }
    guard let object, object is [String: Any], JSONSerialization.isValidJSONObject(object) else {
      throw CLIError("\(path) must hold one YAML mapping with string keys and plain values")
    }
    return try JSONSerialization.data(withJSONObject: object)
  }
}
