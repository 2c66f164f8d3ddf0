import Foundation
import OneWindowCore

/// How a case row's JSON columns are written and read — the case body (without its history,
/// which lives in its own append-only table), history entries, outbox payloads and evaluations.
/// One home for both engines, so a database written by one reads the same through the other.
public enum CaseRowCoding {
  public static let encoder: JSONEncoder = {
    let e = JSONEncoder()
    e.dateEncodingStrategy = .millisecondsSince1970
    e.outputFormatting = [.sortedKeys]
    return e
  }()

  public static let decoder: JSONDecoder = {
    let d = JSONDecoder()
    d.dateDecodingStrategy = .millisecondsSince1970
    return d
  }()

  /// The record without its history.
  public static func body(_ record: CaseRecord) throws -> String {
    var copy = record
    copy.history = []
    return try encode(copy)
  }

  public static func encode<T: Encodable>(_ value: T) throws -> String {
    String(decoding: try encoder.encode(value), as: UTF8.self)
  }

  public static func decode<T: Decodable>(_ type: T.Type, from text: String) throws -> T {
    try decoder.decode(type, from: Data(text.utf8))
  }

  public static func decodeEvaluation(_ text: String) throws -> Evaluation { try decode(Evaluation.self, from: text) }
}
