import InvalidatorCore
import Testing

/// `notify` and `webhook` actions: loading, rendering as JSON, merging with a target, secrets.
@Suite struct NotifyWebhookTests {
    static let configYAML = """
        sources: { redis_pubsub: { pool: primary, channels: [events] } }
        pools:
          primary: { nodes: ["127.0.0.1:6379"] }
          sessions: { mode: cluster, nodes: ["127.0.0.1:7000"] }
        webhooks:
          cdn:
            url: https://api.cdn.example/service/${CDN_SERVICE}/purge
            method: post
            headers: { Authorization: "Bearer ${CDN_TOKEN}", Accept: application/json }
            timeout: 2s
            body: { tags: [always], account: "${file:/run/account}", soft: true }
            batch: { field: tags, max: 30 }
            retry: { attempts: 3, initial_backoff: 100ms, max_backoff: 1s }
          app: { url: "http://app.internal:3000/revalidate" }
        rules: rules.yaml
        """

    static let environment = ["CDN_SERVICE": "svc-9", "CDN_TOKEN": "tok-secret"]
    static let secretFiles = ["/run/account": "acct-hidden\n"]

    static let rulesYAML = """
        rules:
          - name: product
            match: { entity: product }
            delete: ["product:{id}"]
            notify:
              channel: "cache:invalidate"
              message: { pattern: "product:{tenant}:{id}", tenantId: "{tenant}", n: 3, ok: true, none: null, quoted: "42" }
            webhook:
              - target: cdn
                body: { tags: ["product-{id}", "product-list"] }
          - name: product-again
            match: { entity: product }
            notify:
              - channel: "cache:invalidate"
                message: { pattern: "product:{tenant}:{id}", tenantId: "{tenant}", n: 3, ok: true, none: null, quoted: "42" }
              - channel: "shard:{tenant}"
                message: { ids: ["{id}"], region: "{attributes.region?}", list: ["{attributes.region?}", x] }
                pools: [sessions]
                sharded: true
        """

    let configuration: Configuration
    let planner: Planner

    init() throws {
        configuration = try load(Self.configYAML, environment: Self.environment, secretFiles: Self.secretFiles)
        let rules = try RulesLoader.load(
            yaml: Self.rulesYAML, file: "rules.yaml", knownPools: configuration.pools.map(\.name), webhooks: configuration.webhooks)
        planner = Planner(rules: rules, pools: configuration.poolTargets, webhooks: configuration.webhooks)
    }

    func plan(_ json: String) throws -> Plan {
        planner.plan(try EventDecoder().decode(Array(json.utf8)))
    }

    func messages(_ plan: Plan, pool: String) -> [PublishMessage] {
        plan.notifications.first { $0.pool == pool }?.operations.compactMap {
            if case .publish(let message) = $0.operation { message } else { nil }
        } ?? []
    }

    @Test func loadsWebhookTargetsWithSecretsRedacted() throws {
        let cdn = try #require(configuration.webhook(named: "cdn"))
        #expect(cdn.url == "https://api.cdn.example/service/svc-9/purge")
        #expect(cdn.redactedURL == "https://api.cdn.example/service/***/purge")
        #expect(cdn.method == "POST")
        #expect(cdn.headers == [.init(name: "Authorization", value: "Bearer tok-secret"), .init(name: "Accept", value: "application/json")])
        #expect(cdn.timeout == .seconds(2))
        #expect(cdn.body == .object(["tags": .array([.string("always")]), "account": .string("acct-hidden"), "soft": .bool(true)]))
        #expect(cdn.redactedBody == .object(["tags": .array([.string("always")]), "account": .string("***"), "soft": .bool(true)]))
        #expect(cdn.batch == WebhookTarget.Batch(field: "tags", max: 30))
        #expect(cdn.retry == RetryPolicy(attempts: 3, initialBackoff: .milliseconds(100), maxBackoff: .seconds(1)))
        let app = try #require(configuration.webhook(named: "app"))
        #expect(app.method == "POST" && app.timeout == WebhookTarget.defaultTimeout && app.headers.isEmpty)
        for shown in [cdn.description, cdn.debugDescription, String(reflecting: cdn), "\(Mirror(reflecting: cdn).children.map(\.value))"] {
            #expect(!shown.contains("tok-secret") && !shown.contains("svc-9") && !shown.contains("acct-hidden"))
        }
        var dumped = ""
        dump(configuration, to: &dumped)
        #expect(dumped.contains("api.cdn.example"))
        #expect(!dumped.contains("tok-secret") && !dumped.contains("svc-9") && !dumped.contains("acct-hidden"))
        #expect(!"\(configuration)".contains("tok-secret") && !String(reflecting: configuration).contains("tok-secret"))
    }

