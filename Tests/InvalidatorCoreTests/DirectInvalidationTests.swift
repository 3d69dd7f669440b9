import InvalidatorCore
import PropertyBased
import Testing

/// `GlobPattern.isContained(in:)` is the whole of the allow-list's safety: checked
/// against Redis's own matching on every short key.
@Suite struct GlobContainmentPropertyTests {
    /// Wildcards, class syntax and escapes, weighted towards them.
    static let globs = Gen<Character?>.element(of: Array("ab:*?[]^-\\ab:")).map { $0! }.string(of: 0...7)
    /// Every key of up to four bytes over the globs' letters and one byte they never name.
    static let keys: [String] = {
        let alphabet = ["a", "b", ":", "*", "c"]
        var keys = [""]
        var layer = [""]
        for _ in 1...4 {
            layer = layer.flatMap { prefix in alphabet.map { prefix + $0 } }
            keys += layer
        }
        return keys
    }()

    @Test func containmentIsSoundForEveryShortKey() async {
        var proven = 0
        await propertyCheck(count: 600, input: Self.globs, Self.globs) { narrow, wide in
            guard let inner = GlobPattern(narrow), let outer = GlobPattern(wide), inner.isContained(in: outer) else { return }
            proven += 1
            // Not the empty key, which Redis's matcher treats apart (see the next test).
            for key in Self.keys where !key.isEmpty && Glob.matches(narrow, key) {
                #expect(Glob.matches(wide, key), "'\(narrow)' was proven inside '\(wide)', but '\(key)' matches only the first")
            }
        }
        // The reflexive case alone proves a glob inside itself; the check must be exercised.
        #expect(proven > 0)
    }

    @Test func globsMatchAsRedisDoes() async {
        await propertyCheck(count: 600, input: Self.globs) { text in
            guard let glob = GlobPattern(text) else { return }
            // Not the empty key: Redis's matcher matches it with nothing but the empty
            // pattern, while as a language `*` contains it. No allowed pattern reaches it:
            // an allow-list entry starts with literal text.
            for key in Self.keys where !key.isEmpty {
                #expect(glob.matches(key) == Glob.matches(text, key), "'\(text)' on '\(key)'")
            }
        }
    }

    /// The multi-pattern matcher answers, for every key, exactly the patterns that match
    /// it alone. Patterns share literal prefixes (plain, escaped, nested) so the index
    /// holds several per prefix and several prefix lengths.
    @Test func aPatternSetMatchesExactlyWhatEachGlobMatches() async {
        let prefixes = Gen<String?>.element(of: ["", "a", "ab", "a:", "a\\*", "a\\", "[a]", "*"]).map { $0! }
        await propertyCheck(count: 400, input: Self.globs.array(of: 0...10), prefixes.array(of: 10)) { globs, prefixes in
            let patterns = zip(prefixes, globs).map { $0 + $1 }
            let set = PatternSet(patterns)
            for key in Self.keys {
                let expected = patterns.indices.filter { Glob.scanMatches(Array(patterns[$0].utf8)[...], Array(key.utf8)[...]) }
                #expect(set.matching(Array(key.utf8)) == expected, "\(patterns) on '\(key)'")
                #expect(set.firstMatch(Array(key.utf8)) == expected.first, "\(patterns) on '\(key)'")
            }
        }
    }

    @Test func everyGlobIsInsideItselfAndInsideItsPrefixStar() async {
        await propertyCheck(count: 400, input: Self.globs) { text in
            guard let glob = GlobPattern(text) else { return }
            #expect(glob.isContained(in: glob), "'\(text)' is not inside itself")
            #expect(glob.isContained(in: GlobPattern("*")!))
        }
    }

