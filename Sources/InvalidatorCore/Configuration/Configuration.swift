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
    /// `webhooks:`, by name: the targets of rules' `webhook` actions.
    public var webhooks: [WebhookTarget] = []
    /// `canary:`; its built-in rule is in force even when it is not `enabled`.
    public var canary = CanaryConfiguration()

    public init() {}

    /// What is valid but unwise, one sentence each: `validate` prints them and `run` logs them.
    public var warnings: [String] {
        pools.filter { $0.tls?.verify == false }.map { pool in
            "pool '\(pool.name)' has tls.verify: false: the servers' certificates are not checked, so anyone on the network path can pose as its nodes"
        } + webhooks.flatMap { target in
            var warnings: [String] = []
            if target.tls?.verify == false {
                warnings.append("webhook '\(target.name)' has tls.verify: false: the server's certificate is not checked, so anyone on the network path can pose as it and read its headers")
            }
            if WebhookURL.scheme(of: target.url) == "http", !target.headers.isEmpty {
                warnings.append("webhook '\(target.name)' sends headers over http://, in clear text; use https:// if they hold a secret")
            }
            return warnings
        } + canaryWarnings
    }

    private var canaryWarnings: [String] {
        guard canary.enabled, let pubSub = sources.redisPubSub, !pubSub.patterns.isEmpty else { return [] }
        return ["sources.redis_pubsub subscribes to patterns, which carry no canary (there is no channel to publish on)"
            + (pubSub.channels.isEmpty ? "; add a literal channel for the canary to check this source" : "; only its channels are checked")]
    }

    /// `dead_letters.max_records` when the config does not set it: at the roughly
    /// 1 KB a record takes in a stream, about 100 MB, which the cap reaches long
    /// before a cache node's `maxmemory`, while 100,000 records are more than an
    /// operator replays at once, and stopping then (Kafka retains the events) is
    /// safer than filling the node.
    public static let defaultDeadLetterMaxRecords = 100_000

    public func pool(named name: String) -> PoolConfiguration? {
        pools.first { $0.name == name }
    }

    public func webhook(named name: String) -> WebhookTarget? {
        webhooks.first { $0.name == name }
    }

    /// The pools as the planner sees them.
    public var poolTargets: [PoolTarget] {
        pools.map { PoolTarget(name: $0.name, tagPrefix: $0.tagPrefix) }
    }

    /// The planner of `rules` with the built-in canary rule, as every command that applies events uses it.
    public func planner(rules: RuleSet) -> Planner {
        Planner(rules: rules, pools: poolTargets, webhooks: webhooks, canary: canary)
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

    /// Makes every source's decoder read canary events whatever its format.
    mutating func setCanaryEntity(_ entity: String) {
        kafka?.reading.canaryEntity = entity
        redisPubSub?.reading.canaryEntity = entity
        redisStream?.reading.canaryEntity = entity
    }
}

public struct KafkaSourceConfiguration: Hashable, Sendable {
    public var brokers: String
    public var topics: [String]
    public var group = "cache-invalidator"
    /// librdkafka's `group.instance.id`: static group membership (KIP-345) under this
    /// name, unique per worker; nil for a dynamic member, which leaves the group on close.
    public var groupInstanceID: String?
    public var format: EventFormat = .auto
    /// `fields`, `op_values`, `allow`, `pools`: see `SourceReading`.
    public var reading = SourceReading()
    /// Passed verbatim to librdkafka.
    public var properties: [String: String] = [:]
    /// `max_buffered_bytes`: most memory librdkafka may fill with events fetched ahead
    /// of processing; nil for the consumer's default. `properties` that set the same
    /// librdkafka limits win over it.
    public var maxBufferedBytes: Int?

    public init(brokers: String, topics: [String]) {
        self.brokers = brokers
        self.topics = topics
    }
}

