/// `retry:`, the one backoff policy: retries per node and operation, exponential
/// backoff with full jitter. The Redis layer executes with it as configured.
public struct RetryPolicy: Sendable, Hashable {
    /// Total attempts including the first one; at least 1.
    public var attempts: Int
    public var initialBackoff: Duration
    public var maxBackoff: Duration

    public init(attempts: Int = 8, initialBackoff: Duration = .milliseconds(50), maxBackoff: Duration = .seconds(10)) {
        self.attempts = max(1, attempts)
        self.initialBackoff = initialBackoff
        self.maxBackoff = maxBackoff
    }

    /// The wait after failed attempt number `attempt` (1-based): uniformly random
    /// between zero and `initialBackoff * 2^(attempt-1)`, capped at `maxBackoff`.
    /// Full jitter keeps many workers from retrying in lockstep.
    package func backoff(afterAttempt attempt: Int) -> Duration {
        .nanoseconds(Int64.random(in: 0...max(longestBackoff(afterAttempt: attempt).nanoseconds, 0)))
    }

    /// The most `backoff(afterAttempt:)` can wait: `initialBackoff * 2^(attempt-1)`, capped at `maxBackoff`.
    package func longestBackoff(afterAttempt attempt: Int) -> Duration {
        Self.exponential(from: initialBackoff, doublings: max(attempt, 1) - 1, cap: maxBackoff)
    }

    /// `initial * 2^doublings`, capped at `cap`, without overflowing on any input:
    /// the cap is compared before multiplying.
    package static func exponential(from initial: Duration, doublings: Int, cap: Duration) -> Duration {
        let factor = 1 << min(max(doublings, 0), 30)
        return initial > cap / factor ? cap : initial * factor
    }
}
