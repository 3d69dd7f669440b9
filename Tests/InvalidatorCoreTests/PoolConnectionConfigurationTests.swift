import InvalidatorCore
import Testing

/// Node URLs, per-pool TLS, the idle worker's timing keys, and the rule that a
/// node URL's password never shows in a message or a description.
@Suite struct PoolConnectionConfigurationTests {
    static let secret = "TopSecret-1"

    /// A config whose line 3 is the pool's nodes, written as `nodes: <nodes>`, and
    /// whose pool takes more keys from `pool` (each on its own line after the nodes).
    static func config(nodes: String, mode: String = "replicated", pool: String = "", more: String = "") -> String {
        """
        pools:
          main:
            nodes: \(nodes)
            mode: \(mode)
        \(pool.split(separator: "\n").map { "    \($0)" }.joined(separator: "\n"))
        rules: r.yaml
        sources: { redis_pubsub: { pool: main, channels: [c] } }
        \(more)
        """
    }

    func pool(
        nodes: String, mode: String = "replicated", pool: String = "", environment: [String: String] = [:],
        secretFiles: [String: String] = [:]
    ) throws -> PoolConfiguration {
        let configuration = try load(Self.config(nodes: nodes, mode: mode, pool: pool), environment: environment, secretFiles: secretFiles)
        return try #require(configuration.pool(named: "main"))
    }

    // MARK: URL forms

