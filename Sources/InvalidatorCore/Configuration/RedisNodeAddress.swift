/// One entry of `pools.NAME.nodes` as written: `host:port`, or a
/// `redis://[user[:password]@]host[:port][/db]` or `rediss://…` URL, which may also
/// carry the pool's credentials and database. The node itself is always its
/// `host:port`: that is its name in logs, metrics, dead letters and `replay --node`.
struct RedisNodeAddress: Equatable {
    var node: HostPort
    /// nil for `host:port`; else whether the URL was `rediss://`.
    var usesTLS: Bool?
    var username: String?
    var password: String?
    var database: Int?

    /// The port a URL without one connects to.
    static let defaultPort = 6379
    /// The largest database number accepted, here and in `pools.NAME.database`.
    static let largestDatabase = 65535

    /// Why `text` is not a node address, as the end of a sentence starting with the node.
    struct Problem: Error, Equatable {
        var reason: String
    }

    /// Parses `text`, already `${VAR}`-expanded.
    static func parse(_ text: String) -> Result<RedisNodeAddress, Problem> {
        guard let separator = text.range(of: "://") else {
            if text.contains("@") {
                // Not quoted: what comes before the `@` may be a password.
                return .failure(Problem(reason: "has a user or password but is not a redis:// or rediss:// URL"))
            }
            guard let node = HostPort(text) else {
                return .failure(Problem(reason: "must be host:port with a port from 1 to 65535 (IPv6 in brackets, such as [::1]:6379) or a redis:// or rediss:// URL"))
            }
            if let problem = hostProblem(node.host, bracketed: node.host.contains(":")) { return .failure(problem) }
            return .success(RedisNodeAddress(node: node))
        }
        let scheme = text[..<separator.lowerBound].lowercased()
        guard scheme == "redis" || scheme == "rediss" else {
            return .failure(Problem(reason: "has the scheme '\(scheme)'; use redis:// or rediss:// (TLS), or host:port"))
        }
        var address = RedisNodeAddress(node: HostPort(host: "", port: defaultPort), usesTLS: scheme == "rediss")
        var rest = text[separator.upperBound...]
        // The last `@`: a password written without percent-encoding may hold `@`, `/` or `?`.
        if let at = rest.lastIndex(of: "@") {
            let userInfo = rest[..<at]
            rest = rest[rest.index(after: at)...]
            let user = userInfo.prefix { $0 != ":" }
            guard let username = percentDecoded(user) else {
                return .failure(Problem(reason: "has a user name with a bad percent-escape (write % as %25)"))
            }
            address.username = username.isEmpty ? nil : username
            if user.endIndex < userInfo.endIndex {
                guard let password = percentDecoded(userInfo[userInfo.index(after: user.endIndex)...]) else {
                    return .failure(Problem(reason: "has a password with a bad percent-escape (write % as %25)"))
                }
                address.password = password.isEmpty ? nil : password
            }
        }
        if rest.contains("?") {
            return .failure(Problem(reason: "has a query string, which is not supported; set TLS and timeouts as keys of the pool"))
        }
        if rest.contains("#") {
            return .failure(Problem(reason: "has a fragment (#), which a Redis URL cannot have"))
        }
        let authority = rest.prefix { $0 != "/" }
        let path = rest[authority.endIndex...]
        switch hostAndPort(authority) {
        case .success(let node): address.node = node
        case .failure(let problem): return .failure(problem)
        }
        if path.count > 1 {
            let digits = path.dropFirst()
            guard digits.allSatisfy({ $0.isASCII && $0.isNumber }), let database = Int(digits),
                  (0...largestDatabase).contains(database)
            else {
                return .failure(Problem(reason: "has the path '\(path)', which is not a database number from 0 to \(largestDatabase)"))
            }
            address.database = database
        }
        return .success(address)
    }

    /// `host`, `host:port`, `[ipv6]` or `[ipv6]:port`, with the default port when none is given.
    private static func hostAndPort(_ authority: Substring) -> Result<HostPort, Problem> {
        var host: Substring
        var portText: Substring?
        let bracketed = authority.hasPrefix("[")
        if bracketed {
            guard let close = authority.firstIndex(of: "]") else {
                return .failure(Problem(reason: "has an IPv6 host without its closing ]"))
            }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { return .failure(Problem(reason: "has '\(after)' after its IPv6 host")) }
                portText = after.dropFirst()
            }
        } else {
            let colons = authority.filter { $0 == ":" }.count
            if colons > 1 {
                return .failure(Problem(reason: "has an IPv6 host outside brackets; write it as [::1]:6379"))
            }
            host = authority.prefix { $0 != ":" }
            if colons == 1 { portText = authority[authority.index(after: host.endIndex)...] }
        }
        guard !host.isEmpty else { return .failure(Problem(reason: "has no host")) }
        if let problem = hostProblem(String(host), bracketed: bracketed) { return .failure(problem) }
        var port = defaultPort
        if let portText {
            guard portText.allSatisfy({ $0.isASCII && $0.isNumber }), let value = Int(portText), (1...65535).contains(value) else {
                return .failure(Problem(reason: "has the port '\(portText)'; a port is a number from 1 to 65535"))
            }
            port = value
        }
        return .success(HostPort(host: String(host), port: port))
    }

    /// Host names are letters, digits, `-`, `_` and `.`; IPv6 addresses (in
    /// brackets) hex digits, `:` and `.`, with an optional `%zone`.
    private static func hostProblem(_ host: String, bracketed: Bool) -> Problem? {
        let legal = host.unicodeScalars.allSatisfy { scalar in
            guard scalar.isASCII else { return false }
            let character = Character(scalar)
            if character.isLetter || character.isNumber || character == "." { return true }
            return bracketed ? character == ":" || character == "%" : character == "-" || character == "_"
        }
        return legal ? nil : Problem(reason: "has the host '\(host)', with a character a host name cannot have")
    }

    /// `%XX` escapes decoded; nil for a malformed escape or bytes that are not UTF-8.
    private static func percentDecoded(_ text: Substring) -> String? {
        var bytes: [UInt8] = []
        var utf8 = text.utf8[...]
        while let byte = utf8.popFirst() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard utf8.count >= 2, let high = hexValue(utf8.removeFirst()), let low = hexValue(utf8.removeFirst()) else { return nil }
            bytes.append(high << 4 | low)
        }
        return String(validating: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

extension String {
    /// A `pools.NAME.nodes` entry as messages quote it: a URL without its password,
    /// and anything else with an `@` without what precedes it (a mistyped URL).
    package var redactedNodeAddress: String {
        if contains("://") { return redactingURLPasswords }
        guard let at = lastIndex(of: "@") else { return self }
        return "***" + self[at...]
    }

    /// This text with the password of every URL in it (`scheme://user:PASSWORD@host`)
    /// replaced by `***`: how a node URL is quoted in messages. A URL is taken to
    /// end at whitespace or a quote.
    package var redactingURLPasswords: String {
        var result = ""
        var rest = self[...]
        while let separator = rest.range(of: "://") {
            result += rest[..<separator.upperBound]
            rest = rest[separator.upperBound...]
            let url = rest.prefix { !$0.isWhitespace && $0 != "'" && $0 != "\"" && $0 != "`" }
            guard let at = url.lastIndex(of: "@"), let colon = url[..<at].firstIndex(of: ":") else { continue }
            result += rest[...colon] + "***"
            rest = rest[at...]
        }
        return result + rest
    }
}
