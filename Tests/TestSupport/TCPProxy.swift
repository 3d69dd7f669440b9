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
        let listener = try LoopbackListener(backlog: 64)
        port = listener.port
        state = State(listener: listener, upstreamPort: upstreamPort)
        let state = state
        listener.start { state.proxy($0) }
    }

    deinit {
        state.listener.stop()
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

    /// What the threads share.
    private final class State: Sendable {
        let listener: LoopbackListener
        let upstreamPort: Int
        let droppingReplies = Atomic<Bool>(false)
        let replyDelayNanoseconds = Atomic<Int64>(0)
        let accepted = Atomic<Int>(0)

        init(listener: LoopbackListener, upstreamPort: Int) {
            self.listener = listener
            self.upstreamPort = upstreamPort
        }

        /// Connects `client` to the server, one pumping thread per direction.
        func proxy(_ client: Int32) {
            accepted.add(1, ordering: .sequentiallyConsistent)
            guard let server = try? HTTPProbe.connectedSocket(port: upstreamPort, timeout: .seconds(3600)) else {
                listener.forget(client)
                close(client)
                return
            }
            listener.track(server)
            let connection = Connection(client: client, server: server, state: self)
            Thread { connection.pump(from: client, to: server, isReply: false) }.start()
            Thread { connection.pump(from: server, to: client, isReply: true) }.start()
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
                state.listener.forget(client, server)
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

extension Duration {
    fileprivate var nanoseconds: Int64 {
        components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000
    }
}
