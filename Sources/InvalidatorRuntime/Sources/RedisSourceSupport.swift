import InvalidatorCore
import InvalidatorRedis
import Synchronization

/// Exponential backoff with jitter between attempts to reach a Redis node again,
/// shared by the Redis sources.
struct ReconnectBackoff: Sendable {
    var initial: Duration
    var maximum: Duration
    /// Consecutive failures since the last success.
    private(set) var failures = 0

    init(initial: Duration = .milliseconds(50), maximum: Duration = .seconds(2)) {
        self.initial = initial
        self.maximum = maximum
    }

    /// Records a failure and returns how long to wait before the next attempt:
    /// half the exponential step, plus a random share of the other half, so
    /// workers that lost the same node do not come back in lockstep.
    mutating func next() -> Duration {
        failures += 1
        let step = RetryPolicy.exponential(from: initial, doublings: failures - 1, cap: maximum)
        return step / 2 + step / 2 * Double.random(in: 0...1)
    }

    mutating func reset() {
        failures = 0
    }
}
