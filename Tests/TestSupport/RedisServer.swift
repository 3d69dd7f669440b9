import Foundation
import Synchronization

/// A real `redis-server` process on a free local port, for tests.
///
/// The process is killed and its directory removed when the value is released,
/// so a failing test cleans up too. Each test should start its own servers.
public final class RedisServer: @unchecked Sendable {
    // @unchecked Sendable: `process` and `client` are only used while holding `lock`.
    public let port: Int
    /// The TLS port, for servers started with certificates; the plain `port` stays
    /// open for the tests' own checks.
    public let tlsPort: Int?
    public let directory: URL
    private let extraArguments: [String]
    private let lock = NSLock()
    private var process: ChildProcess?
    private var client: RedisTestClient?

    /// `127.0.0.1:port`, as used in pool configurations.
    public var endpoint: String { "127.0.0.1:\(port)" }

    /// `127.0.0.1:tlsPort`; the plain endpoint for a server without TLS.
    public var tlsEndpoint: String { "127.0.0.1:\(tlsPort ?? port)" }

    /// Starts a server, retrying on another port if the chosen one was taken in between.
    public static func start(_ extraArguments: [String] = []) async throws -> RedisServer {
        try await runBlocking { try startBlocking(extraArguments) }
    }

    /// Starts a server that also serves TLS with `certificates`, on ``tlsPort``.
    public static func start(
        _ extraArguments: [String] = [], tls certificates: TestCertificates, requireClientCertificates: Bool = false
    ) async throws -> RedisServer {
        try await runBlocking {
            try startBlocking(extraArguments, tls: certificates, requireClientCertificates: requireClientCertificates)
        }
    }

    /// Starts `count` independent servers.
    public static func start(count: Int, _ extraArguments: [String] = []) async throws -> [RedisServer] {
        var servers: [RedisServer] = []
        for _ in 0..<count {
            servers.append(try await start(extraArguments))
        }
        return servers
    }

    fileprivate static func startBlocking(
        _ extraArguments: [String], tls certificates: TestCertificates? = nil, requireClientCertificates: Bool = false
    ) throws -> RedisServer {
        var lastError: Error = TestSupportError("no attempt made")
        for _ in 0..<5 {
            let tlsPort = try certificates.map { _ in try freePort() }
            let tlsArguments = certificates.map { certificates in
                certificates.serverArguments(port: tlsPort ?? 0, requireClientCertificates: requireClientCertificates)
            } ?? []
            let server = try RedisServer(port: try freePort(), tlsPort: tlsPort, extraArguments: extraArguments + tlsArguments)
            do {
                try server.launch()
                return server
            } catch {
                lastError = error
            }
        }
        throw lastError
    }