    @Test func aURLWithUserPasswordPortAndDatabase() throws {
        let pool = try pool(nodes: #"["redis://app:pa%40ss%2Fw@cache-0:6380/2"]"#)
        #expect(pool.nodes == [HostPort(host: "cache-0", port: 6380)])
        #expect(pool.username == "app")
        #expect(pool.password == "pa@ss/w")
        #expect(pool.database == 2)
        #expect(pool.tls == nil)
    }

    @Test func aURLWithAPasswordOnlyAndTheDefaultPort() throws {
        let pool = try pool(nodes: #"["redis://:pw@cache-0"]"#)
        #expect(pool.nodes == [HostPort(host: "cache-0", port: 6379)])
        #expect(pool.username == nil)
        #expect(pool.password == "pw")
        #expect(pool.database == 0)
    }

    @Test func aURLWithAUserOnlyAndAnEmptyPath() throws {
        let pool = try pool(nodes: #"["REDIS://reader@cache-0:7000/"]"#)
        #expect(pool.nodes == [HostPort(host: "cache-0", port: 7000)])
        #expect(pool.username == "reader")
        #expect(pool.password == nil)
    }

    @Test func aPasswordWrittenWithoutPercentEncodingUpToTheLastAt() throws {
        let pool = try pool(nodes: #"["redis://u:p@ss/w?rd@cache-0:6379/1"]"#)
        #expect(pool.password == "p@ss/w?rd")
        #expect(pool.nodes == [HostPort(host: "cache-0", port: 6379)])
        #expect(pool.database == 1)
    }

    @Test func percentEncodedUTF8InTheUserInfo() throws {
        let pool = try pool(nodes: #"["redis://app%2Fuser:%F0%9F%94%91@cache-0"]"#)
        #expect(pool.username == "app/user")
        #expect(pool.password == "🔑")
    }

    @Test func ipv6URLsInBrackets() throws {
        let pool = try pool(nodes: #"["redis://[::1]:7000/3", "redis://[fe80::1]"]"#)
        #expect(pool.nodes == [HostPort(host: "::1", port: 7000), HostPort(host: "fe80::1", port: 6379)])
        #expect(pool.database == 3)
    }

    @Test func aURLFromAnEnvironmentVariable() throws {
        let pool = try pool(nodes: #"["${REDIS_URL}"]"#, environment: ["REDIS_URL": "rediss://svc:s3cret@cache.internal:6380/4"])
        #expect(pool.nodes == [HostPort(host: "cache.internal", port: 6380)])
        #expect(pool.username == "svc")
        #expect(pool.password == "s3cret")
        #expect(pool.database == 4)
        #expect(pool.tls == TLSConfiguration())
    }

    @Test func urlsAndHostPortMixAndAgreeingCredentialsRepeat() throws {
        let pool = try pool(nodes: #"["redis://:pw@cache-0:6379/1", "redis://:pw@cache-1:6379/1", "cache-2:6379"]"#)
        #expect(pool.nodes.map(\.description) == ["cache-0:6379", "cache-1:6379", "cache-2:6379"])
        #expect(pool.password == "pw")
        #expect(pool.database == 1)
    }

    @Test func aURLAndHostPortNamingOneNodeAreListedTwice() {
        #expect(diagnostics(Self.config(nodes: #"["redis://:pw@[::1]", "::1:6379"]"#)) == [
            "invalidator.yaml:3:34: pool 'main' lists node '::1:6379' twice",
        ])
    }

    // MARK: Rejections

    @Test(arguments: [
        ("http://cache-0:6379", "has the scheme 'http'; use redis:// or rediss:// (TLS), or host:port"),
        ("redis://", "has no host"),
        ("redis://:\(secret)@:6379", "has no host"),
        ("redis://cache-0:0", "has the port '0'; a port is a number from 1 to 65535"),
        ("redis://cache-0:65536", "has the port '65536'; a port is a number from 1 to 65535"),
        ("redis://cache-0:", "has the port ''; a port is a number from 1 to 65535"),
        ("redis://cache-0:+80", "has the port '+80'; a port is a number from 1 to 65535"),
        ("redis://cache-0/db1", "has the path '/db1', which is not a database number from 0 to 65535"),
        ("redis://cache-0/65536", "has the path '/65536', which is not a database number from 0 to 65535"),
        ("redis://cache-0/-1", "has the path '/-1', which is not a database number from 0 to 65535"),
        ("redis://cache-0/1/2", "has the path '/1/2', which is not a database number from 0 to 65535"),
        ("redis://cache-0:6379?ssl=true", "has a query string, which is not supported; set TLS and timeouts as keys of the pool"),
        ("redis://cache-0#x", "has a fragment (#), which a Redis URL cannot have"),
        ("redis://cache 0", "has the host 'cache 0', with a character a host name cannot have"),
        ("redis://ca*he:6379", "has the host 'ca*he', with a character a host name cannot have"),
        ("redis://::1:6379", "has an IPv6 host outside brackets; write it as [::1]:6379"),
        ("redis://[::1", "has an IPv6 host without its closing ]"),
        ("redis://[::1]x", "has 'x' after its IPv6 host"),
        ("redis://u:p%zz@cache-0", "has a password with a bad percent-escape (write % as %25)"),
        ("redis://u%4@cache-0", "has a user name with a bad percent-escape (write % as %25)"),
        ("user@cache-0:6379", "has a user or password but is not a redis:// or rediss:// URL"),
        ("redis:/:\(secret)@cache-0:6379", "has a user or password but is not a redis:// or rediss:// URL"),
        ("cache%0:6379", "has the host 'cache%0', with a character a host name cannot have"),
        ("cache-0", "must be host:port with a port from 1 to 65535 (IPv6 in brackets, such as [::1]:6379) or a redis:// or rediss:// URL"),
    ])
    func aBadNodeIsReportedAtItsPosition(_ text: String, _ reason: String) {
        let messages = diagnostics(Self.config(nodes: "[\"\(text)\"]"))
        #expect(messages == ["invalidator.yaml:3:13: pool 'main' node '\(text.redactedNodeAddress)' \(reason)"])
        #expect(!messages.joined().contains(Self.secret))
    }

    // MARK: Conflicts

    @Test func nodesThatDisagreeAreReportedAtTheLaterNode() {
        let messages = diagnostics(Self.config(nodes: """
            ["redis://alice:\(Self.secret)@cache-0/1", "rediss://bob:other@cache-1/2"]
            """))
        let second = "rediss://bob:***@cache-1/2"
        let first = "redis://alice:***@cache-0/1"
        #expect(messages == [
            "invalidator.yaml:3:52: pool 'main' node '\(second)' is rediss:// but node '\(first)' is redis://; a pool's nodes all use TLS or none does",
            "invalidator.yaml:3:52: pool 'main' node '\(second)' has the user 'bob' but node '\(first)' has 'alice'; a pool has one user",
            "invalidator.yaml:3:52: pool 'main' node '\(second)' has another password than node '\(first)'; a pool has one password",
            "invalidator.yaml:3:52: pool 'main' node '\(second)' selects database 2 but node '\(first)' database 1; a pool has one database",
        ])
    }

    @Test func aPoolKeyAndANodeURLSettingTheSameThingAreAConflict() {
        let messages = diagnostics(Self.config(
            nodes: "[\"redis://app:\(Self.secret)@cache-0/1\"]",
            pool: "username: app\npassword: \(Self.secret)\ndatabase: 1"))
        let node = "redis://app:***@cache-0/1"
        #expect(messages == [
            "invalidator.yaml:5:15: pool 'main' sets username and its node '\(node)' has a user too; set it in one place",
            "invalidator.yaml:6:15: pool 'main' sets password and its node '\(node)' has a password too; set it in one place",
            "invalidator.yaml:7:15: pool 'main' sets database and its node '\(node)' selects one too; set it in one place",
        ])
    }

    @Test func aClusterURLSelectingADatabaseIsRefused() throws {
        #expect(diagnostics(Self.config(nodes: #"["redis://cache-0:7000/2", "redis://cache-1:7000/2"]"#, mode: "cluster")) == [
            "invalidator.yaml:3:13: pool 'main' is a cluster, but node 'redis://cache-0:7000/2' selects database 2; Redis Cluster has only database 0",
        ])
        #expect(try pool(nodes: #"["redis://cache-0:7000/0"]"#, mode: "cluster").database == 0)
    }

