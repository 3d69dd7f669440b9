/// A message that names what to drop (`format: direct`), as a publisher that
/// already knows its cache keys sends it: `{"pattern": "user:acme:*", "tenantId": "acme"}`.
public struct DirectInvalidation: Hashable, Sendable {
    public enum Request: Hashable, Sendable, CustomStringConvertible {
        /// One key, deleted as it is.
        case key(String)
        /// A Redis glob, as the publisher wrote it.
        case pattern(String)
        /// A tag name; each pool's `tag_prefix` is prepended, as for rules.
        case tag(String)

        public var description: String {
            switch self {
            case .key(let key): "key '\(key)'"
            case .pattern(let pattern): "pattern '\(pattern)'"
            case .tag(let tag): "tag '\(tag)'"
            }
        }
    }

    /// Never empty.
    public var requests: [Request]
    public var tenant: String?
    public var eventID: String?
    public var occurredAt: String?
    /// The allow-list and pools of the source the message came from.
    public var policy: DirectInvalidationPolicy

    public init(requests: [Request], tenant: String?, eventID: String? = nil, occurredAt: String? = nil, policy: DirectInvalidationPolicy) {
        self.requests = requests
        self.tenant = tenant
        self.eventID = eventID
        self.occurredAt = occurredAt
        self.policy = policy
    }

    /// Most requests one message may carry, as for ids of a change event.
    public static let maximumRequests = ChangeEvent.maximumIDs

    /// The message as the `ChangeEvent` a plan records (entity `direct`, op
    /// `delete`, one "id" per request), for output, logs and latency.
    var summaryEvent: ChangeEvent {
        ChangeEvent(
            entity: DirectInvalidationPolicy.ruleName, ids: requests.map(\.description), op: .delete,
            tenant: tenant, occurredAt: occurredAt, eventID: eventID)
    }
}

/// What a `format: direct` source lets its messages drop.
public struct DirectInvalidationPolicy: Hashable, Sendable {
    /// The rule name on a direct message's operations (metrics, logs, dead letters).
    public static let ruleName = "direct"

    /// `allow`: a request runs only when every key it can match is matched by one
    /// of these with the message's tenant put in. Never empty in a loaded config.
    public var allow: [AllowEntry]
    /// `pools`: where the operations run; nil for every pool.
    public var pools: [String]?

    public init(allow: [AllowEntry], pools: [String]? = nil) {
        self.allow = allow
        self.pools = pools
    }
}

/// One `allow` entry: a Redis glob in which `{tenant}` stands for the message's
/// tenant, glob-escaped, so a tenant of `*` is the literal `*` and widens nothing.
public struct AllowEntry: Hashable, Sendable, CustomStringConvertible {
    public let source: String
    private let template: Template

    public var description: String { source }

    /// - Throws: when the entry has a placeholder other than `{tenant}`, does not
    ///   parse as a glob, could reach keys of any prefix (`*`, `{tenant}*`), or
    ///   puts a wildcard right after `{tenant}` (`user:{tenant}*`).
    public init(compiling source: String) throws(Template.CompileError) {
        let template = try Template(compiling: source)
        for segment in template.segments {
            if case .placeholder(let placeholder) = segment, placeholder.field != .tenant || placeholder.isOptional {
                throw Template.CompileError(offset: 0, message: "allow entry '\(source)' uses \(placeholder); only {tenant} may appear in an allow entry")
            }
        }
        self.source = source
        self.template = template
        // Any tenant stands for all: it is escaped, so it is literal text of at least one byte.
        guard let glob = glob(tenant: "t") else {
            throw Template.CompileError(offset: 0, message: "allow entry '\(source)' is not a glob Redis reads one way (an unclosed '[' or a trailing '\\')")
        }
        // The template's own text must start it too: `{tenant}*` reaches every key that starts with any tenant's name.
        guard glob.hasLiteralPrefix, template.hasLiteralPrefixBeforeWildcard else {
            throw Template.CompileError(offset: 0, message: "allow entry '\(source)' starts with a wildcard, so it would allow keys of any prefix")
        }
        for (segment, next) in zip(template.segments, template.segments.dropFirst()) {
            if case .placeholder = segment, case .literal(let text) = next, let first = text.first, Glob.wildcards.contains(first) {
                throw Template.CompileError(offset: 0, message: "allow entry '\(source)' has a wildcard right after {tenant}, so tenant 'acme' would reach the keys of tenant 'acme2'; put a separator after it, as in 'user:{tenant}:*'")
            }
        }
    }

    /// The entry for one tenant; nil when it uses `{tenant}` and there is none.
    package func glob(tenant: String?) -> GlobPattern? {
        var text = ""
        for segment in template.segments {
            switch segment {
            case .literal(let literal): text += literal
            case .placeholder:
                guard let tenant, !tenant.isEmpty else { return nil }
                text += Glob.escape(tenant)
            }
        }
        return GlobPattern(text)
    }

    /// The entry's text for one tenant, for messages.
    package func rendered(tenant: String?) -> String {
        guard let tenant else { return source }
        return template.segments.map { segment in
            switch segment {
            case .literal(let literal): literal
            case .placeholder: Glob.escape(tenant)
            }
        }.joined()
    }
}