/// Descriptions that show `***` for the values of librdkafka properties that hold
/// secrets (`sasl.password`, `ssl.key.password`, `ssl.key.pem`, OAuth client secrets).
extension KafkaSourceConfiguration: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// Whether librdkafka's property `name` holds a secret, or may (its OAuth config string).
    static func isSecretProperty(_ name: String) -> Bool {
        let lowered = name.lowercased()
        return ["password", "secret", ".pem", "sasl.oauthbearer.config"].contains { lowered.contains($0) }
    }

    private var redactedProperties: [String: String] {
        Dictionary(uniqueKeysWithValues: properties.map { ($0.key, Self.isSecretProperty($0.key) ? "***" : $0.value) })
    }

    public var description: String {
        "KafkaSourceConfiguration(brokers: \(brokers), topics: \(topics), group: \(group), "
            + "groupInstanceID: \(groupInstanceID ?? "nil"), format: \(format), properties: \(redactedProperties), "
            + "maxBufferedBytes: \(maxBufferedBytes.map(String.init) ?? "nil"))"
    }

    public var debugDescription: String { description }

    public var customMirror: Mirror {
        Mirror(self, children: [
            "brokers": brokers, "topics": topics, "group": group, "groupInstanceID": groupInstanceID as Any,
            "format": format, "properties": redactedProperties, "maxBufferedBytes": maxBufferedBytes as Any,
        ], displayStyle: .struct)
    }
}

public struct RedisPubSubSourceConfiguration: Hashable, Sendable {
    public var pool: String
    public var channels: [String] = []
    public var patterns: [String] = []
    public var format: EventFormat = .auto
    /// `keepalive`: how often an idle subscription checks that its connection still
    /// works, so a silently dropped one is noticed and resubscribed.
    public var keepalive = RedisPubSubSourceConfiguration.defaultKeepalive

    public static let defaultKeepalive: Duration = .seconds(30)
    /// `fields`, `op_values`, `allow`, `pools`: see `SourceReading`.
    public var reading = SourceReading()

    public init(pool: String) {
        self.pool = pool
    }
}

public struct RedisStreamSourceConfiguration: Hashable, Sendable {
    public var pool: String
    public var streams: [String]
    public var group = "cache-invalidator"
    public var format: EventFormat = .auto
    /// `fields`, `op_values`, `allow`, `pools`: see `SourceReading`.
    public var reading = SourceReading()
    /// Pending entries idle this long belong to a dead consumer and are claimed.
    public var claimIdle: Duration = .seconds(30)
    /// `block`: how long one XREADGROUP waits for new entries. Entries arriving
    /// meanwhile are returned at once, and shutdown interrupts the wait, so a long
    /// one only makes an idle worker quieter.
    public var block = RedisStreamSourceConfiguration.defaultBlock

    public static let defaultBlock: Duration = .seconds(30)

    public init(pool: String, streams: [String]) {
        self.pool = pool
        self.streams = streams
    }
}

/// How a source's messages are read beyond their format: where their fields are,
/// and for `format: direct`, what they may drop and where.
public struct SourceReading: Hashable, Sendable {
    public var fields = FieldMapping()
    /// Set exactly when the source's format is `direct`.
    public var direct: DirectInvalidationPolicy?
    /// The canary entity, whose events are read as native ones before the source's format is applied.
    public var canaryEntity: String?

    public init(fields: FieldMapping = FieldMapping(), direct: DirectInvalidationPolicy? = nil, canaryEntity: String? = nil) {
        self.fields = fields
        self.direct = direct
        self.canaryEntity = canaryEntity
    }

    public func decoder(format: EventFormat) -> EventDecoder {
        EventDecoder(format: format, fields: fields, direct: direct, canaryEntity: canaryEntity)
    }
}

extension KafkaSourceConfiguration {
    public var decoder: EventDecoder { reading.decoder(format: format) }
}

extension RedisPubSubSourceConfiguration {
    public var decoder: EventDecoder { reading.decoder(format: format) }
}