    @Test func explainShowsMessagesAndRequestsWithSecretsMasked() throws {
        let plan = try plan(#"{"entity":"product","id":"9","op":"update","tenant":"acme"}"#)
        let text = PlanDescription.text(plan, webhooks: planner.webhooks)
        let json = PlanDescription.json(plan, webhooks: planner.webhooks)
        for shown in [text, json.serialized()] {
            #expect(!shown.contains("tok-secret") && !shown.contains("svc-9") && !shown.contains("acct-hidden"))
        }
        #expect(text.contains("decision apply: 2 operations on 2 pools, then 3 notifications and 1 webhook request"))
        #expect(text.contains("after every Redis operation succeeded:"))
        #expect(text.contains(#"notify  shard:acme        SPUBLISH {"ids":["9"],"list":["x"]}"#))
        #expect(text.contains("""
            webhook cdn: POST https://api.cdn.example/service/***/purge
              Authorization: ***
              Accept: ***
              body {"tags":["always","product-9","product-list"],"account":"***","soft":true}
              rule product
            """))
        let webhook = json.objectValue?["webhooks"]?.arrayValue?.first
        #expect(webhook == .object([
            "target": .string("cdn"), "method": .string("POST"), "url": .string("https://api.cdn.example/service/***/purge"),
            "headers": .object(["Authorization": .string("***"), "Accept": .string("***")]),
            "body": .object([
                "tags": .array([.string("always"), .string("product-9"), .string("product-list")]),
                "account": .string("***"), "soft": .bool(true),
            ]),
            "rule": .string("product"),
        ]))
        #expect(json.objectValue?["notifications"]?.arrayValue?.count == 2)
    }

    @Test func warnsOfShardedNotifyOnAPoolThatIsNoCluster() throws {
        let rules = try RulesLoader.load(yaml: """
            rules:
              - name: r
                match: { entity: user }
                notify: { channel: c, message: "{id}", sharded: true }
            """, file: "rules.yaml")
        #expect(RuleWarnings.warnings(for: rules, pools: configuration.pools) == [
            "rule 'r': notify on 'c' is sharded, but pool 'primary' is single, not a cluster: SPUBLISH is sent as is, and apps must SSUBSCRIBE to receive it",
        ])
    }

    @Test func aURLSetByAnEnvironmentOverrideIsHiddenWhole() throws {
        let configuration = try load(
            Self.configYAML, environment: Self.environment.merging(["INVALIDATOR__WEBHOOKS__APP__URL": "https://app.example/k-123"]) { $1 },
            secretFiles: Self.secretFiles)
        #expect(configuration.webhook(named: "app")?.url == "https://app.example/k-123")
        #expect(configuration.webhook(named: "app")?.redactedURL == "***")
    }

    @Test func environmentOverridesSetHeadersByTheirDashedNames() throws {
        let environment = Self.environment.merging([
            "INVALIDATOR__WEBHOOKS__APP__HEADERS__X_API_KEY": "k-1",
            "INVALIDATOR__WEBHOOKS__CDN__HEADERS__AUTHORIZATION": "Bearer other",
        ]) { $1 }
        let configuration = try load(Self.configYAML, environment: environment, secretFiles: Self.secretFiles)
        #expect(configuration.webhook(named: "app")?.headers == [.init(name: "x-api-key", value: "k-1")])
        #expect(configuration.webhook(named: "cdn")?.headers.first == .init(name: "Authorization", value: "Bearer other"))
    }

    @Test func warnsOfUnverifiedTLSAndHeadersInClearText() throws {
        let configuration = try load("""
            sources: { redis_pubsub: { pool: p, channels: [e] } }
            pools: { p: { nodes: ["127.0.0.1:6379"] } }
            webhooks:
              a: { url: "https://a.example/", tls: { verify: false } }
              b: { url: "http://b.example/", headers: { X-Key: k } }
            rules: rules.yaml
            """)
        #expect(configuration.warnings.count == 2)
        #expect(configuration.warnings[0].contains("webhook 'a' has tls.verify: false"))
        #expect(configuration.warnings[1].contains("webhook 'b' sends headers over http://"))
    }

    @Test func refusesBadTargetsWithPositions() {
        let found = diagnostics("""
            sources: { redis_pubsub: { pool: p, channels: [e] } }
            pools: { p: { nodes: ["127.0.0.1:6379"] } }
            webhooks:
              a: { url: "ftp://a.example/" }
              b: { url: "https://b.example/", method: FETCH }
              c: { url: "https://c.example/", batch: { field: tags, max: 0 } }
              d: { url: "https://d.example/", body: { tags: x }, batch: { field: tags, max: 5 } }
              e: { url: "https://:80/" }
              f: { url: "https://f.example:99999/" }
              g: { url: "https://g.example/", headers: { "Bad Name": v } }
              h: { url: "http://h.example/", tls: { ca_file: ca.pem } }
              i: { url: "https://i.example/", timeout: 10ms }
              j: { url: "https://j.example/", body: { tags: ["p-{id}"] } }
            rules: rules.yaml
            """)
        #expect(found == [
            "invalidator.yaml:4:13: webhook 'a' url 'ftp://a.example/' must start with http:// or https://",
            "invalidator.yaml:5:43: webhook 'b' method 'FETCH' is not one of GET, POST, PUT, PATCH, DELETE, PURGE",
            "invalidator.yaml:6:62: webhook 'c' batch.max must be an integer in 1...10000, got '0'",
            "invalidator.yaml:7:70: webhook 'd' batch.field 'tags' is not a list in the body, so requests could not be merged on it",
            "invalidator.yaml:8:13: webhook 'e' url 'https://:80/' has no host",
            "invalidator.yaml:9:13: webhook 'f' url 'https://f.example:99999/' has a port that is not from 1 to 65535",
            "invalidator.yaml:10:46: webhook 'g' headers: 'Bad Name' is not a header name (letters, digits and !#$%&'*+-.^_`|~)",
            "invalidator.yaml:11:39: webhook 'h' has tls settings but its url is http://; write https:// for TLS",
            "invalidator.yaml:12:44: webhook 'i' timeout must be at least 100ms, got '10ms'",
            "invalidator.yaml:13:41: webhook 'j' body uses {id}, but a target's body is the same for every request; put event values in the rules' webhook bodies",
        ])
    }

    @Test func refusesBadActionsWithPositions() {
        let yaml = """
            rules:
              - name: r
                match: { entity: product }
                notify: { channel: "c:{id}", message: { id: "{idd}" } }
                webhook: [{ target: nowhere, body: { tags: ["{id}"] } }]
              - name: s
                match: { entity: product }
                webhook: { target: cdn, body: { tags: "p-{id}" } }
              - name: t
                match: { entity: product }
                notify: { message: { id: "{id}" } }
            """
        var found: [String] = []
        do {
            _ = try RulesLoader.load(yaml: yaml, file: "rules.yaml", knownPools: ["primary"], webhooks: configuration.webhooks)
        } catch {
            found = error.diagnostics.map(\.description)
        }
        #expect(found == [
            "rules.yaml:4:50: rule 'r' notify message.id: unknown placeholder {idd} in template '{idd}'; known: \(Placeholder.knownNames)",
            "rules.yaml:5:25: rule 'r' webhook target 'nowhere' is not defined under webhooks; known: cdn, app",
            "rules.yaml:8:35: rule 's' webhook body.tags must be a list: target 'cdn' batches requests by concatenating it",
            "rules.yaml:11:13: rule 't' notify needs a channel and a message",
        ])
    }

    @Test func refusesMessagesNestedTooDeeply() {
        let nested = String(repeating: "[", count: 40) + String(repeating: "]", count: 40)
        do {
            _ = try RulesLoader.load(yaml: """
                rules:
                  - name: deep
                    match: { entity: user }
                    notify: { channel: c, message: \(nested) }
                """, file: "rules.yaml")
            Issue.record("a message nested 40 deep loaded")
        } catch {
            #expect(error.diagnostics.map(\.message) == ["rule 'deep' notify message is nested deeper than 32 levels"])
        }
    }

    @Test func aRuleMayOnlyNotify() throws {
        let rules = try RulesLoader.load(yaml: """
            rules:
              - name: only-notify
                match: { entity: user }
                notify: { channel: users, message: "{id}" }
            """, file: "rules.yaml")
        let plan = Planner(rules: rules, pools: [PoolTarget(name: "p")])
            .plan(try EventDecoder().decode(Array(#"{"entity":"user","id":"7","op":"update"}"#.utf8)))
        #expect(plan.pools.isEmpty)
        #expect(plan.notifications == [PoolPlan(pool: "p", operations: [
            PlannedOperation(.publish(PublishMessage(channel: "users", message: #""7""#)), rule: "only-notify"),
        ])])
    }

    @Test func rendersMessagesAsJSONAndDeduplicates() throws {
        let plan = try plan(#"{"entity":"product","id":"9","op":"update","tenant":"acme"}"#)
        #expect(plan.rejection == nil)
        // The second rule's identical message is dropped; sessions gets only its own.
        #expect(messages(plan, pool: "primary") == [PublishMessage(
            channel: "cache:invalidate",
            message: #"{"pattern":"product:acme:9","tenantId":"acme","n":3,"ok":true,"none":null,"quoted":"42"}"#)])
        #expect(plan.notifications.first { $0.pool == "primary" }?.operations.map(\.rule) == ["product"])
        #expect(messages(plan, pool: "sessions") == [
            PublishMessage(channel: "cache:invalidate",
                           message: #"{"pattern":"product:acme:9","tenantId":"acme","n":3,"ok":true,"none":null,"quoted":"42"}"#),
            PublishMessage(channel: "shard:acme", message: #"{"ids":["9"],"list":["x"]}"#, sharded: true),
        ])
        #expect(plan.hasSecondLayerWork)
    }

    @Test func hostileIDsStayInsideTheirStrings() throws {
        let ids = [#"a"b"#, #"c\d"#, "{e}", "ünï 🚀", #"","x":"y"#]
        let event = JSONValue.object([
            "entity": .string("product"), "op": .string("update"), "tenant": .string(#"t"}"#),
            "ids": .array(ids.map(JSONValue.string)),
        ]).serialized()
        let plan = try plan(event)
        #expect(plan.rejection == nil)
        let sent = messages(plan, pool: "primary")
        #expect(sent.count == ids.count)
        for (message, id) in zip(sent, ids) {
            let parsed = try JSONParser.parse(bytes: Array(message.message.utf8))
            #expect(parsed.objectValue?["pattern"] == .string(#"product:t"}:"# + id))
            #expect(parsed.objectValue?.fields.count == 6)
        }
        // One body for every id: the list element repeats. The plan (and so a dead letter) holds the
        // rule's body alone; the target's, with its secret, joins only when the request is sent.
        let rulesBody = JSONValue.object(["tags": .array(ids.map { .string("product-" + $0) } + [.string("product-list")])])
        #expect(plan.webhooks == [WebhookItem(target: "cdn", body: rulesBody, rule: "product")])
        let target = try #require(configuration.webhook(named: "cdn"))
        #expect(target.merging(rulesBody) == .object([
            "tags": .array([.string("always")] + ids.map { .string("product-" + $0) } + [.string("product-list")]),
            "account": .string("acct-hidden"), "soft": .bool(true),
        ]), "the target's entry first")
    }

    @Test func refusesControlCharactersAndHugeMessages() throws {
        let control = try plan(#"{"entity":"product","id":"a\u0001b","op":"update","tenant":"acme"}"#)
        #expect(control.rejection?.reason == .invalidKey)
        #expect(control.notifications.isEmpty && control.webhooks.isEmpty)
        let rules = try RulesLoader.load(yaml: """
            rules:
              - name: big
                match: { entity: product }
                notify: { channel: c, message: { ids: ["{id}"] } }
            """, file: "rules.yaml")
        let ids = (0..<8000).map { "id-\($0)-padding" }
        let event = JSONValue.object(["entity": .string("product"), "op": .string("update"), "ids": .array(ids.map(JSONValue.string))])
        let huge = Planner(rules: rules, pools: [PoolTarget(name: "p")]).plan(try EventDecoder().decode(Array(event.serialized().utf8)))
        #expect(huge.rejection?.reason == .invalidKey)
        #expect(huge.rejection?.message.contains("65536-byte limit") == true)
    }

    @Test func rendersOncePerIDWhenIDIsOutsideALists() throws {
        let rules = try RulesLoader.load(yaml: """
            rules:
              - name: each
                match: { entity: product }
                notify: { channel: c, message: { id: "{id}", region: "{attributes.region?}" } }
                webhook: { target: app, body: { path: "/p/{id}" } }
            """, file: "rules.yaml", webhooks: configuration.webhooks)
        let planner = Planner(rules: rules, pools: [PoolTarget(name: "p")], webhooks: configuration.webhooks)
        let plan = planner.plan(try EventDecoder().decode(Array(#"{"entity":"product","ids":["1","2"],"op":"update"}"#.utf8)))
        #expect(messages(plan, pool: "p").map(\.message) == [#"{"id":"1"}"#, #"{"id":"2"}"#])
        #expect(plan.webhooks.map(\.body) == [.object(["path": .string("/p/1")]), .object(["path": .string("/p/2")])])
    }

    @Test func theSameRequestIsSentOnceWhicheverRulesAskForIt() throws {
        let rules = try RulesLoader.load(yaml: """
            rules:
              - name: first
                match: { entity: product }
                webhook: { target: app, body: { path: "/p/{id}" } }
              - name: second
                match: { entity: product }
                webhook: [{ target: app, body: { path: "/p/{id}" } }, { target: app, body: { path: "/list" } }]
            """, file: "rules.yaml", webhooks: configuration.webhooks)
        let planner = Planner(rules: rules, pools: [PoolTarget(name: "p")], webhooks: configuration.webhooks)
        let plan = planner.plan(try EventDecoder().decode(Array(#"{"entity":"product","ids":["1","1","2"],"op":"update"}"#.utf8)))
        #expect(plan.webhooks == [
            WebhookItem(target: "app", body: .object(["path": .string("/p/1")]), rule: "first"),
            WebhookItem(target: "app", body: .object(["path": .string("/p/2")]), rule: "first"),
            WebhookItem(target: "app", body: .object(["path": .string("/list")]), rule: "second"),
        ])
    }

    @Test func directMessagesNotifyNobody() throws {
        let configuration = try load("""
            sources: { redis_pubsub: { pool: p, channels: [e], format: direct, allow: ["user:*"] } }
            pools: { p: { nodes: ["127.0.0.1:6379"] } }
            rules:
              - name: r
                match: { entity: user }
                notify: { channel: c, message: "{id}" }
            """)
        guard case .inline(let rules) = configuration.rules, let decoder = configuration.sources.redisPubSub?.decoder else {
            Issue.record("expected inline rules and a source")
            return
        }
        let plan = Planner(rules: rules, pools: configuration.poolTargets)
            .plan(try decoder.decodeMessage(Array(#"{"keys":["user:1"]}"#.utf8)))
        #expect(plan.rejection == nil && !plan.pools.isEmpty)
        #expect(!plan.hasSecondLayerWork)
    }
}
