import Synchronization

/// When a node's circuit breaker opens and how long it stays open.
package struct CircuitBreakerPolicy: Sendable, Hashable {
    /// Consecutive connection failures (not error replies) that open the circuit.
    package var failureThreshold: Int
    /// How long an open circuit fails calls immediately before letting one probe through.
    package var coolDown: Duration

    package init(failureThreshold: Int = 5, coolDown: Duration = .seconds(5)) {
        self.failureThreshold = max(1, failureThreshold)
        self.coolDown = coolDown
    }
}

/// Per-node breaker so a dead node fails fast instead of making every
/// operation wait through its full retry schedule.
final class CircuitBreaker: Sendable {
    enum State: Equatable {
        case closed(consecutiveFailures: Int)
        case open(until: ContinuousClock.Instant)
        /// One probe is in flight; everyone else fails fast until it reports.
        case halfOpen
    }

    private let policy: CircuitBreakerPolicy
    private let state = Mutex(State.closed(consecutiveFailures: 0))

    init(policy: CircuitBreakerPolicy) {
        self.policy = policy
    }

    var isOpen: Bool {
        state.withLock { if case .closed = $0 { false } else { true } }
    }

    /// Whether an attempt may go to the node now. After the cool-down, the first
    /// caller becomes the half-open probe.
    func permitsAttempt() -> Bool {
        state.withLock { state in
            switch state {
            case .closed:
                return true
            case .halfOpen:
                return false
            case .open(let until):
                guard ContinuousClock.now >= until else { return false }
                state = .halfOpen
                return true
            }
        }
    }

    /// The node answered (even with an error reply).
    func recordSuccess() {
        state.withLock { $0 = .closed(consecutiveFailures: 0) }
    }

    /// Returns true when this failure opened the circuit.
    @discardableResult
    func recordConnectionFailure() -> Bool {
        state.withLock { state in
            switch state {
            case .closed(let failures) where failures + 1 < policy.failureThreshold:
                state = .closed(consecutiveFailures: failures + 1)
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
