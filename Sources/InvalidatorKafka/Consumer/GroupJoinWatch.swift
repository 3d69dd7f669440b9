import Dispatch
import Synchronization

/// Whether the consumer is (re)joining its group: from sending a JoinGroup request
/// until its SyncGroup request is answered. Commits wait for the join to end.
///
/// Why: the coordinator answers a connection's requests in order, so a commit sent
/// while a JoinGroup is pending is answered after it, once the join has started a
/// new generation, with ILLEGAL_GENERATION. librdkafka before 2.8.3 then drops the
/// consumer's whole assignment and rejoins (librdkafka#4059): in a failover the
/// survivor loses its own partitions too and the group needs another rebalance,
/// which on the mock cluster doubled the takeover time.
final class GroupJoinWatch: Sendable {
    private struct State {
        var joining = false
        /// The waiting caller sleeps on `joinEnded` and must be signalled once.
        var waiting = false
    }

    private let state = Mutex(State())
    private let joinEnded = DispatchSemaphore(value: 0)

    /// Called on librdkafka's broker threads.
    func record(_ request: GroupRequest) {
        let wake = state.withLock { state -> Bool in
            switch request {
            case .joinSent:
                state.joining = true
                return false
            case .syncAnswered:
                state.joining = false
                defer { state.waiting = false }
                return state.waiting
            }
        }
        if wake { joinEnded.signal() }
    }

    /// Blocks while the consumer is joining its group, at most `limit`; false when the
    /// limit passed first. One caller at a time, never on Swift's cooperative pool.
    func waitWhileJoining(atMost limit: Duration) -> Bool {
        let joining = state.withLock { state -> Bool in
            state.waiting = state.joining
            return state.joining
        }
        guard joining else { return true }
        if joinEnded.wait(timeout: .now() + .milliseconds(Int(limit.milliseconds))) == .success { return true }
        // A signal sent since the timeout is taken now, so that the next wait does not end early.
        let signalled = state.withLock { state -> Bool in
            defer { state.waiting = false }
            return !state.waiting
        }
        if signalled { joinEnded.wait() }
        return false
    }
}
