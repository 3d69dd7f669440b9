import InvalidatorCore
import InvalidatorRedis
import Synchronization

/// What one source has handed to its ``PatternStage`` and not yet finished, per pool:
/// the figures behind the ordering rule and the bound.
///
/// ## Ordering rule
///
/// An event whose plan has a pattern operation is applied by the stage, in the
/// background; later events may be applied before it ("overtake") only where the
/// outcome cannot change:
///
/// - Deletes, pattern deletes, tag purges, `expire` and precompute jobs commute on
///   the keys they touch: whichever runs first, a key either of them removes ends
///   absent (`expire` never lengthens a TTL and leaves a missing key missing). Where
///   the orders differ at all, overtaking removes more (a tag purge that ran before
///   a pattern removed its set; a precomputed value a later walk removes again), so
///   an overtaking order never leaves a stale value, at worst one more cache miss.
/// - `bump` does not commute with a removal of its key: INCR then delete leaves the
///   key absent, delete then INCR leaves it at 1 (a version counter that restarts,
///   reaching cache entries of an old version).
///
/// So an event goes to the stage, behind everything there (FIFO), when it has a
/// pattern operation, or when a pool it has operations on has events pending in the
/// stage and either the event bumps on that pool or a pending event does. Every other
/// event is applied at once. Pools are separate keyspaces: pending work on one never
/// holds back an event of another.
struct PendingPatternWork: Sendable {
    struct Pool: Sendable {
        /// Events with operations on the pool.
        var events = 0
        /// Of those, events that bump on the pool.
        var bumpingEvents = 0
        /// Pattern operations (each runs on every node of the pool).
        var patterns = 0
    }

    private(set) var pools: [String: Pool] = [:]

    /// What an event adds on each pool it has operations on.
    struct Footprint: Sendable {
        var pools: [(name: String, patterns: Int, bumps: Bool)]

        init(_ plan: Plan) {
            pools = plan.pools.filter { !$0.operations.isEmpty }.map { pool in
                var patterns = 0
                var bumps = false
                for operation in pool.operations {
                    switch operation.operation {
                    case .deletePattern: patterns += 1
                    case .bump: bumps = true
                    case .delete, .purgeTag, .expire, .precompute, .publish: break
                    }
                }
                return (pool.pool, patterns, bumps)
            }
        }

        var hasPatterns: Bool { pools.contains { $0.patterns > 0 } }
        var bumps: Bool { pools.contains { $0.bumps } }
    }

    /// Whether an event must go to the stage rather than be applied now (see the ordering rule).
    func mustQueue(_ footprint: Footprint) -> Bool {
        footprint.pools.contains { pool in
            if pool.patterns > 0 { return true }
            guard let pending = pools[pool.name], pending.events > 0 else { return false }
            return pool.bumps || pending.bumpingEvents > 0
        }
    }

    /// Whether the event fits under each pool's bound. An event larger than a bound
    /// fits when nothing is pending on that pool, so no event waits forever.
    func hasRoom(for footprint: Footprint, limits: [String: Int]) -> Bool {
        footprint.pools.allSatisfy { pool in
            let pending = pools[pool.name]?.patterns ?? 0
            return pool.patterns == 0 || pending == 0
                || pending + pool.patterns <= limits[pool.name, default: PoolConfiguration.defaultMaxPendingPatterns]
        }
    }

    mutating func add(_ footprint: Footprint) {
        change(footprint, by: 1)
    }

    mutating func remove(_ footprint: Footprint) {
        change(footprint, by: -1)
    }

    private mutating func change(_ footprint: Footprint, by sign: Int) {
        for pool in footprint.pools {
            var pending = pools[pool.name, default: Pool()]
            pending.events += sign
            pending.bumpingEvents += pool.bumps ? sign : 0
            pending.patterns += sign * pool.patterns
            pools[pool.name] = pending.events == 0 ? nil : pending
        }
    }
}

/// Applies one source's events that have pattern operations (and the events that
/// must stay behind them: see ``PendingPatternWork``) in the background, so a walk
/// over a large keyspace never holds up the events after it. Runs inside the
/// source's task tree (``run(heartbeat:)`` is a child of its driver), like the
/// ``RedeleteScheduler``; an event handed to it is finished (and may be committed)
/// only once the stage applied or dead-lettered it.
///
/// The stage takes every queued event at once and applies them in one
/// ``EventPipeline`` call, so their patterns share each node's walk, then takes the
/// next group. An event that bumps runs in a group of its own: within one call key
/// operations run before patterns, which would put its INCR before the removals of
/// the events queued ahead of it, or the deletes of events behind it before its INCR.
///
/// Pending pattern operations are bounded per pool (`max_pending_patterns`):
/// handing over an event waits while its pools are full, and so does the source's loop.
final class PatternStage: Sendable {
    struct Entry: Sendable {
        var event: IncomingEvent
        var plan: Plan
        var footprint: PendingPatternWork.Footprint
        /// Called once the event is finished (applied, or its failures durably dead-lettered).
        var finished: @Sendable () -> Void
    }

    private struct State: Sendable {
        var pending = PendingPatternWork()
        var queue: [Entry] = []
        /// Entries handed to the pipeline and not finished yet.
        var running = 0
        /// Steps (SCAN pages, unlinked pages) the running group made, so a loop waiting
        /// for room can tell a stage that moves from one that hangs.
        var steps = 0

