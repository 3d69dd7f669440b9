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
///   alive (see ``LivenessMonitor``), else 503 with one line per stalled loop;
/// - `GET /readyz`: 200 once sources are subscribed and every pool answers PING,
///   else 503 with one line per reason.
///
/// Three tiny endpoints do not justify an HTTP framework (which multiplied the
/// build time): this is a minimal HTTP/1.1 responder on its own thread, one short
/// request per connection, with blocking socket calls kept off Swift's cooperative pool.
///
/// A service of the worker's group, listed first so it shuts down last: metrics
/// and probes stay up while the sources drain.
package final class ObservabilityServer: Service, Sendable {
    private let listen: HostPort
    private let renderMetrics: (@Sendable () -> String)?
    private let readiness: @Sendable () -> Readiness
    private let loops: @Sendable () -> [LivenessMonitor.LoopStatus]
    private let logger: Logger
    private let bound = Atomic<Int>(0)
    private let stopRequested = Atomic<Bool>(false)

    init(
        listen: HostPort, renderMetrics: (@Sendable () -> String)?, readiness: @escaping @Sendable () -> Readiness,
        loops: @escaping @Sendable () -> [LivenessMonitor.LoopStatus], logger: Logger
    ) {
        self.listen = listen
        self.renderMetrics = renderMetrics
        self.readiness = readiness
        self.loops = loops
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
            serve(socket)
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
        let descriptor = Glibc.socket(first.pointee.ai_family, first.pointee.ai_socktype, first.pointee.ai_protocol)
        guard descriptor >= 0 else { throw ServerError(description: "cannot open a socket: \(String(cString: strerror(errno)))") }
        var yes: Int32 = 1
        setsockopt(descriptor, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        guard bind(descriptor, first.pointee.ai_addr, first.pointee.ai_addrlen) == 0, Glibc.listen(descriptor, 64) == 0 else {
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

    /// Accepts connections until a stop is requested, polling so the stop is seen within 100 ms.
    private func serve(_ listener: Int32) {
        while !stopRequested.load(ordering: .relaxed) {
            var descriptor = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
            guard poll(&descriptor, 1, 100) > 0 else { continue }
            let connection = accept(listener, nil, nil)
            guard connection >= 0 else { continue }
            var timeout = timeval(tv_sec: 2, tv_usec: 0)
            setsockopt(connection, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(connection, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            respond(on: connection)
            close(connection)
        }
    }

    private func respond(on connection: Int32) {
        var request: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while request.count < 16_384, !request.ends(with: [13, 10, 13, 10]) {
            let count = read(connection, &buffer, buffer.count)
            guard count > 0 else { break }
            request += buffer[0..<count]
        }
        let requestLine = String(decoding: request.prefix { $0 != 13 && $0 != 10 }, as: UTF8.self).split(separator: " ")
        let (status, body, contentType) = route(method: requestLine.first.map(String.init) ?? "",
                                                path: requestLine.dropFirst().first.map(String.init) ?? "")
        let head = "HTTP/1.1 \(status)\r\nContent-Type: \(contentType)\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n"
        let bytes = Array((head + body).utf8)
        var sent = 0
        while sent < bytes.count {
            let count = bytes[sent...].withUnsafeBytes { write(connection, $0.baseAddress, $0.count) }
            guard count > 0 else { return }
            sent += count
        }
    }

    private func route(method: String, path: String) -> (status: String, body: String, contentType: String) {
        let text = "text/plain; charset=utf-8"
        guard method == "GET" || method == "HEAD" else { return ("405 Method Not Allowed", "only GET\n", text) }
        switch path.split(separator: "?").first.map(String.init) ?? path {
        case "/metrics":
            guard let renderMetrics else { return ("404 Not Found", "metrics are not enabled\n", text) }
            return ("200 OK", renderMetrics(), "text/plain; version=0.0.4; charset=utf-8")
        case "/healthz":
            let running = loops()
            let stalled = running.filter(\.isStalled)
            if stalled.isEmpty { return ("200 OK", list("alive", running.map(\.description)), text) }
            return ("503 Service Unavailable", list("stalled", stalled.map(\.description)), text)
        case "/readyz":
            let state = readiness()
            if state.isReady { return ("200 OK", "ready\n", text) }
            return ("503 Service Unavailable", list("not ready", state.problems), text)
        default:
            return ("404 Not Found", "not found\n", text)
        }
    }

    /// `title:` then one `- ` line per item.
    private func list(_ title: String, _ items: [String]) -> String {
        "\(title):\n" + items.map { "- \($0)\n" }.joined()
    }
}

extension Array where Element == UInt8 {
    func ends(with suffix: [UInt8]) -> Bool {
        count >= suffix.count && Array(self[(count - suffix.count)...]) == suffix
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
