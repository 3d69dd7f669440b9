import COpenSSL
import Foundation
import Synchronization

/// An HTTP/1.1 server on a free local port, plain or TLS (with the certificates
/// of ``TestCertificates``), standing in for a webhook target: it records every
/// request and answers each from a script. Connections are kept alive; each is
/// served by a thread of its own, so blocking socket calls never run on Swift's
/// cooperative pool.
public final class HTTPTestServer: Sendable {
    /// A request as received; header names lowercased.
    public struct Request: Sendable {
        public var method: String
        public var path: String
        public var headers: [String: String]
        public var body: [UInt8]
        public var receivedAt: ContinuousClock.Instant
        public var bodyText: String { String(decoding: body, as: UTF8.self) }
    }

    /// How to answer one request.
    public enum Reply: Sendable {
        /// A complete answer after `delay`.
        case answer(status: Int, headers: [String: String] = [:], body: String = "", delay: Duration = .zero)
        /// No answer; the connection stays open until the client gives up.
        case hang
        /// The head of a 200 answer announcing a body, then the connection closes.
        case closeMidResponse

        public static let ok = Reply.answer(status: 200)
    }

    public let port: Int
    /// `http://127.0.0.1:port`, or `https://localhost:port` with TLS (the name the test server certificate has).
    public let baseURL: String
    private let state: State

    /// - Parameters:
    ///   - certificates: serve TLS with their server certificate.
    ///   - requireClientCertificate: refuse clients without a certificate signed by their CA.
    public init(certificates: TestCertificates? = nil, requireClientCertificate: Bool = false) throws {
        let tls = try certificates.map { try TLSContext(certificates: $0, requireClientCertificate: requireClientCertificate) }
        let listener = try LoopbackListener()
        port = listener.port
        baseURL = tls == nil ? "http://127.0.0.1:\(port)" : "https://localhost:\(port)"
        state = State(listener: listener, tls: tls)
        let state = state
        listener.start { state.accept($0) }
    }

    deinit {
        state.listener.stop()
    }

    /// The next requests get these replies, in order; after them, the default reply.
    public func script(_ replies: [Reply]) {
        state.shared.withLock { $0.script += replies }
    }

    /// The reply once the script is used up (at first `.ok`).
    public func setDefaultReply(_ reply: Reply) {
        state.shared.withLock { $0.defaultReply = reply }
    }

    /// Every request received so far, in order of arrival.
    public var requests: [Request] {
        state.shared.withLock { $0.requests }
    }

    /// The most requests that were waiting for their answers at the same time.
    public var peakConcurrentRequests: Int {
        state.shared.withLock { $0.peakInFlight }
    }

    /// Connections accepted so far (TLS ones whether or not the handshake succeeded).
    public var connectionsAccepted: Int {
        state.shared.withLock { $0.connectionsAccepted }
    }

    /// What the threads share.
    private final class State: Sendable {
        struct Shared {
            var script: [Reply] = []
            var defaultReply = Reply.ok
            var requests: [Request] = []
            var connectionsAccepted = 0
            /// Requests received and not answered yet, and the most there were at once.
            var inFlight = 0
            var peakInFlight = 0
        }

        let listener: LoopbackListener
        let tls: TLSContext?
        let shared = Mutex(Shared())

        init(listener: LoopbackListener, tls: TLSContext?) {
            self.listener = listener
            self.tls = tls
        }

        /// Serves `client` on a thread of its own.
        func accept(_ client: Int32) {
            shared.withLock { $0.connectionsAccepted += 1 }
            Thread { [self] in
                serve(Connection(socket: client, tls: tls))
                listener.forget(client)
            }.start()
        }

        /// Requests on one connection, one after the other, until either side closes it.
        private func serve(_ connection: Connection) {
            defer { connection.close() }
            guard connection.handshake() else { return }
            var received: [UInt8] = []
            while !listener.isStopped {
                guard let request = Self.nextRequest(from: connection, buffer: &received) else { return }
                let reply = shared.withLock { shared in
                    shared.requests.append(request)
                    shared.inFlight += 1
                    shared.peakInFlight = max(shared.peakInFlight, shared.inFlight)
                    return shared.script.isEmpty ? shared.defaultReply : shared.script.removeFirst()
                }
                defer { shared.withLock { $0.inFlight -= 1 } }
                switch reply {
                case .answer(let status, let headers, let body, let delay):
                    if delay > .zero { Thread.sleep(forTimeInterval: Double(delay.components.seconds) + Double(delay.components.attoseconds) / 1e18) }
                    let head = ["HTTP/1.1 \(status) Test", "Content-Length: \(body.utf8.count)"]
                        + headers.map { "\($0.key): \($0.value)" }
                    guard connection.write(Array((head.joined(separator: "\r\n") + "\r\n\r\n" + body).utf8)) else { return }
                case .hang:
                    // Reads and ignores whatever comes until the client closes the connection.
                    var ignored: [UInt8] = []
                    while connection.read(into: &ignored) {}
                    return
                case .closeMidResponse:
                    _ = connection.write(Array("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"partial\":".utf8))
                    return
                }
            }
        }

