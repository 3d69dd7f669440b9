import Synchronization

/// When an endpoint's circuit breaker opens and how long it stays open.
package struct CircuitBreakerPolicy: Sendable, Hashable {
    /// Consecutive failed attempts that open the circuit: for a Redis node no connection,
    /// timeouts, refused handshakes (not error replies to commands); for a webhook
    /// target retriable failures (not 4xx answers).
    package var failureThreshold: Int
    /// How long an open circuit fails calls immediately before letting one probe through.
    package var coolDown: Duration

    package init(failureThreshold: Int = 5, coolDown: Duration = .seconds(5)) {
        self.failureThreshold = max(1, failureThreshold)
        self.coolDown = coolDown
    }
}

/// Per-endpoint breaker (a Redis node, a webhook target) so a dead endpoint fails
/// fast instead of making every operation wait through its full retry schedule.
/// A state machine on the clock, no I/O: shared by the Redis and webhook layers.
///
/// Every attempt ends in exactly one report: ``recordSuccess()`` when the node
/// answered (even with an error reply to a command), ``recordFailure()`` when it
/// did not (no connection, a timeout, a refused handshake such as `WRONGPASS`, a
/// broken reply). So a half-open probe always closes or reopens the circuit; and
/// should a probe never report (its task gone), another is let through after
/// `probeTimeout`, so the circuit cannot stay half-open for good.
package final class CircuitBreaker: Sendable {
    enum State: Equatable {
        /// `lastAnswer`: when the node last answered, for health checks that need not ask again.
        case closed(consecutiveFailures: Int, lastAnswer: ContinuousClock.Instant?)
        case open(until: ContinuousClock.Instant)
        /// One probe is in flight since `since`; everyone else fails fast until it reports.
        case halfOpen(since: ContinuousClock.Instant)
    }

    private let policy: CircuitBreakerPolicy
    private let probeTimeout: Duration
    private let state = Mutex(State.closed(consecutiveFailures: 0, lastAnswer: nil))

    /// - Parameter probeTimeout: longer than one attempt can take (connect and command timeouts).
    package init(policy: CircuitBreakerPolicy, probeTimeout: Duration) {
        self.policy = policy
        self.probeTimeout = probeTimeout
    }

    package var isOpen: Bool {
        state.withLock { if case .closed = $0 { false } else { true } }
    }

    /// Whether an attempt may go to the node now. After the cool-down, the first
    /// caller becomes the half-open probe.
    package func permitsAttempt() -> Bool {
        state.withLock { state in
            let now = ContinuousClock.now
            switch state {
            case .closed:
                return true
            case .halfOpen(let since):
                guard now - since >= probeTimeout else { return false }
                state = .halfOpen(since: now)
                return true
            case .open(let until):
                guard now >= until else { return false }
                state = .halfOpen(since: now)
                return true
            }
        }
    }

    /// The node answered (even with an error reply).
    package func recordSuccess() {
        state.withLock { $0 = .closed(consecutiveFailures: 0, lastAnswer: ContinuousClock.now) }
    }

    /// Whether the circuit is closed and the node answered within `age`.
    package func answered(within age: Duration) -> Bool {
        guard case .closed(_, let last?) = state.withLock({ $0 }) else { return false }
        return ContinuousClock.now - last < age
    }

    /// The attempt got no usable answer. Returns true when this failure opened the circuit.
    @discardableResult
    package func recordFailure() -> Bool {
        state.withLock { state in
            switch state {
            case .closed(let failures, let lastAnswer) where failures + 1 < policy.failureThreshold:
                state = .closed(consecutiveFailures: failures + 1, lastAnswer: lastAnswer)
                return false
            case .closed, .halfOpen:
                state = .open(until: ContinuousClock.now + policy.coolDown)
                return true
            case .open:
                return false
            }
        }
    }
}
