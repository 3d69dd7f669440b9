import Foundation
import InvalidatorCore
@testable import InvalidatorRuntime
import Logging
import Prometheus
import TestDoubles
import TestSupport
import Testing

/// A reload can never silently stop invalidation, never reads a half-written file,
/// and says what it changed.
@Suite(.timeLimit(.minutes(2))) struct RulesReloadSafetyTests {
    static func user(_ id: Int) -> String { #"{"entity":"user","id":"\#(id)","op":"update"}"# }
    static func account(_ id: Int) -> String { #"{"entity":"account","id":"\#(id)","op":"update"}"# }

    /// The first half is a valid rules set on its own (one rule); the whole has two.
    static let firstHalf = """
        rules:
          - { name: user, match: { entity: user }, delete: ["user:{id}"] }

        """
    static let secondHalf = """
          - { name: account, match: { entity: account }, delete: ["account:{id}"] }

        """

    static func rulesFile(_ harness: WorkerHarness) -> URL { harness.folder.appendingPathComponent("rules.yaml") }

    static func allowEmptyRules(_ harness: WorkerHarness) throws {
        let config = try String(contentsOf: harness.configPath, encoding: .utf8) + "\nallow_empty_rules: true\n"
        try config.write(to: harness.configPath, atomically: true, encoding: .utf8)
    }

    static func capturingLogger(_ capture: LogCapture) -> Logger {
        Logger(label: "test") { _ in CapturingLogHandler(capture: capture) }
    }

    /// The `rules=` counts of the "rules reloaded" lines, in order.
    static func reloadedCounts(_ capture: LogCapture) -> [Int] {
        capture.lines.filter { $0.hasPrefix("info rules reloaded ") }.compactMap { line in
            guard let range = line.range(of: #" rules=(\d+)( |$)"#, options: .regularExpression) else { return -1 }
            return Int(line[range].dropFirst(" rules=".count).trimmingCharacters(in: .whitespaces))
        }
    }

    // MARK: 1. An empty rules set is rejected while events flow

    @Test func aReloadToAnEmptyRulesSetIsRejectedAndTheOldRulesKeepApplying() async throws {
        let harness = try await WorkerHarness(partitions: 1)
        let capture = LogCapture()
        let observed = try ObservedWorker(harness, logger: Self.capturingLogger(capture))
        #expect(observed.value(MetricName.rulesInForce, [:]) == 4, "the gauge is set at start")

        try await seedKeys(harness.redis, ["user:1"])
        try await harness.produce([Self.user(1)])
        #expect(try await eventually { try existingKeys(harness.redis, ["user:1"]) == 0 })

        try "rules: []\n".write(to: Self.rulesFile(harness), atomically: true, encoding: .utf8)
        #expect(try await eventually { observed.value(MetricName.ruleReloads, ["result": "rejected"]) == 1 })
        #expect((observed.value(MetricName.ruleReloads, ["result": "ok"]) ?? 0) == 0)
        #expect(observed.value(MetricName.rulesInForce, [:]) == 4, "the rules in force did not change")

        // Events after the rejected reload are still applied by the old rules.
        try await seedKeys(harness.redis, ["user:2", "user:3"])
        try await harness.produce([Self.user(2), Self.user(3)])
        #expect(try await eventually { try existingKeys(harness.redis, ["user:2", "user:3"]) == 0 }, "the previous rules stay in force")

        try await Task.sleep(for: .milliseconds(600))
        #expect(observed.value(MetricName.ruleReloads, ["result": "rejected"]) == 1, "an unchanged empty file is not retried")
        let lines = capture.lines
        let rejection = lines.first { $0.contains("new rules rejected; the previous rules stay in force") }
        #expect(rejection?.hasPrefix("error ") == true)
        #expect(rejection?.contains("reason=the new rules set is empty, which would invalidate nothing") == true, "\(rejection ?? "no rejection logged")")
        #expect(rejection?.contains("rules=4") == true, "it says how many rules stay in force")
        #expect(lines.contains { $0.hasPrefix("error rules problem:") && $0.contains("allow_empty_rules: true") })
        #expect(!lines.contains { $0.hasPrefix("info rules reloaded") })
        try await observed.running.stop()
        #expect(try harness.deadLetterReasons().isEmpty)
    }

    /// The control: with allow_empty_rules the same reload is taken, and nothing is invalidated any more.
    @Test func withAllowEmptyRulesAReloadToAnEmptySetIsTaken() async throws {
        let harness = try await WorkerHarness(partitions: 1)
        try Self.allowEmptyRules(harness)
        let capture = LogCapture()
        let observed = try ObservedWorker(harness, logger: Self.capturingLogger(capture))
        try await seedKeys(harness.redis, ["user:1"])
        try await harness.produce([Self.user(1)])
        #expect(try await eventually { try existingKeys(harness.redis, ["user:1"]) == 0 })

        try "rules: []\n".write(to: Self.rulesFile(harness), atomically: true, encoding: .utf8)
        #expect(try await eventually { observed.value(MetricName.ruleReloads, ["result": "ok"]) == 1 })
        #expect((observed.value(MetricName.ruleReloads, ["result": "rejected"]) ?? 0) == 0)
        #expect(observed.value(MetricName.rulesInForce, [:]) == 0)
        #expect(Self.reloadedCounts(capture) == [0])

        try await seedKeys(harness.redis, ["user:2"])
        let before = try await harness.committedTotal()
        try await harness.produce([Self.user(2)])
        #expect(try await eventually { try await harness.committedTotal() > before }, "the event was consumed")
        #expect(try existingKeys(harness.redis, ["user:2"]) == 1, "no rule applies any more")
        try await observed.running.stop()
    }

    // MARK: 2. A file written in place is loaded only whole

    /// The worker polls every 100 ms and settles for 2 s. The first half stays alone
    /// for 150 ms, so a poll sees it; the second half lands well inside the settle
    /// window, even on a loaded machine. Without settling the one-rule set would be loaded.
    @Test func aRulesFileWrittenInPlaceInTwoHalvesIsLoadedOnlyWhole() async throws {
        let harness = try await WorkerHarness(partitions: 1)
        let capture = LogCapture()
        let observed = try ObservedWorker(harness, logger: Self.capturingLogger(capture), rulesReloadSettle: .seconds(2))
        // An event applied means the services, the reloader among them, are running.
        try await seedKeys(harness.redis, ["user:1"])
        try await harness.produce([Self.user(1)])
        #expect(try await eventually { try existingKeys(harness.redis, ["user:1"]) == 0 })
        func reloads() -> Double { observed.value(MetricName.ruleReloads, ["result": "ok"]) ?? 0 }
        try await prime(Self.rulesFile(harness), settle: .seconds(2), reloads: reloads)
        let primed = (reloads: reloads(), logged: Self.reloadedCounts(capture).count)

        try await writeInTwoHalves(Self.rulesFile(harness), gap: .milliseconds(150))

        #expect(try await eventually { reloads() == primed.reloads + 1 })
        try await Task.sleep(for: .seconds(3))
        #expect(reloads() == primed.reloads + 1, "the halves were loaded exactly once")
        #expect((observed.value(MetricName.ruleReloads, ["result": "rejected"]) ?? 0) == 0, "no partial read was rejected either")
        #expect(Array(Self.reloadedCounts(capture).dropFirst(primed.logged)) == [2], "never a reload with the first half's single rule")
        #expect(observed.value(MetricName.rulesInForce, [:]) == 2)

        try await seedKeys(harness.redis, ["user:2", "account:2"])
        try await harness.produce([Self.user(2), Self.account(2)])
        #expect(try await eventually { try existingKeys(harness.redis, ["user:2", "account:2"]) == 0 }, "the second half's rule applies")
        try await observed.running.stop()
        #expect(try harness.deadLetterReasons().isEmpty)
    }

    /// The same in-place write against a reloader driven directly, with timings
    /// far apart: the first half alone for 250 ms under a 50 ms poll, a 2 s settle.
    @Test func aDirectlyDrivenReloaderWaitsForTheFileToSettle() async throws {
        let (reloads, counts) = try await inPlaceWriteUnderReloader(settle: .seconds(2))
        #expect(reloads == 1)
        #expect(counts == [2], "the first half is never loaded")
    }

    /// Shows the scenario above can fail: without settling the half-written file is loaded.
    @Test func withoutSettlingTheHalfWrittenFileWouldBeLoaded() async throws {
        // The first half alone for three seconds: a loaded machine's 50 ms poll still sees it.
        let (reloads, counts) = try await inPlaceWriteUnderReloader(settle: .zero, gap: .seconds(3))
        #expect(reloads == 2)
        #expect(counts == [1, 2])
    }

    @Test func aReloadNamingAnUndefinedWebhookIsRejectedAndTargetsCarryOver() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("invalidator-reload-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let file = folder.appendingPathComponent("rules.yaml")
        func write(target: String) throws {
            try "rules:\n  - { name: user, match: { entity: user }, webhook: { target: \(target), body: { id: \"{id}\" } } }\n"
                .write(to: file, atomically: true, encoding: .utf8)
        }
        var configuration = Configuration()
        configuration.webhooks = [WebhookTarget(name: "cdn", url: "https://cdn.example/purge")]
        let rules = RulesState(Planner(rules: RuleSet([]), pools: []))
        let reloader = RulesReloader(
            paths: [file.path], rules: rules, configuration: configuration,
            metrics: WorkerMetrics(factory: PrometheusMetricsFactory(registry: PrometheusCollectorRegistry())),
            logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() })

        try write(target: "cdn")
        #expect(reloader.reload())
        #expect(rules.planner.webhooks["cdn"] != nil, "the new planner knows the config's targets")
        try write(target: "cnd")
        #expect(!reloader.reload())
        #expect(rules.planner.rules.rules.first?.webhooks.first?.target == "cdn")
    }

    /// Writes the two halves in place, `gap` apart, under a RulesReloader (50 ms poll); returns the
    /// accepted reloads and the rule counts they logged.
    func inPlaceWriteUnderReloader(settle: Duration, gap: Duration = .milliseconds(250)) async throws -> (reloads: Double, counts: [Int]) {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("invalidator-reload-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let file = folder.appendingPathComponent("rules.yaml")
        try WorkerHarness.rules.write(to: file, atomically: true, encoding: .utf8)
        let initial = try ConfigurationFiles.loadRules(paths: [file.path], knownPools: nil)
        let registry = PrometheusCollectorRegistry()
        let capture = LogCapture()
        let reloader = RulesReloader(
            paths: [file.path], rules: RulesState(Planner(rules: initial, pools: [])), configuration: Configuration(),
            interval: .milliseconds(50), settleInterval: settle,
            metrics: WorkerMetrics(factory: PrometheusMetricsFactory(registry: registry)), logger: Self.capturingLogger(capture))
        let task = Task { try await reloader.run() }
        func reloads() -> Double { PrometheusText(registry.emitToString()).value(MetricName.ruleReloads, ["result": "ok"]) ?? 0 }
        try await prime(file, settle: settle, reloads: reloads)
        let primed = (reloads: reloads(), logged: Self.reloadedCounts(capture).count)

        try await writeInTwoHalves(file, gap: gap)
        // Time for the last reload even on a loaded machine (the suite's tests run side by side).
        try await Task.sleep(for: settle * 3 + .seconds(2))
        task.cancel()
        try await task.value
        if settle > .zero {
            // Without settling the empty file between truncate and write may be read (and rejected) too.
            #expect((PrometheusText(registry.emitToString()).value(MetricName.ruleReloads, ["result": "rejected"]) ?? 0) == 0)
        }
        return (reloads() - primed.reloads, Array(Self.reloadedCounts(capture).dropFirst(primed.logged)))
    }

    /// Rewrites `file` with the same rules and a new comment until a reload is seen: the
    /// reloader is then polling, with the file's current contents as its starting point.
    func prime(_ file: URL, settle: Duration, reloads: () -> Double) async throws {
        let before = reloads()
        for attempt in 1...10 {
            try (WorkerHarness.rules + "\n# primed \(attempt)\n").write(to: file, atomically: true, encoding: .utf8)
            if try await eventually(timeout: settle * 2 + .seconds(1), { reloads() > before }) {
                // Let a slow earlier attempt's reload land before counting.
                try await Task.sleep(for: settle * 2 + .milliseconds(300))
                return
            }
        }
        Issue.record("the reloader never reloaded the rewritten file")
    }

    /// Truncates `file` and writes the first half through the same descriptor, then the rest `gap` later.
    func writeInTwoHalves(_ file: URL, gap: Duration) async throws {
        let handle = try FileHandle(forWritingTo: file)
        try handle.truncate(atOffset: 0)
        try handle.write(contentsOf: Data(Self.firstHalf.utf8))
        try await Task.sleep(for: gap)
        try handle.write(contentsOf: Data(Self.secondHalf.utf8))
        try handle.close()
        #expect(try String(contentsOf: file, encoding: .utf8) == Self.firstHalf + Self.secondHalf)
    }

    // MARK: 3. What a reload changed

    @Test func theGaugeAndTheLogShowTheRulesAddedRemovedAndChanged() async throws {
        let harness = try await WorkerHarness(partitions: 1)
        let capture = LogCapture()
        let observed = try ObservedWorker(harness, logger: Self.capturingLogger(capture))
        #expect(observed.value(MetricName.rulesInForce, [:]) == 4)
        // An event applied means the services, the reloader among them, are running.
        try await seedKeys(harness.redis, ["user:0"])
        try await harness.produce([Self.user(0)])
        #expect(try await eventually { try existingKeys(harness.redis, ["user:0"]) == 0 })

        // user changed (profile instead of user), sessions kept (written differently),
        // slow-page and tenant removed, account added.
        try """
            rules:
              - { name: user, match: { entity: user }, delete: ["profile:{id}"] }
              - { name: sessions, match: { entity: session }, patterns: ["session:{id}:*"] }
              - { name: account, match: { entity: account }, delete: ["account:{id}"] }
            """.write(to: Self.rulesFile(harness), atomically: true, encoding: .utf8)
        #expect(try await eventually { observed.value(MetricName.ruleReloads, ["result": "ok"]) == 1 })
        #expect(observed.value(MetricName.rulesInForce, [:]) == 3)

        let lines = capture.lines
        let reloaded = lines.first { $0.hasPrefix("info rules reloaded ") } ?? "no reload logged"
        #expect(reloaded.contains(#"added=["account"]"#), "\(reloaded)")
        #expect(reloaded.contains(#"removed=["slow-page", "tenant"]"#), "\(reloaded)")
        #expect(reloaded.contains(#"changed=["user"]"#), "\(reloaded)")
        #expect(reloaded.contains("rules=3"), "\(reloaded)")
        let warning = lines.first { $0.hasPrefix("warning rules removed by the reload") } ?? "no warning logged"
        #expect(warning.contains(#"removed=["slow-page", "tenant"]"#), "\(warning)")

        try await seedKeys(harness.redis, ["user:1", "profile:1", "account:1"])
        try await harness.produce([Self.user(1), Self.account(1)])
        #expect(try await eventually { try existingKeys(harness.redis, ["profile:1", "account:1"]) == 0 })
        #expect(try existingKeys(harness.redis, ["user:1"]) == 1, "the changed rule applies")

        // A reload that only adds: no removal warning.
        try """
            rules:
              - { name: user, match: { entity: user }, delete: ["profile:{id}"] }
              - { name: sessions, match: { entity: session }, patterns: ["session:{id}:*"] }
              - { name: account, match: { entity: account }, delete: ["account:{id}"] }
              - { name: page, match: { entity: page }, delete: ["page:{id}"] }
            """.write(to: Self.rulesFile(harness), atomically: true, encoding: .utf8)
        #expect(try await eventually { observed.value(MetricName.ruleReloads, ["result": "ok"]) == 2 })
        #expect(observed.value(MetricName.rulesInForce, [:]) == 4)
        let second = capture.lines.filter { $0.hasPrefix("info rules reloaded ") }.last ?? ""
        #expect(second.contains(#"added=["page"]"#) && second.contains("removed=[]") && second.contains("changed=[]"), "\(second)")
        #expect(capture.lines.filter { $0.hasPrefix("warning rules removed by the reload") }.count == 1)
        try await observed.running.stop()
    }

    /// The rules the worker loaded are the reloader's starting point: a change made
    /// after the worker read the files but before its services ran must not be lost.
    @Test func aChangeBetweenLoadingAndRunningIsNotMissed() async throws {
        let harness = try await WorkerHarness(partitions: 1)
        let registry = PrometheusCollectorRegistry()
        let observability = WorkerObservability(
            metrics: WorkerMetrics(factory: PrometheusMetricsFactory(registry: registry)), rulesReloadInterval: .milliseconds(100))
        let loaded = try ConfigurationFiles.load(configPath: harness.configPath.path, environment: [:])
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let worker = try Worker(loaded: loaded, workerID: "test-worker", observability: observability, logger: logger)
        try Self.firstHalf.write(to: Self.rulesFile(harness), atomically: true, encoding: .utf8)
        let running = RunningWorker(worker)
        func value(_ name: String, _ labels: [String: String]) -> Double? { PrometheusText(registry.emitToString()).value(name, labels) }
        #expect(try await eventually { value(MetricName.ruleReloads, ["result": "ok"]) == 1 }, "the one-rule file is loaded")
        #expect(value(MetricName.rulesInForce, [:]) == 1)
        try await running.stop()
    }

    // MARK: 4. A worker does not start on an empty rules set unless allowed

    @Test func aWorkerRefusesAnEmptyRulesSetUnlessAllowed() async throws {
        let harness = try await WorkerHarness(partitions: 1)
        try "rules: []\n".write(to: Self.rulesFile(harness), atomically: true, encoding: .utf8)
        let loaded = try ConfigurationFiles.load(configPath: harness.configPath.path, environment: [:])
        #expect(loaded.rules.rules.isEmpty)
        #expect(!loaded.configuration.allowEmptyRules, "false by default")
        let error = #expect(throws: ConfigurationProblem.self) { try harness.makeWorker() }
        #expect(error?.description.contains("allow_empty_rules") == true, "\(String(describing: error))")

        try Self.allowEmptyRules(harness)
        let capture = LogCapture()
        let observed = try ObservedWorker(harness, logger: Self.capturingLogger(capture))
        #expect(observed.value(MetricName.rulesInForce, [:]) == 0)
        let port = try await observed.port()
        #expect(port > 0, "the worker runs")
        try await Task.sleep(for: .milliseconds(300))  // the reloader took its first look

        // Rules added later are loaded.
        try Self.firstHalf.write(to: Self.rulesFile(harness), atomically: true, encoding: .utf8)
        #expect(try await eventually { observed.value(MetricName.ruleReloads, ["result": "ok"]) == 1 })
        #expect(observed.value(MetricName.rulesInForce, [:]) == 1)
        #expect(capture.lines.contains { $0.hasPrefix("info rules reloaded ") && $0.contains(#"added=["user"]"#) })
        try await seedKeys(harness.redis, ["user:1"])
        try await harness.produce([Self.user(1)])
        #expect(try await eventually { try existingKeys(harness.redis, ["user:1"]) == 0 })
        try await observed.running.stop()
    }

    @Test func anExplicitFalseRefusesToo() async throws {
        let harness = try await WorkerHarness(partitions: 1)
        try "rules: []\n".write(to: Self.rulesFile(harness), atomically: true, encoding: .utf8)
        let config = try String(contentsOf: harness.configPath, encoding: .utf8) + "\nallow_empty_rules: false\n"
        try config.write(to: harness.configPath, atomically: true, encoding: .utf8)
        #expect(throws: ConfigurationProblem.self) { try harness.makeWorker() }
    }

    // MARK: 5. RulesChange

    static func ruleSet(_ yaml: String) throws -> RuleSet {
        try RulesLoader.load(yaml: yaml, file: "rules.yaml")
    }

    @Test func rulesChangeListsAddedRemovedAndChangedNames() throws {
        let old = try Self.ruleSet("""
            rules:
              - { name: a, match: { entity: a }, delete: ["a:{id}"] }
              - { name: b, match: { entity: b }, delete: ["b:{id}"] }
              - { name: c, match: { entity: c }, delete: ["c:{id}"] }
              - { name: d, match: { entity: d }, delete: ["d:{id}"] }
            """)
        // d moved and written in block style: unchanged. b's key and c's match changed; a removed; e, f added.
        let new = try Self.ruleSet("""
            rules:
              - name: d
                match: { entity: d }
                delete: ["d:{id}"]
              - { name: f, match: { entity: f }, delete: ["f:{id}"] }
              - { name: b, match: { entity: b }, delete: ["bb:{id}"] }
              - { name: c, match: { entity: c, op: [delete] }, delete: ["c:{id}"] }
              - { name: e, match: { entity: e }, delete: ["e:{id}"] }
            """)
        let change = RulesChange(from: old, to: new)
        #expect(change.added == ["f", "e"], "in the new file's order")
        #expect(change.removed == ["a"])
        #expect(change.changed == ["b", "c"])

        let reverse = RulesChange(from: new, to: old)
        #expect(reverse.added == ["a"])
        #expect(reverse.removed == ["f", "e"])
        #expect(reverse.changed == ["b", "c"])
    }

    @Test func rulesChangeBetweenEqualAndEmptySets() throws {
        let rules = try Self.ruleSet(WorkerHarness.rules)
        let empty = try Self.ruleSet("rules: []")
        #expect(RulesChange(from: rules, to: rules) == RulesChange(from: empty, to: empty))
        let same = RulesChange(from: rules, to: rules)
        #expect(same.added.isEmpty && same.removed.isEmpty && same.changed.isEmpty)
        let emptied = RulesChange(from: rules, to: empty)
        #expect(emptied.removed == ["user", "slow-page", "sessions", "tenant"])
        #expect(emptied.added.isEmpty && emptied.changed.isEmpty)
        let filled = RulesChange(from: empty, to: rules)
        #expect(filled.added == ["user", "slow-page", "sessions", "tenant"])
        #expect(filled.removed.isEmpty && filled.changed.isEmpty)
    }
}

/// `invalidator validate`, run as the real executable: an empty rules set is valid, with a warning.
@Suite(.timeLimit(.minutes(1))) struct ValidateEmptyRulesTests {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("invalidator-validate-\(UUID().uuidString)")

    func validate(_ arguments: [String]) throws -> (exit: ChildProcess.Exit?, stdout: String, stderr: String) {
        let result = try ChildProcess.run(
            URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("invalidator").path,
            ["validate"] + arguments, separateStandardError: true
        )
        return (result.exit, result.standardOutput, result.standardError)
    }

    func write(rules: String, allowEmpty: Bool? = nil) throws -> (config: String, rules: String) {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let rulesPath = folder.appendingPathComponent("rules.yaml")
        try rules.write(to: rulesPath, atomically: true, encoding: .utf8)
        let config = """
            sources:
              kafka: { brokers: "127.0.0.1:9092", topics: ["entity-changes"], group: invalidator }
            pools:
              primary: { nodes: ["127.0.0.1:6379"] }
            rules: rules.yaml
            dead_letters: { pool: primary, stream: "dead-letters" }
            \(allowEmpty.map { "allow_empty_rules: \($0)" } ?? "")
            """
        let configPath = folder.appendingPathComponent("invalidator.yaml")
        try config.write(to: configPath, atomically: true, encoding: .utf8)
        return (configPath.path, rulesPath.path)
    }

    @Test func anEmptyRulesSetIsValidWithAWarning() throws {
        defer { try? FileManager.default.removeItem(at: folder) }
        let paths = try write(rules: "rules: []\n")
        let viaConfig = try validate(["--config", paths.config])
        #expect(viaConfig.exit == .success, "\(viaConfig.stderr)")
        #expect(viaConfig.stdout.contains("valid: 0 rules"))
        #expect(viaConfig.stderr.hasPrefix("warning: the rules set is empty"), "\(viaConfig.stderr)")
        #expect(viaConfig.stderr.contains("allow_empty_rules: true"))
        #expect(!viaConfig.stdout.contains("warning"), "the warning goes to stderr only")

        let viaRules = try validate(["--rules", paths.rules])
        #expect(viaRules.exit == .success, "\(viaRules.stderr)")
        #expect(viaRules.stderr.hasPrefix("warning: the rules set is empty"), "\(viaRules.stderr)")

        _ = try write(rules: "rules: []\n", allowEmpty: true)
        let allowed = try validate(["--config", paths.config])
        #expect(allowed.exit == .success, "\(allowed.stderr)")
        #expect(allowed.stderr.hasPrefix("warning: the rules set is empty"), "\(allowed.stderr)")
        #expect(allowed.stderr.contains("starts anyway"), "\(allowed.stderr)")
    }

    @Test func aNonEmptyRulesSetHasNoWarning() throws {
        defer { try? FileManager.default.removeItem(at: folder) }
        let paths = try write(rules: WorkerHarness.rules)
        for arguments in [["--config", paths.config], ["--rules", paths.rules]] {
            let result = try validate(arguments)
            #expect(result.exit == .success, "\(result.stderr)")
            #expect(!result.stderr.contains("warning"), "\(result.stderr)")
        }
    }
}
