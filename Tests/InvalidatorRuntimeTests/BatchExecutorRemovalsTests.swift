import InvalidatorCore
import InvalidatorRuntime
import Prometheus
import TestSupport
import Testing

/// The per-rule removal counts of a batch, on random batches: one rule or several per pool,
/// keys asked for by several events and rules, keys that exist and keys that do not. Each
/// distinct key counts once, for the rule of the first event that asked for it.
@Suite(.timeLimit(.minutes(2))) struct BatchExecutorRemovalsTests {
    @Test func removalsPerRuleMatchTheFirstAskerOfEachKey() async throws {
        // The rules are not used: the plans are made here.
        let fixture = try await ReplayFixture(rules: #"rules: [{ name: user, match: { entity: user }, delete: ["user:{id}"] }]"#)
        let loaded = try fixture.loaded()
        let pools = PoolSet(configuration: loaded.configuration, logger: quietLogger())
        var generator = SplitMix(seed: 7)
        for trial in 0..<40 {
            // Every other trial one rule only, the batches the shortcut for a single rule serves.
            let rules = trial.isMultiple(of: 2) ? ["only"] : ["first", "second", "third"]
            let keySpace = (0..<30).map { "trial:\(trial):key:\($0)" }
            let existing = keySpace.filter { _ in Bool.random(using: &generator) }
            if !existing.isEmpty { try await seedKeys(fixture.cache[0], existing) }
            var plans: [[PoolPlan]] = []
            var firstAsker: [String: String] = [:]
            var askedInOrder: [String] = []
            for _ in 0..<Int.random(in: 1...40, using: &generator) {
                var operations: [PlannedOperation] = []
                for _ in 0..<Int.random(in: 1...3, using: &generator) {
                    let key = keySpace.randomElement(using: &generator)!
                    let rule = rules.randomElement(using: &generator)!
                    // A pool plan holds each operation once, as the planner leaves it.
                    guard !operations.contains(where: { $0.operation == .delete(key: key) }) else { continue }
                    operations.append(PlannedOperation(.delete(key: key), rule: rule))
                    if firstAsker[key] == nil {
                        firstAsker[key] = rule
                        askedInOrder.append(key)
                    }
                }
                plans.append([PoolPlan(pool: "primary", operations: operations)])
            }

            let registry = PrometheusCollectorRegistry()
            let executor = BatchExecutor(pools: pools, metrics: WorkerMetrics(factory: PrometheusMetricsFactory(registry: registry)))
            let failures = await executor.execute(plans)
            #expect(failures.isEmpty)

            let metrics = PrometheusText(registry.emitToString())
            let existingSet = Set(existing)
            for rule in rules {
                let owned = askedInOrder.filter { firstAsker[$0] == rule }
                let removed = owned.filter(existingSet.contains).count
                let absent = owned.count - removed
                #expect(metrics.value(MetricName.keysRemoved, ["rule": rule]) == (removed > 0 ? Double(removed) : nil), "trial \(trial), rule \(rule)")
                #expect(metrics.value(MetricName.ruleOperations, ["rule": rule, "result": "removed"]) == (removed > 0 ? Double(removed) : nil), "trial \(trial), rule \(rule)")
                #expect(metrics.value(MetricName.ruleOperations, ["rule": rule, "result": "absent"]) == (absent > 0 ? Double(absent) : nil), "trial \(trial), rule \(rule)")
            }
            #expect(try existingKeys(fixture.cache[0], askedInOrder) == 0)
        }
        await pools.close()
    }
}
