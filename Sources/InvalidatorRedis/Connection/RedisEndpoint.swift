/// The address of one Redis node.
public struct RedisEndpoint: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `host:port` or `[ipv6]:port`; the port defaults to 6379.
    public init?(_ text: String) {
        var host = Substring(text)
        var port = 6379
        if let colon = text.lastIndex(of: ":"), !text[..<colon].contains(":") || text.hasPrefix("[") {
            guard let parsed = Int(text[text.index(after: colon)...]), (1...65535).contains(parsed) else { return nil }
            port = parsed
            host = text[..<colon]
        }
        if host.hasPrefix("[") && host.hasSuffix("]") {
            host = host.dropFirst().dropLast()
        }
        guard !host.isEmpty else { return nil }
        self.init(host: String(host), port: port)
    }

    /// `host:port`, the form used in configuration, reports and dead letters.
    public var description: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    public static func < (lhs: RedisEndpoint, rhs: RedisEndpoint) -> Bool {
        (lhs.host, lhs.port) < (rhs.host, rhs.port)
    }
}
