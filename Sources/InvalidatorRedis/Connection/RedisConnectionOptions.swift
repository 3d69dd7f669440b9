import InvalidatorCore

/// How to open and keep a connection to one Redis node.
package struct RedisConnectionOptions: Sendable, Hashable {
    /// ACL user name; nil authenticates with the password only (`requirepass`).
    package var username: String?
    package var password: String?
    /// Selected after connecting when not 0. Redis Cluster only has database 0.
    package var database: Int
    /// Bounds the TCP connection and the TLS handshake together.
    package var connectTimeout: Duration
    /// Bounds each wait for the socket to be readable or writable while a command
    /// is sent or its reply read.
    package var commandTimeout: Duration
    /// After a failed connect, the next attempt waits this long, doubling per
    /// consecutive failure up to `reconnectMaxBackoff`; calls in between fail fast.
    package var reconnectInitialBackoff: Duration
    package var reconnectMaxBackoff: Duration
    /// Nil: plain TCP.
    package var tls: RedisTLSOptions?

    package init(
        username: String? = nil,
        password: String? = nil,
        database: Int = 0,
        connectTimeout: Duration = PoolConfiguration.defaultConnectTimeout,
        commandTimeout: Duration = PoolConfiguration.defaultCommandTimeout,
        reconnectInitialBackoff: Duration = .milliseconds(20),
        reconnectMaxBackoff: Duration = .seconds(1),
        tls: RedisTLSOptions? = nil
    ) {
        self.username = username
        self.password = password
        self.database = database
        self.connectTimeout = connectTimeout
        self.commandTimeout = commandTimeout
        self.reconnectInitialBackoff = reconnectInitialBackoff
        self.reconnectMaxBackoff = reconnectMaxBackoff
        self.tls = tls
    }
}
