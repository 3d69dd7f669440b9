import Synchronization

/// The cluster topology of a pool: discovered lazily, updated on MOVED.
final class ClusterDirectory: Sendable {
    private struct State {
        var topology: ClusterTopology?
        /// A MOVED was applied locally; reload the full map before the next batch.
        var isStale = false
    }

    private let seeds: [RedisEndpoint]
    private let nodes: NodeRegistry
    private let state = Mutex(State())

    init(seeds: [RedisEndpoint], nodes: NodeRegistry) {
        self.seeds = seeds
        self.nodes = nodes
    }

    /// The current topology, discovering or refreshing it first when needed.
    func topology() async throws(RedisError) -> ClusterTopology {
        let (current, isStale) = state.withLock { ($0.topology, $0.isStale) }
        if let current, !isStale { return current }
        return try await refresh()
    }

    /// Asks the known primaries, then the seeds, for CLUSTER SLOTS; the first
    /// valid answer wins.
    @discardableResult
    func refresh() async throws(RedisError) -> ClusterTopology {
        let known = state.withLock { $0.topology?.primaries ?? [] }
        var candidates = known
        for seed in seeds where !candidates.contains(seed) { candidates.append(seed) }
        var lastError = RedisError(code: .clusterDown, message: "no cluster node answered")
        for candidate in candidates {
            do throws(RedisError) {
                let reply = try await nodes.client(for: candidate).connection.send(["CLUSTER", "SLOTS"])
                if let error = reply.error { throw error }
                let discovered = try ClusterTopology(clusterSlotsReply: reply, reportedBy: candidate)
                state.withLock { $0 = State(topology: discovered) }
                return discovered
            } catch {
                lastError = error
            }
        }
        throw lastError
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
