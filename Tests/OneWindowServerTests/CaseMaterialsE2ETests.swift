import Foundation
import GRPCCore
import OneWindowAPI
import OneWindowClientPosix
import OneWindowCore
import OneWindowServer
import Testing
import OneWindowTestSupport

/// 5. Uploads (申办一袋): stored only when size, hash and type check out; nothing left otherwise.
@Suite struct CaseMaterialsE2ETests {
  /// Nothing kept: no blob, an empty tmp/ and no row.
  func expectNothingStored(_ env: TestEnvironment, sourceLocation: SourceLocation = #_sourceLocation) async throws {
    let files = try await env.materialFiles()
    #expect(files.topLevel == ["tmp"], "materials/ holds \(files.topLevel)", sourceLocation: sourceLocation)
    #expect(files.blobs.isEmpty, sourceLocation: sourceLocation)
    #expect(files.tmp.isEmpty, "tmp/ holds \(files.tmp)", sourceLocation: sourceLocation)
    #expect(try await env.count("materials") == 0, sourceLocation: sourceLocation)
  }

  @Test(arguments: TestEngine.enabled) func aWrongHashIsRefusedAndLeavesNothing(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      let token = try await env.citizenSession().accessToken
      let bytes = pdfBytes("hash")
      let error = await expectRPCError(.invalidArgument) {
        try await env.upload(token, bytes, sha256: Hex.sha256(pdfBytes("other")), chunkSize: 8)
      }
      #expect(error?.message.contains("sha256") == true)
      try await expectNothingStored(env)
      // A malformed hash is refused before any byte is read.
      await expectRPCError(.invalidArgument) { try await env.upload(token, bytes, sha256: "abc") }
      try await expectNothingStored(env)
    }
  }

  @Test(arguments: TestEngine.enabled) func anOversizedChunkIsRefused(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      let token = try await env.citizenSession().accessToken
      let bytes = pdfBytes("big") + [UInt8](repeating: 0x20, count: MaterialRules.maxChunkBytes + 1)
      let error = await expectRPCError(.invalidArgument) {
        try await env.upload(token, bytes, chunkSize: MaterialRules.maxChunkBytes + 1)
      }
      #expect(error?.message.contains("chunk") == true)
      try await expectNothingStored(env)
      // The same file in chunks of at most 1 MiB is fine.
      let info = try await env.upload(token, bytes, chunkSize: MaterialRules.maxChunkBytes)
      #expect(info.size == Int64(bytes.count))
      let (_, data) = try await env.download(token, info.materialID)
      #expect(Array(data) == bytes)
    }
  }

  @Test(arguments: TestEngine.enabled) func aStreamEndingBeforeTheDeclaredSizeLeavesNothing(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      let token = try await env.citizenSession().accessToken
      let whole = pdfBytes("short") + [UInt8](repeating: 0x41, count: 1000)
      let sent = Array(whole.prefix(500))
      let error = await expectRPCError(.invalidArgument) {
        try await env.upload(token, sent, declaredSize: Int64(whole.count), sha256: Hex.sha256(whole))
      }
      #expect(error?.message.contains("500") == true)
      try await expectNothingStored(env)
      // More than declared is refused as well.
      await expectRPCError(.invalidArgument) {
        try await env.upload(token, whole, declaredSize: 500, sha256: Hex.sha256(sent))
      }
      try await expectNothingStored(env)
    }
  }

  @Test(arguments: TestEngine.enabled) func aClientCancellingMidUploadLeavesNothing(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      let token = try await env.citizenSession().accessToken
      let whole = pdfBytes("cancel") + [UInt8](repeating: 0x42, count: 100_000)
      let (sent, sentContinuation) = AsyncStream<Void>.makeStream()
      let (hold, holdContinuation) = AsyncStream<Void>.makeStream()  // never yields: keeps the stream open
      let upload = Task {
        try await env.materialAPI.uploadMaterial(metadata: bearer(token)) { writer in
          try await writer.write(.with {
            $0.header = .with {
              $0.fileName = "cancelled.pdf"
              $0.contentType = "application/pdf"
              $0.size = Int64(whole.count)
              $0.sha256 = Hex.sha256(whole)
            }
          })
          try await writer.write(.with { $0.chunk = Data(whole.prefix(4096)) })
          sentContinuation.yield()
          for await _ in hold {}
          try Task.checkCancellation()
        }
      }
      var iterator = sent.makeAsyncIterator()
      _ = await iterator.next()
      // The server has begun writing the upload to tmp/ …
      #expect(await eventually { !env.materialDirectory().tmp.isEmpty })
      upload.cancel()
      let result = await upload.result
      holdContinuation.finish()
      #expect(throws: (any Error).self) { try result.get() }
      // … and removes it once the call is gone.
      #expect(await eventually { env.materialDirectory().tmp.isEmpty })
      try await expectNothingStored(env)
    }
  }

  @Test(arguments: TestEngine.enabled) func contentThatIsNotTheDeclaredTypeIsRefused(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      let token = try await env.citizenSession().accessToken
      let png = pngMagic + Array("not really a picture".utf8)
      let error = await expectRPCError(.invalidArgument) { try await env.upload(token, png, fileName: "scan.pdf") }
      #expect(error?.message.contains("application/pdf") == true)
      try await expectNothingStored(env)
      // Declared honestly it is accepted; an unlisted type never is.
      let info = try await env.upload(token, png, fileName: "scan.png", contentType: "image/png")
      #expect(info.contentType == "image/png")
      await expectRPCError(.invalidArgument) {
        try await env.upload(token, pdfBytes("exe"), fileName: "x.exe", contentType: "application/x-msdownload")
      }
      await expectRPCError(.invalidArgument) { try await env.upload(token, pdfBytes("dir"), fileName: "../etc/passwd") }
    }
  }

  @Test(arguments: TestEngine.enabled) func theSameBytesAreStoredOnce(engine: TestEngine) async throws {
    try await TestEnvironment.run(engine: engine) { (env) async throws in
      let first = try await env.citizenSession().accessToken
      let second = try await env.citizenSession(phone: CaseWorld.otherPhone, idNumber: CaseWorld.otherIDNumber).accessToken
      let bytes = pdfBytes("dedup")
      let a = try await env.upload(first, bytes)
      let b = try await env.upload(first, bytes, fileName: "copy.pdf")
      let c = try await env.upload(second, bytes)
      #expect(!a.deduplicated)
      // Stored once for both, but only the caller's own earlier upload is reported: whether
      // someone else uploaded these bytes is not the second citizen's business.
      #expect(b.deduplicated && !c.deduplicated)
      #expect(Set([a.materialID, b.materialID, c.materialID]).count == 3)
      let sha = Hex.sha256(bytes)
      let files = try await env.materialFiles()
      #expect(files.blobs == ["\(sha.prefix(2))/\(sha)"])
      #expect(files.tmp.isEmpty)
      #expect(try await env.count("materials") == 3)
      let (info, data) = try await env.download(first, b.materialID)
      #expect(Array(data) == bytes && info.fileName == "copy.pdf" && info.sha256 == sha)
      // Each uploader sees only their own upload (the other's is NOT_FOUND).
      await expectRPCError(.notFound) { try await env.download(second, a.materialID) }
    }
  }
}