        var isIdle: Bool { queue.isEmpty && running == 0 }
    }

    private let pipeline: EventPipeline
    private let redeletes: RedeleteScheduler
    private let limits: [String: Int]
    private let state = Guarded(State())
    /// How often a loop waiting for room looks at the stage's progress.
    private static let waitingBeat: Duration = .milliseconds(500)

    /// Set when the source stops: a loop waiting for room stops waiting.
    private let stop: StopSignal

    init(pipeline: EventPipeline, redeletes: RedeleteScheduler, stop: StopSignal) {
        self.pipeline = pipeline
        self.redeletes = redeletes
        self.stop = stop
        self.limits = pipeline.executor.pools.maxPendingPatterns
    }

    /// The pending work now: what the next batch's ordering decisions start from.
    /// Only ``enqueue(_:heartbeat:)`` adds to it, and one source applies one batch at
    /// a time, so between this read and that batch's hand-over it can only shrink.
    var pending: PendingPatternWork { state.read(\.pending) }

    /// Queues an event behind everything pending, first waiting while a pool it has
    /// patterns on is at its bound. While waiting, `heartbeat` beats whenever the
    /// stage made a step since the last look, so a long walk is not a stall but a
    /// stage that hangs is. When the source stops (or the task is cancelled) the event is
    /// queued anyway, so the stop is not held up by a walk: the drain runs it or leaves
    /// it, and it is not committed before it ran.
    func enqueue(_ entry: Entry, heartbeat: Heartbeat?) async {
        var lastSteps = state.read(\.steps)
        while !Task.isCancelled, !stop.isSet, !state.read({ $0.pending.hasRoom(for: entry.footprint, limits: limits) }) {
            await state.wait(
                until: { $0.pending.hasRoom(for: entry.footprint, limits: limits) }, deadline: ContinuousClock.now + Self.waitingBeat)
            let (steps, detail) = state.read { state in (state.steps, describeFullPools(state.pending, for: entry.footprint)) }
            if steps != lastSteps {
                lastSteps = steps
                heartbeat?.beat(.waitingForPatterns, detail: detail)
            }
        }
        state.withLock { state in
            state.pending.add(entry.footprint)
            state.queue.append(entry)
            recordGauge(state.pending, pools: entry.footprint)
        }
    }

    private func describeFullPools(_ pending: PendingPatternWork, for footprint: PendingPatternWork.Footprint) -> String {
        footprint.pools.filter { $0.patterns > 0 }.map { pool in
            "pool \(pool.name): \(pending.pools[pool.name]?.patterns ?? 0) patterns pending, bound \(limits[pool.name, default: PoolConfiguration.defaultMaxPendingPatterns])"
        }.joined(separator: "; ")
    }

    private func recordGauge(_ pending: PendingPatternWork, pools footprint: PendingPatternWork.Footprint) {
        for pool in footprint.pools where pool.patterns > 0 {
            pipeline.metrics.patternsPending(pool: pool.name, count: pending.pools[pool.name]?.patterns ?? 0)
        }
    }

    /// Applies queued events group by group until cancelled. Each SCAN page beats
    /// `heartbeat` (the source loop's), so a loop whose batches wait on a walk is alive.
    func run(heartbeat: Heartbeat?) async {
        while !Task.isCancelled {
            guard await state.wait(until: { !$0.queue.isEmpty }) else { continue }
            let group = state.withLock { state -> [Entry] in
                let count = state.queue.first?.footprint.bumps == true
                    ? 1 : state.queue.firstIndex { $0.footprint.bumps } ?? state.queue.count
                let group = Array(state.queue.prefix(count))
                state.queue.removeFirst(count)
                state.running += group.count
                return group
            }
            await apply(group, heartbeat: heartbeat)
        }
    }

    private func apply(_ group: [Entry], heartbeat: Heartbeat?) async {
        let prepared = EventPipeline.PreparedBatch(
            batch: group.map(\.event), plans: group.map(\.plan), planEventIndexes: Array(group.indices), rejected: [])
        let result = await ExecutionProgress.reporting(to: { [state] in state.withLock { $0.steps &+= 1 } }) {
            await pipeline.applyNow(prepared, heartbeat: heartbeat, redeletes: redeletes) { index in group[index].finished() }
        }
        state.withLock { state in
            for entry in group {
                state.pending.remove(entry.footprint)
                recordGauge(state.pending, pools: entry.footprint)
            }
            state.running -= group.count
        }
        // Not durable (shutdown while the dead-letter store was down): nothing of the group is finished.
        guard result.isDurable else {
            pipeline.metrics.inFlightChanged(by: -group.count)
            return
        }
        for index in group.indices where !result.awaiting.contains(index) {
            group[index].finished()
        }
        pipeline.metrics.inFlightChanged(by: -(group.count - result.awaiting.count))
    }

    /// Waits until every queued event was applied, or until `deadline` (none: however long it takes).
    /// - Returns: true when none is left.
    @discardableResult
    func drain(until deadline: ContinuousClock.Instant?) async -> Bool {
        await state.wait(until: \.isIdle, deadline: deadline)
    }
}
