import InvalidatorRedis
import Logging
import ServiceLifecycle
import Synchronization

/// What `/readyz` answers: ready once every source is subscribed and every node
/// of every pool answered the last PING.
package struct Readiness: Sendable, Equatable {
    /// Why the worker is not ready, one short line each; empty when ready.
    package var problems: [String]
    package var isReady: Bool { problems.isEmpty }
}

/// PINGs every node of every pool on a timer, for `invalidator_node_up` and for
/// readiness, so a probe never waits on a slow node. Each round also logs loops
/// that stalled (before a liveness probe restarts the worker) or recovered.
package final class HealthMonitor: Service, Sendable {
    private let pools: PoolSet
    private let sources: @Sendable () -> [(name: String, subscribed: Bool)]
    private let liveness: LivenessMonitor
    private let interval: Duration
    private let metrics: WorkerMetrics
    private let logger: Logger
    /// Unreachable nodes per pool after the last round; nil before the first one.
    private let unreachable = Mutex<[String: [String]]?>(nil)
    /// Loops stalled at the last round.
    private let stalledLoops = Mutex<Set<String>>([])

    init(
        pools: PoolSet, sources: @escaping @Sendable () -> [(name: String, subscribed: Bool)], liveness: LivenessMonitor,
        interval: Duration, metrics: WorkerMetrics, logger: Logger
    ) {
        self.pools = pools
        self.sources = sources
        self.liveness = liveness
        self.interval = interval
        self.metrics = metrics
        self.logger = logger
    }

    package var readiness: Readiness {
        var problems = sources().filter { !$0.subscribed }.map { "source \($0.name) is not subscribed" }
        switch unreachable.withLock({ $0 }) {
        case nil:
            problems.append("pools not checked yet")
        case let down?:
            for pool in down.keys.sorted() {
                problems.append("pool \(pool) does not answer PING on \(down[pool]!.joined(separator: ", "))")
            }
        }
        return Readiness(problems: problems)
    }

    /// One round of PINGs; updates `invalidator_node_up` and readiness.
    package func check() async {
        logStallChanges()
        var down: [String: [String]] = [:]
        for pool in pools.pools {
            let name = pool.configuration.name
            let results = await pool.ping(unlessAnsweredWithin: interval)
            for (node, error) in results.sorted(by: { $0.key < $1.key }) {
                metrics.nodeUp(pool: name, node: node.description, up: error == nil)
                if error != nil { down[name, default: []].append(node.description) }
            }
        }
        let previous = unreachable.withLock { state in
            defer { state = down }
            return state
        }
        if let previous, previous != down {
            if down.isEmpty {
                logger.info("every pool answers PING again")
            } else {
                logger.warning("redis nodes do not answer PING", metadata: [
                    "nodes": "\(down.keys.sorted().map { "\($0): \(down[$0]!.joined(separator: ","))" })",
                ])
            }
        }
    }

    private func logStallChanges() {
        let stalls = liveness.loops.filter(\.isStalled)
        let names = Set(stalls.map(\.loop))
        let previous = stalledLoops.withLock { state in
            defer { state = names }
            return state
        }
        for stall in stalls where !previous.contains(stall.loop) {
            logger.error("processing loop stalled; /healthz answers 503", metadata: [
                "loop": "\(stall.loop)", "activity": "\(stall.activity)", "since_last_heartbeat": "\(stall.sinceLastBeat)",
            ])
        }
        for loop in previous.subtracting(names).sorted() {
            logger.info("processing loop no longer stalled", metadata: ["loop": "\(loop)"])
        }
    }

    package func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await self.check()
                // Timer: the PING period behind /readyz and invalidator_node_up.
                try? await Task.sleep(for: self.interval)
            }
        }
    }
}

/// A source that can say whether it is subscribed, for readiness.
protocol SubscribableSource: Sendable {
    var isSubscribed: Bool { get }
}

extension KafkaEventSource: SubscribableSource {}
extension RedisPubSubSource: SubscribableSource {}
extension RedisStreamSource: SubscribableSource {}
