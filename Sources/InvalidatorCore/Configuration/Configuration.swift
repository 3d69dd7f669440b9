/// The whole `invalidator.yaml`, typed, with every default filled in. One that
/// `ConfigurationLoader` returns is valid as a whole: the Redis, Kafka and runtime
/// layers take its values as they are and check nothing again.
public struct Configuration: Hashable, Sendable {
    /// At least one in a loaded config.
    public var sources = Sources()
    public var pools: [PoolConfiguration] = []
    public var rules: RulesSource = .files([])
    /// `allow_empty_rules`: an empty rules set invalidates nothing, so `run` refuses
    /// to start with one and a reload to one is rejected, unless this is true.
    public var allowEmptyRules = false
    public var retry = RetryPolicy()
    /// Always set in a loaded config (by default a stream on the first pool).
    public var deadLetters: DeadLetterDestination?
    /// `dead_letters.max_records`: how many records a Redis stream store may hold
    /// before the worker stops writing to it, and so stops consuming, until `replay`
    /// makes room (records are never trimmed). nil: no cap (`max_records: 0`, and
    /// always with a Kafka topic, whose retention is its limit).
    public var deadLetterMaxRecords: Int? = Configuration.defaultDeadLetterMaxRecords
    public var http = HTTPConfiguration()
    public var shutdown = ShutdownConfiguration()

    public init() {}

    /// `dead_letters.max_records` when the config does not set it: at the roughly
    /// 1 KB a record takes in a stream, about 100 MB, which the cap reaches long
    /// before a cache node's `maxmemory`, while 100,000 records are more than an
    /// operator replays at once, and stopping then (Kafka retains the events) is
    /// safer than filling the node.
    public static let defaultDeadLetterMaxRecords = 100_000

    public func pool(named name: String) -> PoolConfiguration? {
        pools.first { $0.name == name }
    }

    /// The pools as the planner sees them.
    public var poolTargets: [PoolTarget] {
        pools.map { PoolTarget(name: $0.name, tagPrefix: $0.tagPrefix) }
    }
}

public enum RulesSource: Hashable, Sendable {
    /// Paths as written; relative ones are relative to the config file's folder.
    case files([String])
    case inline(RuleSet)
}

public struct Sources: Hashable, Sendable {
    public var kafka: KafkaSourceConfiguration?
    public var redisPubSub: RedisPubSubSourceConfiguration?
    public var redisStream: RedisStreamSourceConfiguration?

    public init(kafka: KafkaSourceConfiguration? = nil, redisPubSub: RedisPubSubSourceConfiguration? = nil,
                redisStream: RedisStreamSourceConfiguration? = nil) {
        self.kafka = kafka
        self.redisPubSub = redisPubSub
        self.redisStream = redisStream
    }

    public var isEmpty: Bool { kafka == nil && redisPubSub == nil && redisStream == nil }
}

public struct KafkaSourceConfiguration: Hashable, Sendable {
    public var brokers: String
    public var topics: [String]
    public var group = "cache-invalidator"
    /// librdkafka's `group.instance.id`: static group membership (KIP-345) under this
    /// name, unique per worker; nil for a dynamic member, which leaves the group on close.
    public var groupInstanceID: String?
    public var format: EventFormat = .auto
    /// Passed verbatim to librdkafka.
    public var properties: [String: String] = [:]

    public init(brokers: String, topics: [String]) {
        self.brokers = brokers
        self.topics = topics
    }
}

public struct RedisPubSubSourceConfiguration: Hashable, Sendable {
    public var pool: String
    public var channels: [String] = []
    public var patterns: [String] = []
    public var format: EventFormat = .auto
    /// After this long without any message, a PING checks the subscription is alive.
    public var keepalive: Duration = .seconds(30)

    public init(pool: String) {
        self.pool = pool
    }
}

public struct RedisStreamSourceConfiguration: Hashable, Sendable {
    public var pool: String
    public var streams: [String]
    public var group = "cache-invalidator"
    public var format: EventFormat = .auto
    /// Pending entries idle this long belong to a dead consumer and are claimed.
    public var claimIdle: Duration = .seconds(30)

    public init(pool: String, streams: [String]) {
        self.pool = pool
        self.streams = streams
    }
}

public struct PoolConfiguration: Hashable, Sendable {
    /// How operations are spread over the pool's nodes.
    public enum Mode: String, Hashable, Sendable, CaseIterable {
        /// One node.
        case single
        /// Every node receives every operation (regional or per-zone copies).
        case replicated
        /// Client-side ketama consistent hashing: key operations go to the key's
        /// owner, pattern and tag operations to every node.
        case sharded
        /// Redis Cluster: slots discovered with CLUSTER SLOTS from any seed node.
        case cluster
    }

    /// `connect_timeout` when the config does not set it.
    public static let defaultConnectTimeout: Duration = .seconds(2)
    /// `command_timeout` when the config does not set it.
    public static let defaultCommandTimeout: Duration = .seconds(2)

    public var name: String
    public var mode: Mode = .single
    /// Each node (seed nodes for a cluster): at least one, none twice, exactly one when `single`.
    public var nodes: [HostPort]
    public var username: String?
    public var password: String?
    /// 0 in a cluster.
    public var database = 0
    public var tagPrefix = "tag:"
    public var connectTimeout = PoolConfiguration.defaultConnectTimeout
    public var commandTimeout = PoolConfiguration.defaultCommandTimeout

    public init(name: String, nodes: [HostPort]) {
        self.name = name
        self.nodes = nodes
    }
}

public enum DeadLetterDestination: Hashable, Sendable {
    /// `pool` is one of the config's pools.
    case redisStream(pool: String, stream: String)
    /// On the brokers of `sources.kafka`, which a config with a topic always has.
    /// `lockPool`: where replays of the topic take turns (default: the first pool).
    case kafkaTopic(topic: String, lockPool: String?)
}

public struct HTTPConfiguration: Hashable, Sendable {
    public var listen = HostPort(host: "0.0.0.0", port: 9090)
    public init() {}
}

public struct ShutdownConfiguration: Hashable, Sendable {
    public var drainTimeout: Duration = .seconds(20)
    public init() {}
}