extension RedisStreamSourceConfiguration {
    public var decoder: EventDecoder { reading.decoder(format: format) }
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
    /// `scan_count` when the config does not set it, and its ceiling: a larger COUNT
    /// makes each SCAN call (which blocks the node while it runs) longer.
    public static let defaultScanCount = 1000
    public static let largestScanCount = 100_000
    /// `max_pending_patterns` when the config does not set it, and its ceiling.
    public static let defaultMaxPendingPatterns = 10_000
    public static let largestMaxPendingPatterns = 10_000_000

    public var name: String
    public var mode: Mode = .single
    /// Each node (seed nodes for a cluster): at least one, none twice, exactly one when
    /// `single`. Always `host:port`, also when written as a URL: the node's name everywhere.
    public var nodes: [HostPort]
    /// From `username`, or the nodes' URLs.
    public var username: String?
    /// From `password`, or the nodes' URLs. A secret: the descriptions of this type
    /// show `***` in its place.
    public var password: String?
    /// 0 in a cluster.
    public var database = 0
    public var tagPrefix = "tag:"
    public var connectTimeout = PoolConfiguration.defaultConnectTimeout
    public var commandTimeout = PoolConfiguration.defaultCommandTimeout
    /// nil: plain TCP. Set by `tls.enabled: true` or `rediss://` nodes.
    public var tls: TLSConfiguration?
    /// `scan_count`: the COUNT hint of each SCAN and SSCAN call of pattern and tag purges.
    public var scanCount = PoolConfiguration.defaultScanCount
    /// `max_pending_patterns`: pattern operations a source may have waiting or running on
    /// this pool (each runs on every node of the pool) before it stops reading new events.
    public var maxPendingPatterns = PoolConfiguration.defaultMaxPendingPatterns

    public init(name: String, nodes: [HostPort]) {
        self.name = name
        self.nodes = nodes
    }
}

/// Descriptions that never show the password, however the pool is printed:
/// interpolated, `String(reflecting:)`, `dump`, or inside another value.
extension PoolConfiguration: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var description: String {
        "PoolConfiguration(name: \(name), mode: \(mode), nodes: \(nodes), username: \(username ?? "nil"), "
            + "password: \(redactedPassword), database: \(database), tagPrefix: \(tagPrefix), "
            + "connectTimeout: \(connectTimeout), commandTimeout: \(commandTimeout), tls: \(tls.map { "\($0)" } ?? "nil"), "
            + "scanCount: \(scanCount), maxPendingPatterns: \(maxPendingPatterns))"
    }

    public var debugDescription: String { description }

    private var redactedPassword: String { password == nil ? "nil" : "***" }

    public var customMirror: Mirror {
        Mirror(self, children: [
            "name": name, "mode": mode, "nodes": nodes, "username": username as Any,
            "password": redactedPassword, "database": database, "tagPrefix": tagPrefix,
            "connectTimeout": connectTimeout, "commandTimeout": commandTimeout, "tls": tls as Any,
            "scanCount": scanCount, "maxPendingPatterns": maxPendingPatterns,
        ], displayStyle: .struct)
    }
}



/// A pool's `tls:` section, when TLS is on. File paths are as written (after `${...}`
/// expansion); relative ones are relative to the working directory, as `${file:PATH}` is.
public struct TLSConfiguration: Hashable, Sendable {
    /// CA certificates (PEM) to verify the server with; nil: the system's.
    public var caFile: String?
    /// Client certificate and its key (PEM), for servers that ask for one: both or neither.
    public var certFile: String?
    public var keyFile: String?
    /// The name to send (SNI) and to verify the certificate against; nil: each node's host.
    public var serverName: String?
    /// false skips verifying the server's certificate (`validate` warns).
    public var verify = true

    public init() {}
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
    /// `health_check_interval`: how often every node of every pool is PINGed for
    /// `/readyz` and `invalidator_node_up`.
    public var healthCheckInterval = HTTPConfiguration.defaultHealthCheckInterval

    public static let defaultHealthCheckInterval: Duration = .seconds(30)

    public init() {}
}

public struct ShutdownConfiguration: Hashable, Sendable {
    public var drainTimeout: Duration = .seconds(20)
    public init() {}
}
