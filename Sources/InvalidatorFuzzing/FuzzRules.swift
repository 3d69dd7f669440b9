import InvalidatorCore

/// The rules the event target plans with: every action, every placeholder kind,
/// optional and nested placeholders, hash tags, glob-escaped patterns, pool
/// selection, `changed` and `op` filters, `notify` messages and `webhook` bodies.
enum FuzzRules {
    static let yaml = """
        rules:
          - name: user-profile
            match: { entity: user, op: [update, delete], changed: [email, name] }
            pools: [primary, edge]
            delete: ["user:{tenant}:{id}", "org-members:{before.org_id?}", "org-members:{after.org_id?}", "cart:{{{id}}}"]
            patterns: ["session:{tenant}:{id}:*", "feed:{attributes.region?}:{version?}:*", "cart:{{{id}}}:{after.address.city?}*"]
            tags: ["tenant:{tenant}:users"]
            expire: { keys: ["page:user:{id}"], ttl: 5s }
            bump: ["version:user:{id}"]
            redelete_after: 500ms
            precompute:
              - { stream: "precompute:{entity}", job: warm-user, args: { id: "{id}", city: "{after.address.city?}", op: "{op}" } }
          - name: any-entity
            match: { entity: [product, order, users, public.users, inventory] }
            delete: ["{entity}:{id}", "{entity}:{id}:{attributes.sku?}"]
            patterns: ["listing:{attributes.category?}:*"]
            tags: ["{entity}:{tenant?}"]
          - name: created
            match: { entity: user, op: create }
            pools: [edge]
            delete: ["user-list:{tenant?}"]
          - name: listeners
            match: { entity: [user, product] }
            notify:
              - channel: "cache:{entity}"
                message: { pattern: "{entity}:{tenant?}:{id}", ids: ["{id}", "x-{attributes.sku?}"], city: "{after.address.city?}", n: 1, on: true, none: null }
              - channel: "shard:{{{tenant?}}}"
                message: "{id}"
                pools: [edge]
                sharded: true
            webhook: { target: cdn, body: { tags: ["{entity}-{id}", "{attributes.sku?}"], tenant: "{tenant?}" } }
        """

    /// The target of the `webhook` action.
    static let webhooks: [WebhookTarget] = {
        var cdn = WebhookTarget(name: "cdn", url: "https://cdn.example/purge")
        cdn.body = .object(["tags": .array([.string("all")])])
        cdn.batch = WebhookTarget.Batch(field: "tags", max: 100)
        return [cdn]
    }()

    /// A source's mapped variant of `format`: renamed and nested fields, a composite
    /// Debezium key, op names; for auto, a direct source with an allow-list.
    static func mappedDecoder(_ format: EventFormat) -> EventDecoder {
        let path = { (text: String) in FieldMapping.Location(paths: [text.split(separator: ".").map(String.init)]) }
        switch format {
        case .native, .cloudevents:
            return EventDecoder(format: format, fields: FieldMapping(
                locations: ["tenant": path("ctx.tenantId"), "id": path("payload.after.user_id"), "entity": path("type"), "op": path("action")],
                opValues: ["created": .create, "removed": .delete]))
        case .debezium:
            return EventDecoder(format: format, fields: FieldMapping(locations: [
                "id": FieldMapping.Location(paths: [["org_id"], ["user_id"]]), "tenant": path("tenant_id"),
            ]))
        case .auto, .direct:
            return EventDecoder(
                format: .direct, fields: FieldMapping(locations: ["patterns": path("pattern"), "tenant": path("tenantId")]),
                direct: directPolicy)
        }
    }

    static let directPolicy: DirectInvalidationPolicy = {
        do {
            let allow = try ["user:{tenant}:*", "api:*:{tenant}:users:*", "edge-tag:{tenant}:*", "tag:{tenant}:*", "static:[a-c]?"]
                .map(AllowEntry.init(compiling:))
            return DirectInvalidationPolicy(allow: allow, pools: ["primary", "edge"])
        } catch {
            fatalError("the fuzz allow-list does not compile: \(error)")
        }
    }()

    static let pools = [PoolTarget(name: "primary"), PoolTarget(name: "edge", tagPrefix: "edge-tag:")]

    static let planner: Planner = {
        do {
            let rules = try RulesLoader.load(yaml: yaml, file: "fuzz-rules.yaml", knownPools: pools.map(\.name), webhooks: webhooks)
            return Planner(rules: rules, pools: pools, webhooks: webhooks)
        } catch {
            fatalError("the fuzz rules do not load: \(error)")
        }
    }()
}

