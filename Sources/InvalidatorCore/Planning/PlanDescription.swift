/// How `explain` shows a plan: a table for people, stable JSON for scripts.
public enum PlanDescription {
    /// - Parameter webhooks: the config's targets, for each request's method, URL and
    ///   headers; their secrets are shown as `***`.
    public static func json(_ plan: Plan, webhooks: [String: WebhookTarget] = [:]) -> JSONValue {
        var event: JSONObject = [
            "entity": .string(plan.event.entity),
            "ids": .array(plan.event.ids.map(JSONValue.string)),
            "op": .string(plan.event.op.rawValue),
        ]
        event["tenant"] = plan.event.tenant.map(JSONValue.string) ?? .null
        event["event_id"] = plan.event.eventID.map(JSONValue.string) ?? .null
        return .object([
            "event": .object(event),
            "matched_rules": .array(plan.matchedRules.map(JSONValue.string)),
            "decision": .string(decision(plan)),
            "dead_letter": plan.rejection.map { rejection in
                .object([
                    "reason": .string(rejection.reason.rawValue),
                    "rule": .string(rejection.rule),
                    "template": .string(rejection.template),
                    "message": .string(rejection.message),
                ])
            } ?? .null,
            "pools": .array(plan.pools.map(poolJSON)),
            "notifications": .array(plan.notifications.map { pool in
                .object(["pool": .string(pool.pool), "operations": .array(pool.operations.map(operationJSON))])
            }),
            "webhooks": .array(plan.webhooks.map { webhookJSON($0, target: webhooks[$0.target]) }),
        ])
    }

    /// A webhook request as it would be sent, secrets shown as `***`. Without its
    /// target (explain with rules alone) only the rule's body is known.
    private static func webhookJSON(_ item: WebhookItem, target: WebhookTarget?) -> JSONValue {
        .object([
            "target": .string(item.target),
            "method": target.map { .string($0.method) } ?? .null,
            "url": target.map { .string($0.redactedURL) } ?? .null,
            "headers": .object(JSONObject((target?.headers ?? []).map { JSONObject.Field(key: $0.name, value: .string("***")) })),
            "body": target.map { $0.redacting($0.merging(item.body)) } ?? item.body,
            "rule": .string(item.rule),
        ])
    }

    /// `apply`, `dead-letter`, or `nothing-to-do` when no rule produced work.
    public static func decision(_ plan: Plan) -> String {
        if plan.rejection != nil { return "dead-letter" }
        return plan.pools.isEmpty && !plan.hasSecondLayerWork ? "nothing-to-do" : "apply"
    }

    private static func poolJSON(_ pool: PoolPlan) -> JSONValue {
        .object([
            "pool": .string(pool.pool),
            "operations": .array(pool.operations.map(operationJSON)),
            "redeletes": .array(pool.redeletes.map { redelete in
                .object([
                    "after_ms": .number(String(redelete.after.milliseconds)),
                    "keys": .array(redelete.keys.map(JSONValue.string)),
                    "rule": .string(redelete.rule),
                ])
            }),
        ])
    }

    public static func operationJSON(_ planned: PlannedOperation) -> JSONValue {
        var object: JSONObject = ["kind": .string(planned.operation.kind.rawValue)]
        switch planned.operation {
        case .delete(let key), .bump(let key):
            object["key"] = .string(key)
        case .deletePattern(let pattern):
            object["pattern"] = .string(pattern)
        case .purgeTag(let setKey):
            object["set"] = .string(setKey)
        case .expire(let key, let ttl):
            object["key"] = .string(key)
            object["ttl_ms"] = .number(String(ttl))
        case .publish(let message):
            object["channel"] = .string(message.channel)
            object["message"] = .string(message.message)
            if message.sharded { object["sharded"] = .bool(true) }
        case .precompute(let job):
            object["stream"] = .string(job.stream)
            object["job"] = .string(job.job)
            object["args"] = job.argumentsJSON
        }
        object["rule"] = .string(planned.rule)
        return .object(object)
    }

