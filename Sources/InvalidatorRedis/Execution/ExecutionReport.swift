import InvalidatorCore

/// Which operations may share an UNLINK: deletes of different groups never do, so the
/// keys removed are known per group (the worker groups by rule). Called once per delete.
package typealias RemovalGroup = @Sendable (CacheOperation) -> Int

/// What happened to a batch of operations, node by node.
package struct ExecutionReport: Sendable {
    /// The outcome on one node. An operation that runs on several nodes
    /// (replicated pools, patterns) appears once per node.
    package struct NodeResult: Sendable {
        package var node: RedisEndpoint
        package var succeeded: [CacheOperation]
        /// Keys each succeeded operation removed on this node, at the same index as in
        /// `succeeded`: the keys the node's pattern walk unlinked for a pattern (a key that
        /// several patterns match counts for the first of the batch), the members
        /// unlinked for a tag, 0 for expires, bumps and precompute jobs. Deletes share
        /// multi-key UNLINKs, whose reply counts the keys that existed but not which: a
        /// delete's 1 or 0 is exact in sum over its ``RemovalGroup`` (each delete its own
        /// group makes it exact per key), not per key.
        package var removedKeys: [Int]
        package var failed: [OperationFailure]
        /// The SCAN walk that applied the patterns routed here; nil when none were.
        package var patternWalk: PatternWalk?

        /// Each succeeded operation with the keys it removed here.
        package var removals: Zip2Sequence<[CacheOperation], [Int]> { zip(succeeded, removedKeys) }
    }

    /// One SCAN cursor walk over a node's keyspace that applied all the patterns routed
    /// to the node in one call, however many (each key tested against all of them).
    package struct PatternWalk: Sendable, Equatable {
        /// Keys SCAN returned (after the server-side `MATCH` on the patterns' common
        /// literal prefix, if they share one); a key SCAN returned twice counts twice.
        package var keysScanned: Int
        /// From the first SCAN to the last step (or the failure that ended the walk).
        package var duration: Duration

        package init(keysScanned: Int, duration: Duration) {
            self.keysScanned = keysScanned
            self.duration = duration
        }
    }

    /// An operation that could not be applied on one node.
    package struct OperationFailure: Sendable {
        package var operation: CacheOperation
        package var node: RedisEndpoint
        /// The last error seen.
        package var error: RedisError
        /// Attempts made on this node (0 when the circuit was already open).
        package var attempts: Int
        /// Keys a pattern or tag removed here before it failed.
        package var removedKeys = 0
    }

    package var pool: String
    /// Sorted by node.
    package var nodes: [NodeResult]
    /// Precompute jobs not sent because an identical one was sent within the
    /// deduplication window.
    package var deduplicated: [CacheOperation]

    package var failures: [OperationFailure] { nodes.flatMap(\.failed) }
    package var isSuccess: Bool { nodes.allSatisfy(\.failed.isEmpty) }

    /// The result for one node, if any operation ran there.
    package func result(for node: RedisEndpoint) -> NodeResult? {
        nodes.first { $0.node == node }
    }
}

/// Collects per-node outcomes; a node's operation fails if any of its steps failed.
///
/// Hot path: a batch of key operations records one outcome per command, each
/// covering many operations, and each such operation is recorded exactly once per
/// node (the pool drops duplicates, a key sits in one command). Those go straight
/// into per-node lists without hashing the operations. Patterns and tags record
/// one outcome per step and are deduplicated with a set.
struct ReportBuilder {
    private var singleStep: [RedisEndpoint: Outcomes] = [:]
    private var multiStepOrder: [NodeOperation] = []
    private var multiStepSeen: Set<NodeOperation> = []
    private var multiStepFailures: [NodeOperation: ExecutionReport.OperationFailure] = [:]
    private var multiStepRemoved: [NodeOperation: Int] = [:]
    private var patternWalks: [RedisEndpoint: ExecutionReport.PatternWalk] = [:]

    private struct Outcomes {
        var succeeded: [CacheOperation] = []
        /// Parallel to `succeeded`.
        var removedKeys: [Int] = []
        var failed: [ExecutionReport.OperationFailure] = []

        mutating func append(_ operation: CacheOperation, removed: Int) {
            succeeded.append(operation)
            removedKeys.append(removed)
        }
    }

    private struct NodeOperation: Hashable {
        var node: RedisEndpoint
        var operation: CacheOperation
    }

    /// Records the outcome of one command that carried `operations` on `node`; on
    /// success, `removed` holds the keys each of them removed (none when nil).
    mutating func record(
        _ operations: some Collection<CacheOperation>, on node: RedisEndpoint, error: RedisError?, attempts: Int, removed: [Int]? = nil
    ) {
        if operations.contains(where: \.isMultiStep) {
            for operation in operations {
                if let error {
                    recordFailure(operation, on: node, error: error, attempts: attempts)
                } else {
                    recordSuccess(operation, on: node)
                }
            }
            return
        }
        if let error {
            singleStep[node, default: Outcomes()].failed += operations.map {
                .init(operation: $0, node: node, error: error, attempts: attempts)
            }
        } else {
            singleStep[node, default: Outcomes()].succeeded += operations
            if let removed, removed.count == operations.count {
                singleStep[node, default: Outcomes()].removedKeys += removed
            } else {
                singleStep[node, default: Outcomes()].removedKeys += repeatElement(0, count: operations.count)
            }
        }
    }

