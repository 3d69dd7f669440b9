import InvalidatorCore
import InvalidatorRedis
import InvalidatorRuntime

/// Rules files: any text loads or yields diagnostics, never traps; a rules set
/// that loads plans a few events without breaking a plan's promises.
enum RulesFuzzTarget {
    static func run(_ data: [UInt8]) -> [String] {
        let rules: RuleSet
        do {
            rules = try RulesLoader.load(yaml: String(decoding: data, as: UTF8.self), file: "rules.yaml", knownPools: ["primary", "edge"])
        } catch {
            return DiagnosticInvariants.check(error.diagnostics)
        }
        let planner = Planner(rules: rules, pools: FuzzRules.pools)
        var problems: [String] = []
        for event in sampleEvents {
            let plan = planner.plan(event)
            _ = PlanDescription.text(plan)
            for pool in plan.pools + plan.notifications {
                for planned in pool.operations where Template.containsControlCharacter(planned.operation.description) {
                    problems.append("a plan holds a control character: \(planned.operation)")
                }
            }
            for pool in plan.notifications {
                for planned in pool.operations {
                    if case .publish(let message) = planned.operation, (try? JSONParser.parse(bytes: Array(message.message.utf8))) == nil {
                        problems.append("notify message \(message.message) is not JSON")
                    }
                }
            }
        }
        return problems
    }

    private static let sampleEvents: [ChangeEvent] = [
        #"{"entity":"user","id":"1*?[]\\","op":"update","tenant":"acme","attributes":{"a":{"b":"c"}},"version":42}"#,
        #"{"entity":"product","ids":["1","2","{x}"],"op":"delete","before":{"org_id":"o7"},"after":{"org_id":"o9"}}"#,
        #"{"entity":"order","id":7,"op":"create","occurred_at":"0001-01-01T00:00:00Z","event_id":"e-1"}"#,
    ].compactMap { try? EventDecoder().decode(Array($0.utf8)) }
}

/// Config files, with environment overrides: the text up to a line `#env` is the
/// file, each line after it a `NAME=value` variable.
enum ConfigurationFuzzTarget {
    static func run(_ data: [UInt8]) -> [String] {
        let text = String(decoding: data, as: UTF8.self)
        let parts = text.split(separator: "\n#env\n", maxSplits: 1, omittingEmptySubsequences: false)
        var environment: [String: String] = ["HOST": "127.0.0.1"]
        for line in parts.dropFirst().first?.split(separator: "\n") ?? [] {
            let pair = line.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            if pair.count == 2 { environment[String(pair[0])] = String(pair[1]) }
        }
        let configuration: Configuration
        do {
            configuration = try ConfigurationLoader.load(
                yaml: String(parts.first ?? ""), file: "invalidator.yaml", environment: environment,
                readSecretFile: { (path) throws(FileReadError) in
                    guard path.hasPrefix("/secrets/") else { throw FileReadError(path: path, reason: "no such file") }
                    return "secret\n"
                })
        } catch {
            return DiagnosticInvariants.check(error.diagnostics)
        }
        // What the worker derives from a valid config must not trap either; the Redis
        // layer takes the loaded values as they are (its preconditions are the loader's checks).
        let pools = configuration.pools.map { RedisPoolConfiguration($0, retry: configuration.retry) }
        _ = LivenessMonitor.defaultStallTimeout(pools: pools)
        for pool in pools {
            for attempt in 0...pools.count + 40 { _ = pool.retry.backoff(afterAttempt: attempt) }
        }
        return []
    }
}

/// Every diagnostic points into the file.
enum DiagnosticInvariants {
    static func check(_ diagnostics: [Diagnostic]) -> [String] {
        if diagnostics.isEmpty { return ["a load failed without a diagnostic"] }
        return diagnostics.compactMap { diagnostic in
            diagnostic.line >= 1 && diagnostic.column >= 1 ? nil : "a diagnostic without a position: \(diagnostic)"
        }
    }
}