extension DirectInvalidationPolicy {
    /// Why `request` may not run for `tenant` (in `pools`), or nil when it may.
    func refusal(of request: DirectInvalidation.Request, tenant: String?, pools: [PoolTarget]) -> String? {
        let entries = allow.compactMap { entry in entry.glob(tenant: tenant).map { (entry, $0) } }
        guard !entries.isEmpty else {
            return "\(request) is not allowed: no entry (every allow entry uses {tenant} and the message has no tenant)"
        }
        let candidates: [String]
        switch request {
        case .key(let key): candidates = [Glob.escape(key)]
        case .pattern(let pattern): candidates = [pattern]
        // A tag purge drops the set's members, so its set key must be an allowed key in every pool.
        case .tag(let tag): candidates = pools.map { Glob.escape($0.tagPrefix + tag) }
        }
        for candidate in candidates {
            guard let glob = GlobPattern(candidate) else {
                return "\(request) is not allowed: it is not a glob Redis reads one way (an unclosed '[' or a trailing '\\')"
            }
            guard glob.hasLiteralPrefix else {
                return "\(request) is not allowed: it starts with a wildcard, which reaches keys of any prefix"
            }
            guard entries.contains(where: { glob.isContained(in: $0.1) }) else {
                let tried = entries.prefix(3).map { "'\($0.0.source)' (as '\($0.0.rendered(tenant: tenant))')" }
                let more = entries.count > 3 ? " and \(entries.count - 3) more" : ""
                let subject = if case .tag = request { "its set key '\(candidate)'" } else { "it" }
                return "\(request) is not allowed for tenant \(tenant.map { "'\($0)'" } ?? "(none)"): \(subject) can match keys outside every allow entry; failed \(tried.joined(separator: ", "))\(more)"
            }
        }
        return nil
    }
}

extension EventDecoder {
    /// A direct message: `keys`, `patterns` and `tags` (each a string or a list of
    /// strings; at least one request in all), an optional `tenant`, `event_id` and
    /// `occurred_at`, each read where the source's mapping says.
    static func decodeDirect(_ object: JSONObject, fields: FieldMapping, policy: DirectInvalidationPolicy) throws(EventDecodingError) -> DirectInvalidation {
        func field(_ name: String) throws(EventDecodingError) -> (value: JSONValue?, label: String) {
            guard let location = fields.locations[name] else { return (object[name], name) }
            return (try fields.value(of: name, at: location, in: object), location.description)
        }
        var requests: [DirectInvalidation.Request] = []
        for (name, makeRequest) in [
            ("keys", DirectInvalidation.Request.key), ("patterns", DirectInvalidation.Request.pattern),
            ("tags", DirectInvalidation.Request.tag),
        ] {
            let (value, label) = try field(name)
            for text in try requestTexts(value, label: label) {
                requests.append(makeRequest(text))
            }
        }
        guard !requests.isEmpty else {
            throw EventDecodingError(.schemaViolation, "a direct message needs keys, patterns or tags (\(["keys", "patterns", "tags"].map { fields.locations[$0]?.description ?? $0 }.joined(separator: ", ")))")
        }
        guard requests.count <= DirectInvalidation.maximumRequests else {
            throw EventDecodingError(.schemaViolation, "a direct message has \(requests.count) requests, over the limit of \(DirectInvalidation.maximumRequests)")
        }
        let (tenantValue, tenantLabel) = try field("tenant")
        let tenant = try optionalScalar(tenantValue, named: tenantLabel)
        if let tenant, tenant.isEmpty || Template.containsControlCharacter(tenant) {
            throw EventDecodingError(.schemaViolation, "\(tenantLabel) must be non-empty and free of control characters")
        }
        let (eventID, eventIDLabel) = try field("event_id")
        let (occurredAt, occurredAtLabel) = try field("occurred_at")
        return DirectInvalidation(
            requests: requests, tenant: tenant,
            eventID: try optionalString(eventID, named: eventIDLabel),
            occurredAt: try optionalString(occurredAt, named: occurredAtLabel),
            policy: policy)
    }

    /// A string or a list of strings, each a usable key: non-empty, no control
    /// characters, within the key length limit.
    private static func requestTexts(_ value: JSONValue?, label: String) throws(EventDecodingError) -> [String] {
        let elements: [JSONValue]
        switch value {
        case nil, .null?: return []
        case .string(let text)?: elements = [.string(text)]
        case .array(let array)?:
            guard array.count <= DirectInvalidation.maximumRequests else {
                throw EventDecodingError(.schemaViolation, "\(label) has \(array.count) entries, over the limit of \(DirectInvalidation.maximumRequests)")
            }
            elements = array
        default: throw EventDecodingError(.schemaViolation, "\(label) must be a string or a list of strings")
        }
        var texts: [String] = []
        for element in elements {
            guard case .string(let text) = element, !text.isEmpty else {
                throw EventDecodingError(.schemaViolation, "\(label) must hold non-empty strings")
            }
            guard !Template.containsControlCharacter(text) else {
                throw EventDecodingError(.schemaViolation, "\(label) holds a value with a control character")
            }
            guard text.utf8.count <= Planner.maximumKeyBytes else {
                throw EventDecodingError(.schemaViolation, "\(label) holds a value of \(text.utf8.count) bytes, over the \(Planner.maximumKeyBytes)-byte limit")
            }
            texts.append(text)
        }
        return texts
    }
}
