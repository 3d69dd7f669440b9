/// `host:port`: the one address type, for Redis nodes (config, MOVED/ASK replies,
/// dead letters, `replay --node`) and `http.listen`. IPv6 hosts are written in
/// brackets (`[::1]:6379`); there is no default port.
public struct HostPort: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `host:port` or `[ipv6]:port` with a port from 1 to 65535; nil for
    /// anything else. The port follows the last colon, so the unbracketed IPv6
    /// addresses of Redis's MOVED replies (`::1:7000`) parse too.
    public init?(_ text: String) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
              (1...65535).contains(port)
        else { return nil }
        var host = text[..<colon]
        if host.hasPrefix("[") || host.hasSuffix("]") {
            guard host.count > 2, host.hasPrefix("["), host.hasSuffix("]") else { return nil }
            host = host.dropFirst().dropLast()
        }
        guard !host.isEmpty, !host.contains(where: { $0 == "[" || $0 == "]" || $0.isWhitespace }) else { return nil }
        self.init(host: String(host), port: port)
    }

    /// `host:port`, `[host]:port` for IPv6: the form used in configuration, reports and dead letters.
    public var description: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    public static func < (lhs: HostPort, rhs: HostPort) -> Bool {
        (lhs.host, lhs.port) < (rhs.host, rhs.port)
    }
}
