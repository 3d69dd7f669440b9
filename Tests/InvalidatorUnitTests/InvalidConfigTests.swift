import Foundation
import InvalidatorCore
import InvalidatorRuntime
import Logging
import Testing

/// `validate` and `run` decide alike: every invalid config the product knows is
/// refused by both with the same `file:line:column` diagnostics, and every config
/// that loads builds a worker. `ConfigurationLoader` is the one place that decides.
///
/// The one deliberate difference, an empty rules set without `allow_empty_rules`
/// (valid, so `validate` warns, but `run` refuses), is RulesReloadSafetyTests' subject.
@Suite final class InvalidConfigTests {
    struct Case: CustomTestStringConvertible, Sendable {
        var name: String
        var config: String
        var environment: [String: String] = [:]
        /// The rules file the config names as `rules.yaml`.
        var rules = InvalidConfigTests.rules
        /// `file:line:column: message`, with `$CONFIG` and `$RULES` for the two files' paths.
        var expected: [String]
        var testDescription: String { name }
    }

    static let rules = rules(named: "user")

    static func rules(named name: String) -> String {
        "rules:\n  - { name: \(name), match: { entity: user }, delete: [\"user:{id}\"] }\n"
    }

    /// A valid config whose line 4 is the pool's nodes (for edits to the pool) and
    /// that takes more keys at its end, from line 6 on.
    static func config(nodes: String = #"["127.0.0.1:6379"]"#, mode: String = "single", more: String = "") -> String {
        """
        sources:
          redis_pubsub: { pool: main, channels: [changes] }
        pools:
          main: { mode: \(mode), nodes: \(nodes) }
        rules: rules.yaml

        """ + more
    }

    static let address = "host:port with a port from 1 to 65535 (IPv6 in brackets, such as [::1]:6379)"
    static let nodeAddress = address + " or a redis:// or rediss:// URL"

