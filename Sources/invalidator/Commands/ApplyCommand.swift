import ArgumentParser
import Foundation
import InvalidatorCore
import InvalidatorRedis
import InvalidatorRuntime
import InvalidatorWebhooks

struct ApplyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply",
        abstract: "Plan and execute one event now (a manual purge) and print what happened on each node.",
        discussion: """
            Runs the event's operations with the config's retry policy, including redelete_after \
            second deletes (apply waits for them), then, only once all of them succeeded, the event's \
            notify messages and webhook requests. Exit 0 when every operation succeeded on every \
            node and every webhook target took its items, 1 otherwise.

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
        let plan = loaded.configuration.planner(rules: loaded.rules).plan(decoded)
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
        // notify and webhook run only once every Redis operation succeeded, as in the worker.
        var secondLayer: SecondLayerOutcome = plan.hasSecondLayerWork ? .skipped : .none
        if plan.hasSecondLayerWork, outcomes.allSatisfy(\.isSuccess) {
            var notifications: [PoolOutcome] = []
            for poolPlan in plan.notifications {
                guard let pool = pools.pool(named: poolPlan.pool) else { continue }
                notifications.append(PoolOutcome(pool: poolPlan.pool, reports: [await pool.execute(poolPlan.operations.map(\.operation))]))
            }
            let dispatcher = WebhookDispatcher.forConfiguration(loaded.configuration, logger: logger) as (any WebhookDelivering)?
            let webhookFailures = await dispatcher.deliver(plan.webhooks)
            await dispatcher?.shutdown()
            secondLayer = .ran(notifications: notifications, webhooks: plan.webhooks, failures: webhookFailures)
        }
        await pools.close()

        switch format {
        case .text: print(ApplyOutput.text(plan: plan, outcomes: outcomes, secondLayer: secondLayer), terminator: "")
        case .json: print(ApplyOutput.json(plan: plan, outcomes: outcomes, secondLayer: secondLayer).prettySerialized())
        }
        if outcomes.contains(where: { !$0.isSuccess }) || !secondLayer.isSuccess {
            throw ExitCode(1)
        }
    }
}

/// What became of an event's notify and webhook work.
enum SecondLayerOutcome {
    /// The event has none.
    case none
    /// A Redis operation failed, so it did not run.
    case skipped
    case ran(notifications: [PoolOutcome], webhooks: [WebhookItem], failures: [WebhookDeliveryFailure])

    var isSuccess: Bool {
        guard case .ran(let notifications, _, let failures) = self else { return true }
        return failures.isEmpty && notifications.allSatisfy(\.isSuccess)
    }

    /// Per webhook item: its target, and its failure if it had one.
    var webhookResults: [(item: WebhookItem, failure: WebhookDeliveryFailure?)] {
        guard case .ran(_, let webhooks, let failures) = self else { return [] }
        let failureByItem = Dictionary(failures.map { ($0.item, $0) }, uniquingKeysWith: { first, _ in first })
        return webhooks.indices.map { (webhooks[$0], failureByItem[$0]) }
    }

    var notifications: [PoolOutcome] {
        if case .ran(let notifications, _, _) = self { notifications } else { [] }
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
    static func text(plan: Plan, outcomes: [PoolOutcome], secondLayer: SecondLayerOutcome) -> String {
        var lines = ["event    \(plan.event.entity) \(plan.event.op.rawValue) id=\(plan.event.ids.joined(separator: ","))"]
        lines.append("rules    \(plan.matchedRules.isEmpty ? "(none matched)" : plan.matchedRules.joined(separator: ", "))")
        if outcomes.isEmpty { lines.append("result   nothing to do") }
        for outcome in outcomes {
            lines += poolLines(outcome, heading: "pool \(outcome.pool)")
        }
        if case .skipped = secondLayer {
            lines += ["", "notify and webhook: not run, they wait until every Redis operation succeeded"]
        }
        for outcome in secondLayer.notifications {
            lines += poolLines(outcome, heading: "notify on pool \(outcome.pool)")
        }
        for (item, failure) in secondLayer.webhookResults {
            lines += ["", "webhook \(item.target)  " + (failure.map { "FAILED \($0.errorClass): \($0.message) (attempts: \($0.attempts))" } ?? "ok")]
        }
        return lines.joined(separator: "\n") + "\n"
    }

    private static func poolLines(_ outcome: PoolOutcome, heading: String) -> [String] {
        var lines = ["", heading]
        for node in outcome.nodes {
            let total = node.succeeded.count + node.failed.count
            let status = node.failed.isEmpty ? "ok" : "FAILED"
            lines.append("  \(node.node)  \(status)  \(node.succeeded.count)/\(total) operations applied")
            for failure in node.failed {
                lines.append("    failed \(failure.operation.description): \(failure.error) (attempts: \(failure.attempts))")
            }
        }
        return lines
    }

    static func json(plan: Plan, outcomes: [PoolOutcome], secondLayer: SecondLayerOutcome) -> JSONValue {
        let secondLayerState = switch secondLayer {
        case .none: "none"
        case .skipped: "skipped"
        case .ran: "ran"
        }
        return .object([
            "event_id": plan.event.eventID.map(JSONValue.string) ?? .null,
            "matched_rules": .array(plan.matchedRules.map(JSONValue.string)),
            "ok": .bool(outcomes.allSatisfy(\.isSuccess) && secondLayer.isSuccess),
            "pools": .array(outcomes.map(poolJSON)),
            // none: the event has no notify or webhook work; skipped: a Redis operation failed first.
            "second_layer": .string(secondLayerState),
            "notifications": .array(secondLayer.notifications.map(poolJSON)),
            "webhooks": .array(secondLayer.webhookResults.map { item, failure in
                .object([
                    "target": .string(item.target),
                    "ok": .bool(failure == nil),
                    "error": failure.map { .object(["code": .string($0.errorClass), "message": .string($0.message)]) } ?? .null,
                    "attempts": failure.map { .number(String($0.attempts)) } ?? .null,
                ])
            }),
        ])
    }

    private static func poolJSON(_ outcome: PoolOutcome) -> JSONValue {
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
    }
}
