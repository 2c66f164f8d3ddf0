import Foundation
import Testing
@testable import OneWindowCore

@Suite struct TokenTests {
  @Test func tokensAreRandomAndHashedDeterministically() {
    let a = OpaqueToken.generate(prefix: OpaqueToken.accessPrefix)
    let b = OpaqueToken.generate(prefix: OpaqueToken.accessPrefix)
    #expect(a != b)
    #expect(OpaqueToken.isWellFormed(a, prefix: OpaqueToken.accessPrefix))
    #expect(!OpaqueToken.isWellFormed(a, prefix: OpaqueToken.refreshPrefix))
    #expect(!OpaqueToken.isWellFormed(a + "x", prefix: OpaqueToken.accessPrefix))
    let hash = OpaqueToken.hash(a)
    #expect(hash == OpaqueToken.hash(a))
    #expect(hash != OpaqueToken.hash(b))
    #expect(hash.count == 64)
    // SHA-256("abc"), the FIPS 180-2 test vector.
    #expect(OpaqueToken.hash("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
  }

  @Test func issuedPairsHaveTheDocumentedLifetimes() {
    let now = Date(timeIntervalSince1970: 1_800_000_000)
    let t = IssuedTokens.issue(now: now)
    #expect(t.accessExpiresAt.timeIntervalSince(now) == 15 * 60)
    #expect(t.refreshExpiresAt.timeIntervalSince(now) == 30 * 24 * 3600)
    #expect(t.accessHash == OpaqueToken.hash(t.accessToken))
    #expect(t.refreshToken.hasPrefix("owr_"))
  }

  @Test func base64URLRoundTrips() {
    let bytes: [UInt8] = [0, 255, 62, 63, 1, 2, 3]
    #expect(Base64URL.decode(Base64URL.encode(bytes)) == bytes)
    #expect(Base64URL.decode("a+b") == nil)
  }
}

@Suite struct PasswordTests {
  @Test func hashVerifiesOnlyTheRightPassword() throws {
    let stored = try PasswordHashing.hash("correct-horse-1")
    #expect(stored.hasPrefix("pbkdf2-sha256$210000$"))
    #expect(PasswordHashing.verify("correct-horse-1", against: stored))
    #expect(!PasswordHashing.verify("correct-horse-2", against: stored))
    // Same password, fresh salt: a different stored value.
    #expect(try PasswordHashing.hash("correct-horse-1") != stored)
  }

  @Test func malformedOrWeakStoredHashesNeverVerify() {
    #expect(!PasswordHashing.verify("x", against: ""))
    #expect(!PasswordHashing.verify("x", against: "pbkdf2-sha256$1000$AAAA$AAAA"))
    #expect(!PasswordHashing.verify("x", against: "md5$210000$AAAA$AAAA"))
  }

  @Test func newPasswordRules() throws {
    try PasswordHashing.validateNewPassword("abcdefg1")
    #expect(throws: ValidationError.self) { try PasswordHashing.validateNewPassword("abc1") }
    #expect(throws: ValidationError.self) { try PasswordHashing.validateNewPassword("abcdefgh") }
    #expect(throws: ValidationError.self) { try PasswordHashing.validateNewPassword("12345678") }
    #expect(throws: ValidationError.self) { try PasswordHashing.validateNewPassword(String(repeating: "a1", count: 65)) }
  }

  @Test func constantTimeEquality() {
    #expect(ConstantTime.equal([1, 2, 3], [1, 2, 3]))
    #expect(!ConstantTime.equal([1, 2, 3], [1, 2, 4]))
    #expect(!ConstantTime.equal([1, 2], [1, 2, 3]))
  }
}

@Suite struct LoginPolicyTests {
  let t0 = Date(timeIntervalSince1970: 1_800_000_000)

