/// Collects an event's `notify` messages per pool and its `webhook` items, dropping repeats.
struct SecondLayerBuilder {
    private var builders: [PoolPlanBuilder]
    private(set) var webhooks: [WebhookItem] = []
    /// Target and body of each item: a bulk event may render a body per id.
    private var webhooksSeen: Set<WebhookItem> = []

    init(pools: [PoolTarget]) {
        builders = pools.map { PoolPlanBuilder(pool: $0) }
    }

    var notifications: [PoolPlan] {
        builders.compactMap { $0.isEmpty ? nil : $0.build() }
    }

    /// Reads the rule through its reference, as the planner does: a copied `Rule` costs a retain per field.
    mutating func add(_ shared: RuleSet.SharedRule, planner: Planner, renderer: TemplateRenderer) throws(PlanRejection) {
        let name = shared.rule.name
        for notify in shared.rule.notify {
            var rendered = RenderedRule()
            try renderer.render(notify, rule: name) { rendered.operations.append(.publish($0)) }
            planner.forEachPool(named: notify.pools ?? shared.rule.pools) { index in
                builders[index].add(rendered, rule: name, redeleteAfter: nil)
            }
        }
        for webhook in shared.rule.webhooks {
            // The rule's body alone: the target's, which may hold secrets, is merged under it when
            // the request is sent, so dead letters and output never carry it.
            try renderer.render(webhook.body, rule: name) { body in
                // Identity without the rule: two rules asking for the same request send it once.
                if webhooksSeen.insert(WebhookItem(target: webhook.target, body: body, rule: "")).inserted {
                    webhooks.append(WebhookItem(target: webhook.target, body: body, rule: name))
                }
            }
        }
    }
}

extension TemplateRenderer {
    /// The notify action's messages: one, or one per id when its channel or message
    /// uses `{id}` outside a list. A message whose channel or whole message misses
    /// an optional placeholder is skipped.
    func render(_ notify: Rule.Notify, rule: String, emit: (PublishMessage) -> Void) throws(PlanRejection) {
        let perID = notify.channel.usesID || notify.message.rendersPerID
        for id in perID ? event.ids : [event.ids[0]] {
            guard let channel = try render(notify.channel, rule: rule, id: id, escapingGlobs: false),
                  let message = try render(notify.message.root, rule: rule, id: id, ids: perID ? [id] : event.ids)
            else { continue }
            let text = message.serialized()
            try checkSize(text, rule: rule, of: notify.channel.source)
            emit(PublishMessage(channel: channel, message: text, sharded: notify.sharded))
        }
    }

    /// The body once, or once per id when it uses `{id}` outside a list.
    func render(_ body: JSONTemplate, rule: String, emit: (JSONValue) -> Void) throws(PlanRejection) {
        for id in body.rendersPerID ? event.ids : [event.ids[0]] {
            guard let rendered = try render(body.root, rule: rule, id: id, ids: body.rendersPerID ? [id] : event.ids) else { continue }
            try checkSize(rendered.serialized(), rule: rule, of: "webhook body")
            emit(rendered)
        }
    }

    private func checkSize(_ text: String, rule: String, of source: String) throws(PlanRejection) {
        let size = text.utf8.count
        guard size <= Planner.maximumMessageBytes else {
            throw PlanRejection(
                reason: .invalidKey, rule: rule, template: source,
                message: "the rendered message is \(size) bytes, over the \(Planner.maximumMessageBytes)-byte limit")
        }
    }

    /// The element rendered: placeholders as text inside JSON strings. nil when it
    /// misses an optional placeholder; such an array element is dropped and such a
    /// field omitted. A string element of a list that uses `{id}` is repeated for each of `ids`.
    private func render(_ element: JSONTemplate.Element, rule: String, id: String, ids: [String]) throws(PlanRejection) -> JSONValue? {
        switch element {
        case .literal(let value):
            return value
        case .string(let template):
            return try render(template, rule: rule, id: id, escapingGlobs: false, checkLength: false).map(JSONValue.string)
        case .array(let elements):
            var values: [JSONValue] = []
            for element in elements {
                if case .string(let template) = element, template.usesID {
                    for each in ids {
                        if let value = try render(template, rule: rule, id: each, escapingGlobs: false, checkLength: false) {
                            values.append(.string(value))
                        }
                    }
                } else if let value = try render(element, rule: rule, id: id, ids: ids) {
                    values.append(value)
                }
            }
            return .array(values)
        case .object(let fields):
            var object = JSONObject()
            object.fields.reserveCapacity(fields.count)
            for field in fields {
                if let value = try render(field.value, rule: rule, id: id, ids: ids) {
                    object.fields.append(JSONObject.Field(key: field.key, value: value))
                }
            }
            return .object(object)
        }
    }
}
