import Foundation
import InvalidatorCore
import InvalidatorRedis
import Logging

/// Plain key deletes through one pool, next to `redis-benchmark -P 64 UNLINK`
/// (Redis's own ceiling for pipelined single-key deletes) against the same server in the same run.
enum RedisBenchmark {
    static func run(keys: Int, batch: Int) async throws {
        let server = try LocalRedisServer()
        defer { server.stop() }

        try server.cli("DEBUG", "POPULATE", String(keys), "key")
        let ceiling = try server.redisBenchmarkUnlink(requests: keys)

        var logger = Logger(label: "bench")
        logger.logLevel = .error
        let pool = RedisPool(
            configuration: RedisPoolConfiguration(name: "bench", mode: .single, nodes: [RedisEndpoint(host: "127.0.0.1", port: server.port)]),
            logger: logger)
        let operations = (0..<keys).map { CacheOperation.delete(key: "key:\($0)") }
        let chunks = stride(from: 0, to: keys, by: batch).map { Array(operations[$0..<min($0 + batch, keys)]) }
        // As the worker runs a batch: deletes of 10 rules, UNLINKed per rule, each delete's
        // rule looked up in a table of the batch (the worker's table of owners).
        let rulesByChunk = chunks.map { chunk in Dictionary(uniqueKeysWithValues: chunk.enumerated().map { ($1, $0 % 10) }) }
        var figures: [(label: String, keysPerSecond: Double)] = []
        for label in ["single", "single, 10 rules"] {
            try server.cli("FLUSHALL")
            try server.cli("DEBUG", "POPULATE", String(keys), "key")
            let start = ContinuousClock.now
            for (chunk, rules) in zip(chunks, rulesByChunk) {
                let removalGroup: RemovalGroup? = label == "single" ? nil : { @Sendable in rules[$0] ?? 0 }
                let report = await pool.execute(chunk, removalGroup: removalGroup)
                precondition(report.isSuccess, "benchmark deletes failed: \(report.failures.first.map { "\($0.error)" } ?? "")")
            }
            let elapsed = ContinuousClock.now - start
            let remaining = try server.cli("DBSIZE").trimmingCharacters(in: .whitespacesAndNewlines)
            precondition(remaining == "0", "\(remaining) keys left")
            figures.append((label, Double(keys) / elapsed.seconds))
        }
        await pool.close()

        print("redis benchmark: \(keys) keys, one local redis-server, batches of \(batch) operations")
        print(String(format: "  redis-benchmark -P 64 UNLINK (ceiling)   %10.0f keys/s", ceiling))
        for figure in figures {
            let label = "invalidator pool (\(figure.label))".padding(toLength: 41, withPad: " ", startingAt: 0)
            print("  " + label + String(format: " %10.0f keys/s  %5.2fx", figure.keysPerSecond, figure.keysPerSecond / ceiling))
        }
    }
}

extension Duration {
    var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}

/// A throwaway redis-server on a free port.
final class LocalRedisServer {
    let port: Int
    private let process = Process()
    private let folder: URL

    var endpoint: String { "127.0.0.1:\(port)" }

    init() throws {
        port = try Self.freePort()
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("invalidator-bench-\(port)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["redis-server", "--port", String(port), "--save", "", "--appendonly", "no",
                             "--enable-debug-command", "local", "--dir", folder.path]
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

    /// Requests per second `redis-benchmark` reports for pipelined single-key UNLINKs.
    func redisBenchmarkUnlink(requests: Int) throws -> Double {
        let output = try Self.output(of: [
            "redis-benchmark", "-p", String(port), "-P", "64", "-n", String(requests), "-r", String(requests),
            "-q", "UNLINK", "key:__rand_int__",
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
