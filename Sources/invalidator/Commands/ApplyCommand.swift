import ArgumentParser
import Foundation
import InvalidatorCore
import InvalidatorRedis
import InvalidatorRuntime

struct ApplyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply",
        abstract: "Plan and execute one event now (a manual purge) and print what happened on each node.",
        discussion: """
            Runs the event's operations with the config's retry policy, including redelete_after \
            second deletes (apply waits for them). Exit 0 when every operation succeeded on every \
            node, 1 otherwise.

            Examples:
              invalidator apply --config invalidator.yaml --event '{"entity":"user","id":"42","op":"update","tenant":"acme"}'
              invalidator apply --config invalidator.yaml --event @event.json --format json
            """
    )

    @Option(help: "The config file.")
    var config: String = ProcessInfo.processInfo.environment["INVALIDATOR_CONFIG"] ?? "invalidator.yaml"

    @Option(help: "The event: inline JSON, @file, or - for standard input.")
    var event: String

    @Option(help: "Event format: native, debezium, cloudevents or auto.")
    var eventFormat: EventFormatArgument = .auto

    @Option(help: "Output format: text or json.")
    var format: OutputFormat = .text

    @OptionGroup var logging: LoggingOptions

    func run() async throws {
        let logger = logging.bootstrap()
        let loaded = try loadConfiguration(config)
        let decoded: ChangeEvent
        do {
            decoded = try EventDecoder(format: eventFormat.format).decode(try EventArgument.read(event))
        } catch let error as EventDecodingError {
            throw CommandFailure(message: "the event is not valid: \(error)")
        }
        let plan = Planner(rules: loaded.rules, pools: loaded.configuration.poolTargets, webhooks: loaded.configuration.webhooks).plan(decoded)
        if let rejection = plan.rejection {
            throw CommandFailure(message: "nothing applied: \(rejection)")
        }
        let pools = PoolSet(configuration: loaded.configuration, logger: logger)
        var outcomes: [PoolOutcome] = []
        for poolPlan in plan.pools {
            guard let pool = pools.pool(named: poolPlan.pool) else { continue }
            var reports = [await pool.execute(poolPlan.operations.map(\.operation))]
            let start = ContinuousClock.now
            for redelete in poolPlan.redeletes {
                // Timer: the rule's redelete_after delay.
                try await Task.sleep(until: start + redelete.after, clock: .continuous)
                reports.append(await pool.execute(redelete.keys.map { .delete(key: $0) }))
            }
            outcomes.append(PoolOutcome(pool: poolPlan.pool, reports: reports))
        }
        await pools.close()

        switch format {
        case .text: print(ApplyOutput.text(plan: plan, outcomes: outcomes), terminator: "")
        case .json: print(ApplyOutput.json(plan: plan, outcomes: outcomes).prettySerialized())
        }
        if outcomes.contains(where: { !$0.isSuccess }) {
            throw ExitCode(1)
        }
    }
}

struct PoolOutcome {
    var pool: String
    /// The main execution, then one per redelete group.
    var reports: [ExecutionReport]

    var isSuccess: Bool { reports.allSatisfy(\.isSuccess) }

    /// Per node: operations that succeeded and failed, over every step.
    var nodes: [(node: RedisEndpoint, succeeded: [CacheOperation], failed: [ExecutionReport.OperationFailure])] {
        var order: [RedisEndpoint] = []
        var byNode: [RedisEndpoint: ([CacheOperation], [ExecutionReport.OperationFailure])] = [:]
        for report in reports {
            for result in report.nodes {
                if byNode[result.node] == nil { order.append(result.node) }
                byNode[result.node, default: ([], [])].0 += result.succeeded
                byNode[result.node, default: ([], [])].1 += result.failed
            }
        }
        return order.map { ($0, byNode[$0]!.0, byNode[$0]!.1) }
    }
}

enum ApplyOutput {
    static func text(plan: Plan, outcomes: [PoolOutcome]) -> String {
        var lines = ["event    \(plan.event.entity) \(plan.event.op.rawValue) id=\(plan.event.ids.joined(separator: ","))"]
        lines.append("rules    \(plan.matchedRules.isEmpty ? "(none matched)" : plan.matchedRules.joined(separator: ", "))")
        if outcomes.isEmpty { lines.append("result   nothing to do") }
        for outcome in outcomes {
            lines.append("")
            lines.append("pool \(outcome.pool)")
            for node in outcome.nodes {
                let total = node.succeeded.count + node.failed.count
                let status = node.failed.isEmpty ? "ok" : "FAILED"
                lines.append("  \(node.node)  \(status)  \(node.succeeded.count)/\(total) operations applied")
                for failure in node.failed {
                    lines.append("    failed \(failure.operation.description): \(failure.error) (attempts: \(failure.attempts))")
                }
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    static func json(plan: Plan, outcomes: [PoolOutcome]) -> JSONValue {
        .object([
            "event_id": plan.event.eventID.map(JSONValue.string) ?? .null,
            "matched_rules": .array(plan.matchedRules.map(JSONValue.string)),
            "ok": .bool(outcomes.allSatisfy(\.isSuccess)),
            "pools": .array(outcomes.map { outcome in
                .object([
                    "pool": .string(outcome.pool),
                    "nodes": .array(outcome.nodes.map { node in
                        .object([
                            "node": .string(node.node.description),
                            "ok": .bool(node.failed.isEmpty),
                            "succeeded": .array(node.succeeded.map { .string($0.description) }),
                            "failed": .array(node.failed.map { failure in
                                .object([
                                    "operation": .string(failure.operation.description),
                                    "error": .object(["code": .string(failure.error.code.rawValue), "message": .string(failure.error.message)]),
                                    "attempts": .number(String(failure.attempts)),
                                ])
                            }),
                        ])
                    }),
                ])
            }),
        ])
    }
}
