import InvalidatorCore
import Testing

@Suite struct ConfigurationLoaderTests {
    static let fullConfig = """
        sources:
          kafka:
            brokers: "kafka-0:9092,kafka-1:9092"
            topics: ["entity-changes"]
            group: cache-invalidator
            format: debezium
            properties:
              security.protocol: SASL_SSL
          redis_pubsub:
            pool: primary
            channels: ["entity-changes"]
            patterns: ["changes.*"]
          redis_stream:
            pool: primary
            streams: ["entity-changes"]
            group: cache-invalidator
        pools:
          primary:
            mode: cluster
            nodes: ["redis-0:6379", "redis-1:6379", "redis-2:6379"]
            username: invalidator
            password: ${REDIS_PASSWORD}
            database: 0
            tag_prefix: "tag:"
          edge:
            mode: replicated
            nodes: ["edge-eu:6379", "edge-us:6379"]
        rules: rules.yaml
        retry: { attempts: 3, initial_backoff: 10ms, max_backoff: 1s }
        dead_letters: { pool: primary, stream: "invalidator:dead-letters" }
        http: { listen: "0.0.0.0:9090" }
        shutdown: { drain_timeout: 20s }
        """

    func load(_ yaml: String, environment: [String: String] = [:]) throws(ValidationError) -> Configuration {
        try ConfigurationLoader.load(yaml: yaml, file: "invalidator.yaml", environment: environment)
    }

    @Test func loadsTheDesignExample() throws {
        let configuration = try load(Self.fullConfig, environment: ["REDIS_PASSWORD": "s3cret"])
        #expect(configuration.sources.kafka?.format == .debezium)
        #expect(configuration.sources.kafka?.properties == ["security.protocol": "SASL_SSL"])
        #expect(configuration.sources.redisPubSub?.patterns == ["changes.*"])
        #expect(configuration.sources.redisStream?.streams == ["entity-changes"])
        #expect(configuration.pools.map(\.name) == ["primary", "edge"])
        #expect(configuration.pool(named: "primary")?.mode == .cluster)
        #expect(configuration.pool(named: "primary")?.password == "s3cret")
        #expect(configuration.pool(named: "edge")?.mode == .replicated)
        #expect(configuration.rules == .files(["rules.yaml"]))
        #expect(configuration.retry.attempts == 3)
        #expect(configuration.retry.initialBackoff == .milliseconds(10))
        #expect(configuration.deadLetters == .redisStream(pool: "primary", stream: "invalidator:dead-letters"))
        #expect(configuration.shutdown.drainTimeout == .seconds(20))
    }

    @Test func reportsUnsetEnvironmentVariablesAndHonoursDefaults() {
        #expect(throws: ValidationError([Diagnostic(file: "invalidator.yaml", line: 22, column: 15, message: "environment variable REDIS_PASSWORD is not set")])) {
            try load(Self.fullConfig)
        }
        let withDefault = Self.fullConfig.replacingOccurrences(of: "${REDIS_PASSWORD}", with: "${REDIS_PASSWORD:-fallback}")
        #expect((try? load(withDefault))?.pool(named: "primary")?.password == "fallback")
    }

    @Test func fillsDefaults() throws {
        let configuration = try load("pools:\n  main:\n    nodes: [\"127.0.0.1:6379\"]\nrules: r.yaml\n")
        #expect(configuration.pool(named: "main")?.mode == .single)
        #expect(configuration.pool(named: "main")?.tagPrefix == "tag:")
        #expect(configuration.retry == RetryConfiguration())
        #expect(configuration.deadLetters == .redisStream(pool: "main", stream: "invalidator:dead-letters"))
        #expect(configuration.http.listen == "0.0.0.0:9090")
    }

    @Test func acceptsInlineRulesAndChecksTheirPools() throws {
        let yaml = """
            pools:
              main: { nodes: ["127.0.0.1:6379"] }
            rules:
              - { name: a, match: { entity: user }, delete: ["u:{id}"] }
              - { name: b, match: { entity: user }, pools: [other], delete: ["v:{id}"] }
            """
        #expect(throws: ValidationError([Diagnostic(file: "invalidator.yaml", line: 5, column: 49, message: "rule 'b' names pool 'other', which the config does not define")])) {
            try load(yaml)
        }
    }

    @Test func reportsEveryProblem() {
        let yaml = """
            sources:
              redis_pubsub: { pool: nowhere, channels: [c] }
              kafka: { brokers: "k:9092" }
            pools:
              main: { mode: clustr, nodes: ["localhost"] }
              solo: { nodes: ["a:1", "b:2"] }
            rules: r.yaml
            retry: { attempts: 0 }
            dead_letters: { kafka_topic: dl, stream: dl }
            extra: 1
            """
        do {
            _ = try load(yaml)
            Issue.record("expected diagnostics")
        } catch {
            let messages = error.diagnostics.map(\.message)
            #expect(messages.count == 8, "\(messages)")
            #expect(messages.contains { $0.contains("unknown key 'extra'") })
            #expect(messages.contains { $0.contains("'nowhere' is not a pool") })
            #expect(messages.contains { $0.contains("kafka needs brokers and topics") })
            #expect(messages.contains { $0.contains("mode 'clustr'") })
            #expect(messages.contains { $0.contains("'localhost' must be host:port") })
            #expect(messages.contains { $0.contains("single but lists 2 nodes") })
            #expect(messages.contains { $0.contains("retry.attempts") })
            #expect(messages.contains { $0.contains("either kafka_topic or a stream") })
        }
    }
}
