import Foundation

// Raw HTTP exchanges: any bytes as the request, the answer as received, for tests
// of how a server treats what clients send.
extension HTTPProbe {
    /// An answer as received: status, headers (names lowercased) and body bytes.
    public struct RawAnswer: Sendable {
        public var status: Int
        public var headers: [String: String]
        public var body: [UInt8]

        /// Nil when `bytes` do not start with an HTTP/1.x status line and a complete head.
        public init?(parsing bytes: [UInt8]) {
            let separator = Array("\r\n\r\n".utf8)
            guard let headEnd = bytes.indices.first(where: { bytes[$0...].starts(with: separator) }) else { return nil }
            let lines = String(decoding: bytes[..<headEnd], as: UTF8.self).components(separatedBy: "\r\n")
            let statusLine = lines[0].split(separator: " ")
            guard statusLine.count >= 2, statusLine[0].hasPrefix("HTTP/1."), let status = Int(statusLine[1]) else { return nil }
            var headers: [String: String] = [:]
            for line in lines.dropFirst() {
                guard let colon = line.firstIndex(of: ":") else { return nil }
                headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
            self.status = status
            self.headers = headers
            self.body = Array(bytes[(headEnd + separator.count)...])
        }
    }

    /// Sends `request` as it is, then reads the answer until the server closes.
    public static func exchange(port: Int, request: [UInt8], timeout: Duration = .seconds(2)) throws -> RawAnswer {
        let socket = try connectedSocket(port: port, timeout: timeout)
        defer { close(socket) }
        guard request.withUnsafeBytes({ send(socket, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == request.count else {
            throw TestSupportError("cannot send the request to port \(port)")
        }
        let received = try readUntilClosed(socket, timeout: timeout)
        guard let answer = RawAnswer(parsing: received) else {
            throw TestSupportError("not an HTTP answer from port \(port): \(String(decoding: received.prefix(80), as: UTF8.self))")
        }
        return answer
    }

    /// Everything received on `socket` until the peer closes it; throws when that
    /// takes longer than `timeout` or the connection is reset.
    public static func readUntilClosed(_ socket: Int32, timeout: Duration) throws -> [UInt8] {
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16_384)
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let count = buffer.withUnsafeMutableBytes { recv(socket, $0.baseAddress, $0.count, 0) }
            if count == 0 { return received }
            guard count > 0 else { throw TestSupportError("no complete answer within \(timeout): \(String(cString: strerror(errno)))") }
            received += buffer[0..<count]
        }
        throw TestSupportError("the server did not close the connection within \(timeout)")
    }
}
