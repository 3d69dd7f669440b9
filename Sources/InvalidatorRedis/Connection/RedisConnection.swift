import CHiredis
import Foundation
import InvalidatorCore
import Logging

/// One blocking hiredis connection to one node, confined to its own thread.
///
/// This actor's executor is a dedicated OS thread, so every hiredis call runs
/// there and never on Swift's cooperative pool. The connection opens lazily,
/// and when it breaks it is reopened on the next call, with exponential backoff
/// between failed attempts.
package actor RedisConnection {
    package nonisolated let endpoint: RedisEndpoint
    private let options: RedisConnectionOptions
    private let logger: Logger
    private let executor: DedicatedThreadExecutor
    private var context: UnsafeMutablePointer<redisContext>?
    private var consecutiveConnectFailures = 0
    private var nextConnectAllowedAt: ContinuousClock.Instant?

    package nonisolated var unownedExecutor: UnownedSerialExecutor {
        executor.asUnownedSerialExecutor()
    }

    package init(endpoint: RedisEndpoint, options: RedisConnectionOptions = .init(), logger: Logger) {
        self.endpoint = endpoint
        self.options = options
        self.logger = logger
        self.executor = DedicatedThreadExecutor(name: "redis \(endpoint)")
    }

    isolated deinit {
        disconnect()
        executor.shutdown()
    }

    /// Sends all commands at once, then reads one reply per command, in order.
    ///
    /// Error replies are returned as `.error` values. A connection failure or
    /// timeout throws a ``RedisError``; the connection is then closed and reopened
    /// by a later call, and it is unknown which of the commands were applied.
    package func pipeline<Argument: RedisArgument>(_ commands: [[Argument]]) async throws(RedisError) -> [RedisReply] {
        guard !commands.isEmpty else { return [] }
        let context = try connectedContext()
        do throws(RedisError) {
            try append(commands, to: context)
            var replies: [RedisReply] = []
            replies.reserveCapacity(commands.count)
            for _ in commands {
                replies.append(try readReply(from: context))
            }
            return replies
        } catch {
            disconnect()
            throw error
        }
    }

    /// Sends one command and returns its reply.
    package func send(_ command: [String]) async throws(RedisError) -> RedisReply {
        try await pipeline([command])[0]
    }

    /// Waits for the next reply the server pushes without a command being sent,
    /// such as a pub/sub message after SUBSCRIBE. The command timeout bounds the
    /// wait; when it passes, this throws `.timeout` and the connection (and its
    /// subscriptions) must be set up again.
    package func receive() async throws(RedisError) -> RedisReply {
        guard let context else {
            throw RedisError(code: .connection, message: "\(endpoint): not connected")
        }
        do throws(RedisError) {
            return try readReply(from: context)
        } catch {
            disconnect()
            throw error
        }
    }

    /// Closes the socket now; the next call reconnects.
    package func close() {
        disconnect()
    }

    // MARK: Connecting

    private func connectedContext() throws(RedisError) -> UnsafeMutablePointer<redisContext> {
        if let context {
            if context.pointee.err == 0 { return context }
            disconnect()
        }
        if let notBefore = nextConnectAllowedAt, ContinuousClock.now < notBefore {
            throw RedisError(code: .connection, message: "\(endpoint) unreachable; waiting before reconnecting")
        }
        do throws(RedisError) {
            let opened = try openContext()
            if consecutiveConnectFailures > 0 {
                logger.info("reconnected to redis", metadata: ["node": "\(endpoint)"])
            }
            consecutiveConnectFailures = 0
            nextConnectAllowedAt = nil
            context = opened
            return opened
        } catch {
            consecutiveConnectFailures += 1
            nextConnectAllowedAt = ContinuousClock.now + reconnectBackoff()
            if consecutiveConnectFailures == 1 {
                logger.warning("cannot connect to redis", metadata: ["node": "\(endpoint)", "error": "\(error)"])
            }
            throw error
        }
    }

    private func reconnectBackoff() -> Duration {
        RetryPolicy.exponential(
            from: options.reconnectInitialBackoff, doublings: consecutiveConnectFailures - 1, cap: options.reconnectMaxBackoff)
    }

    private func openContext() throws(RedisError) -> UnsafeMutablePointer<redisContext> {
        guard let opened = redisConnectWithTimeout(endpoint.host, Int32(endpoint.port), timeval(options.connectTimeout)) else {
            throw RedisError(code: .connection, message: "\(endpoint): cannot allocate a connection")
        }
        do throws(RedisError) {
            if opened.pointee.err != 0 { throw failure(of: opened) }
            if redisSetTimeout(opened, timeval(options.commandTimeout)) != REDIS_OK { throw failure(of: opened) }
            for command in handshakeCommands() {
                try append([command], to: opened)
                if let error = try readReply(from: opened).error { throw error }
            }
            return opened
        } catch {
            redisFree(opened)
            throw error
        }
    }

    /// AUTH then SELECT, as configured. The password is only ever sent, never logged.
    private func handshakeCommands() -> [[String]] {
        var commands: [[String]] = []
        if let password = options.password {
            commands.append(["AUTH"] + (options.username.map { [$0] } ?? []) + [password])
        }
        if options.database != 0 {
            commands.append(["SELECT", String(options.database)])
        }
        return commands
    }

    private func disconnect() {
        if let context {
            redisFree(context)
            self.context = nil
        }
    }

    // MARK: Protocol

    /// Queues `commands` in hiredis's output buffer (which copies them); the
    /// first read sends them.
    private func append<Argument: RedisArgument>(_ commands: [[Argument]], to context: UnsafeMutablePointer<redisContext>) throws(RedisError) {
        let encoded = RESPEncoder.encode(commands)
        let status = encoded.withUnsafeBufferPointer { bytes in
            bytes.withMemoryRebound(to: CChar.self) { redisAppendFormattedCommand(context, $0.baseAddress, $0.count) }
        }
        if status != REDIS_OK { throw failure(of: context) }
    }

    private func readReply(from context: UnsafeMutablePointer<redisContext>) throws(RedisError) -> RedisReply {
        var raw: UnsafeMutableRawPointer?
        guard redisGetReply(context, &raw) == REDIS_OK, let raw else {
            throw failure(of: context)
        }
        defer { freeReplyObject(raw) }
        return RedisReply(raw.assumingMemoryBound(to: redisReply.self))
    }

    private func failure(of context: UnsafeMutablePointer<redisContext>) -> RedisError {
        let lastErrno = errno
        let description = withUnsafeBytes(of: context.pointee.errstr) { bytes in
            String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
        }
        // A socket timeout surfaces as an I/O error with EAGAIN.
        let timedOut = context.pointee.err == REDIS_ERR_IO && (lastErrno == EAGAIN || lastErrno == EWOULDBLOCK)
        if context.pointee.err == REDIS_ERR_PROTOCOL {
            return RedisError(code: .protocolViolation, message: "\(endpoint): \(description)")
        }
        return RedisError(code: timedOut ? .timeout : .connection, message: "\(endpoint): \(description)")
    }
}

extension RedisReply {
    /// Copies a hiredis reply tree into Swift values.
    fileprivate init(_ reply: UnsafeMutablePointer<redisReply>) {
        let value = reply.pointee
        func bytes() -> [UInt8] {
            guard let text = value.str else { return [] }
            return Array(UnsafeRawBufferPointer(start: text, count: value.len))
        }
        switch value.type {
        case REDIS_REPLY_STATUS: self = .status(String(decoding: bytes(), as: UTF8.self))
        case REDIS_REPLY_ERROR: self = .error(String(decoding: bytes(), as: UTF8.self))
        case REDIS_REPLY_INTEGER: self = .integer(Int64(value.integer))
        case REDIS_REPLY_STRING: self = .bulk(bytes())
        case REDIS_REPLY_ARRAY:
            self = .array((0..<value.elements).map { RedisReply(value.element[$0]!) })
        default: self = .null
        }
    }
}

extension timeval {
    fileprivate init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self.init(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
    }
}
