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
        let server = try await RedisServer.start(["--enable-debug-command", "local"], tls: certificates)
        defer { server.stop() }

        print("redis benchmark: \(keys) keys, one local redis-server, batches of \(batch) operations")
        for useTLS in [false, true] {
            try server.call("FLUSHALL")
            try server.call("DEBUG", "POPULATE", String(keys), "key")
            let ceiling = try redisBenchmarkUnlink(server, requests: keys, tlsCAFile: useTLS ? certificates.caFile : nil)
            let reference = useTLS ? "redis-benchmark --tls -P 64 UNLINK" : "redis-benchmark -P 64 UNLINK"
            print("  \(useTLS ? "TLS" : "plain TCP")")
            print(String(format: "    %@ (ceiling) %10.0f keys/s", reference.padding(toLength: 36, withPad: " ", startingAt: 0), ceiling))
            // Plain TCP also runs the worker's way: each batch's deletes from 10 rules,
            // UNLINKed per rule, each delete's rule looked up in a table of the batch.
            for rules in useTLS ? [1] : [1, 10] {
                try server.call("FLUSHALL")
                try server.call("DEBUG", "POPULATE", String(keys), "key")
                let ours = try await deleteThroughPool(
                    keys: keys, batch: batch, rules: rules, port: useTLS ? server.tlsPort ?? server.port : server.port,
                    tls: useTLS ? RedisTLSOptions(caFile: certificates.caFile) : nil)
                let remaining = try server.call("DBSIZE").trimmingCharacters(in: .whitespacesAndNewlines)
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

/// Requests per second `redis-benchmark` reports for pipelined single-key UNLINKs
/// against `server`, over TLS when given the CA to verify it with.
private func redisBenchmarkUnlink(_ server: RedisServer, requests: Int, tlsCAFile: String?) throws -> Double {
    let connection = tlsCAFile.map { ["-p", String(server.tlsPort ?? server.port), "--tls", "--cacert", $0] }
        ?? ["-p", String(server.port)]
    let output = try ChildProcess.run("redis-benchmark", connection + [
        "-P", "64", "-n", String(requests), "-r", String(requests), "-q", "UNLINK", "key:__rand_int__",
    ], separateStandardError: true).standardOutput
    // "UNLINK key:__rand_int__: 2500000.00 requests per second, p50=..."
    guard let line = output.split(whereSeparator: \.isNewline).last(where: { $0.contains("requests per second") }),
          let value = line.split(separator: ":").dropFirst().joined(separator: ":")
            .split(separator: " ").compactMap({ Double($0) }).first
    else { throw TestSupportError("redis-benchmark printed \(output)") }
    return value
}
