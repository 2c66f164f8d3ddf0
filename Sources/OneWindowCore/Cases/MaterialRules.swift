/// Limits and checks for uploaded materials (申办一袋). The declared content type must be one
/// of the accepted document types and the first bytes must match it, so a renamed executable is
/// not accepted as a PDF.
public enum MaterialRules {
  public static let maxChunkBytes = 1024 * 1024
  public static let defaultMaxMaterialBytes: Int64 = 20 * 1024 * 1024

  /// Accepted types and the leading bytes each must start with.
  public static let contentTypes: [String: [UInt8]] = [
    "application/pdf": Array("%PDF-".utf8),
    "image/jpeg": [0xFF, 0xD8, 0xFF],
    "image/png": [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A],
    // OFD (GB/T 33190, the national e-document format) is a ZIP container.
    "application/ofd": [0x50, 0x4B, 0x03, 0x04],
  ]

  public struct Header: Sendable, Equatable {
    public var fileName: String
    public var contentType: String
    public var size: Int64
    /// Lowercase hex.
    public var sha256: String
  }

  /// Validates what an upload declares before any byte is stored.
  public static func header(
    fileName: String, contentType: String, size: Int64, sha256: String, maxBytes: Int64
  ) throws(ValidationError) -> Header {
    let name = try Check.text(fileName, field: "header.file_name", max: 200)
    if name.contains("/") || name.contains("\\") {
      throw ValidationError("header.file_name", "must be a file name without directories")
    }
    let type = contentType.trimmingWhitespace().lowercased()
    guard contentTypes[type] != nil else {
      throw ValidationError(
        "header.content_type", "must be one of \(contentTypes.keys.sorted().joined(separator: ", ")) (got \(contentType))")
    }
    guard size > 0 else { throw ValidationError("header.size", "must be the file's size in bytes (more than 0)") }
    guard size <= maxBytes else {
      throw ValidationError("header.size", "is \(size) bytes; a material may be at most \(maxBytes) bytes")
    }
    let digest = sha256.lowercased()
    guard digest.utf8.count == 64, Hex.decode(digest) != nil else {
      throw ValidationError("header.sha256", "must be the 64-character hex SHA-256 of the whole file")
    }
    return Header(fileName: name, contentType: type, size: size, sha256: digest)
  }

  /// Whether `prefix` (the file's first bytes) matches the declared content type.
  public static func matchesContentType(_ prefix: [UInt8], contentType: String) -> Bool {
    guard let magic = contentTypes[contentType] else { return false }
    return prefix.count >= magic.count && Array(prefix.prefix(magic.count)) == magic
  }
}
