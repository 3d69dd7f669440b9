import Foundation
import TestSupport
import Testing

/// `invalidator apply`, run as operators run it: the real executable against real Redis.
@Suite(.timeLimit(.minutes(2))) struct ApplyCommandTests {
    func apply(_ harness: WorkerHarness, event: String) throws -> (exit: ChildProcess.Exit?, output: String) {
        let result = try ChildProcess.run(
            URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("invalidator").path,
            ["apply", "--config", harness.configPath.path, "--event", event, "--format", "json", "--log-level", "critical"],
            separateStandardError: true
        )
        return (result.exit, result.standardOutput)
    }

    @Test func appliesOneEventAndReportsEachNode() async throws {
        let harness = try await WorkerHarness(partitions: 1)
        try await seedKeys(harness.redis, ["user:1", "user:2"])
        let (exit, output) = try apply(harness, event: #"{"entity":"user","id":"1","op":"update"}"#)
        #expect(exit == .success)
        #expect(output.contains(#""ok": true"#))
        #expect(output.contains(#""node": "\#(harness.redis.endpoint)""#))
        #expect(try existingKeys(harness.redis, ["user:1"]) == 0)
        #expect(try existingKeys(harness.redis, ["user:2"]) == 1)
    }

    @Test func exitsOneWhenANodeFails() async throws {
        let harness = try await WorkerHarness(partitions: 1)
        harness.redis.kill()
        let (exit, output) = try apply(harness, event: #"{"entity":"user","id":"1","op":"update"}"#)
        #expect(exit == ChildProcess.Exit(status: 1, bySignal: false))
        #expect(output.contains(#""ok": false"#))
        #expect(output.contains(#""operation": "delete user:1""#))
    }

    @Test func refusesAnEventItCannotPlan() async throws {
        let harness = try await WorkerHarness(partitions: 1)
        let (exit, _) = try apply(harness, event: #"{"entity":"org","id":"5","op":"update"}"#)
        #expect(exit == ChildProcess.Exit(status: 1, bySignal: false), "the tenant the rule needs is missing")
    }
}
