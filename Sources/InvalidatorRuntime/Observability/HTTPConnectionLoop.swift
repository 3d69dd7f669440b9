#if canImport(Glibc)
import Glibc
#endif
import Logging

/// How many clients the observability server serves at once, and for how long.
struct HTTPServerLimits: Sendable {
    /// Connections open at once. Past it, a new connection closes the oldest open
    /// one: requests are answered as soon as their head is read, so the oldest is
    /// an idle or trickling client, and a probe never waits behind such clients.
    let maxConnections = 256
    /// From accept to close, whatever the client does: reading the request,
    /// answering it and waiting for the client to close.
    let connectionDeadline: Duration = .seconds(5)
    /// The largest request head (request line and headers): 414 or 431 past it.
    let maxRequestHeadBytes = 8_192
}

/// Serves HTTP connections with poll(2) on the calling thread until asked to stop.
///
/// Sockets are non-blocking throughout: a slow client costs one connection slot,
/// never the thread. Each connection reads one request head, gets its answer, and
/// is then shut down for writing and read until the client closes, so that the
/// close never resets a connection whose answer the client has not read yet.
struct HTTPConnectionLoop {
    private let listener: Int32
    private let limits = HTTPServerLimits()
    private let answer: (_ method: String, _ target: String) -> HTTPResponse
    private let logger: Logger
    /// Oldest first, which is also earliest deadline first.
    private var connections: [Connection] = []
    /// Set when accepting was paused because the process ran out of file descriptors;
    /// cleared by the next connection accepted.
    private var acceptPausedUntil: ContinuousClock.Instant?

    /// How long poll(2) waits at most, so that a stop request is seen within it.
    private static let stopCheckInterval: Duration = .milliseconds(100)
    /// Connections accepted per round at most: the ones accepted in one round are
    /// read in the next, before a flood of newer ones can make them the oldest.
    private static let acceptBatch = 32

    init(listener: Int32, logger: Logger, answer: @escaping (_ method: String, _ target: String) -> HTTPResponse) {
        self.listener = listener
        self.logger = logger
        self.answer = answer
    }

    mutating func run(until stopRequested: () -> Bool) {
        while !stopRequested() {
            let now = ContinuousClock.now
            closeExpiredConnections(now: now)
            let acceptsConnections = acceptPausedUntil.map { now >= $0 } ?? true
            // A negative descriptor is skipped by poll(2) and keeps the indices aligned.
            var descriptors = [pollfd(fd: acceptsConnections ? listener : -1, events: Int16(POLLIN), revents: 0)]
            for connection in connections {
                descriptors.append(pollfd(fd: connection.descriptor, events: Int16(connection.awaitedEvent), revents: 0))
            }
            guard poll(&descriptors, nfds_t(descriptors.count), pollTimeoutMilliseconds(now: now)) > 0 else { continue }
            var closed: Set<Int32> = []
            for (index, ready) in descriptors.dropFirst().enumerated() where ready.revents != 0 {
                if !connections[index].advance(limits: limits, answer: answer) {
                    close(connections[index].descriptor)
                    closed.insert(connections[index].descriptor)
                }
            }
            if !closed.isEmpty { connections.removeAll { closed.contains($0.descriptor) } }
            if descriptors[0].revents != 0 { acceptWaitingConnections(now: .now) }
        }
        for connection in connections { close(connection.descriptor) }
        connections.removeAll()
    }

    /// Up to the deadline of the oldest connection, at most the stop check interval.
    private func pollTimeoutMilliseconds(now: ContinuousClock.Instant) -> Int32 {
        var wait = Self.stopCheckInterval
        if let oldest = connections.first { wait = min(wait, oldest.deadline - now) }
        if let acceptPausedUntil, acceptPausedUntil > now { wait = min(wait, acceptPausedUntil - now) }
        guard wait > .zero else { return 0 }
        let (seconds, attoseconds) = wait.components
        // Rounded up: waking a moment before a deadline would only spin.
        return Int32(seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000)
    }

    private mutating func closeExpiredConnections(now: ContinuousClock.Instant) {
        while let oldest = connections.first, oldest.deadline <= now {
            oldest.answerTimeoutIfRequestStarted()
            close(oldest.descriptor)
            connections.removeFirst()
            logger.debug("http connection closed at its deadline", metadata: ["phase": "\(oldest.phase)"])
        }
    }

