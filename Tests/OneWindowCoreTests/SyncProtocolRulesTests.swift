import Testing
@testable import OneWindowCore


@Suite struct RestoreRebaseTests {
  @Test func onlyAClientARestoreSetBackContinuesPastAGap() {
    // Restored, a client counted under the old epoch or unknown: rebased.
    #expect(MutationOrder.mayRebase(clientEpoch: 7, currentEpoch: 9, restored: true))
    #expect(MutationOrder.mayRebase(clientEpoch: nil, currentEpoch: 9, restored: true))
    // Counted under the current epoch, or never restored: strict.
    #expect(!MutationOrder.mayRebase(clientEpoch: 9, currentEpoch: 9, restored: true))
    #expect(!MutationOrder.mayRebase(clientEpoch: 7, currentEpoch: 9, restored: false))
    #expect(!MutationOrder.mayRebase(clientEpoch: nil, currentEpoch: 9, restored: false))
  }

  @Test func rebasingStartsAtTheFirstMutationAndNamesTheLostIDs() {
    #expect(MutationOrder.rebased(firstMutationID: 7, lastProcessed: 3, mayRebase: true) == (6, 4))
    // No gap, a replay, nothing sent, or not allowed: unchanged.
    #expect(MutationOrder.rebased(firstMutationID: 4, lastProcessed: 3, mayRebase: true) == (3, nil))
    #expect(MutationOrder.rebased(firstMutationID: 2, lastProcessed: 3, mayRebase: true) == (3, nil))
    #expect(MutationOrder.rebased(firstMutationID: nil, lastProcessed: 3, mayRebase: true) == (3, nil))
    #expect(MutationOrder.rebased(firstMutationID: 7, lastProcessed: 3, mayRebase: false) == (3, nil))
  }

  @Test func onlyAPushThatSkipsAheadStartsPastAGap() {
    #expect(MutationOrder.startsPastGap(5, lastProcessed: 3))
    #expect(!MutationOrder.startsPastGap(4, lastProcessed: 3))
    #expect(!MutationOrder.startsPastGap(2, lastProcessed: 3))
    #expect(!MutationOrder.startsPastGap(nil, lastProcessed: 3))
  }

  @Test func aNewEpochIsNeverTheOldOneOrZero() {
    for old in [UInt32(0), 1, .max] {
      for _ in 0..<100 {
        let new = SyncEpoch.next(after: old)
        #expect(new != old && new != 0)
      }
    }
  }
}