/// What every plan promises, whatever the event held.
enum PlanInvariants {
    static func check(_ plan: Plan) -> [String] {
        var problems: [String] = []
        for pool in plan.pools {
            for planned in pool.operations {
                switch planned.operation {
                case .delete(let key), .expire(let key, _), .bump(let key), .purgeTag(let key):
                    problems += checkKey(key)
                case .deletePattern(let pattern) where planned.rule == DirectInvalidationPolicy.ruleName:
                    problems += checkKey(pattern)
                    // A publisher's pattern runs only inside the allow-list.
                    if !directPatternIsAllowed(pattern, tenant: plan.event.tenant) {
                        problems.append("direct pattern \(pattern) runs outside the allow-list")
                    }
                case .deletePattern(let pattern):
                    problems += checkKey(pattern)
                    // Every fuzz pattern ends in its only wildcard: a value must never add one.
                    if unescapedWildcards(in: pattern) != [pattern.utf8.count - 1] {
                        problems.append("pattern \(pattern) has wildcards that do not come from its template")
                    }
                case .precompute(let job):
                    problems += checkKey(job.stream)
                case .publish(let message):
                    problems += checkKey(message.channel)
                }
            }
        }
        for pool in plan.notifications {
            for planned in pool.operations {
                guard case .publish(let message) = planned.operation else {
                    problems.append("a notification is \(planned.operation.kind.rawValue), not notify")
                    continue
                }
                problems += checkKey(message.channel)
                problems += checkMessage(message.message, rule: planned.rule)
            }
        }
        for item in plan.webhooks {
            // The target's body (its secrets) is merged only when a request is sent, never into a plan.
            if item.body.objectValue?["tags"]?.arrayValue?.first == .string("all") {
                problems.append("webhook body \(item.body.serialized()) carries the target's body")
            }
            if item.body.serialized().utf8.count > Planner.maximumMessageBytes {
                problems.append("a webhook body over the size limit was planned")
            }
        }
        return problems
    }

    /// A message is JSON that parses back to itself, in the shape of one of its rule's templates.
    private static func checkMessage(_ text: String, rule: String) -> [String] {
        guard text.utf8.count <= Planner.maximumMessageBytes else { return ["a message over the size limit was planned"] }
        let parsed: JSONValue
        do {
            parsed = try JSONParser.parse(bytes: Array(text.utf8))
        } catch {
            return ["message \(text) is not JSON: \(error)"]
        }
        if parsed.serialized() != text { return ["message \(text) does not serialize back to itself"] }
        let templates = FuzzRules.planner.rules.rules.first { $0.name == rule }?.notify.map(\.message.root) ?? []
        return templates.contains { hasShape(parsed, of: $0) } ? [] : ["message \(text) has none of its rule's shapes"]
    }

    /// Whether `value` is what `element` renders to: literals as they are, strings
    /// as strings, lists of rendered elements, objects with the template's fields
    /// in order (optional ones may be left out).
    private static func hasShape(_ value: JSONValue, of element: JSONTemplate.Element) -> Bool {
        switch (element, value) {
        case (.literal(let literal), _):
            return literal == value
        case (.string, .string):
            return true
        case (.array(let elements), .array(let values)):
            return values.allSatisfy { value in elements.contains { hasShape(value, of: $0) } }
        case (.object(let fields), .object(let object)):
            var remaining = fields[...]
            for field in object.fields {
                guard let index = remaining.firstIndex(where: { $0.key == field.key }), hasShape(field.value, of: remaining[index].value) else {
                    return false
                }
                remaining = remaining[(index + 1)...]
            }
            return true
        default:
            return false
        }
    }

    /// Byte offsets of the wildcards Redis's matcher sees in `pattern`: `*`, `?` and
    /// the `[` of a class; a backslash makes the next byte literal.
    static func unescapedWildcards(in pattern: String) -> [Int] {
        var offsets: [Int] = []
        var bytes = Array(pattern.utf8)[...]
        var offset = 0
        while let byte = bytes.popFirst() {
            switch byte {
            case UInt8(ascii: "\\"):
                _ = bytes.popFirst()
                offset += 1
            case UInt8(ascii: "*"), UInt8(ascii: "?"):
                offsets.append(offset)
            case UInt8(ascii: "["):
                offsets.append(offset)
                // The class runs to the next unescaped `]`.
                while let inner = bytes.popFirst() {
                    offset += 1
                    if inner == UInt8(ascii: "\\") {
                        _ = bytes.popFirst()
                        offset += 1
                    } else if inner == UInt8(ascii: "]") {
                        break
                    }
                }
            default:
                break
            }
            offset += 1
        }
        return offsets
    }

    /// Checked apart from the planner's containment proof: the pattern's literal
    /// prefix and that of an allow entry for the message's tenant must agree (one
    /// starts with the other), or the pattern reaches another tenant's keys.
    private static func directPatternIsAllowed(_ pattern: String, tenant: String?) -> Bool {
        let prefix = literalPrefix(of: pattern)
        return FuzzRules.directPolicy.allow.contains { entry in
            guard entry.glob(tenant: tenant) != nil else { return false }
            let allowed = literalPrefix(of: entry.rendered(tenant: tenant))
            return prefix.starts(with: allowed) || allowed.starts(with: prefix)
        }
    }

    /// The bytes a glob's keys all start with: up to its first wildcard, escapes undone.
    private static func literalPrefix(of glob: String) -> [UInt8] {
        var prefix: [UInt8] = []
        var bytes = Array(glob.utf8)[...]
        while let byte = bytes.popFirst() {
            switch byte {
            case UInt8(ascii: "\\"):
                guard let escaped = bytes.popFirst() else { return prefix }
                prefix.append(escaped)
            case UInt8(ascii: "*"), UInt8(ascii: "?"), UInt8(ascii: "["):
                return prefix
            default:
                prefix.append(byte)
            }
        }
        return prefix
    }

    private static func checkKey(_ key: String) -> [String] {
        var problems: [String] = []
        if key.utf8.count > Planner.maximumKeyBytes { problems.append("a key of \(key.utf8.count) bytes was planned") }
        if Template.containsControlCharacter(key) { problems.append("a key with a control character was planned") }
        if key.isEmpty { problems.append("an empty key was planned") }
        return problems
    }
}
