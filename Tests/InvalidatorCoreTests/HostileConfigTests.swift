import InvalidatorCore
import Testing

/// Configuration and rules an operator (or a templating mistake) can get wrong in
/// ways that used to be accepted silently or to trap: Kafka properties that break
/// at-least-once, pools and nodes named twice, durations with no ceiling.
@Suite struct HostileConfigTests {
    func ruleProblems(_ yaml: String) -> [String] {
        do {
            _ = try RulesLoader.load(yaml: yaml, file: "rules.yaml")
            return []
        } catch {
            return error.diagnostics.map(\.description)
        }
    }

    /// A Kafka config whose line 7 is `      <property>: "<value>"`.
    func kafkaConfig(property: String, value: String = "true") -> String {
        """
        sources:
          kafka:
            brokers: "k:9092"
            topics: [entity-changes]
            group: invalidator
            properties:
              \(property): "\(value)"
              security.protocol: SSL
        pools:
          main: { nodes: ["127.0.0.1:6379"] }
        rules: r.yaml
        """
    }

    static let refusedKafkaProperties = [
        "enable.auto.commit", "auto.commit.enable", "enable.auto.offset.store", "group.id", "group.instance.id", "bootstrap.servers",
        "metadata.broker.list",
    ]

    // MARK: Kafka properties

    @Test(arguments: refusedKafkaProperties)
    func aKafkaPropertyThatWouldBreakCommitsOrShadowAKeyIsRefusedWithItsLine(_ property: String) {
        let problems = diagnostics(kafkaConfig(property: property))
        #expect(problems.count == 1, "\(problems)")
        let problem = problems.first ?? ""
        #expect(problem.hasPrefix("invalidator.yaml:7:7: sources.kafka.properties: \(property) cannot be set"), "\(problem)")
    }

    @Test func theReasonSaysWhatToDoInstead() {
        #expect(diagnostics(kafkaConfig(property: "group.id")).first?.hasSuffix("set sources.kafka.group instead") == true)
        #expect(diagnostics(kafkaConfig(property: "group.instance.id")).first?.hasSuffix("set sources.kafka.group_instance_id instead") == true)
        #expect(diagnostics(kafkaConfig(property: "bootstrap.servers")).first?.hasSuffix("set sources.kafka.brokers instead") == true)
        #expect(diagnostics(kafkaConfig(property: "enable.auto.commit")).first?.contains("commits") == true)
    }

