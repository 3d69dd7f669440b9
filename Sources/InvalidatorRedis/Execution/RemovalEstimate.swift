import InvalidatorCore

/// What removing operations would remove, counted without changing anything.
package struct RemovalEstimate: Sendable {
    /// One operation on one node it runs on.
    package struct Target: Sendable {
        package var operation: CacheOperation
        package var node: RedisEndpoint
        /// Keys that exist now and that the operation would unlink on this node (for a
        /// tag: members that exist, wherever they live; its set is not counted).
        package var keys: Int
        /// Up to the requested sample size of those keys, exactly as Redis returned them.
        package var sample: [[UInt8]]
        /// Set when the count could not be completed; `keys` is then what was counted before.
        package var error: RedisError?
    }

    package var pool: String
    /// In the order of the operations, then of the nodes.
    package var targets: [Target]

    package var isSuccess: Bool { targets.allSatisfy { $0.error == nil } }
}

extension RedisPool {
    /// Counts, per node, the keys `operations` (deletes, patterns, tags) would remove, with
    /// the pool's routing, retries and circuit breakers, using only reads: EXISTS for a key,
    /// one SCAN walk per node for all the patterns (each pattern counts every key it
    /// matches, so a key several patterns match counts for each), SSCAN of a tag's set (and
    /// of the snapshot an unfinished purge left) then EXISTS of each member on its owner.
    /// Other operations are left out.
    package func estimateRemovals(_ operations: [CacheOperation], sampleSize: Int = 10) async -> RemovalEstimate {
        let placement: Placement
        do {
            placement = try await self.placement()
        } catch {
            let targets = operations.map {
                RemovalEstimate.Target(operation: $0, node: configuration.nodes[0], keys: 0, sample: [], error: error)
            }
            return RemovalEstimate(pool: configuration.name, targets: targets)
        }
        let counter = RemovalCounter(runner: runner, placement: placement, scanCount: configuration.tuning.scanCount, sampleSize: sampleSize)
        var patternsByNode: [RedisEndpoint: [String]] = [:]
        for operation in operations {
            guard case .deletePattern(let pattern) = operation else { continue }
            for node in placement.nodes(for: operation) { patternsByNode[node, default: []].append(pattern) }
        }
        var patternCounts: [RedisEndpoint: [String: RemovalEstimate.Target]] = [:]
        for (node, patterns) in patternsByNode.sorted(by: { $0.key < $1.key }) {
            patternCounts[node] = await counter.countPatterns(patterns, on: node)
        }
        var targets: [RemovalEstimate.Target] = []
        for operation in operations {
            let nodes = placement.nodes(for: operation)
            if nodes.isEmpty {
                let error = RedisError(code: .clusterDown, message: "no node serves the slot of \(operation.routingKey ?? "")")
                targets.append(.init(operation: operation, node: configuration.nodes[0], keys: 0, sample: [], error: error))
            }
            for node in nodes {
                switch operation {
                case .delete(let key): targets.append(await counter.countKey(key, operation: operation, on: node))
                case .deletePattern(let pattern):
                    if let counted = patternCounts[node]?[pattern] { targets.append(counted) }
                case .purgeTag(let setKey): targets.append(await counter.countTag(setKey, operation: operation, on: node))
                case .expire, .bump, .precompute, .publish: continue
                }
            }
        }
        return RemovalEstimate(pool: configuration.name, targets: targets)
    }
}

/// The read-only steps of ``RedisPool/estimateRemovals(_:sampleSize:)``.
private struct RemovalCounter {
    let runner: CommandRunner
    let placement: Placement
    let scanCount: Int
    let sampleSize: Int

    private struct Tally {
        var keys = 0
        var sample: [[UInt8]] = []
        var error: RedisError?

        mutating func add(_ key: [UInt8], sampleSize: Int) {
            keys += 1
            if sample.count < sampleSize { sample.append(key) }
        }
    }

