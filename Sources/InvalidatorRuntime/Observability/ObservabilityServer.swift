#if canImport(Glibc)
import Glibc
#endif
import Foundation
import InvalidatorCore
import Logging
import ServiceLifecycle
import Synchronization

/// The HTTP listener on `http.listen`:
/// - `GET /metrics`: the Prometheus text exposition (when a renderer is given);
/// - `GET /healthz`: 200 with one line per processing loop while every one is
///   alive (see ``LivenessMonitor``) and no source's canary failed
///   `canary.fail_healthz_after` rounds in a row, else 503 with one line per
///   stalled loop and per failing canary;
/// - `GET /readyz`: 200 once sources are subscribed and every pool answers PING,
///   else 503 with one line per reason.
///
/// `HEAD` answers as `GET` without the body; other methods get 405, unknown paths
/// 404, malformed requests 400.
///
/// Three tiny endpoints do not justify an HTTP framework (which multiplied the
/// build time): this is a minimal HTTP/1.1 responder, one request per connection,
/// serving up to ``HTTPServerLimits/maxConnections`` connections at once with
/// poll(2) on its own thread, off Swift's cooperative pool, each connection closed
/// at its deadline (``HTTPConnectionLoop``). Slow or idle clients therefore cannot
/// delay a probe.
///
/// A service of the worker's group, listed first so it shuts down last: metrics
/// and probes stay up while the sources drain.
package final class ObservabilityServer: Service, Sendable {
    private let listen: HostPort
    private let renderMetrics: (@Sendable () -> String)?
    private let readiness: @Sendable () -> Readiness
    private let loops: @Sendable () -> [LivenessMonitor.LoopStatus]
    /// Lines of canaries that make `/healthz` fail.
    private let canaryProblems: @Sendable () -> [String]
    private let logger: Logger
    private let bound = Atomic<Int>(0)
    private let stopRequested = Atomic<Bool>(false)

    init(
        listen: HostPort, renderMetrics: (@Sendable () -> String)?, readiness: @escaping @Sendable () -> Readiness,
        loops: @escaping @Sendable () -> [LivenessMonitor.LoopStatus],
        canaryProblems: @escaping @Sendable () -> [String] = { [] }, logger: Logger
    ) {
        self.listen = listen
        self.renderMetrics = renderMetrics
        self.readiness = readiness
        self.loops = loops
        self.canaryProblems = canaryProblems
        var logger = logger
        logger[metadataKey: "component"] = "http"
        self.logger = logger
    }

    /// The port actually listened on (useful with port 0); 0 until listening.
    package var boundPort: Int { bound.load(ordering: .relaxed) }

    struct ServerError: Error, CustomStringConvertible {
        var description: String
    }

    package func run() async throws {
        let socket = try openListeningSocket()
        logger.info("serving /metrics /healthz /readyz", metadata: ["address": "\(listen.host):\(boundPort)"])
        let stopped = ThreadCompletion()
        let thread = Thread { [self] in
            var connections = HTTPConnectionLoop(listener: socket, logger: logger) { method, target in
                self.route(method: method, target: target)
            }
            connections.run { stopRequested.load(ordering: .relaxed) }
            close(socket)
            stopped.markFinished()
        }
        thread.start()
        await withTaskCancellationHandler {
            // Returns on graceful shutdown; throws when cancelled.
            try? await gracefulShutdown()
        } onCancel: {
            stopRequested.store(true, ordering: .relaxed)
        }
        stopRequested.store(true, ordering: .relaxed)
        await stopped.wait()
    }

    private func openListeningSocket() throws -> Int32 {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_PASSIVE
        var results: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(listen.host, String(listen.port), &hints, &results) == 0, let first = results else {
            throw ServerError(description: "cannot resolve http.listen address \(listen)")
        }
        defer { freeaddrinfo(results) }
        // Non-blocking: a client gone between poll(2) and accept(2) must not block the loop.
        let descriptor = Glibc.socket(
            first.pointee.ai_family, first.pointee.ai_socktype | Int32(SOCK_NONBLOCK.rawValue),
            first.pointee.ai_protocol)
        guard descriptor >= 0 else { throw ServerError(description: "cannot open a socket: \(String(cString: strerror(errno)))") }
        var yes: Int32 = 1
        setsockopt(descriptor, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        guard bind(descriptor, first.pointee.ai_addr, first.pointee.ai_addrlen) == 0, Glibc.listen(descriptor, SOMAXCONN) == 0 else {
            let reason = String(cString: strerror(errno))
            close(descriptor)
            throw ServerError(description: "cannot listen on \(listen): \(reason)")
        }
        var address = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        let port = withUnsafeBytes(of: &address) { bytes -> UInt16 in
            // sin_port and sin6_port both sit right after the 2-byte family.
            UInt16(bytes[2]) << 8 | UInt16(bytes[3])
        }
        bound.store(Int(port), ordering: .relaxed)
        return descriptor
    }

    private func route(method: String, target: String) -> HTTPResponse {
        guard method == "GET" || method == "HEAD" else {
            return HTTPResponse(error: .methodNotAllowed, allowedMethods: "GET, HEAD")
        }
        switch target.prefix(while: { $0 != "?" }) {
        case "/metrics":
            guard let renderMetrics else { return HTTPResponse(status: .notFound, body: "metrics are not enabled\n") }
            return HTTPResponse(status: .ok, contentType: "text/plain; version=0.0.4; charset=utf-8", body: renderMetrics())
        case "/healthz":
            let running = loops()
            let stalled = running.filter(\.isStalled)
            let failing = canaryProblems()
            if stalled.isEmpty, failing.isEmpty { return HTTPResponse(status: .ok, body: list("alive", running.map(\.description))) }
            let title = failing.isEmpty ? "stalled" : "unhealthy"
            return HTTPResponse(status: .serviceUnavailable, body: list(title, stalled.map(\.description) + failing))
        case "/readyz":
            let state = readiness()
            if state.isReady { return HTTPResponse(status: .ok, body: "ready\n") }
            return HTTPResponse(status: .serviceUnavailable, body: list("not ready", state.problems))
        default:
            return HTTPResponse(error: .notFound)
        }
    }

    /// `title:` then one `- ` line per item.
    private func list(_ title: String, _ items: [String]) -> String {
        "\(title):\n" + items.map { "- \($0)\n" }.joined()
    }
}

/// Lets async code wait for a thread to finish without blocking a cooperative thread.
private final class ThreadCompletion: Sendable {
    private let state = Mutex<(finished: Bool, waiter: CheckedContinuation<Void, Never>?)>((false, nil))

    func markFinished() {
        let waiter = state.withLock { state in
            state.finished = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    func wait() async {
        await withCheckedContinuation { continuation in
            let finished = state.withLock { state in
                if !state.finished { state.waiter = continuation }
                return state.finished
            }
            if finished { continuation.resume() }
        }
    }
}