    @Test func everyRefusedPropertyIsReportedOnItsOwnLine() {
        let properties = Self.refusedKafkaProperties.map { "      \($0): \"x\"" }.joined(separator: "\n")
        let yaml = """
            sources:
              kafka:
                brokers: "k:9092"
                topics: [entity-changes]
                properties:
            \(properties)
            pools:
              main: { nodes: ["127.0.0.1:6379"] }
            rules: r.yaml
            """
        let problems = diagnostics(yaml)
        #expect(problems.count == Self.refusedKafkaProperties.count, "\(problems)")
        for (index, property) in Self.refusedKafkaProperties.enumerated() {
            #expect(problems.contains { $0.hasPrefix("invalidator.yaml:\(6 + index):7: sources.kafka.properties: \(property) cannot be set") },
                    "\(property) on line \(6 + index): \(problems)")
        }
    }

    @Test func harmlessKafkaPropertiesAreStillAccepted() throws {
        let configuration = try load(kafkaConfig(property: "fetch.wait.max.ms", value: "5"))
        #expect(configuration.sources.kafka?.properties == ["fetch.wait.max.ms": "5", "security.protocol": "SSL"])
    }

    /// Overrides create property keys too (`_` becomes `.`): auto commit must not
    /// come in through the environment either.
    @Test func anEnvironmentOverrideCannotTurnOnAutoCommit() {
        let problems = diagnostics(kafkaConfig(property: "fetch.wait.max.ms", value: "5"), environment: [
            "INVALIDATOR__SOURCES__KAFKA__PROPERTIES__ENABLE_AUTO_COMMIT": "true",
        ])
        #expect(problems.count == 1, "\(problems)")
        #expect(problems.first?.contains("enable.auto.commit cannot be set") == true, "\(problems)")
    }

    // MARK: Pools and nodes named twice

    @Test func twoPoolKeysThatSubstituteToOneNameAreReported() {
        let yaml = """
            pools:
              "${POOL_A}": { nodes: ["127.0.0.1:6379"] }
              "${POOL_B}": { nodes: ["127.0.0.1:6380"] }
            rules: r.yaml
            sources: { redis_pubsub: { pool: main, channels: [c] } }
            """
        #expect(diagnostics(yaml, environment: ["POOL_A": "main", "POOL_B": "main"]) == [
            "invalidator.yaml:3:3: pool 'main' is defined twice",
        ])
        #expect(diagnostics(yaml, environment: ["POOL_A": "main", "POOL_B": "edge"]).isEmpty)
    }

    @Test func aNodeListedTwiceInAPoolIsReportedAtTheSecondOne() {
        let yaml = """
            pools:
              edge:
                mode: replicated
                nodes: ["a:1", "b:2", "a:1"]
            rules: r.yaml
            sources: { redis_pubsub: { pool: edge, channels: [c] } }
            """
        #expect(diagnostics(yaml) == ["invalidator.yaml:4:27: pool 'edge' lists node 'a:1' twice"])
    }

    @Test func nodesThatSubstituteToOneAddressAreReported() {
        let yaml = """
            pools:
              edge:
                mode: replicated
                nodes:
                  - "${EU}"
                  - "${US}"
            rules: r.yaml
            sources: { redis_pubsub: { pool: edge, channels: [c] } }
            """
        #expect(diagnostics(yaml, environment: ["EU": "redis:6379", "US": "redis:6379"]) == [
            "invalidator.yaml:6:9: pool 'edge' lists node 'redis:6379' twice",
        ])
        #expect(diagnostics(yaml, environment: ["EU": "redis-eu:6379", "US": "redis-us:6379"]).isEmpty)
    }

    // MARK: Duration ceilings

    @Test func retryBackoffsHaveACeilingOfAnHour() throws {
        let base = "pools:\n  main: { nodes: [\"127.0.0.1:6379\"] }\nrules: r.yaml\nsources: { redis_pubsub: { pool: main, channels: [c] } }\n"
        let accepted = try load(base + "retry: { attempts: 100, initial_backoff: 1h, max_backoff: 1h }\n")
        #expect(accepted.retry.initialBackoff == .seconds(3600))
        #expect(accepted.retry.maxBackoff == .seconds(3600))

        let problems = diagnostics(base + "retry:\n  initial_backoff: 61m\n  max_backoff: 2h\n")
        #expect(problems.contains("invalidator.yaml:6:20: retry.initial_backoff must be at most 1h, got '61m'"), "\(problems)")
        #expect(problems.contains("invalidator.yaml:7:16: retry.max_backoff must be at most 1h, got '2h'"), "\(problems)")
    }

    @Test(arguments: [
        ("shutdown: { drain_timeout: 2h }", "shutdown.drain_timeout"),
        ("pools:\n  other: { nodes: [\"127.0.0.1:6380\"], connect_timeout: 6m }", "pool 'other' connect_timeout"),
        ("pools:\n  other: { nodes: [\"127.0.0.1:6380\"], command_timeout: 301s }", "pool 'other' command_timeout"),
        ("sources:\n  redis_stream: { pool: main, streams: [s], claim_idle: 25h }", "sources.redis_stream.claim_idle"),
        ("sources:\n  redis_pubsub: { pool: main, channels: [c], keepalive: 25h }", "sources.redis_pubsub.keepalive"),
    ])
    func otherDurationSettingsHaveCeilingsToo(_ setting: String, _ context: String) {
        // `pools:` twice would be a YAML error; the extra pool goes into the one mapping.
        var yaml: String
        if setting.hasPrefix("pools:") {
            yaml = setting + "\n  main: { nodes: [\"127.0.0.1:6379\"] }\nrules: r.yaml\n"
        } else {
            yaml = "pools:\n  main: { nodes: [\"127.0.0.1:6379\"] }\nrules: r.yaml\n" + setting + "\n"
        }
        if !setting.hasPrefix("sources:") {
            yaml += "sources: { redis_pubsub: { pool: main, channels: [c] } }\n"
        }
        let problems = diagnostics(yaml)
        #expect(problems.count == 1, "\(problems)")
        #expect(problems.first?.contains("\(context) must be at most") == true, "\(problems)")
    }

    @Test func thePubSubKeepaliveDefaultsToThirtySeconds() throws {
        let base = "pools:\n  main: { nodes: [\"127.0.0.1:6379\"] }\nrules: r.yaml\n"
        #expect(try load(base + "sources: { redis_pubsub: { pool: main, channels: [c] } }\n").sources.redisPubSub?.keepalive == .seconds(30))
        let configured = try load(base + "sources: { redis_pubsub: { pool: main, channels: [c], keepalive: 2m } }\n")
        #expect(configured.sources.redisPubSub?.keepalive == .seconds(120))
    }

    /// A duration too long for any arithmetic used to trap in the parser; now it is
    /// an ordinary diagnostic.
    @Test func aDurationThatDoesNotFitIsADiagnosticNotATrap() {
        let problems = diagnostics(
            "pools:\n  main: { nodes: [\"127.0.0.1:6379\"] }\nrules: r.yaml\nretry: { max_backoff: 9999999999999h }\nsources: { redis_pubsub: { pool: main, channels: [c] } }\n")
        #expect(problems == [
            "invalidator.yaml:4:23: retry.max_backoff must be a positive duration such as 500ms, 5s, 2m or 1h, got '9999999999999h'",
        ])
    }

    @Test func durationParserReturnsNilForValuesThatDoNotFit() {
        #expect(DurationParser.parse("9999999999999h") == nil)
        #expect(DurationParser.parse("99999999999999999999999999999999ms") == nil)
        #expect(DurationParser.parse(String(repeating: "9", count: 400) + "s") == nil)
        // 100 years is the longest any setting can name; one hour more is refused.
        #expect(DurationParser.parse("876000h") == .seconds(3_153_600_000))
        #expect(DurationParser.parse("876001h") == nil)
        #expect(DurationParser.parse("1.5s") == .milliseconds(1500))
    }

    @Test func redeleteAfterIsAtMostAnHour() throws {
        func rules(_ delay: String) -> String {
            "rules:\n  - name: r\n    match: { entity: user }\n    delete: [\"user:{id}\"]\n    redelete_after: \(delay)\n"
        }
        #expect(ruleProblems(rules("1h")).isEmpty)
        #expect(ruleProblems(rules("3601s")) == ["rules.yaml:5:21: rule 'r' redelete_after must be at most 1h, got '3601s'"])
        #expect(ruleProblems(rules("9999999999999h")).count == 1)
        let loaded = try RulesLoader.load(yaml: rules("1h"), file: "rules.yaml")
        #expect(loaded.rules.first?.redeleteAfter == .seconds(3600))
    }

    @Test func anExpireTTLIsAtMostAYear() throws {
        func rules(_ ttl: String) -> String {
            "rules:\n  - name: r\n    match: { entity: page }\n    expire: { keys: [\"page:{id}\"], ttl: \(ttl) }\n"
        }
        #expect(ruleProblems(rules("8760h")).isEmpty)
        let problems = ruleProblems(rules("8761h"))
        #expect(problems.count == 1, "\(problems)")
        #expect(problems.first?.hasPrefix("rules.yaml:4:41: rule 'r' expire ttl must be at most") == true, "\(problems)")
        #expect(problems.first?.hasSuffix("got '8761h'") == true, "\(problems)")
    }
}

