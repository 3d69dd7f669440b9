import Foundation
import TestSupport
import Testing

/// The worker itself dies (kill -9) or is stopped (SIGTERM) with a backlog:
/// at-least-once means the next worker finishes what it left, and nothing committed was skipped.
@Suite(.timeLimit(.minutes(3))) struct WorkerCrashFaultTests {
    enum Ending: String, CaseIterable, Sendable {
        case killed, terminated
    }

    @Test(arguments: Ending.allCases) func aWorkerEndedWithABacklog(ending: Ending) async throws {
        let scenario = try Scenario()
        let kafka = try FaultKafka(partitions: 8)
        let cache = try await RedisServer.start()
        let deadLetters = try await RedisServer.start()
        let count = 40_000
        let keys = (0..<count).map { "user:\($0)" }
        try await cache.seed(keys)
        try await kafka.produce(events("user", 0..<count))
        try scenario.write("rules.yaml", RedisNodeFaultTests.rules)
        let configPath = try scenario.write("invalidator.yaml", RedisNodeFaultTests.config(
            kafka: kafka, pool: "{ nodes: [\"\(cache.endpoint)\"] }", deadLetters: deadLetters))

        let first = try InvalidatorProcess(run: configPath)
        #expect(try await eventually(timeout: .seconds(60)) { try existingKeys(cache, keys) < count - 2000 })
        switch ending {
        case .killed:
            first.kill()
        case .terminated:
            #expect(first.terminate() == .success, "\(first.log.suffix(2000))")
        }
        let leftAtEnd = try existingKeys(cache, keys)

        let second = try InvalidatorProcess(run: configPath)
        let finished = try await timeUntil(timeout: .seconds(90)) { try existingKeys(cache, keys) == 0 }
        let left = try existingKeys(cache, keys)
        #expect(finished != nil, "\(left) keys left: \(second.log.suffix(2000))")
        #expect(second.terminate() == .success)
        #expect(try deadLetters.call("XLEN", "dead-letters") == "0")
        report("worker \(ending.rawValue) with a backlog", "\(leftAtEnd) of \(count) keys left when it ended; the next worker finished them in \(finished.map { "\($0)" } ?? "never") (group join included)")
    }
}