    static let cases: [Case] = [
        // What only `run` used to refuse.
        Case(name: "no sources", config: "pools:\n  main: { nodes: [\"127.0.0.1:6379\"] }\nrules: rules.yaml\n", expected: [
            "$CONFIG:1:1: the config needs at least one source under 'sources:' (kafka, redis_pubsub or redis_stream)",
        ]),
        Case(name: "empty sources", config: "sources: {}\npools:\n  main: { nodes: [\"127.0.0.1:6379\"] }\nrules: rules.yaml\n", expected: [
            "$CONFIG:1:10: the config needs at least one source under 'sources:' (kafka, redis_pubsub or redis_stream)",
        ]),
        Case(name: "http.listen without a port", config: config(more: "http: { listen: localhost }\n"), expected: [
            "$CONFIG:6:17: http.listen must be \(address), got 'localhost'",
        ]),
        Case(name: "http.listen on port 0", config: config(more: "http: { listen: \"0.0.0.0:0\" }\n"), expected: [
            "$CONFIG:6:17: http.listen must be \(address), got '0.0.0.0:0'",
        ]),
        Case(name: "http.listen without a host", config: config(more: "http: { listen: \":9090\" }\n"), expected: [
            "$CONFIG:6:17: http.listen must be \(address), got ':9090'",
        ]),
        Case(name: "http.listen overridden badly", config: config(), environment: ["INVALIDATOR__HTTP__LISTEN": "9090"], expected: [
            "environment:1:1: INVALIDATOR__HTTP__LISTEN: http.listen must be \(address), got '9090'",
        ]),
        Case(name: "Kafka dead letters without a Kafka source", config: config(more: "dead_letters: { kafka_topic: dlq }\n"), expected: [
            "$CONFIG:6:30: dead_letters.kafka_topic is written to the brokers of sources.kafka, which the config does not have; add sources.kafka or use { pool, stream }",
        ]),
        // What only the Redis layer used to refuse, or refused differently.
        Case(name: "a node listed twice", config: config(nodes: #"["a:1", "b:2", "a:1"]"#, mode: "replicated"), expected: [
            "$CONFIG:4:51: pool 'main' lists node 'a:1' twice",
        ]),
        Case(name: "one IPv6 node written two ways", config: config(nodes: #"["[::1]:6379", "::1:6379"]"#, mode: "replicated"), expected: [
            "$CONFIG:4:51: pool 'main' lists node '::1:6379' twice",
        ]),
        Case(name: "a node without a port", config: config(nodes: #"["redis-0"]"#), expected: [
            "$CONFIG:4:33: pool 'main' node 'redis-0' must be \(nodeAddress)",
        ]),
        Case(name: "a cluster with database 1", config: """
            sources:
              redis_pubsub: { pool: main, channels: [changes] }
            pools:
              main: { mode: cluster, nodes: ["a:1"], database: 1 }
            rules: rules.yaml
            """, expected: [
            "$CONFIG:4:52: pool 'main' is a cluster; Redis Cluster has only database 0",
        ]),
        Case(name: "a pool without nodes", config: config(nodes: "[]"), expected: [
            "$CONFIG:4:32: pool 'main' needs at least one node",
        ]),
        // What the loader always refused.
        Case(name: "a source on an undefined pool", config: """
            sources:
              redis_stream: { pool: other, streams: [changes] }
            pools:
              main: { nodes: ["127.0.0.1:6379"] }
            rules: rules.yaml
            """, expected: [
            "$CONFIG:2:25: sources.redis_stream.pool 'other' is not a pool defined under pools",
        ]),
        Case(name: "dead letters on an undefined pool", config: config(more: "dead_letters: { pool: other }\n"), expected: [
            "$CONFIG:6:23: dead_letters.pool 'other' is not a pool defined under pools",
        ]),
        Case(name: "a backoff ceiling below the first backoff", config: config(more: "retry: { initial_backoff: 2s, max_backoff: 1s }\n"), expected: [
            "$CONFIG:6:8: retry.max_backoff is shorter than retry.initial_backoff",
        ]),
        Case(name: "Kafka auto commit", config: """
            sources:
              kafka: { brokers: "k:9092", topics: [changes], properties: { enable.auto.commit: "true" } }
            pools:
              main: { nodes: ["127.0.0.1:6379"] }
            rules: rules.yaml
            """, expected: [
            "$CONFIG:2:64: sources.kafka.properties: enable.auto.commit cannot be set: invalidator commits an offset only once its event is applied or dead-lettered; this would commit events before they are applied, and a crash would lose their invalidations",
        ]),
        Case(name: "two pools that substitute to one name", config: """
            sources:
              redis_pubsub: { pool: main, channels: [changes] }
            pools:
              "${A}": { nodes: ["127.0.0.1:6379"] }
              "${B}": { nodes: ["127.0.0.1:6380"] }
            rules: rules.yaml
            """, environment: ["A": "main", "B": "main"], expected: [
            "$CONFIG:5:3: pool 'main' is defined twice",
        ]),
        Case(name: "an unset variable", config: config(more: "shutdown: { drain_timeout: \"${DRAIN}\" }\n"), expected: [
            "$CONFIG:6:28: environment variable DRAIN is not set",
            "$CONFIG:6:28: shutdown.drain_timeout must be a positive duration such as 500ms, 5s, 2m or 1h, got ''",
        ]),
        Case(name: "an unknown key", config: config(more: "metrics: { port: 9090 }\n"), expected: [
            "$CONFIG:6:1: unknown key 'metrics' in the config; expected one of allow_empty_rules, canary, dead_letters, http, pools, retry, rules, shutdown, sources, webhooks",
        ]),
        Case(name: "a rule on an undefined pool", config: config(),
             rules: "rules:\n  - { name: user, match: { entity: user }, pools: [edge], delete: [\"user:{id}\"] }\n", expected: [
            "$RULES:2:52: rule 'user' names pool 'edge', which the config does not define",
        ]),
        Case(name: "a rule calling an undefined webhook", config: config(more: "webhooks: { cdn: { url: \"https://cdn.example/purge\" } }\n"),
             rules: "rules:\n  - { name: user, match: { entity: user }, webhook: { target: cnd } }\n", expected: [
            "$RULES:2:63: rule 'user' webhook target 'cnd' is not defined under webhooks; known: cdn",
        ]),
        Case(name: "a webhook whose URL is no http URL", config: config(more: "webhooks: { cdn: { url: \"cdn.example/purge\" } }\n"), expected: [
            "$CONFIG:6:25: webhook 'cdn' url 'cdn.example/purge' must start with http:// or https://",
        ]),
    ] + invalidExamples

