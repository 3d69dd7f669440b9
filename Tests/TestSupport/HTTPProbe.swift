import Foundation

/// A plain HTTP/1.1 GET over a socket with a deadline, as a Kubernetes probe
/// makes it. Blocking: call it from a test, not from code under test.
public enum HTTPProbe {
    public struct Response: Sendable {
        public var status: Int
        public var body: String
    }

    public static func get(port: Int, path: String, method: String = "GET", timeout: Duration = .seconds(2)) throws -> Response {
        let request = Array("\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8)
        let answer = try exchange(port: port, request: request, timeout: timeout)
        return Response(status: answer.status, body: String(decoding: answer.body, as: UTF8.self))
    }

    /// A connected TCP socket to 127.0.0.1:port whose reads and writes time out after `timeout`.
    public static func connectedSocket(port: Int, timeout: Duration) throws -> Int32 {
        let socket = Foundation.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socket >= 0 else { throw TestSupportError("socket() failed") }
        var interval = timeval(tv_sec: Int(timeout.components.seconds), tv_usec: Int(timeout.components.attoseconds / 1_000_000_000_000))
        setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &interval, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(socket, SOL_SOCKET, SO_SNDTIMEO, &interval, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in.loopback(port: port)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            close(socket)
            throw TestSupportError("cannot connect to port \(port)")
        }
        return socket
    }
}

extension sockaddr_in {
    /// 127.0.0.1:`port`, for the tests' own clients and servers.
    static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return address
    }
}
