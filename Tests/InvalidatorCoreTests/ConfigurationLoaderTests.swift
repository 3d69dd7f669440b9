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

    static let minimalConfig = "pools:\n  main:\n    nodes: [\"127.0.0.1:6379\"]\nrules: r.yaml\nsources: { redis_pubsub: { pool: main, channels: [c] } }\n"

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
        let configuration = try load(Self.minimalConfig)
        #expect(configuration.pool(named: "main")?.mode == .single)
        #expect(configuration.pool(named: "main")?.tagPrefix == "tag:")
        #expect(configuration.retry == RetryPolicy())
        #expect(configuration.pool(named: "main")?.commandTimeout == .seconds(2))
        #expect(configuration.deadLetters == .redisStream(pool: "main", stream: "invalidator:dead-letters"))
        #expect(configuration.http.listen == HostPort(host: "0.0.0.0", port: 9090))
    }

    @Test func readsThePoolsPatternSettings() throws {
        let defaults = try load(Self.minimalConfig).pool(named: "main")
        #expect(defaults?.scanCount == 1000)
        #expect(defaults?.maxPendingPatterns == 10_000)
        let set = try load(Self.minimalConfig.replacingOccurrences(
            of: "    nodes: [\"127.0.0.1:6379\"]\n", with: "    nodes: [\"127.0.0.1:6379\"]\n    scan_count: 50\n    max_pending_patterns: \"200\"\n"))
        #expect(set.pool(named: "main")?.scanCount == 50)
        #expect(set.pool(named: "main")?.maxPendingPatterns == 200)
        #expect(throws: ValidationError.self) {
            try load(Self.minimalConfig.replacingOccurrences(of: "    nodes: [\"127.0.0.1:6379\"]\n", with: "    nodes: [\"127.0.0.1:6379\"]\n    scan_count: 0\n"))
        }
    }

    @Test func acceptsInlineRulesAndChecksTheirPools() throws {
        let yaml = """
            pools:
              main: { nodes: ["127.0.0.1:6379"] }
            rules:
              - { name: a, match: { entity: user }, delete: ["u:{id}"] }
              - { name: b, match: { entity: user }, pools: [other], delete: ["v:{id}"] }
            sources: { redis_pubsub: { pool: main, channels: [c] } }
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

    // MARK: Static group membership

    /// A Kafka config whose line 5 is `    group_instance_id: <value>`; the value starts at column 24.
    func staticMemberConfig(_ value: String) -> String {
        """
        sources:
          kafka:
            brokers: "k:9092"
            topics: [entity-changes]
            group_instance_id: \(value)
        pools:
          main: { nodes: ["127.0.0.1:6379"] }
        rules: r.yaml
        """
    }

    @Test func aGroupInstanceIDExpandsFromThePodNameAndIsOffByDefault() throws {
        let configuration = try load(staticMemberConfig("\"${POD_NAME}\""), environment: ["POD_NAME": "invalidator-6d5f8b7c9-x7k2p"])
        #expect(configuration.sources.kafka?.groupInstanceID == "invalidator-6d5f8b7c9-x7k2p")
        #expect(try load(Self.fullConfig, environment: ["REDIS_PASSWORD": "s3cret"]).sources.kafka?.groupInstanceID == nil)
        let overridden = try load(Self.fullConfig, environment: [
            "REDIS_PASSWORD": "s3cret", "INVALIDATOR__SOURCES__KAFKA__GROUP_INSTANCE_ID": "invalidator-1",
        ])
        #expect(overridden.sources.kafka?.groupInstanceID == "invalidator-1")
    }

    @Test func aGroupInstanceIDOfKafkasLongestLengthAndEveryAllowedCharacterIsAccepted() throws {
        let longest = String(repeating: "a", count: 249)
        #expect(try load(staticMemberConfig(longest)).sources.kafka?.groupInstanceID == longest)
        #expect(try load(staticMemberConfig("Worker_0.zone-B")).sources.kafka?.groupInstanceID == "Worker_0.zone-B")
    }

    @Test(arguments: [
        ("\"\"", "is empty; a static member needs a name unique in its group, such as ${POD_NAME}"),
        ("\".\"", "cannot be '.'"),
        ("\"..\"", "cannot be '..'"),
        ("\"worker 0\"", "may hold only letters, digits, '.', '_' and '-' (a pod name does), got 'worker 0'"),
        ("pod/0", "may hold only letters, digits, '.', '_' and '-' (a pod name does), got 'pod/0'"),
        ("café", "may hold only letters, digits, '.', '_' and '-' (a pod name does), got 'café'"),
        (String(repeating: "a", count: 250), "has 250 characters; Kafka allows at most 249"),
        ("[a, b]", "must be a string"),
    ])
    func aGroupInstanceIDKafkaWouldRefuseIsReportedAtItsValue(_ value: String, _ problem: String) {
        #expect(diagnostics(staticMemberConfig(value)) == ["invalidator.yaml:5:24: sources.kafka.group_instance_id \(problem)"])
    }

    @Test func aPodNameVariableSetButEmptyIsReported() {
        #expect(diagnostics(staticMemberConfig("\"${POD_NAME}\""), environment: ["POD_NAME": ""]) == [
            "invalidator.yaml:5:24: sources.kafka.group_instance_id is empty; a static member needs a name unique in its group, such as ${POD_NAME}",
        ])
    }

    // MARK: Kafka buffer memory

    /// A Kafka config whose line 5 is `    max_buffered_bytes: <value>`; the value starts at column 25.
    func bufferedBytesConfig(_ value: String) -> String {
        """
        sources:
          kafka:
            brokers: "k:9092"
            topics: [entity-changes]
            max_buffered_bytes: \(value)
        pools:
          main: { nodes: ["127.0.0.1:6379"] }
        rules: r.yaml
        """
    }

    @Test(arguments: [("48MiB", 48 << 20), ("4096KiB", 4 << 20), ("2GiB", 2 << 30), ("16777216", 16 << 20)])
    func maxBufferedBytesTakesBinaryUnitsOrBytes(_ value: String, _ bytes: Int) throws {
        #expect(try load(bufferedBytesConfig(value)).sources.kafka?.maxBufferedBytes == bytes)
    }

    @Test func maxBufferedBytesIsUnsetByDefaultAndOverriddenFromTheEnvironment() throws {
        #expect(try load(staticMemberConfig("w-0")).sources.kafka?.maxBufferedBytes == nil)
        let overridden = try load(staticMemberConfig("w-0"), environment: ["INVALIDATOR__SOURCES__KAFKA__MAX_BUFFERED_BYTES": "32MiB"])
        #expect(overridden.sources.kafka?.maxBufferedBytes == 32 << 20)
    }

    @Test(arguments: [
        ("64MB", "must be a size such as 64MiB, 512KiB or a number of bytes, got '64MB'"),
        ("-1MiB", "must be a size such as 64MiB, 512KiB or a number of bytes, got '-1MiB'"),
        ("MiB", "must be a size such as 64MiB, 512KiB or a number of bytes, got 'MiB'"),
        ("1.5GiB", "must be a size such as 64MiB, 512KiB or a number of bytes, got '1.5GiB'"),
        ("99999999999999999999", "must be a size such as 64MiB, 512KiB or a number of bytes, got '99999999999999999999'"),
        ("9007199254740993GiB", "must be from 4MiB to 2GiB, got '9007199254740993GiB'"),
        ("3MiB", "must be from 4MiB to 2GiB, got '3MiB'"),
        ("0", "must be from 4MiB to 2GiB, got '0'"),
        ("3GiB", "must be from 4MiB to 2GiB, got '3GiB'"),
        ("[1]", "must be a string"),
    ])
    func anAbsurdMaxBufferedBytesIsReportedAtItsValue(_ value: String, _ problem: String) {
        #expect(diagnostics(bufferedBytesConfig(value)) == ["invalidator.yaml:5:25: sources.kafka.max_buffered_bytes \(problem)"])
    }

    // MARK: Environment overrides

    @Test func environmentOverridesNestedKeys() throws {
        let configuration = try load(Self.fullConfig, environment: [
            "REDIS_PASSWORD": "s3cret",
            "INVALIDATOR__HTTP__LISTEN": "0.0.0.0:9191",
            "INVALIDATOR__SHUTDOWN__DRAIN_TIMEOUT": "30s",
            "INVALIDATOR__SOURCES__KAFKA__BROKERS": "k:9092",
            "INVALIDATOR__RETRY__INITIAL_BACKOFF": "20ms",
        ])
        #expect(configuration.http.listen.description == "0.0.0.0:9191")
        #expect(configuration.shutdown.drainTimeout == .seconds(30))
        #expect(configuration.sources.kafka?.brokers == "k:9092")
        #expect(configuration.retry.initialBackoff == .milliseconds(20))
        #expect(configuration.retry.attempts == 3, "keys not overridden keep their values")
    }

    @Test func environmentOverridesAPoolPasswordInsteadOfItsReference() throws {
        // ${REDIS_PASSWORD} is unset, but the override replaces the value before it is expanded.
        let configuration = try load(Self.fullConfig, environment: ["INVALIDATOR__POOLS__PRIMARY__PASSWORD": "p@ss: #[word"])
        #expect(configuration.pool(named: "primary")?.password == "p@ss: #[word", "taken as written, not parsed as YAML")
        let dashed = Self.fullConfig.replacingOccurrences(of: "  edge:", with: "  edge-eu:")
        let withDash = try load(dashed, environment: ["REDIS_PASSWORD": "s3cret", "INVALIDATOR__POOLS__EDGE_EU__TAG_PREFIX": "t:"])
        #expect(withDash.pool(named: "edge-eu")?.tagPrefix == "t:", "_ matches - in existing keys")
    }

    @Test func environmentOverridesAListWithAFlowSequence() throws {
        let configuration = try load(Self.fullConfig, environment: [
            "REDIS_PASSWORD": "s3cret",
            "INVALIDATOR__SOURCES__KAFKA__TOPICS": "[a, b]",
            "INVALIDATOR__POOLS__EDGE__NODES": "[\"edge-1:6379\", edge-2:6379]",
            "INVALIDATOR__RULES": "[base.yaml, extra.yaml]",
        ])
        #expect(configuration.sources.kafka?.topics == ["a", "b"])
        #expect(configuration.pool(named: "edge")?.nodes.map(\.description) == ["edge-1:6379", "edge-2:6379"])
        #expect(configuration.rules == .files(["base.yaml", "extra.yaml"]))
    }

    @Test func environmentOverridesCreateMissingSectionsAndKeys() throws {
        let configuration = try load(Self.minimalConfig, environment: [
            "INVALIDATOR__SHUTDOWN__DRAIN_TIMEOUT": "5s",
            "INVALIDATOR__POOLS__MAIN__PASSWORD": "s3cret",
            "INVALIDATOR__SOURCES__KAFKA__BROKERS": "k:9092",
            "INVALIDATOR__SOURCES__KAFKA__TOPICS": "[changes]",
            "INVALIDATOR__SOURCES__KAFKA__PROPERTIES__SASL_PASSWORD": "kafka-s3cret",
        ])
        #expect(configuration.shutdown.drainTimeout == .seconds(5))
        #expect(configuration.pool(named: "main")?.password == "s3cret")
        #expect(configuration.sources.kafka?.topics == ["changes"])
        #expect(configuration.sources.kafka?.properties == ["sasl.password": "kafka-s3cret"], "new property keys use dots")
        let existing = try load(Self.fullConfig, environment: [
            "REDIS_PASSWORD": "s3cret", "INVALIDATOR__SOURCES__KAFKA__PROPERTIES__SECURITY_PROTOCOL": "SSL",
        ])
        #expect(existing.sources.kafka?.properties == ["security.protocol": "SSL"], "_ matches . in existing keys")
    }

    @Test func environmentOverrideProblemsNameTheVariable() {
        let problems = diagnostics(Self.minimalConfig, environment: [
            "INVALIDATOR__SHUTDOWN__DRAIN_TIMEOUT": "soon",
            "INVALIDATOR__HTTP__LISTN": "0.0.0.0:1",
            "INVALIDATOR__POOLS__MAIN__NODES__0": "127.0.0.1:6380",
            "INVALIDATOR__RETRY__ATTEMPTS": "[3",
            "INVALIDATOR__RETRY__MAX_BACKOFF": "[a]: b",
            "INVALIDATOR__HTTP__": "x",
        ])
        #expect(problems == [
            "environment:1:1: INVALIDATOR__HTTP__: names an empty key; write keys as INVALIDATOR__SECTION__KEY",
            "environment:1:1: INVALIDATOR__POOLS__MAIN__NODES__0: cannot set a key inside pools.main.nodes, which is not a mapping; set pools.main.nodes as a whole",
            "environment:1:1: INVALIDATOR__RETRY__MAX_BACKOFF: a value starting with [ must be one list such as [a, b]",
            "environment:1:1: INVALIDATOR__HTTP__LISTN: unknown key 'listn' in http; expected one of health_check_interval, listen",
            "environment:1:1: INVALIDATOR__SHUTDOWN__DRAIN_TIMEOUT: shutdown.drain_timeout must be a positive duration such as 500ms, 5s, 2m or 1h, got 'soon'",
            "environment:2:1: INVALIDATOR__RETRY__ATTEMPTS: did not find expected ',' or ']'",
        ], "\(problems)")
    }

    @Test func theConfigPathVariableIsNotAnOverride() throws {
        let configuration = try load(Self.minimalConfig, environment: ["INVALIDATOR_CONFIG": "/etc/invalidator/invalidator.yaml"])
        #expect(configuration == (try load(Self.minimalConfig)))
    }

    // MARK: Secrets from files

    @Test func secretFilesExpandWithoutTheirTrailingNewline() throws {
        let yaml = Self.fullConfig.replacingOccurrences(of: "${REDIS_PASSWORD}", with: "${file:/run/secrets/redis/password}")
        let configuration = try load(yaml, secretFiles: ["/run/secrets/redis/password": "s3cret\n"])
        #expect(configuration.pool(named: "primary")?.password == "s3cret")
        let windows = try load(yaml, secretFiles: ["/run/secrets/redis/password": "s3cret\r\n"])
        #expect(windows.pool(named: "primary")?.password == "s3cret")
        let twoLines = try load(yaml, secretFiles: ["/run/secrets/redis/password": "s3cret\n\n"])
        #expect(twoLines.pool(named: "primary")?.password == "s3cret\n", "only one newline is removed")
    }

    @Test func anUnsetVariableIsReadFromTheFileItsFileVariableNames() throws {
        let secretFiles = ["/run/secrets/redis": "from-file\n"]
        let configuration = try load(Self.fullConfig, environment: ["REDIS_PASSWORD_FILE": "/run/secrets/redis"], secretFiles: secretFiles)
        #expect(configuration.pool(named: "primary")?.password == "from-file")
        let both = try load(Self.fullConfig, environment: ["REDIS_PASSWORD": "from-env", "REDIS_PASSWORD_FILE": "/run/secrets/redis"],
                            secretFiles: secretFiles)
        #expect(both.pool(named: "primary")?.password == "from-env", "the variable itself wins")
        let override = try load(Self.fullConfig, environment: ["INVALIDATOR__POOLS__PRIMARY__PASSWORD": "${file:/run/secrets/redis}"],
                                secretFiles: secretFiles)
        #expect(override.pool(named: "primary")?.password == "from-file", "override values expand too")
    }

    @Test func unreadableSecretFilesAreReportedWithoutTheirContents() {
        let yaml = Self.fullConfig.replacingOccurrences(of: "${REDIS_PASSWORD}", with: "${file:/run/secrets/missing}")
        #expect(diagnostics(yaml) == ["invalidator.yaml:22:15: cannot read secret file /run/secrets/missing: no such file"])
        #expect(diagnostics(Self.fullConfig, environment: ["REDIS_PASSWORD_FILE": "/run/secrets/missing"]) == [
            "invalidator.yaml:22:15: cannot read secret file /run/secrets/missing (named by REDIS_PASSWORD_FILE): no such file",
        ])
    }

    @Test func secretFileContentsNeverAppearInDiagnostics() {
        let secret = "hunter2-\(Int.random(in: 1000...9999))"
        let yaml = Self.minimalConfig + "shutdown: { drain_timeout: \"${file:/run/secrets/timeout}\" }\n"
        let problems = diagnostics(yaml, secretFiles: ["/run/secrets/timeout": secret + "\n"])
        #expect(problems == [
            "invalidator.yaml:6:28: shutdown.drain_timeout must be a positive duration such as 500ms, 5s, 2m or 1h, got '<secret>'",
        ])
        #expect(!problems.joined().contains(secret))
    }
}

// MARK: dead_letters.max_records

extension ConfigurationLoaderTests {
    func withDeadLetters(_ flow: String) -> String {
        Self.minimalConfig + "dead_letters: { \(flow) }\n"
    }

    @Test func deadLetterMaxRecordsDefaultsToACapAndZeroTurnsItOff() throws {
        #expect(try load(Self.minimalConfig).deadLetterMaxRecords == 100_000)
        #expect(try load(withDeadLetters("pool: main")).deadLetterMaxRecords == 100_000)
        #expect(try load(withDeadLetters("pool: main, max_records: 250")).deadLetterMaxRecords == 250)
        #expect(try load(withDeadLetters("pool: main, max_records: 0")).deadLetterMaxRecords == nil)
        #expect(try load(withDeadLetters("pool: main, max_records: 100000000")).deadLetterMaxRecords == 100_000_000)
        let overridden = try load(withDeadLetters("pool: main"), environment: ["INVALIDATOR__DEAD_LETTERS__MAX_RECORDS": "0"])
        #expect(overridden.deadLetterMaxRecords == nil)
        #expect(overridden.deadLetters == .redisStream(pool: "main", stream: "invalidator:dead-letters"))
    }

    @Test func deadLetterMaxRecordsRefusesNegativeAbsurdAndNonIntegerValues() {
        for value in ["-1", "100000001", "1000000000000", "99999999999999999999999", "1e6", "lots", "2.5"] {
            #expect(diagnostics(withDeadLetters("pool: main, max_records: \(value)")) == [
                "invalidator.yaml:6:42: dead_letters.max_records must be an integer in 0...100000000, got '\(value)'",
            ])
        }
    }

    @Test func deadLetterMaxRecordsIsRefusedWithAKafkaTopic() throws {
        let kafka = """
            pools:
              main: { nodes: ["127.0.0.1:6379"] }
            rules: r.yaml
            sources: { kafka: { brokers: "k:9092", topics: [t] } }

            """
        #expect(try load(kafka + "dead_letters: { kafka_topic: dl }\n").deadLetterMaxRecords == nil, "retention is a topic's limit")
        let problems = diagnostics(kafka + "dead_letters: { kafka_topic: dl, max_records: 10 }\n")
        #expect(problems.count == 1)
        #expect(problems.first?.hasPrefix("invalidator.yaml:5:47: dead_letters.max_records caps a Redis stream store; a Kafka topic is bounded by its retention") == true, "\(problems)")
    }
}