        /// The next request's head and body (by `Content-Length`); nil when the connection ends first.
        private static func nextRequest(from connection: Connection, buffer: inout [UInt8]) -> Request? {
            let separator = Array("\r\n\r\n".utf8)
            var headEnd: Int?
            while true {
                headEnd = buffer.indices.first { buffer[$0...].starts(with: separator) }
                if headEnd != nil { break }
                guard connection.read(into: &buffer) else { return nil }
            }
            guard let headEnd else { return nil }
            let lines = String(decoding: buffer[..<headEnd], as: UTF8.self).components(separatedBy: "\r\n")
            let requestLine = lines[0].split(separator: " ")
            guard requestLine.count == 3 else { return nil }
            var headers: [String: String] = [:]
            for line in lines.dropFirst() {
                guard let colon = line.firstIndex(of: ":") else { return nil }
                headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
            let bodyStart = headEnd + separator.count
            let length = headers["content-length"].flatMap { Int($0) } ?? 0
            guard length >= 0 else { return nil }
            while buffer.count < bodyStart + length {
                guard connection.read(into: &buffer) else { return nil }
            }
            let request = Request(
                method: String(requestLine[0]), path: String(requestLine[1]), headers: headers,
                body: Array(buffer[bodyStart..<(bodyStart + length)]), receivedAt: .now)
            buffer.removeFirst(bodyStart + length)
            return request
        }
    }

    /// One accepted socket, with its TLS session when the server speaks TLS.
    private final class Connection {
        let socket: Int32
        let ssl: OpaquePointer?

        init(socket: Int32, tls: TLSContext?) {
            self.socket = socket
            ssl = tls.flatMap { SSL_new($0.context) }
            if let ssl { SSL_set_fd(ssl, socket) }
        }

        /// The TLS handshake; true without TLS.
        func handshake() -> Bool {
            guard let ssl else { return true }
            return SSL_accept(ssl) == 1
        }

        /// Appends what arrives next; false when the connection ended.
        func read(into buffer: inout [UInt8]) -> Bool {
            var chunk = [UInt8](repeating: 0, count: 16_384)
            let count = chunk.withUnsafeMutableBytes { bytes in
                if let ssl { Int(SSL_read(ssl, bytes.baseAddress, Int32(bytes.count))) } else { recv(socket, bytes.baseAddress, bytes.count, 0) }
            }
            guard count > 0 else { return false }
            buffer += chunk[0..<count]
            return true
        }

        func write(_ bytes: [UInt8]) -> Bool {
            var remaining = bytes[...]
            while !remaining.isEmpty {
                let sent = remaining.withUnsafeBytes { bytes in
                    if let ssl {
                        Int(SSL_write(ssl, bytes.baseAddress, Int32(bytes.count)))
                    } else {
                        send(socket, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL))
                    }
                }
                guard sent > 0 else { return false }
                remaining = remaining.dropFirst(sent)
            }
            return true
        }

        func close() {
            if let ssl {
                SSL_shutdown(ssl)
                SSL_free(ssl)
            }
            Foundation.close(socket)
        }
    }

    /// The server's certificate and key, and the client CA when clients must show a certificate.
    private final class TLSContext: @unchecked Sendable {
        // @unchecked: the SSL_CTX is configured once in init and only read
        // afterwards (SSL_new), which OpenSSL allows from any thread.
        let context: OpaquePointer

        init(certificates: TestCertificates, requireClientCertificate: Bool) throws {
            guard let context = SSL_CTX_new(TLS_server_method()) else { throw TestSupportError("SSL_CTX_new failed") }
            self.context = context
            guard SSL_CTX_use_certificate_chain_file(context, certificates.serverCertificateFile) == 1,
                SSL_CTX_use_PrivateKey_file(context, certificates.serverKeyFile, SSL_FILETYPE_PEM) == 1
            else { throw TestSupportError("cannot load the test server certificate") }
            if requireClientCertificate {
                guard SSL_CTX_load_verify_locations(context, certificates.caFile, nil) == 1 else {
                    throw TestSupportError("cannot load the test CA")
                }
                SSL_CTX_set_verify(context, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nil)
            }
        }

        deinit {
            SSL_CTX_free(context)
        }
    }
}
