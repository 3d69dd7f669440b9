import Foundation
import TestSupport
import Testing

// Clients that misbehave on the worker's HTTP port, as a port scanner, a broken
// scraper or a hostile pod would. Invariants: `/healthz` answers 200 within 1 s
// throughout (the liveness probe's timeout is 2 s), and the process never dies of it.
// The server's documented limits: 256 connections, each closed 5 s after it was
// accepted, request heads up to 8 KiB.

@Suite(.serialized, .timeLimit(.minutes(2))) struct HTTPAbuseFaultTests {
    /// A client sends a byte every 1.9 s, just under a per-read timeout, forever.
    @Test func aTricklingClientIsClosedAtItsDeadline() async throws {
        let worker = try await ServingWorker.start()
        let request = Array("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".utf8)
        let slow = try RawClient(port: worker.port)
        let opened = ContinuousClock.now
        var nextSend = opened
        var bytesSent = 0
        var probes = HealthzProbes()
        var closedAfter: Duration?
        while closedAfter == nil, ContinuousClock.now - opened < .seconds(20) {
            if ContinuousClock.now >= nextSend, bytesSent < request.count, slow.send([request[bytesSent]]) {
                bytesSent += 1
                nextSend += .milliseconds(1900)
            }
            probes.probe(worker.process)
            slow.collect()
            if slow.closedByServer { closedAfter = ContinuousClock.now - opened }
            try await Task.sleep(for: .milliseconds(100))
        }

        let closed = try #require(closedAfter, "the trickling connection was still open after 20 s")
        #expect(bytesSent < request.count, "closed before its request was complete, not by the request ending")
        #expect(String(decoding: slow.received, as: UTF8.self).hasPrefix("HTTP/1.1 408 "))
        #expect(probes.failures.isEmpty)
        #expect(probes.worst < .seconds(2))
        #expect(worker.process.isRunning)
        report("HTTP client trickling a byte every 1.9 s", """
            connection closed after \(closed.secondsText) s (deadline 5 s) with 408, \(bytesSent) of \(request.count) bytes sent; \
            \(probes.summary)
            """)
    }

    /// Clients that reset the connection (SO_LINGER 0) with the request half sent,
    /// right after sending it, or once the answer is on its way.
    @Test func clientsResettingConnectionsDoNotKillTheWorker() async throws {
        let worker = try await ServingWorker.start()
        let requests = [
            "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n",
            "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            "HEAD /healthz HTTP/1.1\r\n\r\n",
        ].map { Array($0.utf8) }
        var probes = HealthzProbes()
        let rounds = 300
        for round in 0..<rounds {
            let client = try RawClient(port: worker.port)
            _ = client.send(requests[round % requests.count])
            if round % 4 == 0 { try await Task.sleep(for: .milliseconds(2)) }
            client.reset()
            if round % 20 == 0 { probes.probe(worker.process) }
        }
        for _ in 0..<5 {
            probes.probe(worker.process)
            try await Task.sleep(for: .milliseconds(100))
        }

        #expect(worker.process.isRunning, "the worker died: \(worker.process.log.suffix(500))")
        #expect(try worker.process.get("/readyz").status == 200)
        #expect(probes.failures.isEmpty)
        #expect(probes.worst < .seconds(2))
        report("HTTP clients resetting connections", "\(rounds) resets, worker alive and ready; \(probes.summary)")
    }

    /// 50 idle clients, 50 trickling ones and 100 normal requests, all open at once.
    @Test func twoHundredConcurrentClients() async throws {
        let worker = try await ServingWorker.start()
        let paths = ["/healthz", "/readyz", "/metrics"]
        var idle: [RawClient] = []
        var trickling: [RawClient] = []
        var normal: [RawClient] = []
        let opened = ContinuousClock.now
        for index in 0..<200 {
            let client = try RawClient(port: worker.port)
            switch index % 4 {
            case 0:
                idle.append(client)
            case 1:
                _ = client.send(Array("GET /hea".utf8))
                trickling.append(client)
            default:
                _ = client.send(Array("GET \(paths[index % paths.count]) HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".utf8))
                normal.append(client)
            }
        }
        var probes = HealthzProbes()
        for round in 0..<20 {
            probes.probe(worker.process)
            if round % 5 == 0 { for client in trickling { _ = client.send(Array("l".utf8)) } }
            try await Task.sleep(for: .milliseconds(100))
        }

        let statuses = normal.map { try? $0.answer().status }
        #expect(statuses.filter { $0 == 200 }.count == normal.count, "statuses: \(statuses)")
        #expect(probes.failures.isEmpty)
        #expect(probes.worst < .seconds(2))
        let held = idle + trickling
        #expect(try await eventually {
            held.forEach { $0.collect() }
            return held.allSatisfy(\.closedByServer)
        })
        let heldFor = ContinuousClock.now - opened
        #expect(idle.allSatisfy { $0.received.isEmpty })
        #expect(trickling.allSatisfy { String(decoding: $0.received, as: UTF8.self).hasPrefix("HTTP/1.1 408 ") })
        #expect(worker.process.isRunning)
        report("200 concurrent HTTP clients (50 idle, 50 trickling, 100 normal)", """
            \(statuses.filter { $0 == 200 }.count)/\(normal.count) normal requests answered 200, \
            idle and trickling connections all closed \(heldFor.secondsText) s after opening (deadline 5 s); \(probes.summary)
            """)
    }

    /// More idle connections than the server keeps: the oldest make room for the probe.
    @Test func pastTheConnectionLimitTheOldestConnectionsMakeRoom() async throws {
        let worker = try await ServingWorker.start()
        let limit = 256
        let idle = try (0..<300).map { _ in try RawClient(port: worker.port) }
        var probes = HealthzProbes()
        probes.probe(worker.process)

        // 300 idle connections and the probe's: 45 over the limit.
        let evicted = idle.count + 1 - limit
        #expect(try await eventually {
            idle.forEach { $0.collect() }
            return idle.indices.filter { idle[$0].closedByServer } == Array(0..<evicted)
        })
        #expect(probes.failures.isEmpty)
        #expect(probes.worst < .seconds(2))
        #expect(worker.process.isRunning)
        report("301 HTTP connections against the limit of 256", "the \(evicted) oldest closed to make room; \(probes.summary)")
    }

    /// Idle clients use up the worker's file descriptors: the server closes its
    /// oldest connection to accept the next one, and keeps answering.
    @Test func outOfFileDescriptorsTheOldestConnectionsMakeRoom() async throws {
        let worker = try await ServingWorker.start()
        let pid = worker.process.process.processIdentifier
        let spare = 20
        let limit = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count + spare
        let prlimit = try ChildProcess.run("/usr/bin/prlimit", ["--pid", "\(pid)", "--nofile=\(limit):\(limit)"], timeout: 10)
        #expect(prlimit.exit == .success, "\(prlimit.standardOutput)")

        let idle = try (0..<(2 * spare)).map { _ in try RawClient(port: worker.port) }
        var probes = HealthzProbes()
        for _ in 0..<5 { probes.probe(worker.process) }

        #expect(try await eventually {
            idle.forEach { $0.collect() }
            return idle.prefix(spare).allSatisfy(\.closedByServer)
        }, "the oldest idle connections were closed to make room")
        #expect(probes.failures.isEmpty)
        #expect(probes.worst < .seconds(2))
        #expect(worker.process.isRunning)
        report("HTTP clients using up the worker's file descriptors (\(spare) spare)", """
            \(idle.filter(\.closedByServer).count) of \(idle.count) idle connections closed to make room; \(probes.summary)
            """)
    }

    @Test func headHasNoBodyAndMalformedRequestsGetTheirStatus() async throws {
        let worker = try await ServingWorker.start()
        func exchange(_ request: String) throws -> HTTPProbe.RawAnswer {
            try HTTPProbe.exchange(port: worker.port, request: Array(request.utf8))
        }

        let get = try exchange("GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        #expect(get.status == 200 && get.body == Array("ready\n".utf8) && get.headers["content-length"] == "6")
        let head = try exchange("HEAD /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        #expect(head.status == 200 && head.body.isEmpty && head.headers["content-length"] == "6")
        let headMetrics = try exchange("HEAD /metrics HTTP/1.1\r\n\r\n")
        #expect(headMetrics.status == 200 && headMetrics.body.isEmpty)
        #expect((Int(headMetrics.headers["content-length"] ?? "") ?? 0) > 100)

        let tlsClientHello: [UInt8] = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xFC, 0x03, 0x03]
        #expect(try HTTPProbe.exchange(port: worker.port, request: tlsClientHello).status == 400)
        let expected: [(request: String, status: Int)] = [
            ("GARBAGE\r\n\r\n", 400),
            ("GET /healthz\r\n\r\n", 400),
            ("GET  /healthz HTTP/1.1\r\n\r\n", 400),
            ("DELETE /healthz HTTP/1.1\r\n\r\n", 405),
            ("GET /nothing HTTP/1.1\r\n\r\n", 404),
            ("GET /healthz HTTP/2.0\r\n\r\n", 505),
            ("GET /healthz HTTP/1.1\r\nX-Padding: \(String(repeating: "a", count: 10_000))\r\n\r\n", 431),
        ]
        for (request, status) in expected {
            #expect(try exchange(request).status == status, "\(request.prefix(40).debugDescription)")
        }
        let unfinished = Array("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n".utf8)
        #expect(try RawClient.halfClosedExchange(port: worker.port, request: unfinished).status == 400,
                "a client that stops sending before its head ends")
        #expect(try exchange("PUT /healthz HTTP/1.1\r\n\r\n").headers["allow"] == "GET, HEAD")
        #expect(try worker.process.get("/healthz").status == 200)
        #expect(worker.process.isRunning)
    }
}

