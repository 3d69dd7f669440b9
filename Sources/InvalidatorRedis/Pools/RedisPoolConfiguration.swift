/// One named pool from the `pools:` section of the configuration.
public struct RedisPoolConfiguration: Sendable {
    /// How operations are spread over the pool's nodes.
    public enum Mode: String, Sendable, Hashable, CaseIterable {
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

    public var name: String
    public var mode: Mode
    /// The nodes; in cluster mode, the seeds used to discover the topology.
    public var nodes: [RedisEndpoint]
    public var username: String?
    public var password: String?
    public var database: Int
    /// Prefix of tag set keys. The planner applies it: ``CacheOperation/purgeTag(setKey:)``
    /// already carries the full key. Kept here because it is part of the pool's contract.
    public var tagPrefix: String
    public var connectTimeout: Duration
    public var commandTimeout: Duration
    public var retry: RetryPolicy
    public var circuitBreaker: CircuitBreakerPolicy
    public var tuning: ExecutionTuning
    /// Key hash for sharded pools; must match the other clients of the same shards.
    public var shardingKeyHash: KetamaRing.KeyHash

    /// - Parameter nodes: `host:port` strings.
    /// - Throws: ``RedisConfigurationError`` naming the first problem found.
    public init(
        name: String,
        mode: Mode,
        nodes: [String],
        username: String? = nil,
        password: String? = nil,
        database: Int = 0,
        tagPrefix: String = "tag:",
        connectTimeout: Duration = .seconds(2),
        commandTimeout: Duration = .seconds(5),
        retry: RetryPolicy = .init(),
        circuitBreaker: CircuitBreakerPolicy = .init(),
        tuning: ExecutionTuning = .init(),
        shardingKeyHash: KetamaRing.KeyHash = .fnv1a64
    ) throws(RedisConfigurationError) {
        var endpoints: [RedisEndpoint] = []
        for node in nodes {
            guard let endpoint = RedisEndpoint(node) else {
                throw RedisConfigurationError("pool \(name): node \"\(node)\" is not host:port")
            }
            guard !endpoints.contains(endpoint) else {
                throw RedisConfigurationError("pool \(name): node \(endpoint) is listed twice")
            }
            endpoints.append(endpoint)
        }
        guard !endpoints.isEmpty else { throw RedisConfigurationError("pool \(name): no nodes") }
        if mode == .single && endpoints.count != 1 {
            throw RedisConfigurationError("pool \(name): mode single takes exactly one node, got \(endpoints.count)")
        }
        if mode == .cluster && database != 0 {
            throw RedisConfigurationError("pool \(name): Redis Cluster only has database 0")
        }
        guard database >= 0 else { throw RedisConfigurationError("pool \(name): database must be >= 0") }
        self.name = name
        self.mode = mode
        self.nodes = endpoints
        self.username = username
        self.password = password
        self.database = database
        self.tagPrefix = tagPrefix
        self.connectTimeout = connectTimeout
        self.commandTimeout = commandTimeout
        self.retry = retry
        self.circuitBreaker = circuitBreaker
        self.tuning = tuning
        self.shardingKeyHash = shardingKeyHash
    }

    var connectionOptions: RedisConnectionOptions {
        RedisConnectionOptions(
            username: username,
            password: password,
            database: database,
            connectTimeout: connectTimeout,
            commandTimeout: commandTimeout
        )
    }
}

/// An invalid pool configuration. The message never contains the password.
public struct RedisConfigurationError: Error, Sendable, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}