    /// schemas/examples/invalid/config.*.yaml, which the schema refuses too.
    static let invalidExamples: [Case] = [
        ("config.bad-listen.yaml", ["$CONFIG:8:17: http.listen must be \(address), got '0.0.0.0:0'"]),
        ("config.bad-port.yaml", ["$CONFIG:5:13: pool 'primary' node 'redis-0:70000' must be \(nodeAddress)"]),
        ("config.bad-group-instance-id.yaml", [
            "$CONFIG:5:24: sources.kafka.group_instance_id may hold only letters, digits, '.', '_' and '-' (a pod name does), got 'worker 0'",
        ]),
        ("config.dead-letters-both.yaml", [
            "$CONFIG:7:15: dead_letters takes either kafka_topic or a stream, not both",
            "$CONFIG:7:66: dead_letters.kafka_topic is written to the brokers of sources.kafka, which the config does not have; add sources.kafka or use { pool, stream }",
        ]),
        ("config.dead-letters-negative-cap.yaml", [
            "$CONFIG:7:45: dead_letters.max_records must be an integer in 0...100000000, got '-1'",
        ]),
        ("config.dead-letters-cap-with-topic.yaml", [
            "$CONFIG:7:69: dead_letters.max_records caps a Redis stream store; a Kafka topic is bounded by its retention instead (set the topic's retention.ms above the longest time you may take to replay)",
        ]),
        ("config.kafka-topic-without-kafka.yaml", [
            "$CONFIG:8:30: dead_letters.kafka_topic is written to the brokers of sources.kafka, which the config does not have; add sources.kafka or use { pool, stream }",
        ]),
        ("config.no-sources.yaml", ["$CONFIG:2:1: the config needs at least one source under 'sources:' (kafka, redis_pubsub or redis_stream)"]),
        ("config.node-without-port.yaml", ["$CONFIG:6:13: pool 'primary' node 'redis-0' must be \(nodeAddress)"]),
        ("config.node-url-query.yaml", [
            "$CONFIG:6:13: pool 'primary' node 'redis://redis-0:6379/0?ssl=true' has a query string, which is not supported; set TLS and timeouts as keys of the pool",
        ]),
        ("config.tls-cert-without-key.yaml", [
            "$CONFIG:7:38: pool 'primary' tls needs cert_file and key_file together (a client certificate and its key)",
        ]),
        ("config.redis-and-rediss.yaml", [
            "$CONFIG:7:38: pool 'primary' node 'redis://redis-1:6379' is redis:// but node 'rediss://redis-0:6380' is rediss://; a pool's nodes all use TLS or none does",
        ]),
        ("config.refused-kafka-property.yaml", [
            "$CONFIG:6:7: sources.kafka.properties: group.instance.id cannot be set: set sources.kafka.group_instance_id instead",
        ]),
        ("config.zero-max-pending-patterns.yaml", [
            "$CONFIG:6:27: pool 'primary' max_pending_patterns must be an integer in 1...10000000, got '0'",
        ]),
        ("config.single-with-two-nodes.yaml", [
            "$CONFIG:5:12: pool 'primary' is single but lists 2 nodes; use replicated, sharded or cluster",
        ]),
        ("config.direct-without-allow.yaml", [
            "$CONFIG:4:5: sources.redis_pubsub has format: direct and needs allow: the templates its messages may drop (such as 'user:{tenant}:*')",
        ]),
        ("config.allow-without-direct.yaml", [
            "$CONFIG:7:12: sources.redis_pubsub: allow and pools are for format: direct, which names keys to drop; rules decide for other formats",
        ]),
    ].map { name, expected in
        Case(name: name, config: (try? String(contentsOf: repository.appendingPathComponent("schemas/examples/invalid/\(name)"), encoding: .utf8)) ?? "",
             expected: expected)
    }

    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    let folder: URL

