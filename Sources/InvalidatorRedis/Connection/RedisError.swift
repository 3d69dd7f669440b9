/// A failure talking to Redis: either the connection itself, or an error reply.
///
/// Messages come from the network layer or the server and never contain
/// credentials.
package struct RedisError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of failure this is; server errors use their reply prefix.
    package enum Code: String, Sendable, Hashable, Codable {
        /// Could not connect, or the connection broke.
        case connection
        /// No answer within the command timeout.
        case timeout
        /// The node's circuit breaker is open: recent attempts all failed to connect.
        case circuitOpen
        case noAuth = "NOAUTH"
        case wrongPass = "WRONGPASS"
        case noPerm = "NOPERM"
        case wrongType = "WRONGTYPE"
        case loading = "LOADING"
        case tryAgain = "TRYAGAIN"
        case clusterDown = "CLUSTERDOWN"
        case masterDown = "MASTERDOWN"
        case moved = "MOVED"
        case ask = "ASK"
        case crossSlot = "CROSSSLOT"
        /// The reply was not what the command should return.
        case protocolViolation
        /// Any other error reply, including unknown commands.
        case other
    }

    package var code: Code
    package var message: String

    package init(code: Code, message: String) {
        self.code = code
        self.message = message
    }

    /// Classifies a server error reply by its first word.
    package init(serverMessage: String) {
        let prefix = serverMessage.prefix { $0 != " " }
        self.init(code: Code(rawValue: String(prefix)) ?? .other, message: serverMessage)
    }

    /// Whether trying the same command again later can succeed. Permission,
    /// authentication and type errors, and unknown commands, will not change by
    /// waiting. Redirections are followed by the pool and only surface as errors
    /// when the topology keeps changing.
    package var isRetriable: Bool {
        switch code {
        case .connection, .timeout, .circuitOpen, .loading, .tryAgain, .clusterDown, .masterDown, .moved, .ask:
            true
        case .noAuth, .wrongPass, .noPerm, .wrongType, .crossSlot, .protocolViolation, .other:
            false
        }
    }

    /// Whether the node could not be reached at all (as opposed to answering with an error).
    package var isConnectionFailure: Bool {
        code == .connection || code == .timeout
    }

    package var description: String {
        "\(code.rawValue): \(message)"
    }
}
