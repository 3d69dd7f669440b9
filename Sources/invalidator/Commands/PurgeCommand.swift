import ArgumentParser
import Foundation
import InvalidatorCore
import InvalidatorRedis
import InvalidatorRuntime

struct PurgeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "purge",
        abstract: "Delete keys, patterns or tags from one pool now, without an event or a rule.",
        discussion: """
            Runs through the worker's own executor: the pool's routing (every node of a \
            replicated pool, the slot owner in a cluster), retries, circuit breakers and tag \
            purges. A tag gets the pool's tag_prefix, as in rules (--tag users purges the set \
            tag:users by default). Exit 0 when everything succeeded on every node, 1 if \
            anything failed, 2 for usage errors.

            --dry-run changes nothing: it counts, per node, the keys each key, pattern and tag \
            would remove, with a sample of them (EXISTS, SCAN MATCH, SSCAN then EXISTS of each \
            member). A pattern without literal text before its first wildcard ('*', '*:x') \
            could match every key of the pool: it is refused unless --force.

            Examples:
              invalidator purge --config invalidator.yaml --pool cache --pattern 'user:acme:*' --dry-run
              invalidator purge --config invalidator.yaml --pool cache --key user:42 --tag user:42 --format json
            """
    )

    @Option(help: "The config file.")
    var config: String = ProcessInfo.processInfo.environment["INVALIDATOR_CONFIG"] ?? "invalidator.yaml"

    @Option(help: "The pool to purge, as named in the config.")
    var pool: String

    @Option(name: .customLong("key"), help: "A key to delete (repeatable).")
    var keys: [String] = []

    @Option(name: .customLong("pattern"), help: "A Redis glob whose matching keys are deleted with SCAN (repeatable).")
    var patterns: [String] = []

    @Option(name: .customLong("tag"), help: "A tag whose members are deleted, without the pool's tag_prefix (repeatable).")
    var tags: [String] = []

    @Flag(help: "Change nothing; count what would be removed, per node, with a sample of keys.")
    var dryRun = false

    @Flag(help: "Allow patterns without a literal prefix before the first wildcard.")
    var force = false

    @Option(help: "Output format: text or json.")
    var format: OutputFormat = .text

    @OptionGroup var logging: LoggingOptions

    /// Keys shown per node and operation in a dry run.
    static let sampleSize = 10

    func validate() throws {
        guard !(keys.isEmpty && patterns.isEmpty && tags.isEmpty) else {
            throw ValidationError("give at least one --key, --pattern or --tag")
        }
        for value in keys + patterns + tags where value.isEmpty {
            throw ValidationError("an empty --key, --pattern or --tag would name nothing")
        }
        if !force, let unanchored = patterns.first(where: { Glob.literalPrefix(of: $0).isEmpty && Glob.hasWildcard($0) }) {
            throw ValidationError(
                "refusing pattern '\(unanchored)': it has no literal prefix before its first wildcard, so it can match every key of the pool; add --force if that is meant")
        }
    }

    func run() async throws {
        let logger = logging.bootstrap()
        let loaded = try loadConfiguration(config)
        guard let poolConfiguration = loaded.configuration.pools.first(where: { $0.name == pool }) else {
            let known = loaded.configuration.pools.map(\.name).joined(separator: ", ")
            throw CommandFailure(message: "no pool named '\(pool)' in \(config); pools: \(known)", exitCode: 2)
        }
        let operations = keys.map { CacheOperation.delete(key: $0) }
            + patterns.map { CacheOperation.deletePattern(pattern: $0) }
            + tags.map { CacheOperation.purgeTag(setKey: poolConfiguration.tagPrefix + $0) }
        let pools = PoolSet(configuration: loaded.configuration, logger: logger)
        guard let redisPool = pools.pool(named: pool) else {
            throw CommandFailure(message: "pool '\(pool)' could not be built")
        }
        let isSuccess: Bool
        if dryRun {
            let estimate = await redisPool.estimateRemovals(operations, sampleSize: Self.sampleSize)
            await pools.close()
            isSuccess = estimate.isSuccess
            switch format {
            case .text: print(PurgeOutput.text(estimate), terminator: "")
            case .json: print(PurgeOutput.json(estimate).prettySerialized())
            }
        } else {
            // Each key its own removal group: the report then says which keys existed.
            let positions = Dictionary(operations.enumerated().map { ($1, $0) }, uniquingKeysWith: { first, _ in first })
            let report = await redisPool.execute(operations, removalGroup: { positions[$0] ?? 0 })
            await pools.close()
            isSuccess = report.isSuccess
            switch format {
            case .text: print(PurgeOutput.text(report, order: operations), terminator: "")
            case .json: print(PurgeOutput.json(report, order: operations).prettySerialized())
            }
        }
        if !isSuccess { throw ExitCode(1) }
    }
}

/// `purge`'s output: per node, each operation with the keys it removed (or would remove).
enum PurgeOutput {
    /// One operation's line on one node.
    private struct Row {
        var operation: CacheOperation
        var node: RedisEndpoint
        var keys: Int
        var sample: [String]?
        var error: RedisError?
        var attempts: Int?
    }

