import InvalidatorCore
import Logging

/// Sends commands to nodes with retries, the node's circuit breaker, and
/// cluster redirections.
struct CommandRunner: Sendable {
    /// The final result of one command.
    struct Outcome: Sendable {
        /// Where the command finally ran (differs from the requested node after a redirection).
        var node: RedisEndpoint
        var result: Result<RedisReply, RedisError>
        /// Attempts made on `node`.
        var attempts: Int

        var error: RedisError? {
            if case .failure(let error) = result { error } else { nil }
        }
    }

    let nodes: NodeRegistry
    let retry: RetryPolicy
    let maxRedirections: Int
    let cluster: ClusterDirectory?
    let logger: Logger

    /// Pipelines `commands` on `node` and returns one outcome per command, in order.
    func run<Argument: RedisArgument>(_ commands: [[Argument]], on node: RedisEndpoint) async -> [Outcome] {
        var outcomes = await runWithRetry(commands, on: node)
        for index in outcomes.indices {
            var hops = 0
            while hops < maxRedirections, let error = outcomes[index].error, let redirection = Redirection(error) {
                hops += 1
                outcomes[index] = await follow(redirection, askOnly: error.code == .ask, command: commands[index])
            }
        }
        return outcomes
    }

    private func follow<Argument: RedisArgument>(_ redirection: Redirection, askOnly: Bool, command: [Argument]) async -> Outcome {
        if askOnly {
            // ASK moves one key for one command: ASKING lets the importing node serve it.
            return await runWithRetry([[Argument(text: "ASKING")], command], on: redirection.target)[1]
        }
        await cluster?.noteMoved(redirection)
        return await runWithRetry([command], on: redirection.target)[0]
    }

    /// Retries retriable failures (only those commands) with backoff until they
    /// succeed, fail for good, run out of attempts, or the circuit opens.
    private func runWithRetry<Argument: RedisArgument>(_ commands: [[Argument]], on node: RedisEndpoint) async -> [Outcome] {
        let client = nodes.client(for: node)
        var outcomes = commands.map { _ in
            Outcome(node: node, result: .failure(RedisError(code: .circuitOpen, message: "\(node) circuit open")), attempts: 0)
        }
        var pending = Array(commands.indices)
        var attempt = 0
        while !pending.isEmpty, client.breaker.permitsAttempt() {
            attempt += 1
            var retriable: [Int] = []
            do throws(RedisError) {
                let replies = try await client.connection.pipeline(pending.map { commands[$0] })
                client.breaker.recordSuccess()
                var reconnect = false
                for (index, reply) in zip(pending, replies) {
                    outcomes[index].attempts = attempt
                    if let error = reply.error {
                        outcomes[index].result = .failure(error)
                        if error.isRetriable && Redirection(error) == nil { retriable.append(index) }
                        reconnect = reconnect || error.needsReconnect
                    } else {
                        outcomes[index].result = .success(reply)
                    }
                }
                if reconnect { await client.connection.close() }
            } catch {
                if client.breaker.recordFailure() {
                    logger.warning("redis node circuit opened", metadata: ["node": "\(node)", "error": "\(error)"])
                }
                for index in pending {
                    outcomes[index].attempts = attempt
                    outcomes[index].result = .failure(error)
                }
                if error.isRetriable { retriable = pending }
            }
            pending = retriable
            guard !pending.isEmpty, attempt < retry.attempts, !Task.isCancelled else { break }
            logger.debug("retrying redis commands", metadata: [
                "node": "\(node)", "attempt": "\(attempt)", "commands": "\(pending.count)",
            ])
            // Timer: the retry backoff.
            try? await Task.sleep(for: retry.backoff(afterAttempt: attempt))
        }
        if client.breaker.isOpen {
            markCircuitOpen(&outcomes, indices: pending, node: node)
        }
        return outcomes
    }

    /// Commands still pending when the circuit is open report that, keeping the
    /// last real error in the message.
    private func markCircuitOpen(_ outcomes: inout [Outcome], indices: [Int], node: RedisEndpoint) {
        for index in indices {
            guard let error = outcomes[index].error, outcomes[index].attempts > 0 else { continue }
            guard error.isConnectionFailure else { continue }
            outcomes[index].result = .failure(RedisError(code: .circuitOpen, message: "\(node) circuit open after: \(error.message)"))
        }
    }
}
