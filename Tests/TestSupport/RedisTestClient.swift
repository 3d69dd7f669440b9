import Foundation

/// A minimal blocking RESP client over a plain socket, for test assertions.
///
/// Independent of the production connection on purpose: tests must check what
/// Redis holds without trusting the code under test. Not thread-safe; each
/// ``RedisServer`` guards its own.
final class RedisTestClient {
    private let socketDescriptor: Int32
    private var buffer: [UInt8] = []

    init(port: Int) throws {
        socketDescriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socketDescriptor >= 0 else { throw TestSupportError("socket() failed") }
        var address = sockaddr_in.loopback(port: port)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(socketDescriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else {
            close(socketDescriptor)
            throw TestSupportError("cannot connect to 127.0.0.1:\(port)")
        }
    }

    deinit {
        close(socketDescriptor)
    }

    /// Sends one command and returns the reply formatted like `redis-cli` raw
    /// output: integers as digits, nil as "", arrays flattened one element per line.
    func call(_ arguments: [String]) throws -> String {
        try call(bytes: arguments.map { Array($0.utf8) })
            .map { String(decoding: $0, as: UTF8.self) }
            .joined(separator: "\n")
    }

    /// Sends one command whose arguments are raw bytes (keys need not be UTF-8)
    /// and returns the reply's elements as bytes, exactly as the server sent them:
    /// integers as digits, nil as empty, arrays flattened.
    func call(bytes arguments: [[UInt8]]) throws -> [[UInt8]] {
        var request = Array("*\(arguments.count)\r\n".utf8)
        for argument in arguments {
            request += Array("$\(argument.count)\r\n".utf8)
            request += argument
            request += Array("\r\n".utf8)
        }
        var sent = 0
        while sent < request.count {
            let written = request[sent...].withUnsafeBytes { send(socketDescriptor, $0.baseAddress, $0.count, 0) }
            guard written > 0 else { throw TestSupportError("send failed") }
            sent += written
        }
        return try readReply()
    }

    /// Reads one reply without sending anything (a pushed Pub/Sub message), flattened as `call` does.
    func receive() throws -> [[UInt8]] {
        try readReply()
    }

    /// Makes reads fail after `seconds` instead of blocking forever, so a message that never comes fails the test.
    func setReceiveTimeout(seconds: Int) throws {
        var timeout = timeval(tv_sec: seconds, tv_usec: 0)
        guard setsockopt(socketDescriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size)) == 0 else {
            throw TestSupportError("setsockopt(SO_RCVTIMEO) failed")
        }
    }

    private func readReply() throws -> [[UInt8]] {
        let line = try readLine()
        let payload = Array(line.dropFirst())
        switch line.first {
        case UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: ":"):
            return [payload]
        case UInt8(ascii: "$"):
            let length = Int(String(decoding: payload, as: UTF8.self)) ?? -1
            guard length >= 0 else { return [[]] }
            let bytes = try readBytes(length + 2)
            return [Array(bytes.dropLast(2))]
        case UInt8(ascii: "*"):
            let count = Int(String(decoding: payload, as: UTF8.self)) ?? -1
            return try (0..<max(count, 0)).flatMap { _ in try readReply() }
        default:
            throw TestSupportError("unexpected reply line \(String(decoding: line, as: UTF8.self))")
        }
    }

    /// One reply line without its CR LF, as bytes.
    private func readLine() throws -> [UInt8] {
        while true {
            if let end = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = Array(buffer[..<end].dropLast())
                buffer.removeSubrange(...end)
                return line
            }
            try fill()
        }
    }

    private func readBytes(_ count: Int) throws -> [UInt8] {
        while buffer.count < count { try fill() }
        defer { buffer.removeSubrange(..<count) }
        return Array(buffer[..<count])
    }

    private func fill() throws {
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        let received = chunk.withUnsafeMutableBytes { recv(socketDescriptor, $0.baseAddress, $0.count, 0) }
        guard received > 0 else { throw TestSupportError("connection closed") }
        buffer += chunk[..<received]
    }
}
