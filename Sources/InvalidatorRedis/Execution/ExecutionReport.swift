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
struct ReportBuilder {
    private var order: [NodeOperation] = []
    private var seen: Set<NodeOperation> = []
    private var failures: [NodeOperation: ExecutionReport.OperationFailure] = [:]

    private struct NodeOperation: Hashable {
        var node: RedisEndpoint
        var operation: CacheOperation
    }

    mutating func recordSuccess(_ operation: CacheOperation, on node: RedisEndpoint) {
        register(NodeOperation(node: node, operation: operation))
    }

    /// The first failure of an operation on a node is kept; it fails even if other steps succeed.
    mutating func recordFailure(_ operation: CacheOperation, on node: RedisEndpoint, error: RedisError, attempts: Int) {
        let key = NodeOperation(node: node, operation: operation)
        register(key)
        if failures[key] == nil {
            failures[key] = .init(operation: operation, node: node, error: error, attempts: attempts)
        }
    }

    private mutating func register(_ key: NodeOperation) {
        if seen.insert(key).inserted { order.append(key) }
    }

    mutating func merge(_ other: ReportBuilder) {
        for key in other.order where seen.insert(key).inserted { order.append(key) }
        failures.merge(other.failures) { first, _ in first }
    }

    func build(pool: String, deduplicated: [CacheOperation]) -> ExecutionReport {
        var byNode: [RedisEndpoint: ExecutionReport.NodeResult] = [:]
        for key in order {
            var result = byNode[key.node] ?? .init(node: key.node, succeeded: [], failed: [])
            if let failure = failures[key] {
                result.failed.append(failure)
            } else {
                result.succeeded.append(key.operation)
            }
            byNode[key.node] = result
        }
        return ExecutionReport(pool: pool, nodes: byNode.values.sorted { $0.node < $1.node }, deduplicated: deduplicated)
    }
}
