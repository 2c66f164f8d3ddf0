import Foundation
import GRPCCore
import Logging
import OneWindowAPI
import OneWindowCore
import OneWindowStore

/// Uploads and downloads of case materials (申办一袋).
struct MaterialService: Onewindow_V1_MaterialService.SimpleServiceProtocol {
  let store: any Store
  let vault: MaterialVault
  let settings: CaseSettings
  let clock: any WallClock
  let logger: Logger

  func uploadMaterial(
    request: RPCAsyncSequence<Onewindow_V1_UploadMaterialRequest, any Error>, context: ServerContext
  ) async throws -> Onewindow_V1_MaterialInfo {
    let p = try RequestContext.requirePrincipal()
    var messages = request.makeAsyncIterator()
    guard let first = try await messages.next(), case .header(let h)? = first.part else {
      throw ValidationError("header", "the first message must be the header (file name, content type, size, sha256)")
    }
    let header = try MaterialRules.header(
      fileName: h.fileName, contentType: h.contentType, size: h.size, sha256: h.sha256, maxBytes: settings.maxMaterialBytes)
    let chunks = ChunkSequence(messages: messages)
    let stored = try await vault.store(header, chunks: chunks)
    // Report deduplication only against the caller's own uploads: whether anyone else ever
    // uploaded these bytes is not the caller's business.
    let deduplicated = stored ? try await store.materials.owns(ownerID: p.accountID, sha256: header.sha256) : false
    let now = clock.now()
    let material = StoredMaterial(
      id: ULID.make(at: now), ownerID: p.accountID, fileName: header.fileName, contentType: header.contentType,
      size: header.size, sha256: header.sha256, uploadedAt: now)
    try await store.materials.save(material)
    return Onewindow_V1_MaterialInfo(material, deduplicated: deduplicated)
  }

  func downloadMaterial(
    request: Onewindow_V1_DownloadMaterialRequest, response: RPCWriter<Onewindow_V1_DownloadMaterialResponse>,
    context: ServerContext
  ) async throws {
    let p = try RequestContext.requirePrincipal()
    let notFound = StoreError.notFound("material '\(request.materialID)'")
    guard ULID.isValid(request.materialID), let material = try await store.materials.material(id: request.materialID) else {
      throw notFound
    }
    if material.ownerID != p.accountID {
      // Otherwise only the applicant and the caseworkers of a case the material belongs to.
      let cases = try await store.materials.cases(containing: material.id)
      guard let record = cases.first(where: { r in
        guard let involvement = CaseWorkflow.involvement(of: p, in: r) else { return false }
        return involvement != .administrator
      }) else { throw notFound }
      try await store.audit.append(
        AuditEvent(p, action: "material.downloaded", targetType: "case", targetID: record.id, subjectID: record.applicantID,
                   reason: material.fileName),
        now: clock.now())
    }
    try await response.write(.with { $0.info = Onewindow_V1_MaterialInfo(material, deduplicated: false) })
    try await vault.read(sha256: material.sha256) { data in
      try await response.write(.with { $0.chunk = data })
    }
  }
}

/// The chunk messages after the header, as bytes; a second header is an error.
struct ChunkSequence: AsyncSequence {
  typealias Element = Data
  let messages: RPCAsyncSequence<Onewindow_V1_UploadMaterialRequest, any Error>.AsyncIterator

  struct AsyncIterator: AsyncIteratorProtocol {
    var messages: RPCAsyncSequence<Onewindow_V1_UploadMaterialRequest, any Error>.AsyncIterator

    mutating func next() async throws -> Data? {
      guard let message = try await messages.next() else { return nil }
      guard case .chunk(let data)? = message.part else {
        throw ValidationError("chunk", "only the first message may be a header; send the file's bytes as chunks")
      }
      return data
    }
  }

  func makeAsyncIterator() -> AsyncIterator { AsyncIterator(messages: messages) }
}

extension Onewindow_V1_MaterialInfo {
  init(_ m: StoredMaterial, deduplicated: Bool) {
    self = .with {
      $0.materialID = m.id
      $0.fileName = m.fileName
      $0.contentType = m.contentType
      $0.size = m.size
      $0.sha256 = m.sha256
      $0.uploadedAt = .init(m.uploadedAt)
      $0.deduplicated = deduplicated
    }
  }
}
