import Foundation
import InvalidatorCore

/// Applies the operations routed to one node, recording outcomes per node.
struct NodeExecution {
    let node: RedisEndpoint
    let runner: CommandRunner
    let placement: Placement
    let tuning: ExecutionTuning
    /// Keys of different groups never share an UNLINK (see ``RemovalGroup``).
    let removalGroup: RemovalGroup?
    var report = ReportBuilder()

    /// Key operations first (one pipeline), then patterns, then tags; precompute
    /// jobs are a separate, later stage so they only run once invalidation is done.
    mutating func apply(_ operations: [CacheOperation]) async {
        // Most batches are key operations alone: no copy to split off patterns and tags.
        guard operations.contains(where: \.isMultiStep) else {
            await applyKeyOperations(operations)
            return
        }
        var keyOperations: [CacheOperation] = []
        var patterns: [(operation: CacheOperation, pattern: String)] = []
        var tags: [(operation: CacheOperation, setKey: String)] = []
        for operation in operations {
            switch operation {
            case .deletePattern(let pattern): patterns.append((operation, pattern))
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

    /// Deletes become multi-key UNLINKs, by removal group; everything else is one
    /// command per operation. Operations are unique (the pool drops duplicates).
    private mutating func applyKeyOperations(_ operations: [CacheOperation]) async {
        guard !operations.isEmpty else { return }
        var deletes = GroupedKeys()
        var commands: [(arguments: [String], operations: [CacheOperation])] = []
        for operation in operations {
            switch operation {
            case .delete(let key):
                deletes.append(key, group: removalGroup?(operation) ?? 0)
            case .expire(let key, let milliseconds):
                commands.append((Commands.shortenTTL(key: key, milliseconds: milliseconds), [operation]))
            case .bump(let key):
                commands.append((Commands.increment(key: key), [operation]))
            case .precompute(let job):
                commands.append((Commands.enqueue(job), [operation]))
            case .publish(let message):
                commands.append((Commands.publish(message), [operation]))
            case .deletePattern, .purgeTag:
                preconditionFailure("apply(_:) handles patterns and tags")
            }
        }
        let batches = deletes.keysByGroup.flatMap {
            Commands.keyBatches($0, batchSize: tuning.unlinkBatchSize, groupBySlot: placement.usesSlots)
        }
        commands = batches.map { keys in (["UNLINK"] + keys, keys.map { CacheOperation.delete(key: $0) }) } + commands

        let outcomes = await runner.run(commands.map(\.arguments), on: node)
        for (index, (command, outcome)) in zip(commands, outcomes).enumerated() {
            guard index < batches.count, case .success(let reply) = outcome.result else {
                report.record(command.operations, on: outcome.node, error: outcome.error, attempts: outcome.attempts)
                continue
            }
            // UNLINK counts the keys that existed, not which: within one removal group only the
            // count matters, so it goes to the first operations of the batch.
            let removed = Int(clamping: max(reply.integer ?? 0, 0))
            report.record(command.operations, on: outcome.node, error: nil, attempts: outcome.attempts,
                          removed: command.operations.indices.map { $0 < removed ? 1 : 0 })
        }
    }

    /// Deleted keys by removal group, groups in first-seen order.
    private struct GroupedKeys {
        var keysByGroup: [[String]] = []
        private var indexOfGroup: [Int: Int] = [:]
        private var last: (group: Int, index: Int)?

        mutating func append(_ key: String, group: Int) {
            // Consecutive deletes mostly share a group: skip the hash when it repeats.
            let index = last.flatMap { $0.group == group ? $0.index : nil } ?? indexOfGroup[group] ?? {
                keysByGroup.append([])
                indexOfGroup[group] = keysByGroup.count - 1
                return keysByGroup.count - 1
            }()
            last = (group, index)
            keysByGroup[index].append(key)
        }
    }

    /// Records `outcome` for `operation` on `node`, by default the node the command ran on.
    private mutating func record(_ operation: CacheOperation, _ outcome: CommandRunner.Outcome, on node: RedisEndpoint? = nil) {
        report.record(CollectionOfOne(operation), on: node ?? outcome.node, error: outcome.error, attempts: outcome.attempts)
    }

    // MARK: Patterns

    /// One SCAN cursor walk for all the patterns: each page's keys are tested against
    /// every pattern (``PatternSet``) and the matches unlinked in shared, pipelined
    /// batches. A key that matches several patterns is counted for the first of them in
    /// `operations` (see ``unlink(_:operations:on:)`` for the count of a batch). The
    /// task yields every `scanIterationsPerRound` SCAN calls so other callers of the
    /// node's connection get a turn. Every pattern succeeds when the cursor comes back
    /// to 0; a failed step fails them all (the keys unlinked so far stay counted).
    private mutating func deletePatterns(_ operations: [(operation: CacheOperation, pattern: String)]) async {
        guard !operations.isEmpty else { return }
        let patterns = PatternSet(operations.map(\.pattern))
        let match = patterns.scanMatch.map { [Array("MATCH".utf8), $0] } ?? []
        let clock = ContinuousClock()
        let started = clock.now
        var keysScanned = 0
        var cursor = "0"
        var calls = 0
        var failure: CommandRunner.Outcome?
        walking: repeat {
            let step: ScanStep
            switch await scanStep([Array("SCAN".utf8), Array(cursor.utf8)] + match, on: node) {
            case .page(let page): step = page
            case .failed(let outcome):
                failure = outcome
                break walking
            }
            keysScanned += step.keys.count
            var matched: [(key: [UInt8], operation: Int)] = []
            for key in step.keys {
                if let position = patterns.firstMatch(key) { matched.append((key, position)) }
            }
            let unlinked = await unlink(matched, operations: operations.count, on: node)
            for (pattern, removed) in zip(operations, unlinked.removed) {
                report.addRemoved(removed, by: pattern.operation, on: node)
            }
            if let failed = unlinked.failure {
                failure = failed
                break walking
            }
            cursor = step.cursor
            calls += 1
            if calls % tuning.scanIterationsPerRound == 0 {
                await Task.yield()
                // A walk can take minutes: a stop past its drain timeout gives it up between rounds.
                if Task.isCancelled, cursor != "0" {
                    failure = CommandRunner.Outcome(
                        node: node, result: .failure(RedisError(code: .cancelled, message: "pattern walk on \(node) cancelled")),
                        attempts: 0)
                    break walking
                }
            }
        } while cursor != "0"

        report.recordWalk(.init(keysScanned: keysScanned, duration: clock.now - started), on: node)
        for pattern in operations {
            if let failure {
                record(pattern.operation, failure)
            } else {
                report.recordSuccess(pattern.operation, on: node)
            }
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
    private func scanStep<Argument: RedisArgument>(_ command: [Argument], on node: RedisEndpoint) async -> ScanResult {
        let outcome = await runner.run([command + [Argument(text: "COUNT"), Argument(text: String(tuning.scanCount))]], on: node)[0]
        ExecutionProgress.stepDone()
        guard case .success(let reply) = outcome.result else { return .failed(outcome) }
        guard let parts = reply.array, parts.count == 2, let cursor = parts[0].string, let keys = parts[1].array?.compactMap(\.bytes) else {
            var malformed = outcome
            malformed.result = .failure(RedisError(code: .protocolViolation, message: "unexpected scan reply from \(node)"))
            return .failed(malformed)
        }
        return .page(ScanStep(cursor: cursor, keys: keys))
    }

    /// UNLINKs `keys` on `node`; returns how many existed (the replies' sum) and the
    /// first failed command's outcome.
    private func unlink(_ keys: [[UInt8]], on node: RedisEndpoint) async -> (removed: Int, failure: CommandRunner.Outcome?) {
        guard !keys.isEmpty else { return (0, nil) }
        let commands = Commands.unlink(keys, batchSize: tuning.unlinkBatchSize, groupBySlot: placement.usesSlots)
        let outcomes = await runner.run(commands, on: node)
        ExecutionProgress.stepDone()
        var removed = 0
        for outcome in outcomes {
            if case .success(let reply) = outcome.result, let count = reply.integer, count > 0 {
                removed += Int(clamping: count)
            }
        }
        return (removed, outcomes.first { $0.error != nil })
    }

    /// UNLINKs the `matched` keys on `node`, pipelined, in batches shared by all the
    /// operations (per-operation batches would be many tiny commands: a page's keys spread
    /// over thousands of patterns); returns the keys removed for each operation (a key
    /// counts for the operation it was matched to) and the first failed command's outcome.
    /// An UNLINK counts the keys that existed, not which: its count goes to its first keys,
    /// so the split is exact unless a key vanished between SCAN and UNLINK (the sum always
    /// is), and a key SCAN returned twice is counted once, by the UNLINK that found it.
    private func unlink(
        _ matched: [(key: [UInt8], operation: Int)], operations: Int, on node: RedisEndpoint
    ) async -> (removed: [Int], failure: CommandRunner.Outcome?) {
        var removed = [Int](repeating: 0, count: operations)
        guard !matched.isEmpty else { return (removed, nil) }
        let batches = Commands.batches(matched, batchSize: tuning.unlinkBatchSize, groupBySlot: placement.usesSlots) { $0.key }
        let outcomes = await runner.run(batches.map { [[UInt8]("UNLINK".utf8)] + $0.map(\.key) }, on: node)
        ExecutionProgress.stepDone()
        for (batch, outcome) in zip(batches, outcomes) {
            guard case .success(let reply) = outcome.result, let count = reply.integer, count > 0 else { continue }
            for entry in batch.prefix(Int(clamping: count)) { removed[entry.operation] += 1 }
        }
        return (removed, outcomes.first { $0.error != nil })
    }

    // MARK: Tags

    /// Purges a tag so that no member is lost, whatever fails or runs at the same time.
    ///
    /// The set is moved into its snapshot, a fixed key per set in the set's slot
    /// (``Commands/tagPurgeKeys(forTagSet:)``); a snapshot already there is merged
    /// with, not overwritten. Members added meanwhile go to a new live set, left for the
    /// next purge. Every member of the snapshot is unlinked where it lives; then the
    /// snapshot is unlinked, but only by the purge that merged into it last (it holds
    /// the owner token), since only that one has scanned every member. A member that
    /// cannot be unlinked stays in the snapshot, and the failure is recorded against
    /// the node holding the snapshot: the purge must run there again.
    ///
    /// Invariant: every member present in the set when a purge starts is, when the
    /// purge reports success, unlinked (by it, or by a later purge that merged into
    /// the snapshot and completed); otherwise it is still in the snapshot, where the
    /// next purge of the tag (a retry, a redelivered event after a crash, a replay of
    /// the failure) finds it. Purges of one tag that overlap (two workers, a worker and
    /// a replay) each scan the whole snapshot: a member may be unlinked twice, never
    /// missed; the snapshot only ever loses members when it is unlinked, and its owner
    /// has scanned them all by then.
    private mutating func purgeTag(_ operation: CacheOperation, setKey: String) async {
        let keys = Commands.tagPurgeKeys(forTagSet: setKey)
        guard let snapshot = await takeSnapshot(operation, setKey: setKey, keys: keys) else { return }
        let holder = snapshot.holder

        var cursor = "0"
        var firstFailure: CommandRunner.Outcome?
        var iterations = 0
        scanning: repeat {
            let step: ScanStep
            switch await scanStep(["SSCAN", keys.snapshot, cursor], on: holder) {
            case .page(let page): step = page
            case .failed(let outcome):
                firstFailure = firstFailure ?? outcome
                break scanning
            }
            for (owner, members) in membersByOwner(step.keys, holder: holder) {
                let unlinked = await unlink(members, on: owner)
                // Counted against the holder, where the tag's outcome is recorded.
                report.addRemoved(unlinked.removed, by: operation, on: holder)
                if let failed = unlinked.failure {
                    firstFailure = firstFailure ?? failed
                }
            }
            cursor = step.cursor
            iterations += 1
            if iterations % tuning.scanIterationsPerRound == 0 { await Task.yield() }
        } while cursor != "0"

        if let firstFailure {
            // Against the holder, not a member's owner: there the snapshot is found again.
            record(operation, firstFailure, on: holder)
            return
        }
        record(operation, await runner.run([Commands.finishTagPurge(keys, token: snapshot.token)], on: holder)[0], on: holder)
    }

    /// Moves the set into its snapshot; returns the node holding the snapshot and this
    /// purge's owner token, or nil when there is nothing to purge or the step failed
    /// (recorded). A retried step just merges again, so a lost reply is harmless.
    private mutating func takeSnapshot(
        _ operation: CacheOperation, setKey: String, keys: Commands.TagPurgeKeys
    ) async -> (holder: RedisEndpoint, token: String)? {
        let command = Commands.snapshotTagSet(setKey, keys: keys, purge: UUID().uuidString)
        var outcome = await runner.run([command], on: node)[0]
        switch outcome.result {
        case .success(.bulk(let token)):
            return (outcome.node, String(decoding: token, as: UTF8.self))
        case .success(.integer(0)):
            report.recordSuccess(operation, on: outcome.node)
        case .success:
            outcome.result = .failure(RedisError(code: .protocolViolation, message: "unexpected tag snapshot reply from \(outcome.node)"))
            record(operation, outcome)
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