    /// Records that `operation` (or, for a pattern or tag, one of its steps) succeeded on
    /// `node` and removed `removed` keys there; a multi-step operation's steps add up.
    mutating func recordSuccess(_ operation: CacheOperation, on node: RedisEndpoint, removed: Int = 0) {
        guard operation.isMultiStep else {
            singleStep[node, default: Outcomes()].append(operation, removed: removed)
            return
        }
        let key = NodeOperation(node: node, operation: operation)
        if multiStepSeen.insert(key).inserted {
            multiStepOrder.append(key)
        }
        if removed > 0 { multiStepRemoved[key, default: 0] += removed }
    }

    /// Adds keys removed by a step of a pattern or tag on `node`, whatever the operation's outcome.
    mutating func addRemoved(_ removed: Int, by operation: CacheOperation, on node: RedisEndpoint) {
        guard removed > 0 else { return }
        multiStepRemoved[NodeOperation(node: node, operation: operation), default: 0] += removed
    }

    mutating func recordFailure(_ operation: CacheOperation, on node: RedisEndpoint, error: RedisError, attempts: Int) {
        let failure = ExecutionReport.OperationFailure(operation: operation, node: node, error: error, attempts: attempts)
        guard operation.isMultiStep else {
            singleStep[node, default: Outcomes()].failed.append(failure)
            return
        }
        recordSuccess(operation, on: node)
        let key = NodeOperation(node: node, operation: operation)
        if multiStepFailures[key] == nil {
            multiStepFailures[key] = failure
        }
    }

    /// Records a pattern walk on `node`; a second walk there (after a reroute) adds up.
    mutating func recordWalk(_ walk: ExecutionReport.PatternWalk, on node: RedisEndpoint) {
        patternWalks[node] = Self.adding(patternWalks[node], walk)
    }

    private static func adding(_ first: ExecutionReport.PatternWalk?, _ second: ExecutionReport.PatternWalk) -> ExecutionReport.PatternWalk {
        guard let first else { return second }
        return .init(keysScanned: first.keysScanned + second.keysScanned, duration: first.duration + second.duration)
    }

    /// Every failure recorded so far.
    var failures: [ExecutionReport.OperationFailure] {
        singleStep.values.flatMap(\.failed) + multiStepOrder.compactMap { multiStepFailures[$0] }
    }

    /// Forgets the failures of these operations on these nodes: they are being run
    /// elsewhere, and that outcome is what counts.
    mutating func removeFailures(_ removed: [ExecutionReport.OperationFailure]) {
        var byNode: [RedisEndpoint: Set<CacheOperation>] = [:]
        for failure in removed { byNode[failure.node, default: []].insert(failure.operation) }
        for (node, operations) in byNode {
            singleStep[node]?.failed.removeAll { operations.contains($0.operation) }
        }
        let multiStep = Set(removed.map { NodeOperation(node: $0.node, operation: $0.operation) })
        multiStepOrder.removeAll { multiStep.contains($0) }
        multiStepSeen.subtract(multiStep)
        for key in multiStep { multiStepFailures[key] = nil }
    }

    /// Merges the outcomes of other nodes or of a later stage (never the same node and operation twice).
    mutating func merge(_ other: ReportBuilder) {
        for (node, outcomes) in other.singleStep {
            singleStep[node, default: Outcomes()].succeeded += outcomes.succeeded
            singleStep[node, default: Outcomes()].removedKeys += outcomes.removedKeys
            singleStep[node, default: Outcomes()].failed += outcomes.failed
        }
        multiStepOrder += other.multiStepOrder
        multiStepSeen.formUnion(other.multiStepSeen)
        multiStepFailures.merge(other.multiStepFailures) { first, _ in first }
        multiStepRemoved.merge(other.multiStepRemoved, uniquingKeysWith: +)
        for (node, walk) in other.patternWalks { recordWalk(walk, on: node) }
    }

    func build(pool: String, deduplicated: [CacheOperation]) -> ExecutionReport {
        var byNode = singleStep
        for key in multiStepOrder {
            if var failure = multiStepFailures[key] {
                failure.removedKeys = multiStepRemoved[key] ?? 0
                byNode[key.node, default: Outcomes()].failed.append(failure)
            } else {
                byNode[key.node, default: Outcomes()].append(key.operation, removed: multiStepRemoved[key] ?? 0)
            }
        }
        let results = byNode.map {
            ExecutionReport.NodeResult(
                node: $0.key, succeeded: $0.value.succeeded, removedKeys: $0.value.removedKeys, failed: $0.value.failed,
                patternWalk: patternWalks[$0.key])
        }
        return ExecutionReport(pool: pool, nodes: results.sorted { $0.node < $1.node }, deduplicated: deduplicated)
    }
}

extension CacheOperation {
    /// Patterns and tags take several commands (scans, unlinks, a snapshot); every
    /// other operation is one command.
    var isMultiStep: Bool {
        switch self {
        case .deletePattern, .purgeTag: true
        case .delete, .expire, .bump, .precompute, .publish: false
        }
    }
}
