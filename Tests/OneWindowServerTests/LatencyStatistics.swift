import Foundation

// Rank statistics for tests that check a code path's timing does not depend on a secret: they
// compare two latency samples without assuming a distribution (latencies are skewed and
// heavy-tailed, so a t-test on means would mostly measure the outliers).

/// The result of a two-sided Mann–Whitney U test of sample `a` against sample `b`.
struct MannWhitneyResult: Sendable {
  /// Pairs (x from a, y from b) with x > y, ties counting one half.
  var u: Double
  /// The normal-approximation statistic (continuity- and tie-corrected); positive when `a` tends higher.
  var z: Double
  /// Two-sided p-value: how likely a difference at least this large is when both samples come
  /// from one distribution.
  var p: Double
}

enum LatencyStatistics {
  /// The median (the mean of the middle two for an even count); nil for an empty sample.
  static func median(_ values: [Double]) -> Double? {
    guard !values.isEmpty else { return nil }
    let sorted = values.sorted()
    let mid = sorted.count / 2
    return sorted.count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
  }

  /// The Mann–Whitney U test with the normal approximation, as `scipy.stats.mannwhitneyu(a, b,
  /// method="asymptotic")` computes it: mid-ranks for ties, the tie-corrected variance and a
  /// continuity correction of ½. Fit for samples of more than about 20 each; p is 1 when either
  /// sample is empty or all values are equal.
  static func mannWhitney(_ a: [Double], _ b: [Double]) -> MannWhitneyResult {
    let n1 = Double(a.count), n2 = Double(b.count), n = n1 + n2
    let pooled = (a.map { ($0, true) } + b.map { ($0, false) }).sorted { $0.0 < $1.0 }
    var rankSumA = 0.0
    var tieTerm = 0.0  // Σ (t³ − t) over groups of t equal values
    var start = 0
    while start < pooled.count {
      var end = start
      while end + 1 < pooled.count, pooled[end + 1].0 == pooled[start].0 { end += 1 }
      let t = Double(end - start + 1)
      let midRank = Double(start + end) / 2 + 1  // ranks are 1-based
      for i in start...end where pooled[i].1 { rankSumA += midRank }
      tieTerm += t * t * t - t
      start = end + 1
    }
    let u = rankSumA - n1 * (n1 + 1) / 2
    let mean = n1 * n2 / 2
    let variance = n > 1 ? n1 * n2 / 12 * ((n + 1) - tieTerm / (n * (n - 1))) : 0
    guard variance > 0 else { return MannWhitneyResult(u: u, z: 0, p: 1) }
    let deviation = max(0, abs(u - mean) - 0.5)
    let z = (u >= mean ? deviation : -deviation) / variance.squareRoot()
    return MannWhitneyResult(u: u, z: z, p: min(1, erfc(abs(z) / 2.0.squareRoot())))
  }
}
