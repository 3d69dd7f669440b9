import InvalidatorCore

extension Optional where Wrapped == any WebhookDelivering {
    /// Sends webhook items through the config's webhook client. Without one (a config with no
    /// `webhooks:`, or a record replayed after its target left the config), every item fails.
    package func deliver(_ items: [WebhookItem]) async -> [WebhookDeliveryFailure] {
        guard !items.isEmpty else { return [] }
        guard let client = self else {
            return items.indices.map {
                WebhookDeliveryFailure(item: $0, target: items[$0].target, errorClass: "no-target",
                                       message: "webhook target '\(items[$0].target)' is not in the config", attempts: 0)
            }
        }
        return await client.deliver(items)
    }
}

/// An event's `notify` and `webhook` work: it runs only once the event's Redis
/// operations succeeded on every node, so no app or CDN refills from stale Redis.
package struct SecondLayerWork: Sendable, Hashable {
    /// `.publish` operations per pool.
    package var notifications: [PoolPlan]
    package var webhooks: [WebhookItem]

    package init(notifications: [PoolPlan] = [], webhooks: [WebhookItem] = []) {
        self.notifications = notifications
        self.webhooks = webhooks
    }

    package init(_ plan: Plan) {
        self.init(notifications: plan.notifications, webhooks: plan.webhooks)
    }

    package var isEmpty: Bool { notifications.isEmpty && webhooks.isEmpty }

    /// `{"notifications": [{"pool", "operations"}], "webhooks": [...]}`.
    var json: JSONValue {
        .object([
            "notifications": .array(notifications.map { pool in
                .object(["pool": .string(pool.pool), "operations": .array(pool.operations.map(PlanDescription.operationJSON))])
            }),
            "webhooks": .array(webhooks.map(\.json)),
        ])
    }

    init(json value: JSONValue) throws(DeadLetterDecodingError) {
        guard let object = value.objectValue else { throw DeadLetterDecodingError("after is not an object") }
        var notifications: [PoolPlan] = []
        for (index, entry) in (object["notifications"]?.arrayValue ?? []).enumerated() {
            guard let pool = entry.objectValue?["pool"]?.stringValue,
                  let operations = entry.objectValue?["operations"]?.arrayValue?.map(PlanDescription.plannedOperation(json:)),
                  operations.allSatisfy({ $0 != nil })
            else { throw DeadLetterDecodingError("after.notifications[\(index)] is not a pool and its operations") }
            notifications.append(PoolPlan(pool: pool, operations: operations.compactMap { $0 }))
        }
        self.init(notifications: notifications, webhooks: try WebhookItem.items(json: object["webhooks"], field: "after.webhooks"))
    }
}

extension WebhookItem {
    /// One line for output: `webhook cdn {"tags":["product-1"]}`.
    var summary: String { "webhook \(target) \(body.serialized())" }

    /// `{"target", "rule", "body"}`.
    var json: JSONValue {
        .object(["target": .string(target), "rule": .string(rule), "body": body])
    }

    static func items(json value: JSONValue?, field: String) throws(DeadLetterDecodingError) -> [WebhookItem] {
        var items: [WebhookItem] = []
        for (index, entry) in (value?.arrayValue ?? []).enumerated() {
            guard let object = entry.objectValue, let target = object["target"]?.stringValue,
                  let rule = object["rule"]?.stringValue, let body = object["body"]
            else { throw DeadLetterDecodingError("\(field)[\(index)] is not a webhook item") }
            items.append(WebhookItem(target: target, body: body, rule: rule))
        }
        return items
    }
}

extension WebhookDeliveryFailure {
    /// `failures` per target, targets in name order.
    static func byTarget(_ failures: [WebhookDeliveryFailure]) -> [(target: String, failures: [WebhookDeliveryFailure])] {
        Dictionary(grouping: failures, by: \.target).sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }
}

extension DeadLetter {
    /// Makes this the `delivery-failed` record of `target`: the items of `items` its
    /// `failures` name, the first failure's error, no pool, node or operations.
    /// Attempts and times are the caller's.
    mutating func recordDeliveryFailure(target: String, _ failures: [WebhookDeliveryFailure], of items: [WebhookItem]) {
        reason = .deliveryFailed
        errorClass = failures.first?.errorClass ?? ""
        errorMessage = failures.first?.message ?? ""
        pool = nil
        node = nil
        operations = []
        self.target = target
        webhooks = failures.map { items[$0.item] }
        let rules = Set(webhooks.map(\.rule))
        rule = rules.count == 1 ? rules.first : nil
    }
}