// MARK: Support

/// A worker with one Redis stream source and one pool, ready.
private struct ServingWorker {
    let redis: RedisServer
    let scenario: Scenario
    let process: InvalidatorProcess

    var port: Int { process.httpPort }

    static func start() async throws -> ServingWorker {
        let redis = try await RedisServer.start()
        let scenario = try Scenario()
        let config = try scenario.write("invalidator.yaml", """
            sources:
              redis_stream: { pool: primary, streams: ["changes"], group: invalidator }
            pools:
              primary: { nodes: ["\(redis.endpoint)"] }
            rules:
              - { name: user, match: { entity: user }, pools: [primary], delete: ["user:{id}"] }
            """)
        let process = try InvalidatorProcess(run: config)
        guard try await process.waitUntilReady() else { throw TestSupportError("the worker did not get ready:\n\(process.log)") }
        return ServingWorker(redis: redis, scenario: scenario, process: process)
    }
}

/// `/healthz` probes as the liveness probe makes them, with their worst latency.
private struct HealthzProbes {
    private(set) var worst: Duration = .zero
    private(set) var count = 0
    /// What each probe that did not answer 200 got instead.
    private(set) var failures: [String] = []

    mutating func probe(_ worker: InvalidatorProcess) {
        let start = ContinuousClock.now
        do {
            let status = try worker.get("/healthz", timeout: .seconds(2)).status
            if status != 200 { failures.append("status \(status)") }
        } catch {
            failures.append("\(error)")
        }
        worst = max(worst, ContinuousClock.now - start)
        count += 1
    }