    private mutating func acceptWaitingConnections(now: ContinuousClock.Instant) {
        for _ in 0..<Self.acceptBatch {
            let descriptor = accept(listener, nil, nil)
            guard descriptor >= 0 else {
                let error = errno
                switch error {
                case EAGAIN, EWOULDBLOCK:
                    return
                case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                    // Out of descriptors: free one of ours, else wait a little for the process to free some.
                    if !connections.isEmpty {
                        closeOldestConnection(reason: "out of file descriptors")
                        continue
                    }
                    if acceptPausedUntil == nil {
                        logger.warning("http server cannot accept connections", metadata: ["error": "\(String(cString: strerror(error)))"])
                    }
                    acceptPausedUntil = now + Self.stopCheckInterval
                    return
                default:
                    // The client left before being accepted (ECONNABORTED), or a signal interrupted.
                    continue
                }
            }
            acceptPausedUntil = nil
            guard fcntl(descriptor, F_SETFL, O_NONBLOCK) == 0 else {
                close(descriptor)
                continue
            }
            if connections.count >= limits.maxConnections {
                closeOldestConnection(reason: "connection limit reached")
            }
            connections.append(Connection(descriptor: descriptor, deadline: now + limits.connectionDeadline))
        }
    }

    private mutating func closeOldestConnection(reason: String) {
        let oldest = connections.removeFirst()
        close(oldest.descriptor)
        logger.debug("http connection closed early", metadata: ["reason": "\(reason)", "phase": "\(oldest.phase)"])
    }
}

/// One client connection of ``HTTPConnectionLoop``.
private struct Connection {
    enum Phase: CustomStringConvertible {
        case readingRequest, sendingResponse, waitingForClientClose

        var description: String {
            switch self {
            case .readingRequest: "reading request"
            case .sendingResponse: "sending response"
            case .waitingForClientClose: "waiting for client close"
            }
        }
    }

    let descriptor: Int32
    let deadline: ContinuousClock.Instant
    private(set) var phase = Phase.readingRequest
    private var received: [UInt8] = []
    private var response: [UInt8] = []
    private var sent = 0

    init(descriptor: Int32, deadline: ContinuousClock.Instant) {
        self.descriptor = descriptor
        self.deadline = deadline
    }

    /// The poll(2) event this connection waits for.
    var awaitedEvent: Int32 { phase == .sendingResponse ? Int32(POLLOUT) : Int32(POLLIN) }

    /// Does what the connection's phase calls for now that poll(2) says it can;
    /// false once the connection is to be closed.
    mutating func advance(limits: HTTPServerLimits, answer: (String, String) -> HTTPResponse) -> Bool {
        switch phase {
        case .readingRequest: readRequest(limits: limits, answer: answer)
        case .sendingResponse: sendResponse()
        case .waitingForClientClose: discardUntilClientCloses()
        }
    }

    private mutating func readRequest(limits: HTTPServerLimits, answer: (String, String) -> HTTPResponse) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
        guard count >= 0 else { return Self.isTransient(errno) }
        // Gone without a word: nothing to answer.
        if count == 0, received.isEmpty { return false }
        received += buffer[0..<count]
        switch HTTPRequestHead.parse(received, maxBytes: limits.maxRequestHeadBytes, peerClosed: count == 0) {
        case .incomplete:
            return true
        case .request(let method, let target):
            response = answer(method, target).serialized(includingBody: method != "HEAD")
        case .invalid(let status):
            response = HTTPResponse(error: status).serialized(includingBody: true)
        }
        received = []
        phase = .sendingResponse
        return sendResponse()
    }

    private mutating func sendResponse() -> Bool {
        while sent < response.count {
            // MSG_NOSIGNAL: a client that reset the connection is an error here, not a SIGPIPE.
            let count = response[sent...].withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard count >= 0 else { return Self.isTransient(errno) }
            sent += count
        }
        response = []
        shutdown(descriptor, Int32(SHUT_WR))
        phase = .waitingForClientClose
        return true
    }

    private func discardUntilClientCloses() -> Bool {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
        return count > 0 || (count < 0 && Self.isTransient(errno))
    }

    /// A client that started a request and did not finish it by the deadline is told
    /// so, if its socket takes the answer at once.
    func answerTimeoutIfRequestStarted() {
        guard phase == .readingRequest, !received.isEmpty else { return }
        let answer = HTTPResponse(error: .requestTimeout).serialized(includingBody: true)
        _ = answer.withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
    }

    private static func isTransient(_ error: Int32) -> Bool {
        error == EAGAIN || error == EWOULDBLOCK || error == EINTR
    }
}
