/// How to speak TLS to a Redis node. Nil where an options value holds it: plain TCP.
///
/// Files are PEM, looked at on every connect and read again when they changed, so a
/// rotated certificate is used by the next connection; files that cannot be used (a
/// rotation caught half-way) leave the last ones that could in use.
package struct RedisTLSOptions: Sendable, Hashable {
    /// CA certificates that sign the server's certificate; nil uses the system's CA store.
    package var caFile: String?
    /// Client certificate (chain) for servers with `tls-auth-clients yes`; needs `keyFile`.
    package var certFile: String?
    package var keyFile: String?
    /// Sent as SNI and checked against the server's certificate; nil uses the node's
    /// host (an IP address is checked against the certificate's IP entries, without SNI).
    package var serverName: String?
    /// Verify the server's certificate chain and name. Off only for tests and
    /// throwaway setups: without it anyone on the path can read and change commands.
    package var verify: Bool

    package init(
        caFile: String? = nil, certFile: String? = nil, keyFile: String? = nil, serverName: String? = nil,
        verify: Bool = true
    ) {
        self.caFile = caFile
        self.certFile = certFile
        self.keyFile = keyFile
        self.serverName = serverName
        self.verify = verify
    }
}
