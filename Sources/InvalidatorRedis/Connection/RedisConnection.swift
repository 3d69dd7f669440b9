import Foundation
import InvalidatorCore
import Logging

/// One connection to one node, confined to its own thread.
///
/// This actor's executor is a dedicated OS thread, so every blocking socket and
/// TLS call runs there and never on Swift's cooperative pool. The connection
/// owns its socket (plain TCP or TLS), writes the RESP ``RESPEncoder`` produces
/// and parses replies with hiredis's reader. It opens lazily, and when it breaks
/// it is reopened on the next call, with exponential backoff between failed attempts.
package actor RedisConnection {
    package nonisolated let endpoint: RedisEndpoint
    private let options: RedisConnectionOptions
    private let logger: Logger
    private let executor: DedicatedThreadExecutor
    /// The open socket and its parser; nil when closed (after any failure).
    private var session: Session?
    private var consecutiveConnectFailures = 0
    private var nextConnectAllowedAt: ContinuousClock.Instant?

    private struct Session {
        let socket: RedisSocket
        let parser: ReplyParser
    }

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
        let session = try connectedSession()
        do throws(RedisError) {
            try write(commands, to: session)
            var replies: [RedisReply] = []
            replies.reserveCapacity(commands.count)
            for _ in commands {
                replies.append(try commandReply(from: session))
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

    /// Sends one command without reading its reply, connecting first if needed: on a
    /// subscribed connection, replies come among pushed messages, read by ``receive(waitingAtMost:)``.
    package func post(_ command: [String]) async throws(RedisError) {
        let session = try connectedSession()
        do throws(RedisError) {
            try write([command], to: session)
        } catch {
            disconnect()
            throw error
        }
    }

    /// Waits for the next reply the server pushes without a command being sent,
    /// such as a pub/sub message after SUBSCRIBE. The command timeout bounds the
    /// wait; when it passes, this throws `.timeout` and the connection (and its
    /// subscriptions) must be set up again.
    package func receive() async throws(RedisError) -> RedisReply {
        let session = try currentSession()
        do throws(RedisError) {
            return try commandReply(from: session)
        } catch {
            disconnect()
            throw error
        }
    }

    /// Waits up to `wait` for the next reply the server pushes; nil when the socket
    /// stayed silent that long. The connection stays open then (a reply that arrived in part is kept
    /// for the next call), so a subscription survives quiet periods. A broken
    /// connection throws and closes it.
    package func receive(waitingAtMost wait: Duration) async throws(RedisError) -> RedisReply? {
        let session = try currentSession()
        do throws(RedisError) {
            return try nextReply(from: session, waitingAtMost: wait)
        } catch {
            disconnect()
            throw error
        }
    }

    /// Closes the socket now; the next call reconnects.
    package func close() {
        disconnect()
    }

    /// The open session, for reading what a command already sent will bring.
    private func currentSession() throws(RedisError) -> Session {
        guard let session else {
            throw RedisError(code: .connection, message: "\(endpoint): not connected")
        }
        return session
    }

    // MARK: Connecting

    private func connectedSession() throws(RedisError) -> Session {
        if let session { return session }
        if let notBefore = nextConnectAllowedAt, ContinuousClock.now < notBefore {
            throw RedisError(code: .connection, message: "\(endpoint) unreachable; waiting before reconnecting")
        }
        do throws(RedisError) {
            let opened = try openConnection()
            if consecutiveConnectFailures > 0 {
                logger.info("reconnected to redis", metadata: ["node": "\(endpoint)"])
            }
            consecutiveConnectFailures = 0
            nextConnectAllowedAt = nil
            session = opened
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

    private func openConnection() throws(RedisError) -> Session {
        let tlsContext = try options.tls.map { tls throws(RedisError) in try currentTLSContext(tls) }
        let socket = try RedisSocket.connect(to: endpoint, options: options, tlsContext: tlsContext)
        let opened = Session(socket: socket, parser: try ReplyParser())
        for command in handshakeCommands() {
            try write([command], to: opened)
            if let error = try commandReply(from: opened).error { throw error }
        }
        return opened
    }

    /// The TLS context from the files as they are now, or as they were when they last
    /// could be used: a rotation caught half-way keeps the previous certificate working.
    private func currentTLSContext(_ tls: RedisTLSOptions) throws(RedisError) -> TLSClientContext {
        let current: (material: TLSClientContext, change: FileBackedMaterial<TLSClientContext, RedisError>.Change?)
        do {
            current = try TLSClientContext.files(for: tls).current()
        } catch {
            throw RedisError(code: error.code, message: "\(endpoint): \(error.message)")
        }
        switch current.change {
        case .reloaded(let changed):
            logger.info("redis TLS files reloaded", metadata: ["node": "\(endpoint)", "paths": "\(changed.joined(separator: ", "))"])
        case .rejected(let error, let changed):
            logger.warning("redis TLS files changed but cannot be used; the previous ones stay in use", metadata: [
                "node": "\(endpoint)", "paths": "\(changed.joined(separator: ", "))", "error": "\(error.message)",
            ])
        case nil:
            break
        }
        return current.material
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
        session = nil
    }

    // MARK: Protocol

    private func write<Argument: RedisArgument>(_ commands: [[Argument]], to session: Session) throws(RedisError) {
        let encoded = RESPEncoder.encode(commands)
        let written = encoded.withUnsafeBytes { bytes in
            Result { () throws(RedisError) in try session.socket.write(bytes, timeout: options.commandTimeout) }
        }
        try written.get()
    }

    /// The reply to a command sent: no reply within the command timeout is an
    /// error, and the caller closes the connection (the command's fate is unknown).
    private func commandReply(from session: Session) throws(RedisError) -> RedisReply {
        guard let reply = try nextReply(from: session, waitingAtMost: options.commandTimeout) else {
            throw RedisError(code: .timeout, message: "\(endpoint): no reply within \(options.commandTimeout)")
        }
        return reply
    }

    /// The next reply, or nil when the socket stays silent for `wait`.
    private func nextReply(from session: Session, waitingAtMost wait: Duration) throws(RedisError) -> RedisReply? {
        while true {
            if let reply = try session.parser.next() { return reply }
            guard let bytes = try session.socket.read(until: ContinuousClock.now + wait) else { return nil }
            try session.parser.feed(bytes)
        }
    }
}
