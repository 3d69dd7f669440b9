import Foundation
import Synchronization

/// A listening TCP socket on 127.0.0.1 at a free port, for the tests' own servers:
/// it accepts on a thread of its own, and ``stop()`` closes it and shuts down the
/// sockets of live connections, which wakes the threads serving them.
final class LoopbackListener: Sendable {
    let port: Int
    private let descriptor: Int32
    private let stopped = Atomic<Bool>(false)
    /// Sockets of live connections, shut down by `stop()`.
    private let openSockets = Mutex<Set<Int32>>([])

    /// Tries a few free ports, in case one is taken between choosing and binding it.
    init(backlog: Int32 = 128) throws {
        var lastError: Error = TestSupportError("no port tried")
        for _ in 0..<5 {
            let port = try RedisServer.freePort()
            do {
                descriptor = try Self.listen(on: port, backlog: backlog)
                self.port = port
                return
            } catch {
                lastError = error
            }
        }
        throw lastError
    }

    var isStopped: Bool { stopped.load(ordering: .sequentiallyConsistent) }

    /// Hands each accepted connection to `handle`, on the accepting thread, until stopped.
    /// The socket is tracked (see ``track(_:)``) before `handle` sees it.
    func start(_ handle: @escaping @Sendable (Int32) -> Void) {
        Thread { [self] in
            defer { close(descriptor) }
            while !isStopped {
                let client = accept(descriptor, nil, nil)
                if client < 0 {
                    if errno == EINTR { continue }
                    return
                }
                track(client)
                handle(client)
            }
        }.start()
    }

    /// Sockets `stop()` must shut down, such as a proxy's upstream connection.
    func track(_ sockets: Int32...) {
        openSockets.withLock { $0.formUnion(sockets) }
    }

    /// Sockets closed by their connection's own thread.
    func forget(_ sockets: Int32...) {
        openSockets.withLock { $0.subtract(sockets) }
    }

    func stop() {
        stopped.store(true, ordering: .sequentiallyConsistent)
        // Wakes the accept loop, which closes the listener; connection threads close their sockets.
        shutdown(descriptor, Int32(SHUT_RDWR))
        for socket in openSockets.withLock({ $0 }) {
            shutdown(socket, Int32(SHUT_RDWR))
        }
    }

    private static func listen(on port: Int, backlog: Int32) throws -> Int32 {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard listener >= 0 else { throw TestSupportError("socket() failed") }
        var reuse: Int32 = 1
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &reuse, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in.loopback(port: port)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, Foundation.listen(listener, backlog) == 0 else {
            close(listener)
            throw TestSupportError("cannot listen on port \(port)")
        }
        return listener
    }
}