  @Test func codeIssuingIsLimitedPerMinuteAndPerDay() {
    let policy = LoginCodePolicy()
    #expect(policy.retryAfter(previousIssues: [], now: t0) == nil)
    #expect(abs((policy.retryAfter(previousIssues: [t0.addingTimeInterval(-20)], now: t0) ?? 0) - 40) < 0.001)
    #expect(policy.retryAfter(previousIssues: [t0.addingTimeInterval(-61)], now: t0) == nil)
    let ten = (1...10).map { t0.addingTimeInterval(Double(-$0 * 3600)) }
    #expect(abs((policy.retryAfter(previousIssues: ten, now: t0) ?? 0) - 14 * 3600) < 0.001)
    // Issues older than a day no longer count.
    let old = (25...40).map { t0.addingTimeInterval(Double(-$0 * 3600)) }
    #expect(policy.retryAfter(previousIssues: old, now: t0) == nil)
  }

  @Test func codesAreSixDigits() throws {
    for _ in 0..<100 {
      let code = LoginCodePolicy.generateCode()
      try LoginCodePolicy.validateCodeShape(code)
    }
    #expect(throws: ValidationError.self) { try LoginCodePolicy.validateCodeShape("12345a") }
    #expect(throws: ValidationError.self) { try LoginCodePolicy.validateCodeShape("1234567") }
  }

  @Test func lockoutAfterFiveFailuresWithinTheWindow() {
    let policy = LoginLockoutPolicy()
    var state = LoginLockoutPolicy.State(failures: 0, firstFailureAt: nil, lockedUntil: nil)
    for i in 0..<4 {
      state = policy.recordingFailure(state, now: t0.addingTimeInterval(Double(i)))
      #expect(policy.lockedFor(state, now: t0) == nil)
    }
    state = policy.recordingFailure(state, now: t0.addingTimeInterval(4))
    #expect(abs((policy.lockedFor(state, now: t0.addingTimeInterval(4)) ?? 0) - 15 * 60) < 0.001)
    #expect(policy.lockedFor(state, now: t0.addingTimeInterval(4 + 15 * 60)) == nil)
  }

  @Test func failuresOutsideTheWindowStartOver() {
    let policy = LoginLockoutPolicy()
    var state = LoginLockoutPolicy.State(failures: 0, firstFailureAt: nil, lockedUntil: nil)
    for i in 0..<4 { state = policy.recordingFailure(state, now: t0.addingTimeInterval(Double(i))) }
    state = policy.recordingFailure(state, now: t0.addingTimeInterval(16 * 60))
    #expect(state.failures == 1)
    #expect(policy.lockedFor(state, now: t0.addingTimeInterval(16 * 60)) == nil)
  }
}

@Suite struct SlidingWindowLimitTests {
  let t0 = Date(timeIntervalSince1970: 1_800_000_000)

  @Test func allowsUpToTheLimitPerWindowPerKey() {
    var limiter = SlidingWindowLimit(limit: 3, window: 60)
    for i in 0..<3 { #expect(limiter.acquire("a", now: t0.addingTimeInterval(Double(i))) == nil) }
    let wait = limiter.acquire("a", now: t0.addingTimeInterval(10))
    #expect(wait.map { abs($0 - 50) < 0.001 } == true)
    #expect(limiter.acquire("b", now: t0.addingTimeInterval(10)) == nil)  // other keys unaffected
    #expect(limiter.acquire("a", now: t0.addingTimeInterval(60)) == nil)  // the first event left the window
  }

  @Test func forgetsQuietKeysBeyondTheBound() {
    var limiter = SlidingWindowLimit(limit: 1, window: 60, maxKeys: 2)
    #expect(limiter.acquire("a", now: t0) == nil)
    #expect(limiter.acquire("b", now: t0.addingTimeInterval(1)) == nil)
    #expect(limiter.acquire("c", now: t0.addingTimeInterval(2)) == nil)  // "a" is forgotten
    #expect(limiter.acquire("a", now: t0.addingTimeInterval(3)) == nil)
    #expect(limiter.acquire("c", now: t0.addingTimeInterval(4)) != nil)
  }

  @Test func peerAddressesDropThePort() {
    #expect(SlidingWindowLimit.peerAddress("ipv4:10.1.2.3:5555") == "ipv4:10.1.2.3")
    #expect(SlidingWindowLimit.peerAddress("ipv6:[::1]:5555") == "ipv6:[::1]")
    #expect(SlidingWindowLimit.peerAddress("unix:/tmp/sock") == "unix:/tmp/sock")
  }
}
