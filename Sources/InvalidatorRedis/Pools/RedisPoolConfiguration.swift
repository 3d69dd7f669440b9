import InvalidatorCore

/// One named pool from the `pools:` section of the configuration, with what the
/// Redis layer adds (circuit breaker, tuning). It takes values `ConfigurationLoader`
/// has already checked and checks nothing again.
package struct RedisPoolConfiguration: Sendable {
    /// How operations are spread over the pool's nodes: the configuration's own modes.
    package typealias Mode = PoolConfiguration.Mode

    package var name: String
    package var mode: Mode
    /// The nodes; in cluster mode, the seeds used to discover the topology.
    package var nodes: [RedisEndpoint]
    package var username: String?
    package var password: String?
    package var database: Int
    /// Prefix of tag set keys. The planner applies it: ``CacheOperation/purgeTag(setKey:)``
    /// already carries the full key. Kept here because it is part of the pool's contract.
    package var tagPrefix: String
    package var connectTimeout: Duration
    package var commandTimeout: Duration
    package var retry: RetryPolicy
    package var circuitBreaker: CircuitBreakerPolicy
    package var tuning: ExecutionTuning
    /// Key hash for sharded pools; must match the other clients of the same shards.
    package var shardingKeyHash: KetamaRing.KeyHash
    /// TLS to every node, discovered cluster nodes included; nil: plain TCP.
    package var tls: RedisTLSOptions?

    /// - Parameter nodes: at least one, none twice, exactly one for `single`; database 0
    ///   for `cluster`: what `ConfigurationLoader` guarantees. Anything else is a
    ///   programming error.
    package init(
        name: String,
        mode: Mode,
        nodes: [RedisEndpoint],
        username: String? = nil,
        password: String? = nil,
        database: Int = 0,
        tagPrefix: String = "tag:",
        connectTimeout: Duration = PoolConfiguration.defaultConnectTimeout,
        commandTimeout: Duration = PoolConfiguration.defaultCommandTimeout,
        retry: RetryPolicy = .init(),
        circuitBreaker: CircuitBreakerPolicy = .init(),
        tuning: ExecutionTuning = .init(),
        shardingKeyHash: KetamaRing.KeyHash = .fnv1a64,
        tls: RedisTLSOptions? = nil
    ) {
        precondition(!nodes.isEmpty && Set(nodes).count == nodes.count, "pool \(name): nodes must be distinct and at least one")
        precondition(mode != .single || nodes.count == 1, "pool \(name): a single pool has exactly one node")
        precondition(mode != .cluster || database == 0, "pool \(name): Redis Cluster has only database 0")
        self.name = name
        self.mode = mode
        self.nodes = nodes
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
        self.tls = tls
    }

    /// A configured pool as the Redis layer runs it.
    package init(_ pool: PoolConfiguration, retry: RetryPolicy) {
        self.init(
            name: pool.name, mode: pool.mode, nodes: pool.nodes, username: pool.username, password: pool.password,
            database: pool.database, tagPrefix: pool.tagPrefix, connectTimeout: pool.connectTimeout,
            commandTimeout: pool.commandTimeout, retry: retry, tuning: ExecutionTuning(scanCount: pool.scanCount),
            tls: pool.tls.map { RedisTLSOptions(
                caFile: $0.caFile, certFile: $0.certFile, keyFile: $0.keyFile, serverName: $0.serverName, verify: $0.verify) })
    }

    var connectionOptions: RedisConnectionOptions {
        RedisConnectionOptions(
            username: username,
            password: password,
            database: database,
            connectTimeout: connectTimeout,
            commandTimeout: commandTimeout,
            tls: tls
        )
    }
}
