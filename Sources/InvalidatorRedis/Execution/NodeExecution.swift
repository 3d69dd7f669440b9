import Foundation
import InvalidatorCore

/// Applies the operations routed to one node, recording outcomes per node.
struct NodeExecution {
    let node: RedisEndpoint
    let runner: CommandRunner
    let placement: Placement
    let tuning: ExecutionTuning
    var report = ReportBuilder()

    /// Key operations first (one pipeline), then patterns, then tags; precompute
    /// jobs are a separate, later stage so they only run once invalidation is done.
    mutating func apply(_ operations: [CacheOperation]) async {
        var keyOperations: [CacheOperation] = []
        var patterns: [CacheOperation] = []
        var tags: [(operation: CacheOperation, setKey: String)] = []
        for operation in operations {
            switch operation {
            case .deletePattern: patterns.append(operation)
            case .purgeTag(let setKey): tags.append((operation, setKey))
            default: keyOperations.append(operation)
            }
        }
        await applyKeyOperations(keyOperations)
        await deletePatterns(patterns)
        for tag in tags {
            await purgeTag(tag.operation, setKey: tag.setKey)
        }
    }

    // MARK: Keys

    /// Deletes become multi-key UNLINKs; everything else is one command per
    /// operation. Operations are unique (the pool drops duplicates).
    private mutating func applyKeyOperations(_ operations: [CacheOperation]) async {
        guard !operations.isEmpty else { return }
        var deletedKeys: [String] = []
        var commands: [(arguments: [String], operations: [CacheOperation])] = []
        for operation in operations {
            switch operation {
            case .delete(let key):
                deletedKeys.append(key)
            case .expire(let key, let milliseconds):
                commands.append((Commands.shortenTTL(key: key, milliseconds: milliseconds), [operation]))
            case .bump(let key):
                commands.append((Commands.increment(key: key), [operation]))
            case .precompute(let job):
                commands.append((Commands.enqueue(job), [operation]))
            case .deletePattern, .purgeTag:
                preconditionFailure("apply(_:) handles patterns and tags")
            }
        }
        let unlinks = Commands.unlink(deletedKeys, batchSize: tuning.unlinkBatchSize, groupBySlot: placement.usesSlots)
        commands = unlinks.map { unlink in (unlink, unlink.dropFirst().map { CacheOperation.delete(key: $0) }) } + commands

        let outcomes = await runner.run(commands.map(\.arguments), on: node)
        for (command, outcome) in zip(commands, outcomes) {
            report.record(command.operations, on: outcome.node, error: outcome.error, attempts: outcome.attempts)
        }
    }

    private mutating func record(_ operation: CacheOperation, _ outcome: CommandRunner.Outcome) {
        report.record(CollectionOfOne(operation), on: outcome.node, error: outcome.error, attempts: outcome.attempts)
    }

    // MARK: Patterns

    /// SCAN + UNLINK for each pattern. Patterns take turns, each doing at most
    /// `scanIterationsPerRound` SCAN calls per turn, and the task yields between
    /// rounds, so one huge pattern cannot starve the others.
    private mutating func deletePatterns(_ operations: [CacheOperation]) async {
        struct Scan {
            var operation: CacheOperation
            var pattern: String
            var cursor = "0"
            var isFinished = false
        }
        var scans = operations.compactMap { operation -> Scan? in
            guard case .deletePattern(let pattern) = operation else { return nil }
            return Scan(operation: operation, pattern: pattern)
        }
        while scans.contains(where: { !$0.isFinished }) {
            for index in scans.indices where !scans[index].isFinished {
                for _ in 0..<tuning.scanIterationsPerRound {
                    let step = await scanStep(["SCAN", scans[index].cursor, "MATCH", scans[index].pattern], on: node)
                    guard let step = handleFailure(step, of: scans[index].operation) else {
                        scans[index].isFinished = true
                        break
                    }
                    if let failed = await unlink(step.keys, on: node).first {
                        record(scans[index].operation, failed)
                        scans[index].isFinished = true
                        break
                    }
                    scans[index].cursor = step.cursor
                    if step.cursor == "0" {
                        report.recordSuccess(scans[index].operation, on: node)
                        scans[index].isFinished = true
                        break
                    }
                }
            }
            await Task.yield()
        }
    }

    private struct ScanStep {
        var cursor: String
        /// Exactly the bytes Redis returned: keys need not be UTF-8.
        var keys: [[UInt8]]
    }

    private enum ScanResult {
        case page(ScanStep)
        case failed(CommandRunner.Outcome)
    }

