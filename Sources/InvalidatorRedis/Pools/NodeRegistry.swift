import InvalidatorCore
import Logging
import Synchronization

/// A node's connection and circuit breaker.
final class NodeClient: Sendable {
    let endpoint: RedisEndpoint
    let connection: RedisConnection
    let breaker: CircuitBreaker

    init(endpoint: RedisEndpoint, connection: RedisConnection, breaker: CircuitBreaker) {
        self.endpoint = endpoint
        self.connection = connection
        self.breaker = breaker
    }
}

/// One client per node, created on first use (cluster nodes are discovered and
/// redirections may name nodes not configured as seeds).
final class NodeRegistry: Sendable {
    private let options: RedisConnectionOptions
    private let breakerPolicy: CircuitBreakerPolicy
    private let logger: Logger
    private let clients = Mutex<[RedisEndpoint: NodeClient]>([:])

    init(options: RedisConnectionOptions, breakerPolicy: CircuitBreakerPolicy, logger: Logger) {
        self.options = options
        self.breakerPolicy = breakerPolicy
        self.logger = logger
    }

    func client(for endpoint: RedisEndpoint) -> NodeClient {
        clients.withLock { clients in
            if let existing = clients[endpoint] { return existing }
            let created = NodeClient(
                endpoint: endpoint,
                connection: RedisConnection(endpoint: endpoint, options: options, logger: logger),
                breaker: CircuitBreaker(policy: breakerPolicy, probeTimeout: (options.connectTimeout + options.commandTimeout) * 2)
            )
            clients[endpoint] = created
            return created
        }
    }

    func closeAll() async {
        let all = clients.withLock { Array($0.values) }
        for client in all {
            await client.connection.close()
        }
    }
}