    @Test(arguments: [
        ("user:acme:*", "user:acme:*", true),
        ("user:acme:42", "user:acme:*", true),
        ("user:acme:4?", "user:acme:*", true),
        ("user:acme:[0-9]*", "user:acme:*", true),
        ("api:v1:acme:users:*", "api:*:acme:users:*", true),
        ("user:acme*", "user:acme:*", false),
        ("user:*", "user:acme:*", false),
        ("user:globex:*", "user:acme:*", false),
        ("*", "user:acme:*", false),
        ("user:acme:[^x]", "user:acme:?", true),
        ("user:acme:?", "user:acme:[^x]", false),
        ("user:acme:\\*", "user:acme:*", true),
        ("user:acme:*", "user:acme:\\*", false),
    ])
    func knownContainments(narrow: String, wide: String, contained: Bool) throws {
        let inner = try #require(GlobPattern(narrow))
        let outer = try #require(GlobPattern(wide))
        #expect(inner.isContained(in: outer) == contained)
    }

    @Test func ambiguousGlobsDoNotParse() {
        #expect(GlobPattern("user:[abc") == nil)
        #expect(GlobPattern("user:\\") == nil)
    }
}

@Suite struct DirectMessageTests {
    static let policy = DirectInvalidationPolicy(
        allow: try! ["user:{tenant}:*", "api:*:{tenant}:users:*", "tag:{tenant}:*", "static:home"].map(AllowEntry.init(compiling:)))
    static let decoder = EventDecoder(
        format: .direct,
        fields: FieldMapping(locations: ["patterns": .init(paths: [["pattern"]]), "tenant": .init(paths: [["ctx", "tenantId"]])]),
        direct: policy)
    let planner = Planner(rules: RuleSet([]), pools: [PoolTarget(name: "main"), PoolTarget(name: "edge", tagPrefix: "edge:")])

    func plan(_ json: String, decoder: EventDecoder = DirectMessageTests.decoder) throws -> Plan {
        planner.plan(try decoder.decodeMessage(Array(json.utf8)))
    }

    func operations(_ plan: Plan, pool: String = "main") -> [CacheOperation] {
        plan.pools.first { $0.pool == pool }?.operations.map(\.operation) ?? []
    }

