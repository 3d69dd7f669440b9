// The observability server's HTTP/1.1, as little of it as probes and scrapers need:
// one request per connection, its head only (a body is never read), every answer
// with its Content-Length and `Connection: close`.

/// A status the observability server answers with.
package enum HTTPStatus: Int, Sendable {
    case ok = 200
    case badRequest = 400
    case notFound = 404
    case methodNotAllowed = 405
    case requestTimeout = 408
    case uriTooLong = 414
    case requestHeaderFieldsTooLarge = 431
    case serviceUnavailable = 503
    case httpVersionNotSupported = 505

    package var reason: String {
        switch self {
        case .ok: "OK"
        case .badRequest: "Bad Request"
        case .notFound: "Not Found"
        case .methodNotAllowed: "Method Not Allowed"
        case .requestTimeout: "Request Timeout"
        case .uriTooLong: "URI Too Long"
        case .requestHeaderFieldsTooLarge: "Request Header Fields Too Large"
        case .serviceUnavailable: "Service Unavailable"
        case .httpVersionNotSupported: "HTTP Version Not Supported"
        }
    }
}

/// What the bytes read so far on a connection amount to.
package enum HTTPRequestHead: Equatable, Sendable {
    /// No complete head yet: read more.
    case incomplete
    /// A complete, well-formed head; `target` is the request target as sent (path and query).
    case request(method: String, target: String)
    /// A head that can only be answered with this error.
    case invalid(HTTPStatus)

    private static let lineFeed = UInt8(ascii: "\n")
    private static let carriageReturn = UInt8(ascii: "\r")
    private static let space = UInt8(ascii: " ")

    /// Parses the bytes received so far. `peerClosed`: the client sent all it will.
    ///
    /// Rejects as early as the bytes allow, so that noise (a TLS handshake, binary
    /// garbage) is answered at once instead of holding a connection until its deadline.
    package static func parse(_ received: [UInt8], maxBytes: Int, peerClosed: Bool) -> HTTPRequestHead {
        let requestLineEnd = received.firstIndex(of: lineFeed)
        var requestLine = received[..<(requestLineEnd ?? received.endIndex)]
        if requestLine.last == carriageReturn { requestLine = requestLine.dropLast() }
        // Only visible ASCII and spaces make a request line.
        guard requestLine.allSatisfy({ $0 >= space && $0 < 0x7F }) else { return .invalid(.badRequest) }
        guard let requestLineEnd else {
            if received.count >= maxBytes { return .invalid(.uriTooLong) }
            return peerClosed ? .invalid(.badRequest) : .incomplete
        }

        let parts = requestLine.split(separator: space, omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, parts[0].allSatisfy(isTokenCharacter),
              parts[1].first == UInt8(ascii: "/"), parts[2].count == 8, parts[2].starts(with: "HTTP/".utf8)
        else { return .invalid(.badRequest) }
        let version = Array(parts[2].dropFirst(5))
        guard isDigit(version[0]), version[1] == UInt8(ascii: "."), isDigit(version[2]) else { return .invalid(.badRequest) }
        // Any HTTP/1.x is answered as 1.1; other majors are refused.
        guard version[0] == UInt8(ascii: "1") else { return .invalid(.httpVersionNotSupported) }

        guard let headEnd = endOfHead(received, after: requestLineEnd) else {
            if received.count >= maxBytes { return .invalid(.requestHeaderFieldsTooLarge) }
            return peerClosed ? .invalid(.badRequest) : .incomplete
        }
        guard headEnd <= maxBytes else { return .invalid(.requestHeaderFieldsTooLarge) }
        return .request(method: String(decoding: parts[0], as: UTF8.self), target: String(decoding: parts[1], as: UTF8.self))
    }

    /// The index just past the empty line that ends the head, if it arrived.
    private static func endOfHead(_ received: [UInt8], after requestLineEnd: Int) -> Int? {
        var lineStart = requestLineEnd + 1
        while let lineEnd = received[lineStart...].firstIndex(of: lineFeed) {
            let line = received[lineStart..<lineEnd]
            if line.isEmpty || (line.count == 1 && line.first == carriageReturn) { return lineEnd + 1 }
            lineStart = lineEnd + 1
        }
        return nil
    }

    private static func isDigit(_ byte: UInt8) -> Bool {
        byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")
    }

    /// RFC 9110 `tchar`: what a method name is made of.
    private static func isTokenCharacter(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            true
        default:
            "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }
}

/// An answer of the observability server.
package struct HTTPResponse: Equatable, Sendable {
    package var status: HTTPStatus
    package var contentType: String
    package var body: String
    /// The `Allow` header of a 405.
    package var allowedMethods: String?

    package init(status: HTTPStatus, contentType: String = "text/plain; charset=utf-8", body: String, allowedMethods: String? = nil) {
        self.status = status
        self.contentType = contentType
        self.body = body
        self.allowedMethods = allowedMethods
    }

    /// An error answer whose body is its reason.
    package init(error status: HTTPStatus, allowedMethods: String? = nil) {
        self.init(status: status, body: status.reason.lowercased() + "\n", allowedMethods: allowedMethods)
    }

    /// The bytes to send. Without the body (HEAD), the head still gives the body's length.
    package func serialized(includingBody: Bool) -> [UInt8] {
        let body = Array(body.utf8)
        var head = "HTTP/1.1 \(status.rawValue) \(status.reason)\r\n"
        head += "Content-Type: \(contentType)\r\nContent-Length: \(body.count)\r\n"
        if let allowedMethods { head += "Allow: \(allowedMethods)\r\n" }
        head += "Connection: close\r\n\r\n"
        return Array(head.utf8) + (includingBody ? body : [])
    }
}