    private init(port: Int, tlsPort: Int?, extraArguments: [String]) throws {
        self.port = port
        self.tlsPort = tlsPort
        self.extraArguments = extraArguments
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("redis-test-\(port)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    deinit {
        kill()
        try? FileManager.default.removeItem(at: directory)
        Self.reservedPorts.withLock { reserved in
            reserved.remove(port)
            if let tlsPort { reserved.remove(tlsPort) }
        }
    }

    /// Shuts the server down cleanly (SIGTERM) and waits for it.
    public func stop() {
        terminate(signal: SIGTERM)
    }

    /// Whether the server process is running (not stopped or killed).
    public var isRunning: Bool {
        lock.withLock { process?.isRunning ?? false }
    }

    /// Kills the server (SIGKILL), as a crash would.
    public func kill() {
        terminate(signal: SIGKILL)
    }

    /// Starts the server again on the same port (after `stop()` or `kill()`).
    public func restart() async throws {
        try await runBlocking { try self.launch() }
    }

    /// Sends one command over a plain socket and returns the reply formatted like
    /// `redis-cli` raw output (integers as digits, nil as "", arrays one element
    /// per line, errors as their text). Much faster than ``cli(_:)``.
    @discardableResult
    public func call(_ arguments: String...) throws -> String {
        try call(arguments)
    }

    @discardableResult
    public func call(_ arguments: [String]) throws -> String {
        try lock.withLock {
            let client = try self.client ?? RedisTestClient(port: port)
            self.client = client
            do {
                return try client.call(arguments)
            } catch {
                self.client = nil
                throw error
            }
        }
    }

    /// Sends one command whose arguments are raw bytes and returns the reply's
    /// elements as the server sent them (integers as digits, nil as empty, arrays
    /// flattened). For keys and payloads that are not UTF-8, which ``call(_:)``
    /// cannot send or read back unchanged.
    @discardableResult
    public func call(bytes arguments: [[UInt8]]) throws -> [[UInt8]] {
        try lock.withLock {
            let client = try self.client ?? RedisTestClient(port: port)
            self.client = client
            do {
                return try client.call(bytes: arguments)
            } catch {
                self.client = nil
                throw error
            }
        }
    }

    /// Keys matching `pattern`, via SCAN.
    public func keys(matching pattern: String = "*") throws -> Set<String> {
        var keys: Set<String> = []
        var cursor = "0"
        repeat {
            let page = try call("SCAN", cursor, "MATCH", pattern, "COUNT", "1000").split(separator: "\n", omittingEmptySubsequences: false)
            cursor = String(page[0])
            keys.formUnion(page.dropFirst().filter { !$0.isEmpty }.map(String.init))
        } while cursor != "0"
        return keys
    }

    /// Runs `redis-cli` against this server and returns its output, trimmed.
    @discardableResult
    public func cli(_ arguments: String...) async throws -> String {
        try await runBlocking { try self.cliBlocking(arguments) }
    }

    /// Loads `commands` quickly through `redis-cli --pipe`.
    public func pipe(_ commands: [[String]]) async throws {
        var protocolText = Data()
        for command in commands {
            protocolText.append(Data("*\(command.count)\r\n".utf8))
            for argument in command {
                protocolText.append(Data("$\(argument.utf8.count)\r\n\(argument)\r\n".utf8))
            }
        }
        let output = try await runBlocking { [protocolText] in try self.cliBlocking(["--pipe"], input: protocolText) }
        guard output.contains("errors: 0") else { throw TestSupportError("redis-cli --pipe: \(output)") }
    }

    /// SETs each key to "v".
    public func seed(_ keys: [String]) async throws {
        try await pipe(keys.map { ["SET", $0, "v"] })
    }

    private func cliBlocking(_ arguments: [String], input: Data? = nil) throws -> String {
        try Self.run("redis-cli", ["-p", String(port)] + arguments, input: input)
    }

    // MARK: Process

    private func launch() throws {
        let process = try ChildProcess("redis-server", [
            "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", directory.path, "--logfile", directory.appendingPathComponent("redis.log").path,
        ] + extraArguments)
        try startWatchdog(for: process.processIdentifier)
        lock.withLock { self.process = process }
        let deadline = Date().addingTimeInterval(5)
        while Date() < deadline {
            if !process.isRunning { break }
            // With requirepass, NOAUTH proves the server is up as well as PONG does.
            if let reply = try? cliBlocking(["PING"]), reply == "PONG" || reply.hasPrefix("NOAUTH") { return }
            Thread.sleep(forTimeInterval: 0.02)
        }
        kill()
        throw TestSupportError("redis-server did not start on port \(port)")
    }

    /// If the test process dies without releasing this server (a crash, an
    /// abort), a small shell loop kills the server and removes its directory.
    /// It exits on its own once the server stops first.
    private func startWatchdog(for serverProcess: Int32) throws {
        try ChildProcess("/bin/sh", ["-c", """
            while kill -0 \(getpid()) 2>/dev/null; do
              kill -0 \(serverProcess) 2>/dev/null || exit 0
              sleep 1
            done
            kill -9 \(serverProcess) 2>/dev/null
            rm -rf '\(directory.path)'
            """]).detach()
    }

    private func terminate(signal: Int32) {
        guard let process = lock.withLock({ () -> ChildProcess? in
            defer {
                self.process = nil
                self.client = nil
            }
            return self.process
        }) else { return }
        process.send(signal)
        process.waitForExit()
    }

    /// Runs a program found on PATH and returns its output, trimmed.
    static func run(_ program: String, _ arguments: [String], input: Data? = nil) throws -> String {
        try ChildProcess.run(program, arguments, input: input).standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// A port free now, whose cluster bus port (port + 10000) is free too.
    /// Ports of servers alive in this process, killed ones included: a test that
    /// kills a server and restarts it on the same port must not find another
    /// test's server there meanwhile.
    private static let reservedPorts = Mutex<Set<Int>>([])

    /// Below the kernel's ephemeral range (32768+), so no client or mock Kafka
    /// broker socket takes a port while its server is down.
    public static func freePort() throws -> Int {
        for _ in 0..<100 {
            let port = Int.random(in: 20000..<32700)
            guard canBind(port) && canBind(port + 10000) else { continue }
            if reservedPorts.withLock({ $0.insert(port).inserted }) { return port }
        }
        throw TestSupportError("no free port found")
    }

    private static func canBind(_ port: Int) -> Bool {
        let socketDescriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socketDescriptor >= 0 else { return false }
        defer { close(socketDescriptor) }
        var address = sockaddr_in.loopback(port: port)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(socketDescriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }
}

/// Three or more `redis-server --cluster-enabled yes` primaries joined into a
/// cluster, each with `replicasPerPrimary` replicas (which can be promoted).
public final class RedisCluster: Sendable {
    public let servers: [RedisServer]

    public var endpoints: [String] { servers.map(\.endpoint) }

    private init(servers: [RedisServer]) {
        self.servers = servers
    }

    /// Starts the servers, assigns all slots with `redis-cli --cluster create`
    /// and waits for `cluster_state:ok` on every node. A node is declared failed
    /// after 2 s without an answer (`cluster-node-timeout`), so a replica is
    /// promoted a few seconds after its primary dies.
    ///
    /// With `tls`, the nodes also serve TLS and talk TLS on the cluster bus
    /// (`tls-cluster yes`), so `CLUSTER SLOTS` reports their TLS ports.
    public static func start(
        primaries: Int = 3, replicasPerPrimary: Int = 0, tls certificates: TestCertificates? = nil
    ) async throws -> RedisCluster {
        try await runBlocking {
            try startBlocking(primaries: primaries, replicasPerPrimary: replicasPerPrimary, tls: certificates)
        }
    }

    private static func startBlocking(primaries: Int, replicasPerPrimary: Int, tls certificates: TestCertificates?) throws -> RedisCluster {
        let clusterArguments = ["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"]
            + (certificates == nil ? [] : ["--tls-cluster", "yes", "--tls-replication", "yes"])
        let servers = try (0..<primaries * (1 + replicasPerPrimary)).map { _ in
            try RedisServer.startBlocking(clusterArguments, tls: certificates)
        }
        let cluster = RedisCluster(servers: servers)
        let output = try RedisServer.run(
            "redis-cli",
            ["--cluster", "create"] + cluster.endpoints + ["--cluster-replicas", String(replicasPerPrimary), "--cluster-yes"]
        )
        guard output.contains("[OK] All 16384 slots covered") else {
            throw TestSupportError("cluster create failed: \(output)")
        }
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            let states = try servers.map { try $0.call("CLUSTER", "INFO") }
            let replicasSynced = try cluster.replicas().allSatisfy { try $0.call("INFO", "replication").contains("master_link_status:up") }
            if states.allSatisfy({ $0.contains("cluster_state:ok") }) && replicasSynced { return cluster }
            Thread.sleep(forTimeInterval: 0.05)
        }
        throw TestSupportError("cluster did not reach cluster_state:ok")
    }

    /// The running servers that are primaries now.
    public func primaries() throws -> [RedisServer] {
        try servers.filter { try $0.isRunning && $0.call("ROLE").hasPrefix("master") }
    }

    /// The running servers that are replicas now.
    public func replicas() throws -> [RedisServer] {
        try servers.filter { try $0.isRunning && $0.call("ROLE").hasPrefix("slave") }
    }

    /// The replicas of `primary`.
    public func replicas(of primary: RedisServer) throws -> [RedisServer] {
        try replicas().filter { try $0.call("INFO", "replication").contains("master_port:\(primary.port)") }
    }

    /// The server owning `key`'s slot: the only one that answers without MOVED.
    public func server(owning key: String) throws -> RedisServer {
        for server in try primaries() where try !server.call("EXISTS", key).hasPrefix("MOVED") {
            return server
        }
        throw TestSupportError("no owner for \(key)")
    }
}

/// Runs blocking work (processes, sleeps) on its own thread so it never holds
/// one of the few threads of Swift's cooperative pool that other tests need.
func runBlocking<Result: Sendable>(_ work: @escaping @Sendable () throws -> Result) async throws -> Result {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Swift.Result { try work() }) }.start()
    }
}

public struct TestSupportError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// How many of `keys` exist on `server`.
public func existingKeys(_ server: RedisServer, _ keys: [String]) throws -> Int {
    var count = 0
    for chunk in stride(from: 0, to: keys.count, by: 500) {
        count += Int(try server.call(["EXISTS"] + keys[chunk..<min(chunk + 500, keys.count)])) ?? 0
    }
    return count
}