    init() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("invalidator-invalid-config-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    }

    deinit {
        try? FileManager.default.removeItem(at: folder)
    }

    /// What `invalidator validate --config` runs.
    static func validate(_ path: String, environment: [String: String]) -> [String] {
        outcome { _ = try ConfigurationFiles.load(configPath: path, environment: environment) }
    }

    /// What `invalidator run` runs, up to a worker ready to start (not started).
    /// - Parameter deadLetters: nil for the store the config names, as `run` does.
    static func run(_ path: String, environment: [String: String], deadLetters: (any DeadLetterStore)? = DiscardingStore()) -> [String] {
        outcome {
            let loaded = try ConfigurationFiles.load(configPath: path, environment: environment)
            _ = try Worker(
                loaded: loaded, deadLetters: deadLetters,
                observability: WorkerObservability(serveHTTP: true, rulesReloadInterval: nil),
                logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() })
        }
    }

    /// The error as the commands print it: one line per diagnostic; empty when none.
    static func outcome(_ body: () throws -> Void) -> [String] {
        do {
            try body()
            return []
        } catch let error as ValidationError {
            return error.diagnostics.map(\.description)
        } catch {
            return ["\(error)"]
        }
    }

    @Test(arguments: cases)
    func validateAndRunRefuseItWithTheSameDiagnostics(_ invalid: Case) throws {
        #expect(!invalid.config.isEmpty)
        let configPath = folder.appendingPathComponent("invalidator.yaml").path
        let rulesPath = folder.appendingPathComponent("rules.yaml").path
        try invalid.config.write(toFile: configPath, atomically: true, encoding: .utf8)
        try invalid.rules.write(toFile: rulesPath, atomically: true, encoding: .utf8)
        let expected = invalid.expected.map {
            $0.replacingOccurrences(of: "$CONFIG", with: configPath).replacingOccurrences(of: "$RULES", with: rulesPath)
        }

        let validated = Self.validate(configPath, environment: invalid.environment)
        #expect(validated == expected)
        #expect(Self.run(configPath, environment: invalid.environment) == validated)
    }

    @Test func everyInvalidConfigExampleIsInTheTable() throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: Self.repository.appendingPathComponent("schemas/examples/invalid").path)
            .filter { $0.hasPrefix("config.") }
        #expect(Set(names) == Set(Self.invalidExamples.map(\.name)))
    }

    /// The configs shipped as examples, in schemas/ and k8s/: each loads and builds a worker.
    static let validConfigs = [
        "examples/invalidator.yaml", "schemas/examples/config.full.yaml", "schemas/examples/config.inline-rules.yaml",
        "schemas/examples/config.minimal.yaml", "schemas/examples/config.publishers.yaml", "k8s/base/invalidator.yaml", "k8s/overlays/sidecar/invalidator.yaml",
    ]

    @Test(arguments: validConfigs)
    func aConfigThatLoadsBuildsAWorker(_ example: String) throws {
        let text = try String(contentsOf: Self.repository.appendingPathComponent(example), encoding: .utf8)
        let environment = ["KAFKA_PASSWORD": "placeholder", "REDIS_PASSWORD": "placeholder"]
        // The rules files it names, next to it: any valid rules will do.
        let configuration = try ConfigurationLoader.load(yaml: text, file: example, environment: environment) { path throws(FileReadError) in
            throw FileReadError(path: path, reason: "no secret files here")
        }
        if case .files(let paths) = configuration.rules {
            for (index, path) in paths.enumerated() {
                let url = folder.appendingPathComponent(path)
                try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
                try Self.rules(named: "rule-\(index)").write(to: url, atomically: true, encoding: .utf8)
            }
        }
        let configPath = folder.appendingPathComponent("invalidator.yaml").path
        try text.write(toFile: configPath, atomically: true, encoding: .utf8)

        #expect(Self.validate(configPath, environment: environment) == [])
        #expect(Self.run(configPath, environment: environment, deadLetters: nil) == [])
    }
}

/// A dead-letter store that keeps nothing: the workers here are never started.
private struct DiscardingStore: DeadLetterStore {
    func write(_ records: [DeadLetter]) async throws {}
}
