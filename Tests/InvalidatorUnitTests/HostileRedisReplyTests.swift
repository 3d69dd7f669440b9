import InvalidatorCore
import Testing

@testable import InvalidatorRedis

/// Numbers that come from a server (or a proxy in front of one) are data: out of
/// range they must be refused or saturate, never index out of bounds or trap.
@Suite struct HostileRedisReplyTests {
    // MARK: MOVED / ASK

    @Test(arguments: [
        "MOVED 16384 127.0.0.1:7000",
        "MOVED -1 127.0.0.1:7000",
        "MOVED 99999999999999999999 127.0.0.1:7000",
        "ASK 65536 127.0.0.1:7000",
        "ASK -9223372036854775808 127.0.0.1:7000",
        "MOVED 12 127.0.0.1:7000 extra",
        "MOVED x 127.0.0.1:7000",
    ])
    func aRedirectionToASlotOutsideTheRangeIsIgnored(_ message: String) {
        #expect(Redirection(RedisError(serverMessage: message)) == nil, "\(message)")
    }

    @Test func redirectionsToTheFirstAndLastSlotsAreFollowed() throws {
        let moved = try #require(Redirection(RedisError(serverMessage: "MOVED 16383 127.0.0.1:7000")))
        #expect(moved.slot == 16383)
        #expect(moved.target == RedisEndpoint("127.0.0.1:7000"))
        let ask = try #require(Redirection(RedisError(serverMessage: "ASK 0 10.0.0.2:6380")))
        #expect(ask.slot == 0)
        #expect(ask.target == RedisEndpoint("10.0.0.2:6380"))
    }

    // MARK: CLUSTER SLOTS

    let seed = RedisEndpoint("127.0.0.1:7000")!

    func slots(_ ranges: [(Int64, Int64, Int64)]) -> RedisReply {
        .array(ranges.map { start, end, port in
            .array([.integer(start), .integer(end), .array([.bulk(Array("127.0.0.1".utf8)), .integer(port), .bulk(Array("id".utf8))])])
        })
    }

    @Test(arguments: [0, -1, 65536, Int64.max, Int64.min] as [Int64])
    func aClusterSlotsEntryWithAPortOutsideTheRangeIsAProtocolViolation(_ port: Int64) {
        let error = #expect(throws: RedisError.self) {
            try ClusterTopology(clusterSlotsReply: slots([(0, 8191, 7000), (8192, 16383, port)]), reportedBy: seed)
        }
        #expect(error?.code == .protocolViolation)
    }

    @Test(arguments: [(0, 16384), (-1, 10), (100, 99), (Int64.max - 1, Int64.max), (Int64.min, 0)] as [(Int64, Int64)])
    func aClusterSlotsEntryWithSlotsOutsideTheRangeIsAProtocolViolation(_ start: Int64, _ end: Int64) {
        let error = #expect(throws: RedisError.self) {
            try ClusterTopology(clusterSlotsReply: slots([(start, end, 7000)]), reportedBy: seed)
        }
        #expect(error?.code == .protocolViolation)
    }

    @Test func theExtremesOfPortsAndSlotsAreAccepted() throws {
        let topology = try ClusterTopology(clusterSlotsReply: slots([(0, 0, 1), (1, 16383, 65535)]), reportedBy: seed)
        #expect(topology.owner(ofSlot: 0) == RedisEndpoint(host: "127.0.0.1", port: 1))
        #expect(topology.owner(ofSlot: 16383) == RedisEndpoint(host: "127.0.0.1", port: 65535))
    }

    // MARK: Backoff

    @Test func theLongestBackoffNeverOverflows() {
        let hour = Duration.seconds(3600)
        let policy = RetryPolicy(attempts: 1000, initialBackoff: hour, maxBackoff: hour)
        for attempt in [1, 2, 31, 32, 63, 64, 65, 1000, Int.max, 0, -1, Int.min + 1] {
            #expect(policy.longestBackoff(afterAttempt: attempt) == hour, "attempt \(attempt)")
        }
        #expect(policy.backoff(afterAttempt: 1000) <= hour)
        #expect(policy.backoff(afterAttempt: 1000) >= .zero)
    }

    /// `attempt - 1` must not trap either: the public API promises a value for any attempt.
    /// In a child process, so a trap fails this test instead of ending the run.
    @Test func theLongestBackoffForTheSmallestAttemptDoesNotTrap() async {
        await #expect(processExitsWith: .success) {
            let policy = RetryPolicy(attempts: 3, initialBackoff: .seconds(3600), maxBackoff: .seconds(3600))
            precondition(policy.longestBackoff(afterAttempt: Int.min) == .seconds(3600))
            precondition(policy.backoff(afterAttempt: Int.min) <= .seconds(3600))
        }
    }

    @Test func theLongestBackoffStillDoublesUpToItsCap() {
        let policy = RetryPolicy(attempts: 8, initialBackoff: .milliseconds(50), maxBackoff: .seconds(10))
        #expect(policy.longestBackoff(afterAttempt: 1) == .milliseconds(50))
        #expect(policy.longestBackoff(afterAttempt: 2) == .milliseconds(100))
        #expect(policy.longestBackoff(afterAttempt: 8) == .milliseconds(6400))
        #expect(policy.longestBackoff(afterAttempt: 9) == .seconds(10))
        #expect(policy.longestBackoff(afterAttempt: 1000) == .seconds(10))
        #expect(policy.longestBackoff(afterAttempt: Int.max) == .seconds(10))
    }

    @Test func hugeDurationsSaturateAsNanoseconds() {
        #expect(Duration.seconds(Int64.max).nanoseconds == Int64.max)
        #expect(Duration.seconds(9_223_372_036).nanoseconds == Int64.max)
        #expect(Duration.seconds(Int64.min).nanoseconds == 0)
        #expect(Duration.milliseconds(1500).nanoseconds == 1_500_000_000)
        let huge = RetryPolicy(attempts: 3, initialBackoff: .seconds(Int64.max / 2), maxBackoff: .seconds(Int64.max / 2))
        #expect(huge.longestBackoff(afterAttempt: 40) == .seconds(Int64.max / 2))
        #expect(huge.backoff(afterAttempt: 40) >= .zero)
    }
}
