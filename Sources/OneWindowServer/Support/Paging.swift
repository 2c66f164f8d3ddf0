import OneWindowCore

/// Page sizes and opaque page tokens, shared by every listing RPC: a token is
/// `base64url("<prefix>:<position>")`, so clients treat it as opaque and a token of one list is
/// refused by another.
enum Paging {
  static func pageSize(_ raw: Int32, default d: Int, max: Int) throws(ValidationError) -> Int {
    if raw == 0 { return d }
    try Check.range(Int(raw), field: "page_size", 1...max)
    return Int(raw)
  }

  static let badToken = ValidationError("page_token", "is malformed; pass the next_page_token of the previous page")

  static func makeToken(_ prefix: String, _ body: String) -> String { Base64URL.encode(Array("\(prefix):\(body)".utf8)) }

  static func token(_ token: String, prefix: String) throws(ValidationError) -> String {
    guard let bytes = Base64URL.decode(token), let text = String(validating: bytes, as: UTF8.self), text.hasPrefix("\(prefix):") else {
      throw badToken
    }
    return String(text.dropFirst(prefix.count + 1))
  }
}