    /// One SCAN-family call (`SCAN cursor ...` or `SSCAN key cursor ...`) with COUNT appended.
    private func scanStep(_ command: [String], on node: RedisEndpoint) async -> ScanResult {
        let outcome = await runner.run([command + ["COUNT", String(tuning.scanCount)]], on: node)[0]
        guard case .success(let reply) = outcome.result else { return .failed(outcome) }
        guard let parts = reply.array, parts.count == 2, let cursor = parts[0].string, let keys = parts[1].array?.compactMap(\.bytes) else {
            var malformed = outcome
            malformed.result = .failure(RedisError(code: .protocolViolation, message: "unexpected scan reply from \(node)"))
            return .failed(malformed)
        }
        return .page(ScanStep(cursor: cursor, keys: keys))
    }

    /// Records a failed step against `operation`; returns the step when it succeeded.
    private mutating func handleFailure(_ result: ScanResult, of operation: CacheOperation) -> ScanStep? {
        switch result {
        case .page(let step): return step
        case .failed(let outcome):
            record(operation, outcome)
            return nil
        }
    }

    /// UNLINKs `keys` on `node`; returns the failed commands' outcomes.
    private func unlink(_ keys: [[UInt8]], on node: RedisEndpoint) async -> [CommandRunner.Outcome] {
        guard !keys.isEmpty else { return [] }
        let commands = Commands.unlink(keys, batchSize: tuning.unlinkBatchSize, groupBySlot: placement.usesSlots)
        return await runner.run(commands, on: node).filter { $0.error != nil }
    }

    // MARK: Tags

    /// Purges a tag without losing members added meanwhile: the set is first
    /// renamed to a unique snapshot key in the same slot (atomic), so concurrent
    /// SADDs create a new live set; only the snapshot's members are unlinked, then the snapshot.
    /// If some member cannot be unlinked, the snapshot is merged back into the
    /// live set so a retry of this operation purges those members again.
    private mutating func purgeTag(_ operation: CacheOperation, setKey: String) async {
        let snapshot = Commands.snapshotKey(forTagSet: setKey, unique: UUID().uuidString)
        guard let holder = await renameToSnapshot(operation, setKey: setKey, snapshot: snapshot) else { return }

        var cursor = "0"
        var allMembersUnlinked = true
        var iterations = 0
        repeat {
            guard let step = handleFailure(await scanStep(["SSCAN", snapshot, cursor], on: holder), of: operation) else {
                allMembersUnlinked = false
                break
            }
            for (owner, members) in membersByOwner(step.keys, holder: holder) {
                for failed in await unlink(members, on: owner) {
                    record(operation, failed)
                    allMembersUnlinked = false
                }
            }
            cursor = step.cursor
            iterations += 1
            if iterations % tuning.scanIterationsPerRound == 0 { await Task.yield() }
        } while cursor != "0"

        if allMembersUnlinked {
            record(operation, await runner.run([["UNLINK", snapshot]], on: holder)[0])
            return
        }
        // The failure is already recorded; put the members back so a retry finds them.
        let restored = await runner.run([["SUNIONSTORE", setKey, setKey, snapshot]], on: holder)[0]
        if restored.error == nil {
            _ = await runner.run([["UNLINK", snapshot]], on: holder)
        } else {
            record(operation, restored)
        }
    }

    /// Renames the set to the snapshot and returns the node holding it, or nil
    /// when there is nothing to purge or the rename failed (already recorded).
    private mutating func renameToSnapshot(_ operation: CacheOperation, setKey: String, snapshot: String) async -> RedisEndpoint? {
        let outcome = await runner.run([Commands.snapshotTagSet(setKey, to: snapshot)], on: node)[0]
        switch outcome.result {
        case .success(.integer(1)):
            return outcome.node
        case .success:
            // After a retried rename, "no set" may mean an earlier try did rename it.
            if outcome.attempts > 1,
               case .success(.integer(1)) = await runner.run([["EXISTS", snapshot]], on: outcome.node)[0].result {
                return outcome.node
            }
            report.recordSuccess(operation, on: outcome.node)
        case .failure:
            record(operation, outcome)
        }
        return nil
    }

    private func membersByOwner(_ members: [[UInt8]], holder: RedisEndpoint) -> [(RedisEndpoint, [[UInt8]])] {
        var order: [RedisEndpoint] = []
        var grouped: [RedisEndpoint: [[UInt8]]] = [:]
        for member in members {
            // An unowned slot leaves the member to the holder, which answers MOVED or CLUSTERDOWN.
            let owner = placement.owner(ofMember: member, foundOn: holder) ?? holder
            if grouped[owner] == nil { order.append(owner) }
            grouped[owner, default: []].append(member)
        }
        return order.map { ($0, grouped[$0]!) }
    }
}
