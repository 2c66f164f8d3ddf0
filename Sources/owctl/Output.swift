import Foundation
import GRPCCore
import OneWindowClientPosix
import SwiftProtobuf

/// Writes to the standard streams (never the C `stdout`/`stderr` globals).
enum Console {
  static func out(_ text: String) {
    write(text + "\n", to: .standardOutput)
  }

  static func error(_ text: String) {
    write(text + "\n", to: .standardError)
  }

  /// A prompt on stderr, without a newline.
  static func prompt(_ text: String) {
    write(text, to: .standardError)
  }

  /// `FileHandle.write(_:)` traps on a failed write; a closed pipe (`owctl … | head`) ends the
  /// process quietly instead, with the status a SIGPIPE would give.
  private static func write(_ text: String, to handle: FileHandle) {
    do {
      try handle.write(contentsOf: Data(text.utf8))
    } catch {
      exit(141)
    }
  }
}

/// A failure detected by owctl itself (bad input, unreadable file, …).
struct CLIError: Error, CustomStringConvertible {
  var description: String
  init(_ description: String) { self.description = description }
}

enum ErrorReport {
  /// The single stderr line for `error`.
  static func line(for error: any Error, server: String) -> String {
    "error: " + oneLine(text(for: error, server: server))
  }

  static func text(for error: any Error, server: String) -> String {
    switch error {
    case let error as RPCError:
      var message = error.message.isEmpty ? "(the server sent no message)" : error.message
      if error.code == .unavailable, !message.contains(server) {
        message = "cannot reach \(server): \(message)"
      }
      var text = "\(error.code.canonicalName): \(message)"
      if let retry = error.metadata[stringValues: "retry-after"].first(where: { _ in true }),
         !message.contains("retry after") {
        text += "; retry after \(retry) s"
      }
      return text
    case let error as RuntimeError:
      var text = error.message
      if let cause = error.cause { text += ": \(describe(cause))" }
      return text
    default:
      return describe(error)
    }
  }

  static func describe(_ error: any Error) -> String {
    switch error {
    case let error as CLIError: error.description
    case let error as ConnectionError: error.description
    case let error as CocoaError: error.localizedDescription
    case let error as DecodingError: "\(error)"
    default: String(describing: error)
    }
  }

  static func oneLine(_ text: String) -> String {
    text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: " ")
  }
}

/// How a command prints its results: readable text, or protobuf JSON with `--json`.
struct Output {
  var json: Bool

  static let jsonOptions: JSONEncodingOptions = {
    var options = JSONEncodingOptions()
    options.preserveProtoFieldNames = false
    return options
  }()

  /// Prints `message` as JSON when `--json` is set; otherwise runs `text`.
  func show<M: SwiftProtobuf.Message>(_ message: M, text: () -> Void) throws {
    if json {
      try printJSON(message)
    } else {
      text()
    }
  }

  func printJSON<M: SwiftProtobuf.Message>(_ message: M) throws {
    Console.out(JSONPretty.indent(try message.jsonString(options: Self.jsonOptions)))
  }

  func printJSON<T: Encodable>(encodable value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    Console.out(String(decoding: try encoder.encode(value), as: UTF8.self))
  }
}

/// Re-indents compact JSON (as swift-protobuf writes it), keeping the field order.
enum JSONPretty {
  static func indent(_ compact: String, step: String = "  ") -> String {
    let chars = Array(compact)
    var out = ""
    var depth = 0
    var inString = false
    var escaped = false
    var i = 0
    func newline() { out += "\n" + String(repeating: step, count: depth) }
    while i < chars.count {
      let c = chars[i]
      if inString {
        out.append(c)
        if escaped { escaped = false } else if c == "\\" { escaped = true } else if c == "\"" { inString = false }
        i += 1
        continue
      }
      switch c {
      case "\"":
        inString = true
        out.append(c)
      case "{", "[":
        let close: Character = c == "{" ? "}" : "]"
        if i + 1 < chars.count, chars[i + 1] == close {
          out.append(c)
          out.append(close)
          i += 1
        } else {
          out.append(c)
          depth += 1
          newline()
        }
      case "}", "]":
        depth = max(0, depth - 1)
        newline()
        out.append(c)
      case ",":
        out.append(c)
        newline()
      case ":":
        out += ": "
      case " ", "\n", "\t", "\r":
        break
      default:
        out.append(c)
      }
      i += 1
    }
    return out
  }
}

/// Terminal display width: East Asian wide characters take two columns.
enum DisplayWidth {
  static func of(_ text: String) -> Int {
    text.reduce(0) { $0 + of($1) }
  }

  static func of(_ character: Character) -> Int {
    guard let scalar = character.unicodeScalars.first else { return 0 }
    switch scalar.value {
    case 0..<0x20, 0x7F..<0xA0: return 0
    case 0x1100...0x115F, 0x2E80...0xA4CF, 0xAC00...0xD7A3, 0xF900...0xFAFF, 0xFE30...0xFE4F,
         0xFF00...0xFF60, 0xFFE0...0xFFE6, 0x20000...0x3FFFD:
      return 2
    default: return 1
    }
  }

  static func pad(_ text: String, to width: Int, right: Bool = false) -> String {
    let fill = String(repeating: " ", count: max(0, width - of(text)))
    return right ? fill + text : text + fill
  }
}

/// A plain aligned table: columns separated by two spaces, the last column unpadded.
struct Table {
  enum Alignment { case left, right }

  var headers: [String]
  var alignments: [Alignment]
  var rows: [[String]] = []
  var indent = ""

  init(_ headers: [String], right: Set<Int> = []) {
    self.headers = headers
    self.alignments = headers.indices.map { right.contains($0) ? .right : .left }
  }

  mutating func add(_ row: [String]) {
    rows.append(row.map { ErrorReport.oneLine($0) })
  }

  func render() -> String {
    let all = (headers.isEmpty ? [] : [headers]) + rows
    let columns = all.map(\.count).max() ?? 0
    var widths = Array(repeating: 0, count: columns)
    for row in all {
      for (i, cell) in row.enumerated() { widths[i] = max(widths[i], DisplayWidth.of(cell)) }
    }
    return all.map { row in
      var line = ""
      for (i, cell) in row.enumerated() {
        if i > 0 { line += "  " }
        let right = i < alignments.count && alignments[i] == .right
        line += (i == row.count - 1 && !right) ? cell : DisplayWidth.pad(cell, to: widths[i], right: right)
      }
      return String((indent + line).reversed().drop(while: { $0 == " " }).reversed())
    }.joined(separator: "\n")
  }

  func print() {
    Console.out(render())
  }

  /// Two columns of label and value, skipping empty values.
  static func keyValue(_ pairs: [(String, String)], indent: String = "") -> Table {
    var table = Table([])
    table.indent = indent
    for (key, value) in pairs where !value.isEmpty { table.add([key, value]) }
    return table
  }
}

enum Format {
  /// 1234 fen → "12.34 元"; 0 → "免费".
  static func fee(fen: Int64) -> String {
    guard fen > 0 else { return "免费" }
    let cents = fen % 100
    return "\(fen / 100).\(cents < 10 ? "0" : "")\(cents) 元"
  }

  static func date(_ timestamp: Google_Protobuf_Timestamp) -> String {
    date(timestamp.date)
  }

  static func date(_ date: Date) -> String {
    Date.ISO8601FormatStyle(timeZone: .current).format(date)
  }

  static func yesNo(_ value: Bool) -> String { value ? "yes" : "no" }
}
