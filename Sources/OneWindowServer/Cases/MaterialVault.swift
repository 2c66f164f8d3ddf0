import Crypto
import Foundation
import OneWindowCore
import OneWindowStore

/// Receives uploaded materials: an upload is written to this node's `<data>/materials/tmp/`
/// and handed to the store's content-addressed blob store (`Store.blobs`: files beside the
/// embedded database, a table on PostgreSQL so every node serves every upload) only after its
/// size, hash and leading bytes check out. An interrupted or corrupt upload leaves nothing
/// behind (a crash mid-upload leaves only `tmp/` files, removed at the next start).
struct MaterialVault: Sendable {
  let tmp: String
  let blobs: any BlobStore

  init(dataDirectory: String, blobs: any BlobStore) throws {
    tmp = (dataDirectory as NSString).appendingPathComponent("materials/tmp")
    self.blobs = blobs
    let fm = FileManager.default
    try? fm.removeItem(atPath: tmp)
    try fm.createDirectory(atPath: tmp, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
  }

  /// Receives the chunks of an upload declared by `header`. Returns whether the content was
  /// already stored. Throws `ValidationError` for content that does not match the header.
  func store<Chunks: AsyncSequence>(_ header: MaterialRules.Header, chunks: Chunks) async throws -> Bool
  where Chunks.Element == Data {
    let fm = FileManager.default
    let temp = (tmp as NSString).appendingPathComponent(ULID.make())
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
    moved = true
    return try await !blobs.put(sha256: header.sha256, file: temp)
  }

  /// Reads stored content in chunks of at most 1 MiB.
  func read(sha256: String, _ body: (Data) async throws -> Void) async throws {
    do {
      try await blobs.read(sha256: sha256, body)
    } catch StoreError.notFound {
      throw PreconditionFailed("the material's content is missing from storage; ask the uploader to upload it again")
    }
  }
}