    // MARK: TLS

    @Test func aTLSSectionWithEveryKey() throws {
        let pool = try pool(
            nodes: #"["cache-0:6380"]"#,
            pool: """
                tls:
                  enabled: true
                  ca_file: ${file:/run/secrets/ca-path}
                  cert_file: ${TLS_DIR}/client.crt
                  key_file: ${TLS_DIR}/client.key
                  server_name: cache.internal
                  verify: true
                """,
            environment: ["TLS_DIR": "/etc/redis-tls"], secretFiles: ["/run/secrets/ca-path": "/etc/ca.pem\n"])
        var expected = TLSConfiguration()
        expected.caFile = "/etc/ca.pem"
        expected.certFile = "/etc/redis-tls/client.crt"
        expected.keyFile = "/etc/redis-tls/client.key"
        expected.serverName = "cache.internal"
        #expect(pool.tls == expected)
    }

    @Test func tlsIsOffByDefaultAndOnForRedissNodes() throws {
        #expect(try pool(nodes: #"["cache-0:6379"]"#).tls == nil)
        #expect(try pool(nodes: #"["redis://cache-0"]"#).tls == nil)
        var expected = TLSConfiguration()
        expected.caFile = "ca.pem"
        #expect(try pool(nodes: #"["rediss://cache-0", "cache-1:6380"]"#, pool: "tls: { ca_file: ca.pem }").tls == expected)
        // Turned off on purpose (say by an override): its settings stay unused.
        #expect(try pool(nodes: #"["cache-0:6379"]"#, pool: "tls: { enabled: false, ca_file: ca.pem }").tls == nil)
    }

    @Test func tlsVerifyFalseLoadsWithAWarning() throws {
        let configuration = try load(Self.config(nodes: #"["rediss://cache-0"]"#, pool: "tls: { verify: false }"))
        #expect(configuration.pool(named: "main")?.tls?.verify == false)
        #expect(configuration.warnings == [
            "pool 'main' has tls.verify: false: the servers' certificates are not checked, so anyone on the network path can pose as its nodes",
        ])
        #expect(try load(Self.config(nodes: #"["rediss://cache-0"]"#)).warnings.isEmpty)
    }

