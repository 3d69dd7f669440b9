import InvalidatorCore
import InvalidatorRedis

/// Operations of one pool that failed on one node for one event: exactly what a
/// dead letter for that node must carry.
package struct NodeFailure: Sendable {
    package var pool: String
    package var node: String
    package var operations: [PlannedOperation]
    package var error: RedisError
    package var attempts: Int

    package init(pool: String, node: String, operations: [PlannedOperation], error: RedisError, attempts: Int) {
        self.pool = pool
        self.node = node
        self.operations = operations
        self.error = error
        self.attempts = attempts
    }
}

/// Executes the plans of a batch of events together: operations are coalesced per
/// pool (a key many events invalidate is deleted once), pools run concurrently,
/// and failures are traced back to the event that asked for them.
package struct BatchExecutor: Sendable {
    package let pools: PoolSet
    /// Counts operations and retries per node.
    package let metrics: WorkerMetrics

    package init(pools: PoolSet, metrics: WorkerMetrics = .disabled) {
        self.pools = pools
        self.metrics = metrics
    }

    /// - Parameter plans: per event, its work per pool.
    /// - Returns: per event index, the node failures that event must dead-letter.
    package func execute(_ plans: [[PoolPlan]]) async -> [Int: [NodeFailure]] {
        var work: [(pool: String, operations: [CacheOperation])] = []
        // Where the owner of an operation asked for it, and its rule's number; plain indexes, so
        // no copy of the operation is retained.
        var owners: [[CacheOperation: Owner]] = []
        // Rules numbered for the removal groups: each rule's deletes get UNLINKs of their own.
        var ruleNumbers: [String: Int] = [:]
        var ruleNames: [String] = []
        var lastRule: (name: String, number: Int)?
        // Per pool, parallel to `work`: the rule of all its operations, when they share one.
        var soleRules: [SoleRule] = []
        var workIndexByPool: [String: Int] = [:]
        // Indexes rather than elements throughout: a plan copied out of its array costs retains.
        var lastPool: (name: String, index: Int)?
        for eventIndex in plans.indices {
            for poolPlanIndex in plans[eventIndex].indices {
                let pool = plans[eventIndex][poolPlanIndex].pool
                // Events of a batch mostly name the same pools: skip the hash when it repeats.
                let index = lastPool.flatMap { $0.name == pool ? $0.index : nil } ?? workIndexByPool[pool] ?? {
                    work.append((pool, []))
                    soleRules.append(.none)
                    // Typically an operation or two per event: sized once, not regrown.
                    owners.append(Dictionary(minimumCapacity: plans.count * 2))
                    work[work.count - 1].operations.reserveCapacity(plans.count * 2)
                    workIndexByPool[pool] = work.count - 1
                    return work.count - 1
                }()
                lastPool = (pool, index)
                for operationIndex in plans[eventIndex][poolPlanIndex].operations.indices {
                    // The first event that asks for an operation owns it; later duplicates ride
                    // along. One hash for the common, new operation; a duplicate puts the owner back.
                    let operation = plans[eventIndex][poolPlanIndex].operations[operationIndex].operation
                    let rule = plans[eventIndex][poolPlanIndex].operations[operationIndex].rule
                    // Consecutive operations mostly come from one rule: skip the hash when it repeats.
                    let ruleNumber = lastRule.flatMap { $0.name == rule ? $0.number : nil } ?? ruleNumbers[rule] ?? {
                        ruleNumbers[rule] = ruleNames.count
                        ruleNames.append(rule)
                        return ruleNames.count - 1
                    }()
                    lastRule = (rule, ruleNumber)
                    soleRules[index].add(ruleNumber)
                    let owner = Owner(event: eventIndex, poolPlan: poolPlanIndex, operation: operationIndex, rule: ruleNumber)
                    if let first = owners[index].updateValue(owner, forKey: operation) {
                        owners[index][operation] = first
                    } else {
                        work[index].operations.append(operation)
                    }
                }
            }
        }
        guard !work.isEmpty else { return [:] }
        let reports = await pools.execute(work.indices.map { index in
            // One rule: its deletes are one removal group, and none needs looking up.
            guard soleRules[index].rule == nil else { return (work[index].pool, work[index].operations, nil) }
            let poolOwners = owners[index]
            return (work[index].pool, work[index].operations, { operation in poolOwners[operation]?.rule ?? -1 })
        })
        metrics.record(reports)
        metrics.record(removalsByRule: Self.removalsByRule(
            reports, ruleNames: ruleNames, soleRules: soleRules, owners: owners, workIndexByPool: workIndexByPool))
        var failures: [Int: [NodeFailure]] = [:]
        for report in reports where !report.isSuccess {
            guard let index = workIndexByPool[report.pool] else { continue }
            for node in report.nodes where !node.failed.isEmpty {
                var byEvent: [Int: NodeFailure] = [:]
                for failure in node.failed {
                    guard let owner = owners[index][failure.operation] else { continue }
                    var entry = byEvent[owner.event] ?? NodeFailure(
                        pool: report.pool, node: node.node.description, operations: [],
                        error: failure.error, attempts: failure.attempts)
                    entry.operations.append(plans[owner.event][owner.poolPlan].operations[owner.operation])
                    entry.attempts = max(entry.attempts, failure.attempts)
                    byEvent[owner.event] = entry
                }
                for (event, failure) in byEvent {
                    failures[event, default: []].append(failure)
                }
            }
        }
        return failures
    }

    /// The event, pool plan and operation indexes where an operation was first asked for,
    /// and the number of its rule.
    private struct Owner: Sendable {
        var event: Int
        var poolPlan: Int
        var operation: Int
        var rule: Int
    }

    /// The rule all of a pool's operations come from, while they share one.
    private enum SoleRule: Sendable {
        case none
        case one(Int)
        case several

        mutating func add(_ number: Int) {
            switch self {
            case .none: self = .one(number)
            case .one(let rule) where rule != number: self = .several
            case .one, .several: break
            }
        }

        var rule: Int? {
            if case .one(let rule) = self { rule } else { nil }
        }
    }

    /// Each removing operation's outcome, per node, counted for the rule of the event that owns it
    /// (an operation several events ask for runs once, for its first asker). Counted by rule
    /// number, and looked up only in pools whose operations come from several rules.
    private static func removalsByRule(
        _ reports: [ExecutionReport], ruleNames: [String], soleRules: [SoleRule],
        owners: [[CacheOperation: Owner]], workIndexByPool: [String: Int]
    ) -> [String: WorkerMetrics.RuleRemovals] {
        var byRule = [WorkerMetrics.RuleRemovals](repeating: .init(), count: ruleNames.count)
        for report in reports {
            guard let index = workIndexByPool[report.pool] else { continue }
            let soleRule = soleRules[index].rule
            func add(_ operation: CacheOperation, removedKeys: Int, failed: Bool) {
                guard operation.removesKeys, let rule = soleRule ?? owners[index][operation]?.rule else { return }
                byRule[rule].add(removedKeys: removedKeys, failed: failed)
            }
            for node in report.nodes {
                for (operation, removed) in node.removals { add(operation, removedKeys: removed, failed: false) }
                for failure in node.failed { add(failure.operation, removedKeys: failure.removedKeys, failed: true) }
            }
        }
        // Every operation counted adds to one of the outcomes: an untouched entry is a rule with none.
        var removals: [String: WorkerMetrics.RuleRemovals] = [:]
        for (number, counted) in byRule.enumerated() where counted != .init() {
            removals[ruleNames[number]] = counted
        }
        return removals
    }
}

extension CacheOperation {
    /// Deletes, patterns and tags: the operations whose removed keys are counted per rule.
    fileprivate var removesKeys: Bool {
        switch self {
        case .delete, .deletePattern, .purgeTag: true
        case .expire, .bump, .precompute, .publish: false
        }
    }
}