    public static func text(_ plan: Plan, webhooks: [String: WebhookTarget] = [:]) -> String {
        let event = plan.event
        var header = "\(event.entity) \(event.op.rawValue) id=\(event.ids.joined(separator: ","))"
        if let tenant = event.tenant { header += " tenant=\(tenant)" }
        if let eventID = event.eventID { header += " event_id=\(eventID)" }
        var lines = [
            "event    \(header)",
            "rules    \(plan.matchedRules.isEmpty ? "(none matched)" : plan.matchedRules.joined(separator: ", "))",
        ]
        if let rejection = plan.rejection {
            lines.append("decision dead-letter (\(rejection.reason.rawValue))")
            lines.append("         rule '\(rejection.rule)', \(rejection.detail)")
            return lines.joined(separator: "\n") + "\n"
        }
        let operationCount = plan.pools.reduce(0) { $0 + $1.operations.count + $1.redeletes.reduce(0) { $0 + $1.keys.count } }
        lines.append(plan.pools.isEmpty && !plan.hasSecondLayerWork
            ? "decision nothing to do"
            : "decision apply: \(counted(operationCount, "operation")) on \(counted(plan.pools.count, "pool"))" + secondLayerSummary(plan))
        for pool in plan.pools {
            lines.append("")
            lines.append("pool \(pool.pool)")
            var rows: [[String]] = [["KIND", "TARGET", "DETAIL", "RULE"]]
            for planned in pool.operations {
                rows.append(row(planned))
            }
            for redelete in pool.redeletes {
                for key in redelete.keys {
                    rows.append(["redelete", key, "after \(DurationParser.format(redelete.after))", redelete.rule])
                }
            }
            lines += table(rows).map { "  " + $0 }
        }
        if plan.hasSecondLayerWork {
            lines.append("")
            lines.append("after every Redis operation succeeded:")
        }
        for pool in plan.notifications {
            lines.append("")
            lines.append("notify on pool \(pool.pool)")
            lines += table([["KIND", "TARGET", "DETAIL", "RULE"]] + pool.operations.map(row)).map { "  " + $0 }
        }
        for item in plan.webhooks {
            let target = webhooks[item.target]
            lines.append("")
            lines.append("webhook \(item.target)" + (target.map { ": \($0.method) \($0.redactedURL)" } ?? ""))
            for header in target?.headers ?? [] {
                lines.append("  \(header.name): ***")
            }
            lines.append("  body \((target.map { $0.redacting($0.merging(item.body)) } ?? item.body).serialized())")
            lines.append("  rule \(item.rule)")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    private static func counted(_ count: Int, _ noun: String) -> String {
        "\(count) \(noun)\(count == 1 ? "" : "s")"
    }

    /// `, then 2 notifications and 1 webhook request`, or nothing.
    private static func secondLayerSummary(_ plan: Plan) -> String {
        let notifications = plan.notifications.reduce(0) { $0 + $1.operations.count }
        let parts = [
            notifications > 0 ? counted(notifications, "notification") : nil,
            plan.webhooks.isEmpty ? nil : counted(plan.webhooks.count, "webhook request"),
        ].compactMap { $0 }
        return parts.isEmpty ? "" : ", then " + parts.joined(separator: " and ")
    }

    private static func row(_ planned: PlannedOperation) -> [String] {
        let kind = planned.operation.kind.rawValue
        switch planned.operation {
        case .delete(let key), .bump(let key):
            return [kind, key, "", planned.rule]
        case .deletePattern(let pattern):
            return [kind, pattern, "SCAN+UNLINK", planned.rule]
        case .purgeTag(let setKey):
            return [kind, setKey, "members, then set", planned.rule]
        case .expire(let key, let ttl):
            return [kind, key, "ttl \(DurationParser.format(.milliseconds(ttl)))", planned.rule]
        case .precompute(let job):
            return [kind, job.stream, "\(job.job) \(job.argumentsJSON.serialized())", planned.rule]
        case .publish(let message):
            return [kind, message.channel, "\(message.sharded ? "SPUBLISH" : "PUBLISH") \(message.message)", planned.rule]
        }
    }

    private static func table(_ rows: [[String]]) -> [String] {
        let widths = (0..<4).map { column in rows.map { $0[column].count }.max() ?? 0 }
        return rows.map { row in
            row.enumerated().map { column, cell in
                column == row.count - 1 ? cell : cell.padding(toLength: widths[column])
            }.joined(separator: "  ")
        }
    }
}

extension String {
    func padding(toLength length: Int) -> String {
        count >= length ? self : self + String(repeating: " ", count: length - count)
    }
}
