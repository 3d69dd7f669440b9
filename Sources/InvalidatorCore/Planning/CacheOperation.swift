/// One thing to do to a cache, already rendered to concrete Redis keys.
///
/// The planner produces these; the Redis layer routes and executes them. Nothing
/// here knows about nodes or connections.
public enum CacheOperation: Hashable, Sendable {
    /// UNLINK one key.
    case delete(key: String)
    /// SCAN MATCH `pattern` + UNLINK on every primary of the pool. The pattern's
    /// placeholder values are already glob-escaped.
    case deletePattern(pattern: String)
    /// UNLINK every member of the set `setKey` (tag prefix already applied), then the set.
    case purgeTag(setKey: String)
    /// Shorten the key's TTL to `ttlMilliseconds`; never lengthen it. A key without a
    /// TTL gets one. A missing key stays missing.
    case expire(key: String, ttlMilliseconds: Int64)
    /// INCR a version key.
    case bump(key: String)
    /// XADD a precomputation job. Indirect: the job is five fields, and inline it
    /// would make every operation (mostly plain deletes) that large to copy and hash.
    indirect case precompute(PrecomputeJob)
    /// PUBLISH (or SPUBLISH) a `notify` action's message. Runs only once every other
    /// operation of its event succeeded (see ``Plan/notifications``).
    indirect case publish(PublishMessage)

    /// The kind as used in output, metrics labels and dead letters.
    public var kind: Kind {
        switch self {
        case .delete: .delete
        case .deletePattern: .pattern
        case .purgeTag: .tag
        case .expire: .expire
        case .bump: .bump
        case .precompute: .precompute
        case .publish: .notify
        }
    }

    public enum Kind: String, Sendable, CaseIterable, Codable {
        case delete, pattern, tag, expire, bump, precompute, notify
    }

    /// The key that decides which node owns this operation, or nil when the
    /// operation must run on every primary (patterns; tags in sharded pools).
    package var routingKey: String? {
        switch self {
        case .delete(let key), .expire(let key, _), .bump(let key): key
        case .purgeTag(let setKey): setKey
        case .precompute(let job): job.stream
        case .publish(let message): message.channel
        case .deletePattern: nil
        }
    }
}

/// A job appended to a Redis stream for a worker to warm a cache entry.
public struct PrecomputeJob: Hashable, Sendable {
    public var stream: String
    public var job: String
    /// Arguments in rule order, values rendered.
    public var args: [Argument]
    public var eventID: String?
    public var occurredAt: String?

    public struct Argument: Hashable, Sendable {
        public var name: String
        public var value: String
        public init(name: String, value: String) {
            self.name = name
            self.value = value
        }
    }

    public init(stream: String, job: String, args: [Argument], eventID: String?, occurredAt: String?) {
        self.stream = stream
        self.job = job
        self.args = args
        self.eventID = eventID
        self.occurredAt = occurredAt
    }

    /// Identity for deduplication: the same job with the same arguments, whatever event asked for it.
    package var deduplicationKey: String {
        var key = stream + "\u{0}" + job
        for argument in args {
            key += "\u{0}" + argument.name + "=" + argument.value
        }
        return key
    }
}

/// A message for the apps' own invalidation listeners (in-process caches).
public struct PublishMessage: Hashable, Sendable {
    public var channel: String
    /// Serialized JSON.
    public var message: String
    /// SPUBLISH to the shard channel instead of PUBLISH (Redis Cluster 7+).
    public var sharded: Bool

    public init(channel: String, message: String, sharded: Bool = false) {
        self.channel = channel
        self.message = message
        self.sharded = sharded
    }
}

extension CacheOperation: CustomStringConvertible {
    /// One line for output and logs, e.g. `delete user:42` or `expire page:1 5000ms`.
    public var description: String {
        switch self {
        case .delete(let key): "delete \(key)"
        case .deletePattern(let pattern): "pattern \(pattern)"
        case .purgeTag(let setKey): "tag \(setKey)"
        case .expire(let key, let ttl): "expire \(key) \(ttl)ms"
        case .bump(let key): "bump \(key)"
        case .precompute(let job): "precompute \(job.stream) \(job.job)"
        case .publish(let message): "notify \(message.channel)"
        }
    }
}

extension PrecomputeJob {
    /// The arguments as a JSON object in rule order, as the job's `args` field carries them.
    package var argumentsJSON: JSONValue {
        .object(JSONObject(args.map { JSONObject.Field(key: $0.name, value: .string($0.value)) }))
    }
}
