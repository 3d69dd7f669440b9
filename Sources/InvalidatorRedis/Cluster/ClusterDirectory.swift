import Synchronization

/// The cluster topology of a pool: discovered lazily, and refreshed
/// - before the next batch after a MOVED (the slot is pointed at its new owner at once);
/// - after a failure a new topology may cure (``RedisError/mayBeCuredByTopologyRefresh``):
///   a dead primary never sends MOVED, its replica's promotion is only seen by asking;
/// - when it is older than `refreshInterval`, so a reshard to a new primary is noticed
///   even when no key operation happens to get a MOVED (pattern rules scan every primary).
///
/// Refreshes are spaced at least `minimumRefreshSpacing` apart, so a failing node
/// with many concurrent callers costs one CLUSTER SLOTS, not one per caller.
final class ClusterDirectory: Sendable {
    private struct State {
        var topology: ClusterTopology?
        /// The map is known to be out of date: reload it before the next batch.
        var isStale = false
        var lastRefreshStarted: ContinuousClock.Instant?
        var lastRefreshed: ContinuousClock.Instant?
    }

    private let seeds: [RedisEndpoint]
    private let nodes: NodeRegistry
    private let refreshInterval: Duration
    private let minimumRefreshSpacing: Duration
    private let state = Mutex(State())

    init(
        seeds: [RedisEndpoint], nodes: NodeRegistry, refreshInterval: Duration,
        minimumRefreshSpacing: Duration = .milliseconds(250)
    ) {
        self.seeds = seeds
        self.nodes = nodes
        self.refreshInterval = refreshInterval
        self.minimumRefreshSpacing = minimumRefreshSpacing
    }

    /// The current topology, discovering it first, or refreshing it when stale or
    /// old. When a refresh finds no node answering, the known map is used: it is
    /// the best guess, and the failures it causes are retried and dead-lettered.
    func topology() async throws(RedisError) -> ClusterTopology {
        let now = ContinuousClock.now
        let (current, isDue) = state.withLock { state in
            (state.topology, state.isStale || state.lastRefreshed.map { now - $0 >= refreshInterval } ?? true)
        }
        guard let current else { return try await refresh() }
        guard isDue else { return current }
        return (try? await refresh()) ?? current
    }

    /// Reloads the map now, unless another refresh started within the minimum
    /// spacing (then its result, or the current map, is returned).
    ///
    /// Asks the known primaries that are not failing, then the seeds, then the
    /// failing primaries, for CLUSTER SLOTS; the first valid answer wins.
    @discardableResult
    func refresh() async throws(RedisError) -> ClusterTopology {
        let now = ContinuousClock.now
        let (known, recent) = state.withLock { state -> ([RedisEndpoint], ClusterTopology?) in
            if let started = state.lastRefreshStarted, now - started < minimumRefreshSpacing, let topology = state.topology {
                return ([], topology)
            }
            state.lastRefreshStarted = now
            return (state.topology?.primaries ?? [], nil)
        }
        if let recent { return recent }

        let (failing, healthy) = known.partitioned { nodes.client(for: $0).breaker.isOpen }
        var candidates = healthy
        for seed in seeds where !candidates.contains(seed) && !failing.contains(seed) { candidates.append(seed) }
        candidates += failing
        var lastError = RedisError(code: .clusterDown, message: "no cluster node answered")
        for candidate in candidates {
            do throws(RedisError) {
                let reply = try await nodes.client(for: candidate).connection.send(["CLUSTER", "SLOTS"])
                if let error = reply.error { throw error }
                let discovered = try ClusterTopology(clusterSlotsReply: reply, reportedBy: candidate)
                state.withLock { state in
                    state.topology = discovered
                    state.isStale = false
                    state.lastRefreshed = ContinuousClock.now
                }
                return discovered
            } catch {
                lastError = error
            }
        }
        throw lastError
    }

    /// Marks the map out of date: the next ``topology()`` reloads it.
    func markStale() {
        state.withLock { $0.isStale = true }
    }

    /// Points the slot at its new owner at once, and reloads everything later
    /// (or now, when the owner is a node we do not know yet).
    func noteMoved(_ redirection: Redirection) async {
        let applied = state.withLock { state in
            state.isStale = true
            return state.topology?.assign(slot: redirection.slot, to: redirection.target) ?? false
        }
        if !applied {
            _ = try? await refresh()
        }
    }
}

extension Array {
    /// The elements that satisfy `predicate`, and the others, each in order.
    fileprivate func partitioned(by predicate: (Element) -> Bool) -> (matching: [Element], others: [Element]) {
        var matching: [Element] = []
        var others: [Element] = []
        for element in self {
            if predicate(element) { matching.append(element) } else { others.append(element) }
        }
        return (matching, others)
    }
}