    @Test func readsThePublishersShapeAndPlansItsPattern() throws {
        let plan = try plan(#"{"pattern": "user:acme:*", "ctx": {"tenantId": "acme"}, "keys": ["static:home"]}"#)
        #expect(plan.rejection == nil)
        #expect(operations(plan) == [.delete(key: "static:home"), .deletePattern(pattern: "user:acme:*")])
        #expect(plan.pools.map(\.pool) == ["main", "edge"])
        #expect(plan.pools[0].operations.allSatisfy { $0.rule == "direct" })
    }

    @Test(arguments: [
        #"{"pattern": "user:globex:*", "ctx": {"tenantId": "acme"}}"#,
        #"{"pattern": "*", "ctx": {"tenantId": "acme"}}"#,
        #"{"pattern": "user:*", "ctx": {"tenantId": "acme"}}"#,
        #"{"pattern": "user:*:*", "ctx": {"tenantId": "*"}}"#,
        #"{"pattern": "user:acme:*"}"#,
        #"{"pattern": "?ser:acme:*", "ctx": {"tenantId": "acme"}}"#,
        #"{"pattern": "user:acme:[x", "ctx": {"tenantId": "acme"}}"#,
        #"{"keys": "user:globex:1", "ctx": {"tenantId": "acme"}}"#,
        #"{"keys": ["user:acme:1", "orders:acme:1"], "ctx": {"tenantId": "acme"}}"#,
        #"{"tags": "users", "ctx": {"tenantId": "acme"}}"#,
    ])
    func refusesWhatTheAllowListDoesNotCover(message: String) throws {
        let plan = try plan(message)
        #expect(plan.rejection?.reason == .notAllowed)
        #expect(plan.pools.isEmpty)
        #expect(plan.rejection?.detail.contains("not allowed") == true)
    }

    @Test func namesTheRequestAndTheEntriesItFailed() throws {
        let plan = try plan(#"{"pattern": "user:globex:*", "ctx": {"tenantId": "acme"}}"#)
        let detail = try #require(plan.rejection?.detail)
        #expect(detail.contains("pattern 'user:globex:*'"))
        #expect(detail.contains("'user:{tenant}:*' (as 'user:acme:*')"))
        let untenanted = try self.plan(#"{"pattern": "user:acme:*"}"#)
        #expect(untenanted.rejection?.detail.contains("for tenant (none)") == true)
        let tenantOnly = EventDecoder(format: .direct, direct: DirectInvalidationPolicy(allow: [try AllowEntry(compiling: "user:{tenant}:*")]))
        let noEntry = try self.plan(#"{"patterns": "user:acme:*"}"#, decoder: tenantOnly)
        #expect(noEntry.rejection?.detail.contains("no entry") == true)
    }

    @Test func aTenantOfWildcardsIsLiteral() throws {
        let plan = try plan(#"{"pattern": "user:\\*:*", "ctx": {"tenantId": "*"}}"#)
        #expect(plan.rejection == nil)
        #expect(operations(plan) == [.deletePattern(pattern: "user:\\*:*")])
    }

    @Test func tagsAreCheckedAsEachPoolsSetKey() throws {
        let onlyMain = EventDecoder(format: .direct, direct: DirectInvalidationPolicy(allow: Self.policy.allow, pools: ["main"]))
        let plan = try plan(#"{"tags": ["acme:users"], "tenant": "acme"}"#, decoder: onlyMain)
        #expect(plan.rejection == nil)
        #expect(plan.pools.map(\.pool) == ["main"])
        #expect(operations(plan) == [.purgeTag(setKey: "tag:acme:users")])
        // The edge pool's prefix makes the set key edge:acme:users, which no entry allows.
        let everywhere = EventDecoder(format: .direct, direct: Self.policy)
        #expect(try self.plan(#"{"tags": ["acme:users"], "tenant": "acme"}"#, decoder: everywhere).rejection?.reason == .notAllowed)
    }

    @Test(arguments: [
        (#"{"tenant": "acme"}"#, "needs keys, patterns or tags"),
        (#"{"keys": 42}"#, "must be a string or a list of strings"),
        (#"{"keys": [""]}"#, "non-empty strings"),
        (#"{"keys": ["a\u0000b"]}"#, "control character"),
        (#"{"keys": "user:acme:1", "tenant": ["acme"]}"#, "must be a string or a number"),
        (#"[1]"#, "must be a JSON object"),
    ])
    func refusesMalformedMessages(message: String, expected: String) {
        let decoder = EventDecoder(format: .direct, direct: Self.policy)
        let error = #expect(throws: EventDecodingError.self) { try decoder.decodeMessage(Array(message.utf8)) }
        #expect(error?.reason == .schemaViolation)
        #expect(error?.message.contains(expected) == true, "\(error?.message ?? "")")
    }

    @Test func refusesOverlongRequests() {
        let key = String(repeating: "k", count: Planner.maximumKeyBytes + 1)
        let decoder = EventDecoder(format: .direct, direct: Self.policy)
        #expect(throws: EventDecodingError.self) { try decoder.decodeMessage(Array(#"{"keys": "\#(key)"}"#.utf8)) }
    }
}

@Suite struct FieldMappingTests {
    static func path(_ text: String) -> FieldMapping.Location {
        FieldMapping.Location(paths: [text.split(separator: ".").map(String.init)])
    }

    @Test func nativeFieldsComeFromTheirMappedPaths() throws {
        let decoder = EventDecoder(format: .native, fields: FieldMapping(
            locations: ["tenant": Self.path("tenantId"), "id": Self.path("payload.after.user_id"), "op": Self.path("action"), "entity": Self.path("type")],
            opValues: ["created": .create]))
        let event = try decoder.decode(Array(#"""
            {"type": "user", "action": "created", "tenant": "ignored", "tenantId": "acme", "payload": {"after": {"user_id": 42}}}
            """#.utf8))
        #expect(event.entity == "user")
        #expect(event.op == .create)
        #expect(event.tenant == "acme")
        #expect(event.ids == ["42"])
    }

    @Test func aMappedValueObeysTheSameChecks() {
        let decoder = EventDecoder(format: .native, fields: FieldMapping(locations: ["id": Self.path("row.id")]))
        let error = #expect(throws: EventDecodingError.self) {
            try decoder.decode(Array(#"{"entity": "user", "op": "update", "row": {"id": {"nested": 1}}}"#.utf8))
        }
        #expect(error?.reason == .schemaViolation)
        #expect(throws: EventDecodingError.self) {
            try decoder.decode(Array(#"{"entity": "user", "op": "update", "id": "7"}"#.utf8))
        }
    }

    @Test func debeziumCompositeKeyAndTenantColumn() throws {
        let decoder = EventDecoder(format: .debezium, fields: FieldMapping(locations: [
            "id": FieldMapping.Location(paths: [["org_id"], ["user_id"]]), "tenant": Self.path("tenant_id"),
        ]))
        let event = try decoder.decode(Array(#"""
            {"payload": {"op": "d", "source": {"table": "members"}, "before": {"org_id": 7, "user_id": "u1", "tenant_id": "acme"}, "after": null}}
            """#.utf8))
        #expect(event.ids == ["7:u1"])
        #expect(event.tenant == "acme")
        let missing = #expect(throws: EventDecodingError.self) {
            try decoder.decode(Array(#"{"payload": {"op": "c", "source": {"table": "members"}, "after": {"org_id": 7}}}"#.utf8))
        }
        #expect(missing?.message.contains("org_id, user_id") == true)
    }

    @Test func cloudEventsMapTheirData() throws {
        let decoder = EventDecoder(format: .cloudevents, fields: FieldMapping(locations: ["tenant": Self.path("ctx.tenantId"), "id": Self.path("userId")]))
        let event = try decoder.decode(Array(#"""
            {"specversion": "1.0", "id": "e1", "source": "s", "type": "t", "data": {"entity": "user", "op": "update", "userId": "9", "ctx": {"tenantId": "acme"}}}
            """#.utf8))
        #expect(event.ids == ["9"])
        #expect(event.tenant == "acme")
        #expect(event.eventID == "e1")
    }
}

@Suite struct SourceReadingLoaderTests {
    func load(_ sources: String) throws(ValidationError) -> Configuration {
        try ConfigurationLoader.load(
            yaml: "pools:\n  main:\n    nodes: [\"127.0.0.1:6379\"]\n  edge:\n    nodes: [\"127.0.0.1:6380\"]\nrules: r.yaml\nsources:\n" + sources,
            file: "invalidator.yaml", environment: [:]) { path throws(FileReadError) in throw FileReadError(path: path, reason: "none") }
    }

    func diagnostics(_ sources: String) -> [String] {
        do {
            _ = try load(sources)
            return []
        } catch {
            return error.diagnostics.map(\.description)
        }
    }

    @Test func loadsADirectSourceAndAMappedOne() throws {
        let configuration = try load("""
              redis_pubsub:
                pool: main
                channels: ["cache:invalidate"]
                format: direct
                fields: { patterns: pattern, tenant: tenantId }
                allow: ["user:{tenant}:*", "api:*:{tenant}:users:*"]
                pools: [main]
              kafka:
                brokers: "k:9092"
                topics: [t]
                format: debezium
                fields: { id: [org_id, user_id], tenant: tenant_id }
            """)
        let pubsub = try #require(configuration.sources.redisPubSub)
        #expect(pubsub.reading.direct?.allow.map(\.source) == ["user:{tenant}:*", "api:*:{tenant}:users:*"])
        #expect(pubsub.reading.direct?.pools == ["main"])
        #expect(pubsub.reading.fields.locations["patterns"]?.paths == [["pattern"]])
        #expect(configuration.sources.kafka?.reading.fields.locations["id"]?.paths == [["org_id"], ["user_id"]])
    }

    @Test(arguments: [
        ("    format: direct\n", "invalidator.yaml:9:5: sources.redis_pubsub has format: direct and needs allow"),
        ("    format: direct\n    allow: [\"user:{id}:*\"]\n", "invalidator.yaml:12:13: sources.redis_pubsub.allow: allow entry 'user:{id}:*' uses {id}; only {tenant} may appear"),
        ("    format: direct\n    allow: [\"*\"]\n", "invalidator.yaml:12:13: sources.redis_pubsub.allow: allow entry '*' starts with a wildcard"),
        ("    format: direct\n    allow: [\"{tenant}*\"]\n", "starts with a wildcard"),
        ("    format: direct\n    allow: [\"user:{tenant}*\"]\n", "has a wildcard right after {tenant}"),
        ("    format: direct\n    allow: [\"user:[ab\"]\n", "is not a glob Redis reads one way"),
        ("    format: direct\n    allow: [\"user:*\"]\n    pools: [nowhere]\n", "invalidator.yaml:13:13: sources.redis_pubsub.pools: 'nowhere' is not a pool defined under pools"),
        ("    allow: [\"user:*\"]\n", "allow and pools are for format: direct"),
        ("    fields: { tenant: tenantId }\n", "needs an explicit format"),
        ("    format: native\n    fields: { tenant: [a, b] }\n", "only id may list several"),
        ("    format: native\n    fields: { colour: c }\n", "unknown key 'colour' in sources.redis_pubsub.fields"),
        ("    format: native\n    fields: { id: \"payload..id\" }\n", "is not a field name or dotted path"),
        ("    format: native\n    op_values: { created: made }\n", "invalidator.yaml:12:27: sources.redis_pubsub.op_values.created 'made' is not one of create, update, delete, read"),
        ("    format: debezium\n    op_values: { c: create }\n", "format debezium has none to map"),
    ])
    func reportsWhereASourceReadingIsWrong(extra: String, expected: String) {
        let messages = diagnostics("  redis_pubsub:\n    pool: main\n    channels: [c]\n" + extra)
        #expect(messages.contains { $0.contains(expected) }, "\(messages)")
    }
}

@Suite struct DirectMessageCostTests {
    /// The largest message a source takes, all of it checked against a list: the
    /// check must stay a small cost beside the deletes it guards.
    @Test func theLargestMessageIsCheckedQuickly() throws {
        let allow = try ["user:{tenant}:*", "api:*:{tenant}:users:*", "a:*:*:*:{tenant}:*", "b:[a-z]?:{tenant}:*", "tag:{tenant}:*"]
            .map(AllowEntry.init(compiling:))
        // Under the entry with the most wildcards, each different, so none is checked once for many.
        let keys = (0..<DirectInvalidation.maximumRequests).map { index in
            let text = "a:\(index):x:y:acme:"
            return text + String(repeating: "x", count: Planner.maximumKeyBytes - text.utf8.count - 1) + "*"
        }
        let key = keys[0]
        let message = DirectInvalidation(requests: keys.map { .pattern($0) }, tenant: "acme", policy: DirectInvalidationPolicy(allow: allow))
        let planner = Planner(rules: RuleSet([]), pools: [PoolTarget(name: "main")])
        let clock = ContinuousClock()
        var plan: Plan?
        let elapsed = clock.measure { plan = planner.plan(message) }
        #expect(plan?.rejection == nil)
        print("FIGURE direct-allow-check: \(keys.count) patterns of \(key.utf8.count) bytes against \(allow.count) entries planned in \(elapsed)")
    }
}
