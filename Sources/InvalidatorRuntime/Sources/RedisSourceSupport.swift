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
        let step = min(initial * (1 << min(failures - 1, 20)), maximum)
        return step / 2 + step / 2 * Double.random(in: 0...1)
    }

    mutating func reset() {
        failures = 0
    }
}

/// A stop flag set by graceful shutdown or cancellation, and waits that end early when it is set.
final class StopSignal: Sendable {
    private let flag = Atomic<Bool>(false)

    var isSet: Bool { flag.load(ordering: .relaxed) }

    func set() {
        flag.store(true, ordering: .relaxed)
    }

    /// Sleeps for `duration`, or less when the flag is set or the task is cancelled.
    func pause(for duration: Duration) async {
        let deadline = ContinuousClock.now + duration
        while !isSet, !Task.isCancelled, ContinuousClock.now < deadline {
            try? await Task.sleep(for: min(.milliseconds(50), deadline - ContinuousClock.now))
        }
    }
}


