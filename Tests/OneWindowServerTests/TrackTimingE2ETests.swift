import Foundation
import GRPCCore
import OneWindowAPI
import OneWindowCore
import OneWindowServer
import Testing

/// The public progress query must not tell an existing tracking code from a missing one by its
/// timing: averaged over many addresses, that would reveal which codes exist.
@Suite struct TrackTimingE2ETests {
  /// Calls per kind that are measured, after `warmUp` per kind that are not.
  static let measured = 1500
  static let warmUp = 200
  /// Fails when the two latency distributions differ at this level (Mann–Whitney, two-sided)…
  static let alpha = 0.0001
  /// …or when their medians differ by more than this fraction of the overall median, and at
  /// least 0.1 ms (the noise of a median grows with the load on the machine). The defect,
  /// loading and decoding the case before the check, cost 0.3–0.7 ms at medians of 4–6 ms and
  /// gave p < 1e-12.
  static let medianTolerance = (fraction: 0.05, floor: 0.1)

  /// `count` flags, half of them true, in random order.
  static func balancedOrder(_ count: Int) -> [Bool] { (0..<count).map { $0 % 2 == 0 }.shuffled() }

  @Test func anExistingCodeWithAWrongPhoneTakesAsLongAsAMissingCode() async throws {
    // The brake is raised so that thousands of failed queries from one address keep being answered.
    try await TestEnvironment.run(configure: { $0.cases.trackFailureLimit = 1_000_000 }) { (env) async throws in
      let w = try await CaseWorld.make(env)
      let (c, _) = try await w.submitCase()
      try await w.bringToSecondStep(c.id)  // a case with some history, as real ones have
      var missing = TrackingCode.make()
      while missing == c.trackingCode { missing = TrackingCode.make() }
      // The citizen's phone ends in 0001.
      let wrongPhone = "9999"

      /// One failed query's client-side latency in milliseconds; nil (and an issue) unless NOT_FOUND.
      func failedQuery(_ code: String) async -> Double? {
        let clock = ContinuousClock()
        let start = clock.now
        do {
          _ = try await env.caseAPI.trackCase(.with { $0.trackingCode = code; $0.phoneLast4 = wrongPhone })
          Issue.record("a wrong phone was accepted for \(code)")
          return nil
        } catch let error as RPCError where error.code == .notFound {
          let elapsed = (clock.now - start).components
          return Double(elapsed.seconds) * 1000 + Double(elapsed.attoseconds) / 1e15
        } catch {
          Issue.record("expected NOT_FOUND for \(code), got \(error)")
          return nil
        }
      }

      var existing: [Double] = [], absent: [Double] = []
      // Interleaved pairs, so drift and bursts of load from other processes hit both alike; in
      // each pair either kind may go first, in random order but equally often, so that whatever
      // being first or second costs falls on both samples alike.
      let order = Self.balancedOrder(Self.warmUp) + Self.balancedOrder(Self.measured)
      for (round, existingFirst) in order.enumerated() {
        let first = await failedQuery(existingFirst ? c.trackingCode : missing)
        let second = await failedQuery(existingFirst ? missing : c.trackingCode)
        guard let first, let second else { return }
        guard round >= Self.warmUp else { continue }
        existing.append(existingFirst ? first : second)
        absent.append(existingFirst ? second : first)
      }

      let test = LatencyStatistics.mannWhitney(existing, absent)
      let medianExisting = try #require(LatencyStatistics.median(existing))
      let medianAbsent = try #require(LatencyStatistics.median(absent))
      let difference = medianExisting - medianAbsent
      let tolerance = max(
        Self.medianTolerance.floor, Self.medianTolerance.fraction * (try #require(LatencyStatistics.median(existing + absent))))
      let summary = String(
        format: "TrackCase timing: median existing %.4f ms, missing %.4f ms, difference %+.4f ms (tolerance %.3f); Mann-Whitney U %.0f, z %+.2f, p %.3g (n = %d + %d)",
        medianExisting, medianAbsent, difference, tolerance, test.u, test.z, test.p, existing.count, absent.count)
      print(summary)
      #expect(test.p >= Self.alpha, "the latencies differ significantly: \(summary)")
      #expect(abs(difference) <= tolerance, "the medians differ by more than the tolerance: \(summary)")
    }
  }
}

@Suite struct LatencyStatisticsTests {
  @Test func medianOfOddAndEvenCounts() {
    #expect(LatencyStatistics.median([3, 1, 2]) == 2)
    #expect(LatencyStatistics.median([4, 1, 3, 2]) == 2.5)
    #expect(LatencyStatistics.median([]) == nil)
  }

  /// Reference values from `scipy.stats.mannwhitneyu(a, b, method="asymptotic")` (SciPy 1.17).
  @Test func mannWhitneyMatchesSciPy() {
    let tied = LatencyStatistics.mannWhitney(
      [1.2, 3.4, 2.2, 5.0, 2.2, 7.1, 0.4, 3.3, 2.2, 9.9, 4.4, 1.0], [2.2, 6.5, 8.1, 3.4, 7.7, 5.5, 9.0, 6.6, 2.2, 8.8])
    #expect(tied.u == 29.5)
    #expect(abs(tied.p - 0.04659370337113193) < 1e-12)
    #expect(tied.z < 0)
    let shifted = LatencyStatistics.mannWhitney((1...30).map(Double.init), (5..<35).map { Double($0) + 0.5 })
    #expect(shifted.u == 325)
    #expect(abs(shifted.p - 0.06567125768912659) < 1e-12)
  }

  /// U counts the pairs with a > b (ties half) and the two U's add up to n₁·n₂.
  @Test func mannWhitneyUCountsPairs() {
    var random = SystemRandomNumberGenerator()
    for _ in 0..<20 {
      let a = (0..<Int.random(in: 1...40, using: &random)).map { _ in Double(Int.random(in: 0...9, using: &random)) }
      let b = (0..<Int.random(in: 1...40, using: &random)).map { _ in Double(Int.random(in: 0...9, using: &random)) }
      var pairs = 0.0
      for x in a { for y in b { pairs += x > y ? 1 : x == y ? 0.5 : 0 } }
      let ab = LatencyStatistics.mannWhitney(a, b), ba = LatencyStatistics.mannWhitney(b, a)
      #expect(ab.u == pairs)
      #expect(ab.u + ba.u == Double(a.count * b.count))
      #expect(abs(ab.p - ba.p) < 1e-12 && ab.z == -ba.z)
    }
  }

  @Test func mannWhitneyOnEqualAndSeparatedSamples() {
    #expect(LatencyStatistics.mannWhitney([1, 1, 1], [1, 1]).p == 1)
    #expect(LatencyStatistics.mannWhitney([], [1, 2]).p == 1)
    let same = (0..<500).map { Double($0 % 50) }
    #expect(LatencyStatistics.mannWhitney(same, same).p > 0.99)
    let apart = LatencyStatistics.mannWhitney((0..<500).map { Double($0) + 1000 }, (0..<500).map(Double.init))
    #expect(apart.u == 250_000 && apart.z > 10 && apart.p < 1e-20)
  }
}
