/// The whole `invalidator.yaml`, typed, with every default filled in.
public struct Configuration: Hashable, Sendable {
    public var sources = Sources()
    public var pools: [PoolConfiguration] = []
    public var rules: RulesSource = .files([])
    /// `allow_empty_rules`: an empty rules set invalidates nothing, so `run` refuses
    /// to start with one and a reload to one is rejected, unless this is true.
    public var allowEmptyRules = false
    public var retry = RetryConfiguration()
    public var deadLetters: DeadLetterDestination?
    public var http = HTTPConfiguration()
    public var shutdown = ShutdownConfiguration()

    public init() {}

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
    public enum Mode: String, Hashable, Sendable, CaseIterable {
        case single, replicated, sharded, cluster
    }

    public var name: String
    public var mode: Mode = .single
    /// `host:port` of each node (seed nodes for a cluster).
    public var nodes: [String]
    public var username: String?
    public var password: String?
    public var database = 0
    public var tagPrefix = "tag:"
    public var connectTimeout: Duration = .seconds(2)
    public var commandTimeout: Duration = .seconds(2)

    public init(name: String, nodes: [String]) {
        self.name = name
        self.nodes = nodes
    }
}

public struct RetryConfiguration: Hashable, Sendable {
    public var attempts = 8
    public var initialBackoff: Duration = .milliseconds(50)
    public var maxBackoff: Duration = .seconds(10)

    public init() {}
}

public enum DeadLetterDestination: Hashable, Sendable {
    case redisStream(pool: String, stream: String)
    /// `lockPool`: where replays of the topic take turns (default: the first pool).
    case kafkaTopic(topic: String, lockPool: String?)
}

public struct HTTPConfiguration: Hashable, Sendable {
    public var listen = "0.0.0.0:9090"
    public init() {}
}

public struct ShutdownConfiguration: Hashable, Sendable {
    public var drainTimeout: Duration = .seconds(20)
    public init() {}
}
