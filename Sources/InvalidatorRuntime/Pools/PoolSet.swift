import InvalidatorCore
import InvalidatorRedis
import Logging

/// Every configured pool, built once and shared by all sources.
package final class PoolSet: Sendable {
    /// In config order.
    package let pools: [RedisPool]
    private let poolsByName: [String: RedisPool]
    /// `max_pending_patterns` per pool name.
    let maxPendingPatterns: [String: Int]

    /// - Parameter configuration: as `ConfigurationLoader` returns it: valid, so
    ///   building the pools cannot fail.
    package init(configuration: Configuration, logger: Logger) {
        let pools = configuration.pools.map {
            RedisPool(configuration: RedisPoolConfiguration($0, retry: configuration.retry), logger: logger)
        }
        self.pools = pools
        self.poolsByName = Dictionary(pools.map { ($0.configuration.name, $0) }, uniquingKeysWith: { first, _ in first })
        self.maxPendingPatterns = Dictionary(
            configuration.pools.map { ($0.name, $0.maxPendingPatterns) }, uniquingKeysWith: { first, _ in first })
    }

    package func pool(named name: String) -> RedisPool? {
        poolsByName[name]
    }

    /// A pool the configuration itself names (a source's, the dead letters'), which
    /// `ConfigurationLoader` has checked is defined.
    func configuredPool(_ name: String) -> RedisPool {
        guard let pool = poolsByName[name] else {
            preconditionFailure("pool '\(name)' is not defined; ConfigurationLoader refuses such a config")
        }
        return pool
    }

    /// Runs each pool's operations, pools concurrently; reports in the order given.
    /// The operations of one pool must be distinct (`BatchExecutor` coalesces them).
    package func execute(
        _ work: [(pool: String, operations: [CacheOperation], removalGroup: RemovalGroup?)]
    ) async -> [ExecutionReport] {
        await withTaskGroup(of: (Int, ExecutionReport).self) { group in
            for (index, item) in work.enumerated() {
                guard let pool = poolsByName[item.pool] else { continue }
                group.addTask { (index, await pool.execute(item.operations, distinct: true, removalGroup: item.removalGroup)) }
            }
            var reports: [(Int, ExecutionReport)] = []
            for await report in group { reports.append(report) }
            return reports.sorted { $0.0 < $1.0 }.map(\.1)
        }
    }

    /// Nodes that do not answer PING, per pool; empty when every pool answers.
    package func unreachableNodes() async -> [String: [String]] {
        var unreachable: [String: [String]] = [:]
        for pool in pools {
            let down = await pool.ping().filter { $0.value != nil }.map(\.key.description).sorted()
            if !down.isEmpty { unreachable[pool.configuration.name] = down }
        }
        return unreachable
    }

    package func close() async {
        for pool in pools { await pool.close() }
    }
}