    var summary: String { "/healthz worst \(worst.wholeMilliseconds) ms over \(count) probes" }
}

/// A client socket driven by hand: it sends what it is told, when it is told.
private final class RawClient {
    private var socket: Int32
    private(set) var received: [UInt8] = []
    private(set) var closedByServer = false

    init(port: Int) throws {
        socket = try HTTPProbe.connectedSocket(port: port, timeout: .seconds(2))
    }

    deinit {
        if socket >= 0 { close(socket) }
    }

    /// Whether all of `bytes` were sent.
    func send(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { Foundation.send(socket, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == bytes.count
    }

    /// Reads what has arrived, without waiting; notes when the server closed (or reset) the connection.
    func collect() {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !closedByServer {
            let count = buffer.withUnsafeMutableBytes { recv(socket, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if count > 0 {
                received += buffer[0..<count]
                continue
            }
            if count == 0 || (errno != EAGAIN && errno != EWOULDBLOCK) { closedByServer = true }
            return
        }
    }

    /// The whole answer, read until the server closes.
    func answer() throws -> HTTPProbe.RawAnswer {
        let bytes = try HTTPProbe.readUntilClosed(socket, timeout: .seconds(2))
        guard let answer = HTTPProbe.RawAnswer(parsing: bytes) else { throw TestSupportError("not an HTTP answer") }
        return answer
    }

    /// Closes with a reset (SO_LINGER 0) rather than an orderly close.
    func reset() {
        var resetOnClose = linger(l_onoff: 1, l_linger: 0)
        setsockopt(socket, SOL_SOCKET, SO_LINGER, &resetOnClose, socklen_t(MemoryLayout<linger>.size))
        close(socket)
        socket = -1
    }

    /// Sends `request`, shuts the sending side (the request ends there), and reads the answer.
    static func halfClosedExchange(port: Int, request: [UInt8]) throws -> HTTPProbe.RawAnswer {
        let client = try RawClient(port: port)
        guard client.send(request) else { throw TestSupportError("cannot send the request") }
        shutdown(client.socket, Int32(SHUT_WR))
        return try client.answer()
    }
}

private extension Duration {
    /// Whole milliseconds, for figures.
    var wholeMilliseconds: Int64 { components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000 }

    /// Seconds with one decimal, for figures.
    var secondsText: String { String(format: "%.1f", Double(wholeMilliseconds) / 1000) }
}
