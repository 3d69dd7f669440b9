/// Batch sizes and fairness limits for executing operations.
package struct ExecutionTuning: Sendable, Hashable {
    /// Keys per UNLINK command of the keys a pattern or tag purge finds (a delete is its own UNLINK).
    package var unlinkBatchSize: Int
    /// The COUNT hint of each SCAN / SSCAN call.
    package var scanCount: Int
    /// SCAN calls a pattern walk (all of a node's patterns at once) or a tag purge may
    /// make before other callers sharing the connection get a turn.
    package var scanIterationsPerRound: Int
    /// Identical precompute jobs within this window are enqueued once.
    package var precomputeDeduplicationWindow: Duration
    /// MOVED / ASK hops followed for one command before giving up.
    package var maxRedirections: Int
    /// How old a cluster's slot map may get before the next batch reloads it, so a
    /// new primary (a reshard, a promotion nobody was redirected to) gets its patterns.
    package var topologyRefreshInterval: Duration

    package init(
        unlinkBatchSize: Int = 512,
        scanCount: Int = 1000,
        scanIterationsPerRound: Int = 8,
        precomputeDeduplicationWindow: Duration = .seconds(1),
        maxRedirections: Int = 5,
        topologyRefreshInterval: Duration = .seconds(5)
    ) {
        self.unlinkBatchSize = max(1, unlinkBatchSize)
        self.scanCount = max(1, scanCount)
        self.scanIterationsPerRound = max(1, scanIterationsPerRound)
        self.precomputeDeduplicationWindow = precomputeDeduplicationWindow
        self.maxRedirections = max(0, maxRedirections)
        self.topologyRefreshInterval = topologyRefreshInterval
    }
}
