import InvalidatorCore
import Logging
import TestSupport

@testable import InvalidatorRedis

/// Logs nothing: tests assert on reports and on what Redis holds.
let quietLogger = Logger(label: "invalidator.redis.tests") { _ in SwiftLogNoOpLogHandler() }

/// Retries fast so failure tests stay quick.
let fastRetry = RetryPolicy(attempts: 4, initialBackoff: .milliseconds(5), maxBackoff: .milliseconds(40))

func makePool(
    _ mode: RedisPoolConfiguration.Mode,
    _ nodes: [String],
    username: String? = nil,
    password: String? = nil,
    database: Int = 0,
    retry: RetryPolicy = fastRetry,
    circuitBreaker: CircuitBreakerPolicy = .init(),
    tuning: ExecutionTuning = .init(),
    commandTimeout: Duration = .seconds(5),
    tls: RedisTLSOptions? = nil
) throws -> RedisPool {
    let configuration = RedisPoolConfiguration(
        name: "test",
        mode: mode,
        nodes: try nodes.map { text in
            guard let address = RedisEndpoint(text) else { throw TestAddressError(text: text) }
            return address
        },
        username: username,
        password: password,
        database: database,
        commandTimeout: commandTimeout,
        retry: retry,
        circuitBreaker: circuitBreaker,
        tuning: tuning,
        tls: tls
    )
    return RedisPool(configuration: configuration, logger: quietLogger)
}

/// A test passed an address that is not `host:port`.
struct TestAddressError: Error {
    var text: String
}

extension RedisServer {
    /// The keys that exist, in order.
    func existing(_ keys: [String]) throws -> [String] {
        try keys.filter { try call("EXISTS", $0) == "1" }
    }

    /// Runs one command after ASKING, as a client following an ASK redirection does.
    func asking(_ arguments: String...) throws -> String {
        try call("ASKING")
        return try call(arguments)
    }

}

extension ExecutionReport {
    func attempts(of operation: CacheOperation) -> [Int] {
        failures.filter { $0.operation == operation }.map(\.attempts)
    }
}

func endpoint(_ text: String) -> RedisEndpoint {
    RedisEndpoint(text)!
}
