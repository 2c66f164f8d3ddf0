import Crypto
import Foundation
import OneWindowCore

/// Content-addressed storage of uploaded materials under `<data>/materials/`: each content is
/// stored once, at `ab/abcdef…` (its SHA-256). An upload is written to `tmp/` and moved into
/// place only after its size, hash and leading bytes check out, so an interrupted or corrupt
/// upload leaves nothing behind (and a crash mid-upload leaves only `tmp/` files, removed at
/// the next start).
struct MaterialVault: Sendable {
  let root: String

  init(dataDirectory: String) throws {
    root = (dataDirectory as NSString).appendingPathComponent("materials")
    let fm = FileManager.default
    let tmp = (root as NSString).appendingPathComponent("tmp")
    try? fm.removeItem(atPath: tmp)
    try fm.createDirectory(atPath: tmp, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
  }

  func path(sha256: String) -> String {
    (root as NSString).appendingPathComponent("\(sha256.prefix(2))/\(sha256)")
  }

  /// Receives the chunks of an upload declared by `header`. Returns whether the content was
  /// already stored. Throws `ValidationError` for content that does not match the header.
  func store<Chunks: AsyncSequence>(_ header: MaterialRules.Header, chunks: Chunks) async throws -> Bool
  where Chunks.Element == Data {
    let fm = FileManager.default
    let temp = (root as NSString).appendingPathComponent("tmp/\(ULID.make())")
    guard fm.createFile(atPath: temp, contents: nil, attributes: [.posixPermissions: 0o600]),
          let handle = FileHandle(forWritingAtPath: temp)
    else { throw CocoaError(.fileWriteUnknown) }
    var moved = false
    defer {
      try? handle.close()
      if !moved { try? fm.removeItem(atPath: temp) }
    }
    var hasher = SHA256()
    var received: Int64 = 0
    var prefix: [UInt8] = []
    for try await chunk in chunks {
      guard !chunk.isEmpty else { continue }
      guard chunk.count <= MaterialRules.maxChunkBytes else {
        throw ValidationError("chunk", "is \(chunk.count) bytes; send chunks of at most \(MaterialRules.maxChunkBytes) bytes")
      }
      received += Int64(chunk.count)
      guard received <= header.size else {
        throw ValidationError("chunk", "the upload is longer than the declared size of \(header.size) bytes")
      }
      if prefix.count < 16 { prefix += chunk.prefix(16 - prefix.count) }
      hasher.update(data: chunk)
      try handle.write(contentsOf: chunk)
    }
    guard received == header.size else {
      throw ValidationError("chunk", "received \(received) of the declared \(header.size) bytes; upload the whole file again")
    }
    guard Hex.encode(Array(hasher.finalize())) == header.sha256 else {
      throw ValidationError("header.sha256", "does not match the received content: a chunk was corrupted or left out; upload again")
    }
    guard MaterialRules.matchesContentType(prefix, contentType: header.contentType) else {
      throw ValidationError("header.content_type", "the file does not look like \(header.contentType)")
    }
    try handle.synchronize()
    try handle.close()
    let final = path(sha256: header.sha256)
    if fm.fileExists(atPath: final) { return true }
    try fm.createDirectory(
      atPath: (final as NSString).deletingLastPathComponent, withIntermediateDirectories: true,
      attributes: [.posixPermissions: 0o700])
    // rename(2) within one file system is atomic: the content appears whole or not at all.
    guard rename(temp, final) == 0 else {
      if fm.fileExists(atPath: final) { return true }
      throw CocoaError(.fileWriteUnknown)
    }
    moved = true
    return false
  }

  /// Reads stored content in chunks of at most `chunkSize` bytes.
  func read(sha256: String, chunkSize: Int = MaterialRules.maxChunkBytes, _ body: (Data) async throws -> Void) async throws {
    guard let handle = FileHandle(forReadingAtPath: path(sha256: sha256)) else {
      throw PreconditionFailed("the material's content is missing from storage; ask the uploader to upload it again")
    }
    defer { try? handle.close() }
    while let data = try handle.read(upToCount: chunkSize), !data.isEmpty {
      try await body(data)
    }
  }
}