/// Events that try to make the worker repair bytes into other keys, or plan without bound.
@Suite struct HostileEventTests {
    func decode(_ bytes: [UInt8]) throws(EventDecodingError) -> ChangeEvent {
        try EventDecoder(format: .auto).decode(bytes)
    }

    func bytes(_ prefix: String, _ raw: [UInt8], _ suffix: String) -> [UInt8] {
        Array(prefix.utf8) + raw + Array(suffix.utf8)
    }

    // MARK: Invalid UTF-8

    @Test(arguments: [
        [0xFF] as [UInt8],          // never valid
        [0xFF, 0xFE],               // a UTF-16 byte order mark
        [0xC0, 0x80],               // an overlong NUL
        [0xED, 0xA0, 0x80],         // an encoded surrogate
        [0xC3],                     // a truncated two-byte sequence
        [0xF4, 0x90, 0x80, 0x80],   // above U+10FFFF
    ])
    func invalidUTF8InAStringIsASyntaxError(_ raw: [UInt8]) {
        let input = bytes(#"{"id":"1"#, raw, #""}"#)
        let error = #expect(throws: JSONParser.SyntaxError.self) { try JSONParser.parse(bytes: input) }
        #expect(error?.message == "invalid UTF-8 in string")
        #expect(error?.offset == 7, "the offset of the string's first byte")
    }

    @Test func invalidUTF8InAnEscapedStringOrAKeyIsASyntaxErrorToo() {
        let escaped = bytes(#"{"id":"a\n"#, [0xFF], #""}"#)
        let escapedError = #expect(throws: JSONParser.SyntaxError.self) { try JSONParser.parse(bytes: escaped) }
        #expect(escapedError?.message == "invalid UTF-8 in string")
        let key = bytes(#"{""#, [0xFF], #"":1}"#)
        let keyError = #expect(throws: JSONParser.SyntaxError.self) { try JSONParser.parse(bytes: key) }
        #expect(keyError?.message == "invalid UTF-8 in string")
    }

    @Test func validMultiByteTextStillParses() throws {
        let value = try JSONParser.parse(bytes: Array(#"{"id":"é😀中","k\u00e9":"x"}"#.utf8))
        #expect(value.objectValue?["id"] == .string("é😀中"))
        #expect(value.objectValue?["ké"] == .string("x"))
    }

    @Test func anEventWithAnInvalidUTF8IdIsInvalidJSONNotARepairedId() {
        let event = bytes(#"{"entity":"user","id":"1"#, [0xFF], #"","op":"update"}"#)
        let error = #expect(throws: EventDecodingError.self) { try decode(event) }
        #expect(error?.reason == .invalidJSON)
        #expect(error?.message.contains("invalid UTF-8 in string") == true, "\(error?.message ?? "")")
        for format in [EventFormat.native, .debezium, .cloudevents] {
            let other = #expect(throws: EventDecodingError.self) { try EventDecoder(format: format).decode(event) }
            #expect(other?.reason == .invalidJSON, "\(format)")
        }
    }

    @Test func invalidUTF8InAnAttributeOrADebeziumRowIsInvalidJSON() {
        let attribute = bytes(#"{"entity":"user","id":"1","op":"update","attributes":{"org":""#, [0x80], #""}}"#)
        let attributeError = #expect(throws: EventDecodingError.self) { try decode(attribute) }
        #expect(attributeError?.reason == .invalidJSON)
        let debezium = bytes(#"{"payload":{"after":{"id":"7"#, [0xFE], #""},"source":{"table":"t"},"op":"u"}}"#)
        let debeziumError = #expect(throws: EventDecodingError.self) { try decode(debezium) }
        #expect(debeziumError?.reason == .invalidJSON)
    }

    // MARK: CloudEvents binary-mode headers

    static let ceHeaders = ["ce_specversion": "1.0", "ce_id": "b-1", "ce_source": "/s", "ce_type": "t"].mapValues { Array($0.utf8) }
    static let ceData = Array(#"{"entity":"user","id":"5","op":"update"}"#.utf8)

    @Test(arguments: ["ce_id", "ce_specversion", "ce_time", "ce_tenant", "ce_subject"])
    func aCloudEventHeaderThatIsNotUTF8MakesTheEventInvalidJSON(_ header: String) {
        var headers = Self.ceHeaders
        headers[header] = [0x61, 0xFF, 0xFE]
        let error = #expect(throws: EventDecodingError.self) {
            try EventDecoder(format: .auto).decodeCloudEventBinary(headers: headers, data: Self.ceData)
        }
        #expect(error?.reason == .invalidJSON)
        #expect(error?.message.contains(header) == true, "\(error?.message ?? "")")
    }

    @Test func headersOtherThanCloudEventsAttributesMayHoldAnyBytes() throws {
        var headers = Self.ceHeaders
        headers["traceparent"] = [0xFF, 0x00, 0xFE]
        let event = try EventDecoder(format: .auto).decodeCloudEventBinary(headers: headers, data: Self.ceData)
        #expect(event.eventID == "b-1")
        #expect(event.ids == ["5"])
    }

    // MARK: Bulk ids

    func bulk(_ count: Int) -> [UInt8] {
        Array(#"{"entity":"user","op":"delete","ids":["#.utf8) + Array((0..<count).map(String.init).joined(separator: ",").utf8) + Array("]}".utf8)
    }

    @Test func tenThousandIdsAreAccepted() throws {
        #expect(ChangeEvent.maximumIDs == 10_000)
        let event = try decode(bulk(10_000))
        #expect(event.ids.count == 10_000)
        #expect(event.ids.last == "9999")
    }

    @Test func moreThanTenThousandIdsAreASchemaViolation() {
        let error = #expect(throws: EventDecodingError.self) { try decode(bulk(10_001)) }
        #expect(error?.reason == .schemaViolation)
        #expect(error?.message.contains("10001") == true, "\(error?.message ?? "")")
        #expect(error?.message.contains("10000") == true, "\(error?.message ?? "")")
        let huge = #expect(throws: EventDecodingError.self) { try decode(bulk(200_000)) }
        #expect(huge?.reason == .schemaViolation)
    }
}
