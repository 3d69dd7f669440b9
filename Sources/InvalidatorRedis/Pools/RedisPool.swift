import InvalidatorCore
import Logging

/// A named set of Redis nodes that executes batches of ``CacheOperation``.
///
/// Routing follows the pool's ``RedisPoolConfiguration/Mode``. Each node has
/// one connection (on its own thread) and one circuit breaker; nodes work
/// concurrently, so a slow or dead node does not hold up the others. Safe to
/// share: concurrent `execute` calls interleave on each node's connection.
package final class RedisPool: Sendable {
    package let configuration: RedisPoolConfiguration
    private let logger: Logger
    private let nodes: NodeRegistry
    private let routing: Routing
    private let deduplicator: PrecomputeDeduplicator
    let runner: CommandRunner

    package init(configuration: RedisPoolConfiguration, logger: Logger) {
        var logger = logger
        logger[metadataKey: "pool"] = "\(configuration.name)"
        self.configuration = configuration
        self.logger = logger
        let nodes = NodeRegistry(
            options: configuration.connectionOptions,
            breakerPolicy: configuration.circuitBreaker,
            logger: logger
        )
        self.nodes = nodes
        var cluster: ClusterDirectory?
        switch configuration.mode {
        case .single: routing = .fixed(.single(configuration.nodes[0]))
        case .replicated: routing = .fixed(.replicated(configuration.nodes))
        case .sharded: routing = .fixed(.sharded(KetamaRing(servers: configuration.nodes, keyHash: configuration.shardingKeyHash)))
        case .cluster:
            let directory = ClusterDirectory(
                seeds: configuration.nodes, nodes: nodes, refreshInterval: configuration.tuning.topologyRefreshInterval)
            cluster = directory
            routing = .cluster(directory)
        }
        self.deduplicator = PrecomputeDeduplicator(window: configuration.tuning.precomputeDeduplicationWindow)
        self.runner = CommandRunner(
            nodes: nodes,
            retry: configuration.retry,
            maxRedirections: configuration.tuning.maxRedirections,
            cluster: cluster,
            logger: logger
        )
    }

    /// Applies `operations` and reports, per node, which succeeded and which
    /// failed (with the error and attempts made). Never throws: every failure is
    /// in the report, attributed to the node it happened on.
    ///
    /// Duplicate operations run once. Invalidations (deletes, expires, bumps,
    /// patterns, tags) run first on all nodes; precompute jobs are enqueued only
    /// afterwards, so a worker never warms an entry before it was invalidated.
    ///
    /// - Parameters:
    ///   - node: run everything on this node of the pool alone instead of where the
    ///     pool routes it; for replaying one node's dead letters, so the other copies
    ///     of a replicated or sharded pool do not get them twice. The members of a tag
    ///     purged there are still deleted on the nodes that own them.
    ///   - distinct: the caller has already coalesced `operations`, so the duplicate
    ///     check (a hash of every operation, a measurable share of a large batch) is skipped.
    ///   - removalGroup: keeps the deletes of different groups out of one UNLINK, so the
    ///     report's removed-key counts are exact per group (see ``RemovalGroup``).
    package func execute(
        _ operations: [CacheOperation], on node: RedisEndpoint? = nil, distinct: Bool = false, removalGroup: RemovalGroup? = nil
    ) async -> ExecutionReport {
        var unique = operations
        if !distinct {
            var seen = Set<CacheOperation>(minimumCapacity: operations.count)
            unique = operations.filter { seen.insert($0).inserted }
        }
        let jobs = unique.compactMap { operation -> PrecomputeJob? in
            if case .precompute(let job) = operation { job } else { nil }
        }
        // Most batches hold no precompute job: no copy of the operations without them.
        let invalidations = jobs.isEmpty ? unique : unique.filter { $0.kind != .precompute }
        let (admittedJobs, duplicateJobs) = deduplicator.admit(jobs)

        var builder = ReportBuilder()
        for stage in [invalidations, admittedJobs.map(CacheOperation.precompute)] where !stage.isEmpty {
            builder.merge(await run(stage, on: node, removalGroup: removalGroup))
        }
        let report = builder.build(pool: configuration.name, deduplicated: duplicateJobs.map(CacheOperation.precompute))
        for node in report.nodes where !node.failed.isEmpty {
            logger.warning("redis operations failed", metadata: [
                "node": "\(node.node)",
                "failed": "\(node.failed.count)",
                "succeeded": "\(node.succeeded.count)",
                "error": "\(node.failed[0].error)",
            ])
        }
        return report
    }

    /// Runs raw commands, pipelined, on the node that owns `routingKey` (the
    /// cluster slot owner, the ketama owner, the single node, or the first node
    /// of a replicated pool), with the pool's retries, circuit breaker and
    /// redirections. For writes that are not cache operations, such as dead letters.
    ///
    /// - Returns: one reply per command; error replies (NOPERM, WRONGTYPE...) are values.
    /// - Throws: ``RedisError`` when the node could not be reached (after retries).
    package func pipeline(_ commands: [[String]], routingKey: String) async throws(RedisError) -> [RedisReply] {
        let node = try await node(for: routingKey)
        let outcomes = await runner.run(commands, on: node)
        if case .cluster(let directory) = routing, outcomes.contains(where: { $0.error?.mayBeCuredByTopologyRefresh == true }) {
            directory.markStale()
        }
        return try outcomes.map { outcome throws(RedisError) in
            switch outcome.result {
            case .success(let reply): return reply
            case .failure(let error) where error.isConnectionFailure || error.code == .circuitOpen: throw error
            case .failure(let error): return .error(error.message)
            }
        }
    }

    /// A new connection, not shared with operations, to the node owning
    /// `routingKey` (chosen as for ``pipeline(_:routingKey:)``), with the pool's
    /// credentials and database. For blocking reads (XREADGROUP BLOCK, SUBSCRIBE)
    /// that would otherwise hold up cache operations; close it when done.
    package func dedicatedConnection(routingKey: String, commandTimeout: Duration? = nil) async throws(RedisError) -> RedisConnection {
        var options = configuration.connectionOptions
        options.commandTimeout = commandTimeout ?? options.commandTimeout
        return RedisConnection(endpoint: try await node(for: routingKey), options: options, logger: logger)
    }

    /// A new connection, not shared with operations, to `node` (one of this pool's),
    /// with the pool's credentials, database and timeouts; close it when done.
    package func dedicatedConnection(to node: RedisEndpoint) -> RedisConnection {
        RedisConnection(endpoint: node, options: configuration.connectionOptions, logger: logger)
    }

    /// The node owning `routingKey`, as used for raw commands.
    package func node(for routingKey: String) async throws(RedisError) -> RedisEndpoint {
        let placement = try await placement()
        guard let node = placement.nodes(for: .delete(key: routingKey)).first else {
            throw RedisError(code: .clusterDown, message: "no node serves the slot of \(routingKey)")
        }
        return node
    }

    /// Every node a delete of `key` goes to: each node of a replicated pool, the
    /// owner otherwise. For checking from outside the pipeline that a key is gone.
    package func nodes(forKey key: String) async throws(RedisError) -> [RedisEndpoint] {
        try await placement().nodes(for: .delete(key: key))
    }

    /// PINGs every node, once each, through its circuit breaker: a node whose
    /// circuit is open is not ready, and the PING is its probe once the cool-down
    /// passed (so an idle worker's circuits close too). Only operations open a
    /// circuit: a failed PING on a closed one does not count. Nil for a node means
    /// it answered. For readiness checks.
    ///
    /// - Parameter freshness: a node that answered anything within this long counts
    ///   as answering without a PING, so a busy worker adds no health traffic and an
    ///   idle one little (hosted Redis plans count every command).
    package func ping(unlessAnsweredWithin freshness: Duration = .zero) async -> [RedisEndpoint: RedisError?] {
        let endpoints: [RedisEndpoint]
        do {
            endpoints = try await placement().allNodes
        } catch {
            return Dictionary(uniqueKeysWithValues: configuration.nodes.map { ($0, error) })
        }
        return await withTaskGroup(of: (RedisEndpoint, RedisError?).self) { group in
            for endpoint in endpoints {
                group.addTask { [nodes] in
                    let client = nodes.client(for: endpoint)
                    if client.breaker.answered(within: freshness) { return (endpoint, nil) }
                    let isProbe = client.breaker.isOpen
                    guard client.breaker.permitsAttempt() else {
                        return (endpoint, RedisError(code: .circuitOpen, message: "\(endpoint) circuit open"))
                    }
                    do throws(RedisError) {
                        let reply = try await client.connection.send(["PING"])
                        client.breaker.recordSuccess()
                        return (endpoint, reply.error)
                    } catch {
                        if isProbe { client.breaker.recordFailure() }
                        return (endpoint, error)
                    }
                }
            }
            var results: [RedisEndpoint: RedisError?] = [:]
            for await (endpoint, error) in group { results[endpoint] = error }
            return results
        }
    }

    /// Closes every connection. Later calls reconnect.
    package func close() async {
        await nodes.closeAll()
    }

    // MARK: Stages

    private func run(_ operations: [CacheOperation], on node: RedisEndpoint?, removalGroup: RemovalGroup?) async -> ReportBuilder {
        var report = ReportBuilder()
        let placement: Placement
        do {
            let routing = try await self.placement()
            placement = node.map { .pinned($0, routing: routing) } ?? routing
        } catch {
            // Without a topology there is no owner to blame; the first seed stands for the cluster.
            for operation in operations {
                report.recordFailure(operation, on: configuration.nodes[0], error: error, attempts: 1)
            }
            return report
        }

        var assignment = Assignment()
        if placement.sendsEveryOperationToAllNodes {
            // No routing per operation: a large batch would pay an array and a hash for each.
            for node in placement.allNodes { assignment.operationsByNode[node] = operations }
        } else {
            route(operations, placement: placement, assignment: &assignment, report: &report)
        }
        report.merge(await apply(assignment, placement: placement, removalGroup: removalGroup))
        if node == nil, case .cluster(let topology) = placement, case .cluster(let directory) = routing {
            await reroute(&report, from: topology, directory: directory, removalGroup: removalGroup)
        }
        return report
    }

    /// The operations each node runs.
    private struct Assignment {
        var operationsByNode: [RedisEndpoint: [CacheOperation]] = [:]

        var isEmpty: Bool { operationsByNode.isEmpty }

        mutating func add(_ operation: CacheOperation, to node: RedisEndpoint) {
            operationsByNode[node, default: []].append(operation)
        }
    }

    private func apply(_ assignment: Assignment, placement: Placement, removalGroup: RemovalGroup?) async -> ReportBuilder {
        await withTaskGroup(of: ReportBuilder.self) { group in
            for (node, operations) in assignment.operationsByNode {
                let execution = NodeExecution(
                    node: node, runner: runner, placement: placement, tuning: configuration.tuning, removalGroup: removalGroup)
                group.addTask {
                    var execution = execution
                    await execution.apply(operations)
                    return execution.report
                }
            }
            var report = ReportBuilder()
            for await nodeReport in group { report.merge(nodeReport) }
            return report
        }
    }

    /// Runs again, on their new owners, the operations that failed on a node that
    /// no longer owns their slots: a primary that died and whose replica was
    /// promoted, a former primary answering READONLY or CLUSTERDOWN. A dead
    /// primary never answers MOVED, so only a reloaded slot map shows where its
    /// slots went. Operations whose owner did not change keep their failure.
    private func reroute(
        _ report: inout ReportBuilder, from before: ClusterTopology, directory: ClusterDirectory, removalGroup: RemovalGroup?
    ) async {
        var topology = before
        for _ in 0..<2 {
            let stranded = report.failures.filter { $0.error.mayBeCuredByTopologyRefresh }
            guard !stranded.isEmpty, let refreshed = try? await directory.refresh() else { return }
            var assignment = Assignment()
            var moved: [ExecutionReport.OperationFailure] = []
            for failure in stranded {
                let owners = Self.newOwners(of: failure.operation, failedOn: failure.node, before: topology, after: refreshed)
                guard !owners.isEmpty, owners != [failure.node] else { continue }
                moved.append(failure)
                for owner in owners { assignment.add(failure.operation, to: owner) }
            }
            guard !assignment.isEmpty else { return }
            logger.info("rerouting operations after a cluster topology change", metadata: [
                "operations": "\(moved.count)", "from": "\(Set(moved.map(\.node)).sorted())",
            ])
            report.removeFailures(moved)
            report.merge(await apply(assignment, placement: .cluster(refreshed), removalGroup: removalGroup))
            topology = refreshed
        }
    }

    /// Where an operation that failed on `node` runs under the new map: the new
    /// owner of its key's slot; for a pattern, every new owner of the slots `node` had.
    static func newOwners(
        of operation: CacheOperation, failedOn node: RedisEndpoint, before: ClusterTopology, after: ClusterTopology
    ) -> [RedisEndpoint] {
        if let key = operation.routingKey {
            return after.owner(ofSlot: HashSlot.slot(of: key)).map { [$0] } ?? []
        }
        var owners: [RedisEndpoint] = []
        for slot in before.slots(ownedBy: node) {
            if let owner = after.owner(ofSlot: slot), !owners.contains(owner) { owners.append(owner) }
        }
        return owners
    }

    /// Groups operations by the nodes they run on; an operation whose cluster slot
    /// has no owner is recorded as failed.
    private func route(_ operations: [CacheOperation], placement: Placement, assignment: inout Assignment, report: inout ReportBuilder) {
        for operation in operations {
            let targets = placement.nodes(for: operation)
            if targets.isEmpty {
                let error = RedisError(code: .clusterDown, message: "no node serves the slot of \(operation.routingKey ?? "")")
                report.recordFailure(operation, on: configuration.nodes[0], error: error, attempts: 0)
            }
            for node in targets {
                assignment.add(operation, to: node)
            }
        }
    }

    /// Placement is fixed by configuration, except in a cluster, where it is the
    /// topology known at the start of the batch.
    private enum Routing {
        case fixed(Placement)
        case cluster(ClusterDirectory)
    }

    func placement() async throws(RedisError) -> Placement {
        switch routing {
        case .fixed(let placement): placement
        case .cluster(let directory): .cluster(try await directory.topology())
        }
    }
}
