import Foundation
import Synchronization

/// A TCP proxy on a free local port in front of a local server, standing in for the
/// network between a client and that server: requests always get through, while
/// the server's replies can be slowed down or lost on the way (the server runs a
/// command, its client times out). Each connection is pumped by two threads of its
/// own; blocking socket calls never run on Swift's cooperative pool.
public final class TCPProxy: Sendable {
    public let port: Int
    private let state: State

    /// `127.0.0.1:port`, as used in pool configurations.
    public var endpoint: String { "127.0.0.1:\(port)" }

    /// Starts forwarding to `127.0.0.1:upstreamPort`.
    public init(to upstreamPort: Int) throws {
        var lastError: Error = TestSupportError("no port tried")
        for _ in 0..<5 {
            let port = try RedisServer.freePort()
            do {
                let listener = try Self.listen(on: port)
                self.port = port
                state = State(listener: listener, upstreamPort: upstreamPort)
                let state = state
                Thread { state.acceptConnections() }.start()
                return
            } catch {
                lastError = error
            }
        }
        throw lastError
    }

    deinit {
        state.stop()
    }

    /// While on, the server's replies are thrown away.
    public func dropReplies(_ dropping: Bool) {
        state.droppingReplies.store(dropping, ordering: .sequentiallyConsistent)
    }

    /// Each chunk of the server's replies waits this long before it is passed on.
    public func delayReplies(by delay: Duration) {
        state.replyDelayNanoseconds.store(delay.nanoseconds, ordering: .sequentiallyConsistent)
    }

    /// Connections accepted so far; a client opens a new one after a timeout.
    public var connectionsAccepted: Int {
        state.accepted.load(ordering: .sequentiallyConsistent)
    }

    private static func listen(on port: Int) throws -> Int32 {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard listener >= 0 else { throw TestSupportError("socket() failed") }
        var reuse: Int32 = 1
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &reuse, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in.loopback(port: port)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, Foundation.listen(listener, 64) == 0 else {
            close(listener)
            throw TestSupportError("cannot listen on port \(port)")
        }
        return listener
    }

    /// What the threads share.
    private final class State: Sendable {
        let listener: Int32
        let upstreamPort: Int
        let droppingReplies = Atomic<Bool>(false)
        let replyDelayNanoseconds = Atomic<Int64>(0)
        let accepted = Atomic<Int>(0)
        let stopped = Atomic<Bool>(false)
        /// Sockets of live connections, shut down when the proxy stops.
        let openSockets = Mutex<Set<Int32>>([])

        init(listener: Int32, upstreamPort: Int) {
            self.listener = listener
            self.upstreamPort = upstreamPort
        }

        func stop() {
            stopped.store(true, ordering: .sequentiallyConsistent)
            // Wakes the accept loop, which closes the listener; the pumps close their sockets.
            shutdown(listener, Int32(SHUT_RDWR))
            for socket in openSockets.withLock({ $0 }) {
                shutdown(socket, Int32(SHUT_RDWR))
            }
        }

        func acceptConnections() {
            defer { close(listener) }
            while !stopped.load(ordering: .sequentiallyConsistent) {
                let client = accept(listener, nil, nil)
                if client < 0 {
                    if errno == EINTR { continue }
                    return
                }
                accepted.add(1, ordering: .sequentiallyConsistent)
                guard let server = try? HTTPProbe.connectedSocket(port: upstreamPort, timeout: .seconds(3600)) else {
                    close(client)
                    continue
                }
                openSockets.withLock { $0.formUnion([client, server]) }
                let connection = Connection(client: client, server: server, state: self)
                Thread { connection.pump(from: client, to: server, isReply: false) }.start()
                Thread { connection.pump(from: server, to: client, isReply: true) }.start()
            }
        }
    }

    /// One proxied connection; its sockets are closed once both directions ended.
    private final class Connection: Sendable {
        let client: Int32
        let server: Int32
        let state: State
        let endedDirections = Atomic<Int>(0)

        init(client: Int32, server: Int32, state: State) {
            self.client = client
            self.server = server
            self.state = state
        }

        func pump(from source: Int32, to destination: Int32, isReply: Bool) {
            var buffer = [UInt8](repeating: 0, count: 65_536)
            while true {
                let count = buffer.withUnsafeMutableBytes { recv(source, $0.baseAddress, $0.count, 0) }
                guard count > 0 else { break }
                if isReply {
                    if state.droppingReplies.load(ordering: .sequentiallyConsistent) { continue }
                    let delay = state.replyDelayNanoseconds.load(ordering: .sequentiallyConsistent)
                    if delay > 0 { Thread.sleep(forTimeInterval: Double(delay) / 1e9) }
                }
                guard sendAll(buffer[0..<count], to: destination) else { break }
            }
            // The other direction ends too: a connection is only ever proxied whole.
            shutdown(source, Int32(SHUT_RDWR))
            shutdown(destination, Int32(SHUT_RDWR))
            if endedDirections.add(1, ordering: .sequentiallyConsistent).newValue == 2 {
                state.openSockets.withLock { $0.subtract([client, server]) }
                close(client)
                close(server)
            }
        }

        private func sendAll(_ bytes: ArraySlice<UInt8>, to destination: Int32) -> Bool {
            var remaining = bytes
            while !remaining.isEmpty {
                let sent = remaining.withUnsafeBytes { send(destination, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                guard sent > 0 else { return false }
                remaining = remaining.dropFirst(sent)
            }
            return true
        }
    }
}

extension sockaddr_in {
    fileprivate static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return address
    }
}

extension Duration {
    fileprivate var nanoseconds: Int64 {
        components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000
    }
}
