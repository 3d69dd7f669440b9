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
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
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
        var request = Array("*\(arguments.count)\r\n".utf8)
        for argument in arguments {
            request += Array("$\(argument.utf8.count)\r\n".utf8)
            request += Array(argument.utf8)
            request += Array("\r\n".utf8)
        }
        var sent = 0
        while sent < request.count {
            let written = request[sent...].withUnsafeBytes { send(socketDescriptor, $0.baseAddress, $0.count, 0) }
            guard written > 0 else { throw TestSupportError("send failed") }
            sent += written
        }
        return try readReply().joined(separator: "\n")
    }

    private func readReply() throws -> [String] {
        let line = try readLine()
        let payload = String(line.dropFirst())
        switch line.first {
        case "+", "-", ":":
            return [payload]
        case "$":
            let length = Int(payload) ?? -1
            guard length >= 0 else { return [""] }
            let bytes = try readBytes(length + 2)
            return [String(decoding: bytes.dropLast(2), as: UTF8.self)]
        case "*":
            let count = Int(payload) ?? -1
            return try (0..<max(count, 0)).flatMap { _ in try readReply() }
        default:
            throw TestSupportError("unexpected reply line \(line)")
        }
    }

    private func readLine() throws -> String {
        while true {
            if let end = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: buffer[..<end].dropLast(), as: UTF8.self)
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