    private static func rows(_ report: ExecutionReport, order: [CacheOperation]) -> [Row] {
        var rows: [Row] = []
        for node in report.nodes {
            rows += node.removals.map { Row(operation: $0, node: node.node, keys: $1) }
            rows += node.failed.map {
                Row(operation: $0.operation, node: node.node, keys: $0.removedKeys, error: $0.error, attempts: $0.attempts)
            }
        }
        let position = Dictionary(order.enumerated().map { ($1, $0) }, uniquingKeysWith: { first, _ in first })
        return rows.sorted { (position[$0.operation] ?? 0, $0.node) < (position[$1.operation] ?? 0, $1.node) }
    }

    private static func rows(_ estimate: RemovalEstimate) -> [Row] {
        estimate.targets.map { target in
            Row(operation: target.operation, node: target.node, keys: target.keys,
                sample: target.sample.map { String(decoding: $0, as: UTF8.self) }, error: target.error)
        }
    }

    static func text(_ report: ExecutionReport, order: [CacheOperation]) -> String {
        text(pool: report.pool, rows: rows(report, order: order), dryRun: false)
    }

    static func text(_ estimate: RemovalEstimate) -> String {
        text(pool: estimate.pool, rows: rows(estimate), dryRun: true)
    }

    private static func text(pool: String, rows: [Row], dryRun: Bool) -> String {
        var lines = ["pool \(pool)\(dryRun ? "  (dry run: nothing removed)" : "")"]
        var lastNode: RedisEndpoint?
        for row in rows.sorted(by: { $0.node < $1.node }) {
            if row.node != lastNode {
                lines.append("  \(row.node)")
                lastNode = row.node
            }
            let verb = dryRun ? "would remove" : "removed"
            let status = row.error.map { "FAILED \($0)\(row.attempts.map { " (attempts: \($0))" } ?? "")" } ?? "ok"
            lines.append("    \(row.operation.description)  \(status)  \(verb) \(row.keys) key\(row.keys == 1 ? "" : "s")")
            if let sample = row.sample, !sample.isEmpty {
                lines.append("      e.g. \(sample.joined(separator: " "))\(row.keys > sample.count ? " ..." : "")")
            }
        }
        let total = rows.filter { $0.error == nil }.reduce(0) { $0 + $1.keys }
        let failed = rows.count { $0.error != nil }
        // A dry run counts each operation on its own; a purge removes a key once.
        let overlap = dryRun && Set(rows.map(\.operation)).count > 1 ? " (a key several operations match counts for each)" : ""
        lines.append("total    \(dryRun ? "would remove" : "removed") \(total) key\(total == 1 ? "" : "s")\(overlap)\(failed > 0 ? ", \(failed) FAILED" : "")")
        return lines.joined(separator: "\n") + "\n"
    }

    static func json(_ report: ExecutionReport, order: [CacheOperation]) -> JSONValue {
        json(pool: report.pool, rows: rows(report, order: order), dryRun: false)
    }

    static func json(_ estimate: RemovalEstimate) -> JSONValue {
        json(pool: estimate.pool, rows: rows(estimate), dryRun: true)
    }

    private static func json(pool: String, rows: [Row], dryRun: Bool) -> JSONValue {
        var nodeOrder: [RedisEndpoint] = []
        var rowsByNode: [RedisEndpoint: [Row]] = [:]
        for row in rows {
            if rowsByNode[row.node] == nil { nodeOrder.append(row.node) }
            rowsByNode[row.node, default: []].append(row)
        }
        return .object([
            "pool": .string(pool),
            "dry_run": .bool(dryRun),
            "ok": .bool(rows.allSatisfy { $0.error == nil }),
            "keys": .number(String(rows.reduce(0) { $0 + $1.keys })),
            "nodes": .array(nodeOrder.sorted().map { node in
                let nodeRows = rowsByNode[node] ?? []
                return .object([
                    "node": .string(node.description),
                    "ok": .bool(nodeRows.allSatisfy { $0.error == nil }),
                    "operations": .array(nodeRows.map { row in
                        var fields: JSONObject = [
                            "kind": .string(row.operation.kind.rawValue),
                            "target": .string(row.operation.target),
                            "ok": .bool(row.error == nil),
                            "keys": .number(String(row.keys)),
                        ]
                        if let sample = row.sample { fields["sample"] = .array(sample.map(JSONValue.string)) }
                        if let error = row.error {
                            fields["error"] = .object(["code": .string(error.code.rawValue), "message": .string(error.message)])
                        }
                        if let attempts = row.attempts { fields["attempts"] = .number(String(attempts)) }
                        return .object(fields)
                    }),
                ])
            }),
        ])
    }
}

extension CacheOperation {
    /// The key, pattern or tag set an operation names.
    fileprivate var target: String {
        switch self {
        case .delete(let key), .expire(let key, _), .bump(let key): key
        case .deletePattern(let pattern): pattern
        case .purgeTag(let setKey): setKey
        case .precompute(let job): job.stream
        case .publish(let message): message.channel
        }
    }
}
