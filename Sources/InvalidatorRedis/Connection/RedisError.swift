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
        /// TLS refused: the server's certificate failed verification (unknown CA,
        /// expired, another name), the server does not speak TLS on that port, or a
        /// CA, certificate or key file cannot be loaded. A network failure during the
        /// handshake is `.connection` or `.timeout` instead.
        case tls
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
        /// A write reached a replica: after a failover, the address of a former primary.
        case readOnly = "READONLY"
        /// `ERR max number of clients reached`: the server refused the connection for now.
        case tooManyClients
        case moved = "MOVED"
        case ask = "ASK"
        case crossSlot = "CROSSSLOT"
        /// The reply was not what the command should return.
        case protocolViolation
        /// Given up before it finished because its task was cancelled (a stop past the
        /// drain timeout): says nothing about the node; the work is to be redone.
        case cancelled
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
        if serverMessage.hasPrefix("ERR max number of clients reached") {
            self.init(code: .tooManyClients, message: serverMessage)
            return
        }
        let prefix = serverMessage.prefix { $0 != " " }
        self.init(code: Code(rawValue: String(prefix)) ?? .other, message: serverMessage)
    }

    /// Whether trying the same command again later can succeed. Permission,
    /// authentication and type errors, and unknown commands, will not change by
    /// waiting. Redirections are followed by the pool and only surface as errors
    /// when the topology keeps changing.
    package var isRetriable: Bool {
        switch code {
        case .connection, .timeout, .circuitOpen, .loading, .tryAgain, .clusterDown, .masterDown, .readOnly, .tooManyClients,
             .moved, .ask, .cancelled:
            true
        case .tls, .noAuth, .wrongPass, .noPerm, .wrongType, .crossSlot, .protocolViolation, .other:
            false
        }
    }

    /// Whether the node could not be reached at all (as opposed to answering with an error).
    package var isConnectionFailure: Bool {
        code == .connection || code == .timeout
    }

    /// Whether the command may succeed on another node once the cluster's slot map
    /// is reloaded: the node is gone, failing, or no longer the primary.
    package var mayBeCuredByTopologyRefresh: Bool {
        switch code {
        case .connection, .timeout, .circuitOpen, .clusterDown, .masterDown, .readOnly, .tryAgain, .moved, .ask:
            true
        case .tls, .loading, .tooManyClients, .noAuth, .wrongPass, .noPerm, .wrongType, .crossSlot, .protocolViolation, .other,
             .cancelled:
            false
        }
    }

    /// Whether the connection must be opened again before retrying: a READONLY
    /// node may be a former primary whose name now resolves to the new one.
    var needsReconnect: Bool {
        code == .readOnly || code == .tooManyClients
    }

    package var description: String {
        "\(code.rawValue): \(message)"
    }
}