    func countKey(_ key: String, operation: CacheOperation, on node: RedisEndpoint) async -> RemovalEstimate.Target {
        var tally = Tally()
        let outcome = await runner.run([["EXISTS", key]], on: node)[0]
        switch outcome.result {
        case .success(let reply) where reply.integer != nil:
            if reply.integer == 1 { tally.add(Array(key.utf8), sampleSize: sampleSize) }
        case .success:
            tally.error = RedisError(code: .protocolViolation, message: "unexpected EXISTS reply from \(outcome.node)")
        case .failure(let error):
            tally.error = error
        }
        return .init(operation: operation, node: node, keys: tally.keys, sample: tally.sample, error: tally.error)
    }

    /// Each pattern's keys on `node`, by pattern, from one SCAN walk for all of them.
    func countPatterns(_ patterns: [String], on node: RedisEndpoint) async -> [String: RemovalEstimate.Target] {
        let patternSet = PatternSet(patterns)
        var tallies = [Tally](repeating: Tally(), count: patterns.count)
        // SCAN may return a key more than once.
        var seen = Set<[UInt8]>()
        let error = await scan(["SCAN"], match: patternSet.scanMatch, on: node) { keys in
            for key in keys {
                let matching = patternSet.matching(key)
                guard !matching.isEmpty, seen.insert(key).inserted else { continue }
                for position in matching { tallies[position].add(key, sampleSize: sampleSize) }
            }
        }
        var counts: [String: RemovalEstimate.Target] = [:]
        for (pattern, tally) in zip(patterns, tallies) {
            counts[pattern] = .init(operation: .deletePattern(pattern: pattern), node: node, keys: tally.keys, sample: tally.sample, error: error)
        }
        return counts
    }

    /// The members of the set and of its snapshot (a purge merges both), each checked where it lives.
    func countTag(_ setKey: String, operation: CacheOperation, on node: RedisEndpoint) async -> RemovalEstimate.Target {
        var tally = Tally()
        var members = Set<[UInt8]>()
        for set in [setKey, Commands.tagPurgeKeys(forTagSet: setKey).snapshot] where tally.error == nil {
            tally.error = await scan(["SSCAN", set], match: nil, on: node) { members.formUnion($0) }
        }
        var byOwner: [RedisEndpoint: [[UInt8]]] = [:]
        for member in members {
            byOwner[placement.owner(ofMember: member, foundOn: node) ?? node, default: []].append(member)
        }
        for (owner, keys) in byOwner.sorted(by: { $0.key < $1.key }) {
            // Pipelines of a bounded size: a tag may have millions of members.
            for start in stride(from: 0, to: keys.count, by: scanCount) where tally.error == nil {
                let chunk = keys[start..<min(start + scanCount, keys.count)]
                let outcomes = await runner.run(chunk.map { [[UInt8]("EXISTS".utf8), $0] }, on: owner)
                for (key, outcome) in zip(chunk, outcomes) {
                    switch outcome.result {
                    case .success(let reply) where reply.integer == 1: tally.add(key, sampleSize: sampleSize)
                    case .success: continue
                    case .failure(let error): tally.error = tally.error ?? error
                    }
                }
            }
        }
        return .init(operation: operation, node: node, keys: tally.keys, sample: tally.sample, error: tally.error)
    }

    /// Pages through a SCAN-family command (`SCAN` or `SSCAN key`) to the end; returns the
    /// error that stopped it, if any.
    private func scan(
        _ command: [String], match: [UInt8]?, on node: RedisEndpoint, _ body: ([[UInt8]]) -> Void
    ) async -> RedisError? {
        var cursor = "0"
        repeat {
            var arguments = (command + [cursor]).map { Array($0.utf8) }
            if let match { arguments += [Array("MATCH".utf8), match] }
            let outcome = await runner.run([arguments + [Array("COUNT".utf8), Array(String(scanCount).utf8)]], on: node)[0]
            guard case .success(let reply) = outcome.result else { return outcome.error }
            guard let parts = reply.array, parts.count == 2, let next = parts[0].string, let keys = parts[1].array?.compactMap(\.bytes) else {
                return RedisError(code: .protocolViolation, message: "unexpected scan reply from \(outcome.node)")
            }
            body(keys)
            cursor = next
            await Task.yield()
        } while cursor != "0"
        return nil
    }
}