    @Test(arguments: [
        (#"["cache-0:6379"]"#, "tls: { enabled: true, cert_file: c.crt }",
         "invalidator.yaml:5:38: pool 'main' tls needs cert_file and key_file together (a client certificate and its key)"),
        (#"["cache-0:6379"]"#, "tls: { enabled: true, key_file: c.key }",
         "invalidator.yaml:5:37: pool 'main' tls needs cert_file and key_file together (a client certificate and its key)"),
        (#"["rediss://cache-0"]"#, "tls: { enabled: false }",
         "invalidator.yaml:5:21: pool 'main' tls.enabled is false but node 'rediss://cache-0' is rediss://, which is TLS"),
        (#"["redis://cache-0"]"#, "tls: { enabled: true }",
         "invalidator.yaml:5:21: pool 'main' tls.enabled is true but node 'redis://cache-0' is redis://; write rediss:// for TLS"),
        (#"["cache-0:6379"]"#, "tls: { ca_file: ca.pem }",
         "invalidator.yaml:5:10: pool 'main' tls sets ca_file but TLS is off; add tls.enabled: true or use rediss:// nodes"),
        (#"["cache-0:6379"]"#, "tls: { enabled: true, verify: no }",
         "invalidator.yaml:5:35: pool 'main' tls.verify must be true or false, got 'no'"),
        (#"["cache-0:6379"]"#, "tls: { enabled: true, ca_file: \"\" }",
         "invalidator.yaml:5:36: pool 'main' tls.ca_file is empty"),
        (#"["cache-0:6379"]"#, "tls: { enabled: true, sni: x }",
         "invalidator.yaml:5:27: unknown key 'sni' in pool 'main' tls; expected one of ca_file, cert_file, enabled, key_file, server_name, verify"),
    ])
    func aBadTLSSectionIsReported(_ nodes: String, _ tls: String, _ expected: String) {
        #expect(diagnostics(Self.config(nodes: nodes, pool: tls)) == [expected])
    }

    // MARK: The idle worker's timing

