import InvalidatorCore

/// What happened to a batch of operations, node by node.
public struct ExecutionReport: Sendable {
    /// The outcome on one node. An operation that runs on several nodes
    /// (replicated pools, patterns) appears once per node.
    public struct NodeResult: Sendable {
        public var node: RedisEndpoint
        public var succeeded: [CacheOperation]
        public var failed: [OperationFailure]
    }

    /// An operation that could not be applied on one node.
    public struct OperationFailure: Sendable {
        public var operation: CacheOperation
        public var node: RedisEndpoint
        /// The last error seen.
        public var error: RedisError
        /// Attempts made on this node (0 when the circuit was already open).
        public var attempts: Int
    }

    public var pool: String
    /// Sorted by node.
    public var nodes: [NodeResult]
    /// Precompute jobs not sent because an identical one was sent within the
    /// deduplication window.
    public var deduplicated: [CacheOperation]

    public var failures: [OperationFailure] { nodes.flatMap(\.failed) }
    public var isSuccess: Bool { nodes.allSatisfy(\.failed.isEmpty) }

    /// The result for one node, if any operation ran there.
    public func result(for node: RedisEndpoint) -> NodeResult? {
        nodes.first { $0.node == node }
    }
}

/// Collects per-node outcomes; a node's operation fails if any of its steps failed.
///
/// Hot path: a batch of plain deletes records one success per key, so deletes
/// skip hashing (each is recorded exactly once per node: the pool drops duplicate
/// operations and a key sits in one UNLINK). Patterns and tags record one outcome
/// per step and are deduplicated with a set.
struct ReportBuilder {
    private var order: [NodeOperation] = []
    private var multiStepSeen: Set<NodeOperation> = []
    private var failures: [NodeOperation: ExecutionReport.OperationFailure] = [:]

    private struct NodeOperation: Hashable {
        var node: RedisEndpoint
        var operation: CacheOperation
    }

    mutating func recordSuccess(_ operation: CacheOperation, on node: RedisEndpoint) {
        let key = NodeOperation(node: node, operation: operation)
        if case .delete = operation {
            order.append(key)
        } else if multiStepSeen.insert(key).inserted {
            order.append(key)
        }
    }

    mutating func recordFailure(_ operation: CacheOperation, on node: RedisEndpoint, error: RedisError, attempts: Int) {
        recordSuccess(operation, on: node)
        let key = NodeOperation(node: node, operation: operation)
        if failures[key] == nil {
            failures[key] = .init(operation: operation, node: node, error: error, attempts: attempts)
        }
    }

    /// Merges the outcomes of other nodes or of a later stage (never the same node and operation twice).
    mutating func merge(_ other: ReportBuilder) {
        order += other.order
        multiStepSeen.formUnion(other.multiStepSeen)
        failures.merge(other.failures) { first, _ in first }
    }

    func build(pool: String, deduplicated: [CacheOperation]) -> ExecutionReport {
        var results: [ExecutionReport.NodeResult] = []
        var indexByNode: [RedisEndpoint: Int] = [:]
        var current = -1
        for key in order {
            // Outcomes come in runs of one node: look the node up only when it changes.
            if current < 0 || results[current].node != key.node {
                current = indexByNode[key.node] ?? {
                    results.append(.init(node: key.node, succeeded: [], failed: []))
                    indexByNode[key.node] = results.count - 1
                    return results.count - 1
                }()
            }
            if !failures.isEmpty, let failure = failures[key] {
                results[current].failed.append(failure)
            } else {
                results[current].succeeded.append(key.operation)
            }
        }
        return ExecutionReport(pool: pool, nodes: results.sorted { $0.node < $1.node }, deduplicated: deduplicated)
    }
}
