import Foundation
import InvalidatorCore
import InvalidatorRedis
import Logging
import TestSupport

/// Plain key deletes through one pool, next to `redis-benchmark -P 64 UNLINK`
/// (Redis's own ceiling for pipelined single-key deletes) against the same server in the same run;
/// then the same over TLS, next to `redis-benchmark --tls -P 64 UNLINK`.
enum RedisBenchmark {
    static func run(keys: Int, batch: Int) async throws {
        let certificates = try await TestCertificates.generate()
        let server = try LocalRedisServer(tls: certificates)
        defer { server.stop() }

        print("redis benchmark: \(keys) keys, one local redis-server, batches of \(batch) operations")
        for useTLS in [false, true] {
            try server.cli("FLUSHALL")
            try server.cli("DEBUG", "POPULATE", String(keys), "key")
            let ceiling = try server.redisBenchmarkUnlink(requests: keys, tlsCAFile: useTLS ? certificates.caFile : nil)
            let reference = useTLS ? "redis-benchmark --tls -P 64 UNLINK" : "redis-benchmark -P 64 UNLINK"
            print("  \(useTLS ? "TLS" : "plain TCP")")
            print(String(format: "    %@ (ceiling) %10.0f keys/s", reference.padding(toLength: 36, withPad: " ", startingAt: 0), ceiling))
            // Plain TCP also runs the worker's way: each batch's deletes from 10 rules,
            // UNLINKed per rule, each delete's rule looked up in a table of the batch.
            for rules in useTLS ? [1] : [1, 10] {
                try server.cli("FLUSHALL")
                try server.cli("DEBUG", "POPULATE", String(keys), "key")
                let ours = try await deleteThroughPool(
                    keys: keys, batch: batch, rules: rules, port: useTLS ? server.tlsPort : server.port,
                    tls: useTLS ? RedisTLSOptions(caFile: certificates.caFile) : nil)
                let remaining = try server.cli("DBSIZE").trimmingCharacters(in: .whitespacesAndNewlines)
                precondition(remaining == "0", "\(remaining) keys left")
                let label = "invalidator pool (single\(rules > 1 ? ", \(rules) rules" : ""))".padding(toLength: 47, withPad: " ", startingAt: 0)
                print("    " + label + String(format: "%10.0f keys/s  %5.2fx", ours, ours / ceiling))
            }
        }
    }

    /// Keys deleted per second through a single-node pool, the deletes of each batch
    /// spread over `rules` removal groups.
    private static func deleteThroughPool(keys: Int, batch: Int, rules: Int, port: Int, tls: RedisTLSOptions?) async throws -> Double {
        var logger = Logger(label: "bench")
        logger.logLevel = .error
        let pool = RedisPool(
            configuration: RedisPoolConfiguration(
                name: "bench", mode: .single, nodes: [RedisEndpoint(host: "127.0.0.1", port: port)], tls: tls),
            logger: logger)
        let operations = (0..<keys).map { CacheOperation.delete(key: "key:\($0)") }
        let chunks = stride(from: 0, to: keys, by: batch).map { Array(operations[$0..<min($0 + batch, keys)]) }
        let rulesByChunk = chunks.map { chunk in Dictionary(uniqueKeysWithValues: chunk.enumerated().map { ($1, $0 % rules) }) }
        let start = ContinuousClock.now
        for (chunk, owners) in zip(chunks, rulesByChunk) {
            let removalGroup: RemovalGroup? = rules == 1 ? nil : { @Sendable in owners[$0] ?? 0 }
            let report = await pool.execute(chunk, removalGroup: removalGroup)
            precondition(report.isSuccess, "benchmark deletes failed: \(report.failures.first.map { "\($0.error)" } ?? "")")
        }
        let elapsed = ContinuousClock.now - start
        await pool.close()
        return Double(keys) / elapsed.seconds
    }
}

extension Duration {
    var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}

/// A throwaway redis-server on a free port, serving TLS on another.
final class LocalRedisServer {
    let port: Int
    let tlsPort: Int
    private let process = Process()
    private let folder: URL

    var endpoint: String { "127.0.0.1:\(port)" }

    init(tls certificates: TestCertificates) throws {
        port = try Self.freePort()
        tlsPort = try Self.freePort()
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("invalidator-bench-\(port)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["redis-server", "--port", String(port), "--save", "", "--appendonly", "no",
                             "--enable-debug-command", "local", "--dir", folder.path]
            + certificates.serverArguments(port: tlsPort, requireClientCertificates: false)
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        for _ in 0..<100 {
            if (try? cli("PING"))?.contains("PONG") == true { return }
            Thread.sleep(forTimeInterval: 0.05)
        }
        throw CocoaError(.fileReadUnknown)
    }

    func stop() {
        // SHUTDOWN rather than only a signal: a child spawned from a task thread can
        // inherit a mask that blocks SIGTERM, and would outlive the benchmark.
        _ = try? cli("SHUTDOWN", "NOSAVE")
        process.terminate()
        try? FileManager.default.removeItem(at: folder)
    }

    @discardableResult
    func cli(_ arguments: String...) throws -> String {
        try Self.output(of: ["redis-cli", "-p", String(port)] + arguments)
    }

    /// Requests per second `redis-benchmark` reports for pipelined single-key UNLINKs,
    /// over TLS when given the CA to verify the server with.
    func redisBenchmarkUnlink(requests: Int, tlsCAFile: String?) throws -> Double {
        let connection = tlsCAFile.map { ["-p", String(tlsPort), "--tls", "--cacert", $0] } ?? ["-p", String(port)]
        let output = try Self.output(of: ["redis-benchmark"] + connection + [
            "-P", "64", "-n", String(requests), "-r", String(requests), "-q", "UNLINK", "key:__rand_int__",
        ])
        // "UNLINK key:__rand_int__: 2500000.00 requests per second, p50=..."
        guard let line = output.split(whereSeparator: \.isNewline).last(where: { $0.contains("requests per second") }),
              let value = line.split(separator: ":").dropFirst().joined(separator: ":")
                .split(separator: " ").compactMap({ Double($0) }).first
        else { throw CocoaError(.fileReadCorruptFile) }
        return value
    }

    /// Runs a command to completion. Reads to end of file instead of
    /// `waitUntilExit`, which can spin forever off the main thread on Linux.
    static func output(of arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        return String(decoding: data, as: UTF8.self)
    }

    static func freePort() throws -> Int {
        let socket = Foundation.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(socket) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socket, $0, length) }
        }
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(socket, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
