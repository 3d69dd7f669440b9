import Foundation
import InvalidatorRuntime
import Logging
import TestDoubles
import TestSupport
import Testing

/// Rules files swapped under a running worker the way Kubernetes updates a
/// mounted ConfigMap: `rules.yaml -> ..data/rules.yaml`, `..data -> ..<timestamp>`,
/// and an update renames a new `..data` symlink over the old one.
@Suite(.timeLimit(.minutes(2))) struct RulesReloadTests {
    static let userRules = """
        rules:
          - { name: user, match: { entity: user }, delete: ["user:{id}"] }
        """
    static let profileRules = """
        rules:
          - { name: user, match: { entity: user }, delete: ["profile:{id}"] }
        """
    static let invalidRules = """
        rules:
          - { name: user, match: { entity: user }, pools: [nowhere], delete: ["user:{id}"] }
          - { name: broken, match: { entity: page }, patterns: ["*{id}"] }
        """

    /// A ConfigMap-like folder in the harness folder; the config points at it.
    struct ConfigMapFolder {
        let root: URL
        var generation = 0

        init(_ harness: WorkerHarness, rules: String) throws {
            root = harness.folder.appendingPathComponent("configmap")
            try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
            try FileManager.default.createSymbolicLink(
                atPath: root.appendingPathComponent("rules.yaml").path, withDestinationPath: "..data/rules.yaml")
            try update(rules)
            let config = try String(contentsOf: harness.configPath, encoding: .utf8)
                .replacingOccurrences(of: "rules: rules.yaml", with: "rules: configmap/rules.yaml")
            try config.write(to: harness.configPath, atomically: true, encoding: .utf8)
        }

        /// Writes a new timestamped folder and swaps `..data` to it atomically.
        mutating func update(_ rules: String) throws {
            generation += 1
            let name = "..2026_01_01_00_00_0\(generation).\(UUID().uuidString.prefix(6))"
            let folder = root.appendingPathComponent(name)
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try rules.write(to: folder.appendingPathComponent("rules.yaml"), atomically: true, encoding: .utf8)
            let temporary = root.appendingPathComponent("..data_tmp").path
            try FileManager.default.createSymbolicLink(atPath: temporary, withDestinationPath: name)
            guard rename(temporary, root.appendingPathComponent("..data").path) == 0 else {
                throw CocoaError(.fileWriteUnknown)
            }
        }
    }

    @Test func aSwappedRulesFileChangesBehaviourAndAnInvalidOneIsRejected() async throws {
        let harness = try await WorkerHarness(partitions: 1)
        var configMap = try ConfigMapFolder(harness, rules: Self.userRules)
        let capture = LogCapture()
        let observed = try ObservedWorker(harness, logger: Logger(label: "test") { _ in CapturingLogHandler(capture: capture) })
        func user(_ id: Int) -> String { #"{"entity":"user","id":"\#(id)","op":"update"}"# }

        try await seedKeys(harness.redis, ["user:1", "profile:1"])
        try await harness.produce([user(1)])
        #expect(try await eventually { try existingKeys(harness.redis, ["user:1"]) == 0 })
        #expect(try existingKeys(harness.redis, ["profile:1"]) == 1)

        try configMap.update(Self.profileRules)
        #expect(try await eventually { observed.value(MetricName.ruleReloads, ["result": "ok"]) == 1 })
        try await seedKeys(harness.redis, ["user:2", "profile:2"])
        try await harness.produce([user(2)])
        #expect(try await eventually { try existingKeys(harness.redis, ["profile:2"]) == 0 })
        #expect(try existingKeys(harness.redis, ["user:2"]) == 1)

        try configMap.update(Self.invalidRules)
        #expect(try await eventually { observed.value(MetricName.ruleReloads, ["result": "rejected"]) == 1 })
        try await seedKeys(harness.redis, ["user:3", "profile:3"])
        try await harness.produce([user(3)])
        #expect(try await eventually { try existingKeys(harness.redis, ["profile:3"]) == 0 }, "the previous rules stay in force")
        #expect(try existingKeys(harness.redis, ["user:3"]) == 1)
        try await Task.sleep(for: .milliseconds(500))
        #expect(observed.value(MetricName.ruleReloads, ["result": "rejected"]) == 1, "an unchanged invalid file is not retried")
        #expect(observed.value(MetricName.ruleReloads, ["result": "ok"]) == 1)
        let logs = capture.lines.joined(separator: "\n")
        #expect(logs.contains("new rules rejected"))
        #expect(logs.contains("rules.yaml:2:"), "each diagnostic is logged as file:line:column")
        #expect(logs.contains("nowhere"))

        // A valid file after the invalid one is taken again.
        try configMap.update(Self.userRules)
        #expect(try await eventually { observed.value(MetricName.ruleReloads, ["result": "ok"]) == 2 })
        try await seedKeys(harness.redis, ["user:4"])
        try await harness.produce([user(4)])
        #expect(try await eventually { try existingKeys(harness.redis, ["user:4"]) == 0 })
        try await observed.running.stop()
        #expect(try harness.deadLetterReasons().isEmpty)
    }
}