    @Test func timingKeysDefaultToThirtySeconds() throws {
        let configuration = try load(Self.config(
            nodes: #"["cache-0:6379"]"#, more: "http: { listen: \"127.0.0.1:9090\" }"))
        #expect(configuration.sources.redisPubSub?.keepalive == .seconds(30))
        #expect(configuration.http.healthCheckInterval == .seconds(30))
        #expect(RedisStreamSourceConfiguration(pool: "main", streams: ["s"]).block == .seconds(30))
    }

    static func timingConfig(keepalive: String = "30s", block: String = "30s", healthCheck: String = "30s") -> String {
        """
        pools: { main: { nodes: ["cache-0:6379"] } }
        rules: r.yaml
        sources:
          redis_pubsub: { pool: main, channels: [c], keepalive: \(keepalive) }
          redis_stream: { pool: main, streams: [s], block: \(block) }
        http: { health_check_interval: \(healthCheck) }
        """
    }

    @Test func timingKeysTakeTheirValues() throws {
        let configuration = try load(Self.timingConfig(keepalive: "1h", block: "100ms", healthCheck: "1s"))
        #expect(configuration.sources.redisPubSub?.keepalive == .seconds(3600))
        #expect(configuration.sources.redisStream?.block == .milliseconds(100))
        #expect(configuration.http.healthCheckInterval == .seconds(1))
    }

    @Test(arguments: [
        (timingConfig(keepalive: "0s"), "4:57: sources.redis_pubsub.keepalive must be a positive duration such as 500ms, 5s, 2m or 1h, got '0s'"),
        (timingConfig(keepalive: "50ms"), "4:57: sources.redis_pubsub.keepalive must be at least 100ms, got '50ms'"),
        (timingConfig(keepalive: "2h"), "4:57: sources.redis_pubsub.keepalive must be at most 1h, got '2h'"),
        (timingConfig(block: "0ms"), "5:52: sources.redis_stream.block must be a positive duration such as 500ms, 5s, 2m or 1h, got '0ms'"),
        (timingConfig(block: "10ms"), "5:52: sources.redis_stream.block must be at least 100ms, got '10ms'"),
        (timingConfig(block: "31s"), "5:52: sources.redis_stream.block must be at most 30s, got '31s'"),
        (timingConfig(healthCheck: "0s"), "6:32: http.health_check_interval must be a positive duration such as 500ms, 5s, 2m or 1h, got '0s'"),
        (timingConfig(healthCheck: "100ms"), "6:32: http.health_check_interval must be at least 1s, got '100ms'"),
        (timingConfig(healthCheck: "6m"), "6:32: http.health_check_interval must be at most 5m, got '6m'"),
    ])
    func absurdTimingIsRefused(_ yaml: String, _ expected: String) {
        #expect(diagnostics(yaml) == ["invalidator.yaml:\(expected)"])
    }

    // MARK: The password stays secret

    /// Configs that each quote a node URL holding the password in some diagnostic.
    static let badConfigsQuotingTheURL: [String] = [
        config(nodes: "[\"redis://admin:\(secret)@cache-0:0\"]"),
        config(nodes: "[\"redis://admin:\(secret)@cache-0/x\"]"),
        config(nodes: "[\"redis://admin:\(secret)@cache-0?tls=1\"]"),
        config(nodes: "[\"redis://admin:\(secret)@cache 0\"]"),
        config(nodes: "[\"redis://admin:\(secret)@cache-0\", \"redis://admin:\(secret)@cache-0\"]"),
        config(nodes: "[\"redis://admin:\(secret)@cache-0\", \"redis://other:x@cache-1\"]"),
        config(nodes: "[\"redis://admin:\(secret)@cache-0\"]", pool: "password: x"),
        config(nodes: "[\"redis://admin:\(secret)@cache-0\"]", pool: "tls: { enabled: true }"),
        config(nodes: "[\"redis://admin:\(secret)@cache-0/3\"]", mode: "cluster"),
        config(nodes: "[\"redis://admin:\(secret)@${CACHE_HOST\"]"),
        config(nodes: "[\"ftp://admin:\(secret)@cache-0\"]"),
    ]

    @Test(arguments: badConfigsQuotingTheURL)
    func aURLPasswordNeverAppearsInADiagnostic(_ yaml: String) {
        let messages = diagnostics(yaml)
        #expect(!messages.isEmpty)
        #expect(messages.allSatisfy { !$0.contains(Self.secret) && $0.contains("admin:***@") }, "\(messages)")
    }

    @Test func aURLPasswordNeverAppearsInADescription() throws {
        let configuration = try load(Self.config(nodes: "[\"rediss://admin:\(Self.secret)@cache-0\"]"))
        let pool = try #require(configuration.pool(named: "main"))
        #expect(pool.password == Self.secret)
        var dumped = ""
        dump(configuration, to: &dumped)
        let descriptions = [
            "\(configuration)", String(reflecting: configuration), "\(pool)", String(reflecting: pool), "\(configuration.pools)",
            dumped,
        ]
        for description in descriptions {
            #expect(!description.contains(Self.secret), "\(description)")
            #expect(description.contains("***"), "\(description)")
        }
        #expect(descriptions.dropLast().allSatisfy { $0.contains("cache-0:6379") }, "the node stays host:port")
    }

    @Test func kafkaSecretPropertiesNeverAppearInADescription() throws {
        let configuration = try load("""
            pools: { main: { nodes: ["cache-0:6379"] } }
            rules: r.yaml
            sources:
              kafka:
                brokers: kafka-0:9092
                topics: [t]
                properties: { sasl.password: \(Self.secret), ssl.key.password: \(Self.secret), sasl.username: app }
            """)
        let kafka = try #require(configuration.sources.kafka)
        #expect(kafka.properties["sasl.password"] == Self.secret)
        var dumped = ""
        dump(configuration, to: &dumped)
        for description in ["\(configuration)", String(reflecting: kafka), "\(kafka)", dumped] {
            #expect(!description.contains(Self.secret), "\(description)")
            #expect(description.contains("app"), "\(description)")
        }
    }

    @Test func aMistypedURLIsQuotedWithoutItsUserInfo() {
        #expect("redis:/:pw@cache-0:6379".redactedNodeAddress == "***@cache-0:6379")
        #expect("redis://u:pw@cache-0".redactedNodeAddress == "redis://u:***@cache-0")
        #expect("cache-0:6379".redactedNodeAddress == "cache-0:6379")
    }

    @Test func redactingURLPasswordsLeavesTheRestAsWritten() {
        #expect("node 'redis://u:p@ss@h:1/2' and rediss://:x@h2".redactingURLPasswords == "node 'redis://u:***@h:1/2' and rediss://:***@h2")
        #expect("redis://user@h redis://h:6379 host:1".redactingURLPasswords == "redis://user@h redis://h:6379 host:1")
    }
}
