import InvalidatorRedis
import Synchronization

/// What a processing loop was doing at its last heartbeat, for `/healthz` and the logs.
package enum LoopActivity: UInt8, Sendable, CustomStringConvertible {
    case reading
    case applying
    case storingDeadLetters
    case handingOver
    /// The capped dead-letter stream is full: the loop waits for `replay` to make
    /// room, retrying (and beating) meanwhile. No stall: a restart would not help.
    case waitingForDeadLetterRoom
    /// The source's delayed redeletes are at their bound: the loop waits for them to run.
    case waitingForRedeletes
    /// The source's pattern stage is at a pool's `max_pending_patterns`: the loop waits
    /// for it to finish some, beating while the stage makes progress.
    case waitingForPatterns

    package var description: String {
        switch self {
        case .reading: "reading events"
        case .applying: "applying cache operations"
        case .storingDeadLetters: "storing dead letters"
        case .handingOver: "handing over revoked partitions"
        case .waitingForDeadLetterRoom: "waiting: dead-letter store full"
        case .waitingForRedeletes: "waiting: too many delayed redeletes pending"
        case .waitingForPatterns: "waiting: too many pattern operations pending"
        }
    }

    /// Whether beats of this activity carry figures (``Heartbeat/beat(_:detail:)``).
    var hasDetail: Bool {
        switch self {
        case .waitingForDeadLetterRoom, .waitingForRedeletes, .waitingForPatterns: true
        case .reading, .applying, .storingDeadLetters, .handingOver: false
        }
    }
}

/// The heartbeat of one processing loop. The loop beats each time it goes round,
/// idle rounds included (its waits for input are bounded), and work done on its
/// behalf beats too: applying a batch, each page of a pattern or tag scan, each
/// attempt to store its dead letters.
package final class Heartbeat: Sendable {
    package let name: String
    /// Milliseconds since `origin` of the last beat, shifted left 8 bits, with the
    /// activity in the low byte: one word, so a reader never pairs one beat's time
    /// with another's activity (the source's loop and its batch task both beat).
    private let state: Atomic<Int64>
    /// Figures of the last beat that had some (such as the dead-letter stream's
    /// count and cap), shown while its activity lasts. Kept apart from `state`:
    /// only a few activities have any, and those beat at most a few times a second.
    private let detail = Mutex<String?>(nil)
    private static let origin = ContinuousClock.now

    init(name: String) {
        self.name = name
        state = Atomic(Self.pack(.reading))
    }

    package func beat(_ activity: LoopActivity) {
        state.store(Self.pack(activity), ordering: .relaxed)
    }

    /// A beat whose activity comes with figures worth showing on `/healthz`.
    package func beat(_ activity: LoopActivity, detail: String) {
        self.detail.withLock { $0 = detail }
        beat(activity)
    }

    /// Time since the last beat, what the loop was doing then, and the figures
    /// that came with that activity, if any.
    var lastBeat: (age: Duration, activity: LoopActivity, detail: String?) {
        let word = state.load(ordering: .relaxed)
        // Only `pack` writes the low byte, always from a LoopActivity.
        let activity = LoopActivity(rawValue: UInt8(word & 0xFF)) ?? .reading
        let detail = activity.hasDetail ? self.detail.withLock { $0 } : nil
        return (.milliseconds(Self.milliseconds() - word >> 8), activity, detail)
    }

    private static func milliseconds() -> Int64 {
        (ContinuousClock.now - origin).milliseconds
    }

    private static func pack(_ activity: LoopActivity) -> Int64 {
        milliseconds() << 8 | Int64(activity.rawValue)
    }
}

/// The heartbeats of the running processing loops, behind `/healthz`: a loop is
/// stalled when it has not beaten for `stallTimeout`. A loop that keeps making
/// attempts (Redis retries, a dead-letter store that is down) is alive; one blocked
/// for good (a hung call, a deadlock, a starved thread pool) is not.
package final class LivenessMonitor: Sendable {
    package let stallTimeout: Duration
    private let running = Mutex<[ObjectIdentifier: Heartbeat]>([:])

    /// - Parameter stallTimeout: how long a loop may go without a heartbeat; see
    ///   ``defaultStallTimeout(pools:)`` for the worker's.
    package init(stallTimeout: Duration = .seconds(60)) {
        self.stallTimeout = stallTimeout
    }

    /// 60 s, or 30 s more than the longest one Redis call may take with its pool's
    /// retries when that is longer: every attempt timing out at connect and command
    /// timeout, every backoff at its ceiling (68.35 s with the default settings).
    /// Between heartbeats a loop waits on about one such call (a node that keeps
    /// failing has its circuit opened, and the calls after fail at once); the 60 s
    /// floor covers the Kafka dead-letter producer's 30 s flush.
    package static func defaultStallTimeout(pools: [RedisPoolConfiguration]) -> Duration {
        let longestCall = pools.map { pool in
            let retry = pool.retry
            let backoffs = (1..<retry.attempts).reduce(Duration.zero) { $0 + retry.longestBackoff(afterAttempt: $1) }
            return (pool.connectTimeout + pool.commandTimeout) * retry.attempts + backoffs
        }.max() ?? .zero
        return max(.seconds(60), longestCall + .seconds(30))
    }

    /// How long a loop waits for input before going round anyway, so that an idle
    /// loop keeps beating: well within the stall timeout.
    var idleWait: Duration { min(.seconds(1), stallTimeout / 4) }

    /// Runs `loop` with a heartbeat registered under `name` (unique among running
    /// loops) while it runs: a loop that has ended is not stalled.
    func monitor<T>(_ name: String, _ loop: (Heartbeat) async throws -> T) async rethrows -> T {
        let heartbeat = Heartbeat(name: name)
        let key = ObjectIdentifier(heartbeat)
        running.withLock { $0[key] = heartbeat }
        defer { _ = running.withLock { $0.removeValue(forKey: key) } }
        return try await loop(heartbeat)
    }

    /// A running loop as `/healthz` shows it.
    package struct LoopStatus: Sendable, CustomStringConvertible {
        package var loop: String
        package var sinceLastBeat: Duration
        package var activity: LoopActivity
        /// Figures that came with the activity, e.g. `120000 records, cap 100000`.
        package var detail: String?
        /// No heartbeat for longer than the stall timeout.
        package var isStalled: Bool

        package var description: String {
            let tenths = sinceLastBeat.milliseconds / 100
            let age = "\(tenths / 10).\(tenths % 10)s"
            let doing = detail.map { "\(activity) (\($0))" } ?? "\(activity)"
            return isStalled ? "\(loop): no heartbeat for \(age) (last: \(doing))" : "\(loop): last heartbeat \(age) ago (\(doing))"
        }
    }

    /// The running loops, by name.
    package var loops: [LoopStatus] {
        running.withLock { Array($0.values) }.map { heartbeat in
            let (age, activity, detail) = heartbeat.lastBeat
            return LoopStatus(
                loop: heartbeat.name, sinceLastBeat: age, activity: activity, detail: detail, isStalled: age > stallTimeout)
        }.sorted { $0.loop < $1.loop }
    }
}
