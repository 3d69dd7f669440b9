import InvalidatorRuntime
import Testing

@Suite struct CompletionTrackerTests {
    @Test func commitsOnlyTheFinishedPrefix() {
        var tracker = CompletionTracker<Int>()
        for offset in [10, 11, 12, 15] { tracker.track(0, offset: Int64(offset)) }
        #expect(tracker.takeCommitPosition(0) == nil)
        tracker.complete(0, offset: 11)
        #expect(tracker.takeCommitPosition(0) == nil, "10 is unfinished, so 11 cannot be committed")
        tracker.complete(0, offset: 10)
        #expect(tracker.takeCommitPosition(0) == 12)
        #expect(tracker.takeCommitPosition(0) == nil, "nothing moved since")
        tracker.complete(0, offset: 15)
        tracker.complete(0, offset: 12)
        #expect(tracker.takeCommitPosition(0) == 16, "gaps in offsets are skipped")
        #expect(tracker.inFlight == 0)
    }

    @Test func runsOfOffsetsAreTrackedAndCompletedTogether() {
        var tracker = CompletionTracker<Int>()
        tracker.track(0, offsets: [3, 4, 5, 8])
        tracker.track(1, offsets: 0..<3)
        tracker.track(0, offsets: [9])
        #expect(tracker.inFlight == 8)
        tracker.complete(0, offsets: [4, 5, 9])
        #expect(tracker.takeCommitPosition(0) == nil, "3 is unfinished")
        tracker.complete(0, offsets: [3, 42])
        #expect(tracker.takeCommitPosition(0) == 6, "8 is unfinished; an unknown offset changes nothing")
        tracker.complete(1, offsets: 0..<3)
        #expect(tracker.takeCommitPosition(1) == 3)
        tracker.complete(0, offsets: [8, 8])
        #expect(tracker.takeCommitPosition(0) == 10, "a repeated completion counts once")
        #expect(tracker.inFlight == 0)
    }

    @Test func extraWorkHoldsTheMessage() {
        var tracker = CompletionTracker<String>()
        tracker.track("p", offset: 0)
        tracker.addWork("p", offset: 0)
        tracker.complete("p", offset: 0)
        #expect(tracker.takeCommitPosition("p") == nil)
        #expect(tracker.unfinishedCount("p") == 1)
        tracker.complete("p", offset: 0)
        #expect(tracker.takeCommitPosition("p") == 1)
    }

    @Test func partitionsAreIndependentAndForgettable() {
        var tracker = CompletionTracker<Int>()
        tracker.track(0, offset: 0)
        tracker.track(1, offset: 0)
        tracker.complete(1, offset: 0)
        #expect(tracker.takeCommitPositions() == [1: 1])
        tracker.forget(0)
        #expect(tracker.inFlight == 0)
        #expect(tracker.takeCommitPositions().isEmpty)
    }

    @Test func aFailedCommitIsOfferedAgain() {
        var tracker = CompletionTracker<Int>()
        tracker.track(0, offset: 7)
        tracker.complete(0, offset: 7)
        #expect(tracker.takeCommitPosition(0) == 8)
        tracker.resetCommitted(0)
        #expect(tracker.takeCommitPosition(0) == 8)
    }

    @Test func longRunsStayCorrectAcrossCompaction() {
        var tracker = CompletionTracker<Int>()
        for offset in 0..<5000 { tracker.track(0, offset: Int64(offset)) }
        for offset in 0..<3000 { tracker.complete(0, offset: Int64(offset)) }
        #expect(tracker.takeCommitPosition(0) == 3000)
        for offset in (3000..<5000).reversed() { tracker.complete(0, offset: Int64(offset)) }
        #expect(tracker.takeCommitPosition(0) == 5000)
    }
}
