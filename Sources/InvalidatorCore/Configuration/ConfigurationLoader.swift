import Yams

/// Parses `invalidator.yaml` text. File reading is the caller's job, so this stays pure.
///
/// The one place that decides whether a config is valid: every check `run` relies
/// on happens here and is reported as `file:line:column: message`, so `validate`
/// and `run` accept and refuse the same configs. What it returns holds typed,
/// already-checked values (addresses, modes, durations, the retry policy) that the
/// Redis, Kafka and runtime layers use without checking them again.
public enum ConfigurationLoader {
    public static let defaultDeadLetterStream = "invalidator:dead-letters"

    /// - Parameters:
    ///   - environment: values for `${VAR}` and `${VAR:-default}` in string values, and
    ///     `INVALIDATOR__SECTION__KEY` overrides of any key (see `EnvironmentOverrides`).
    ///   - readSecretFile: reads the files that `${file:PATH}` and `VAR_FILE` name.
    public static func load(
        yaml: String, file: String, environment: [String: String], readSecretFile: @escaping SecretFileReader
    ) throws(ValidationError) -> Configuration {
        var reader = YAMLReader(file: file, substitutions: Substitutions(environment: environment, readSecretFile: readSecretFile))
        guard var root = reader.compose(yaml) else {
            if reader.diagnostics.isEmpty {
                reader.report("the config file is empty", line: 1, column: 1)
            }
            throw ValidationError(reader.diagnostics)
        }
        EnvironmentOverrides.apply(environment, to: &root, reader: &reader)
        var configuration = Configuration()
        let allowed: Set<String> = ["sources", "pools", "rules", "allow_empty_rules", "retry", "dead_letters", "http", "shutdown", "webhooks", "canary"]
        guard let fields = reader.mapping(root, context: "the config", allowed: allowed) else {
            throw ValidationError(reader.diagnostics)
        }
        if let pools = fields["pools"] {
            configuration.pools = parsePools(pools, reader: &reader)
            if configuration.pools.isEmpty, case .mapping = pools {
                reader.report("the config needs at least one pool under 'pools:'", at: pools)
            }
        } else {
            reader.report("the config needs at least one pool under 'pools:'", at: root)
        }
        let poolNames = configuration.pools.map(\.name)
        let sourcesNode = fields["sources"]
        if let sourcesNode {
            configuration.sources = parseSources(sourcesNode, poolNames: poolNames, reader: &reader)
        }
        if sourcesNode == nil || sourcesNode?.mapping?.isEmpty == true {
            reader.report("the config needs at least one source under 'sources:' (kafka, redis_pubsub or redis_stream)", at: sourcesNode ?? root)
        }
        if let webhooks = fields["webhooks"] {
            configuration.webhooks = parseWebhooks(webhooks, reader: &reader)
        }
        if let canary = fields["canary"] {
            configuration.canary = parseCanary(canary, poolNames: poolNames, reader: &reader)
        }
        configuration.sources.setCanaryEntity(configuration.canary.entity)
        if let rules = fields["rules"] {
            configuration.rules = parseRulesReference(
                rules, poolNames: poolNames, webhooks: configuration.webhooks, canaryEntity: configuration.canary.entity, reader: &reader)
        } else {
            reader.report("the config needs 'rules:' (a path, a list of paths, or an inline list)", at: root)
        }
        if let retry = fields["retry"] {
            configuration.retry = parseRetry(retry, context: "retry", reader: &reader)
        }
        if let deadLetters = fields["dead_letters"] {
            // A broken kafka section is reported on its own; only a missing one is this problem.
            let hasKafkaSource = sourcesNode?.mapping?.keys.contains { $0.string == "kafka" } ?? false
            (configuration.deadLetters, configuration.deadLetterMaxRecords) = parseDeadLetters(
                deadLetters, poolNames: poolNames, hasKafkaSource: hasKafkaSource, reader: &reader)
        } else if let first = poolNames.first {
            configuration.deadLetters = .redisStream(pool: first, stream: defaultDeadLetterStream)
        }
        if let http = fields["http"],
           let httpFields = reader.mapping(http, context: "http", allowed: ["listen", "health_check_interval"]) {
            if let listen = httpFields["listen"] {
                configuration.http.listen = address(listen, context: "http.listen", reader: &reader) ?? configuration.http.listen
            }
            if let interval = httpFields["health_check_interval"] {
                configuration.http.healthCheckInterval = reader.duration(
                    interval, context: "http.health_check_interval", minimum: .seconds(1), maximum: .seconds(300))
                    ?? configuration.http.healthCheckInterval
            }
        }
        if let allowEmpty = fields["allow_empty_rules"] {
            configuration.allowEmptyRules = reader.boolean(allowEmpty, context: "allow_empty_rules") ?? false
        }
        if let shutdown = fields["shutdown"],
           let shutdownFields = reader.mapping(shutdown, context: "shutdown", allowed: ["drain_timeout"]),
           let drain = shutdownFields["drain_timeout"] {
            configuration.shutdown.drainTimeout = reader.duration(drain, context: "shutdown.drain_timeout", maximum: .seconds(3600)) ?? configuration.shutdown.drainTimeout
        }
        guard reader.diagnostics.isEmpty else { throw ValidationError(reader.diagnostics) }
        return configuration
    }

    private static func parsePools(_ node: Node, reader: inout YAMLReader) -> [PoolConfiguration] {
        guard case .mapping(let mapping) = node else {
            reader.report("pools must be a mapping of pool name to pool", at: node)
            return []
        }
        let allowed: Set<String> = [
            "mode", "nodes", "username", "password", "database", "tag_prefix", "connect_timeout", "command_timeout", "tls",
            "scan_count", "max_pending_patterns",
        ]
        var pools: [PoolConfiguration] = []
        for (key, value) in mapping {
            guard let name = reader.string(key, context: "a pool name") else { continue }
            let context = "pool '\(name)'"
            // Names can come from ${VAR} substitutions, so two keys may name one pool.
            guard !pools.contains(where: { $0.name == name }) else {
                reader.report("\(context) is defined twice", at: key)
                continue
            }
            guard let fields = reader.mapping(value, context: context, allowed: allowed) else { continue }
            guard let nodesNode = fields["nodes"] else {
                reader.report("\(context) needs nodes", at: value)
                continue
            }
            var pool = PoolConfiguration(name: name, nodes: [])
            if let modeNode = fields["mode"], let modeName = reader.string(modeNode, context: "\(context) mode") {
                if let mode = PoolConfiguration.Mode(rawValue: modeName) {
                    pool.mode = mode
                } else {
                    reader.report("\(context) mode '\(modeName)' is not one of single, replicated, sharded, cluster", at: modeNode)
                }
            }
            var fromURLs = NodeURLSettings()
            var listed = 0
            for (text, addressNode) in reader.stringNodes(nodesNode, context: "\(context) nodes") {
                listed += 1
                let quoted = text.redactedNodeAddress
                let address: RedisNodeAddress
                switch RedisNodeAddress.parse(text) {
                case .success(let parsed):
                    address = parsed
                case .failure(let problem):
                    reader.report("\(context) node '\(quoted)' \(problem.reason)", at: addressNode)
                    continue
                }
                // Compared as addresses: `[::1]:6379`, `::1:6379` and `redis://[::1]` are one node.
                if pool.nodes.contains(address.node) {
                    reader.report("\(context) lists node '\(quoted)' twice", at: addressNode)
                } else {
                    pool.nodes.append(address.node)
                }
                fromURLs.add(address, quoted: quoted, at: addressNode, context: context, reader: &reader)
            }
            if listed == 0 {
                reader.report("\(context) needs at least one node", at: nodesNode)
            } else if pool.mode == .single, listed > 1 {
                reader.report("\(context) is single but lists \(listed) nodes; use replicated, sharded or cluster", at: nodesNode)
            }
            pool.username = fromURLs.username?.value
            if let node = fields["username"], let username = reader.string(node, context: "\(context) username") {
                if let other = fromURLs.username {
                    reader.report("\(context) sets username and its node '\(other.node)' has a user too; set it in one place", at: node)
                }
                pool.username = username
            }
            pool.password = fromURLs.password?.value
            if let node = fields["password"], let password = reader.string(node, context: "\(context) password") {
                if let other = fromURLs.password {
                    reader.report("\(context) sets password and its node '\(other.node)' has a password too; set it in one place", at: node)
                }
                pool.password = password
            }
            if let database = fromURLs.database {
                pool.database = database.value
                if pool.mode == .cluster, database.value != 0 {
                    reader.report("\(context) is a cluster, but node '\(database.node)' selects database \(database.value); Redis Cluster has only database 0", at: database.at)
                }
            }
            if let database = fields["database"] {
                if let other = fromURLs.database {
                    reader.report("\(context) sets database and its node '\(other.node)' selects one too; set it in one place", at: database)
                }
                pool.database = reader.integer(database, context: "\(context) database", range: 0...RedisNodeAddress.largestDatabase) ?? 0
                if pool.mode == .cluster, pool.database != 0 {
                    reader.report("\(context) is a cluster; Redis Cluster has only database 0", at: database)
                }
            }
            pool.tls = parseTLS(fields["tls"], fromURLs: fromURLs.scheme, context: context, reader: &reader)
            if let prefix = fields["tag_prefix"] {
                pool.tagPrefix = reader.string(prefix, context: "\(context) tag_prefix") ?? pool.tagPrefix
            }
            if let timeout = fields["connect_timeout"] {
                pool.connectTimeout = reader.duration(timeout, context: "\(context) connect_timeout", maximum: .seconds(300)) ?? pool.connectTimeout
            }
            if let timeout = fields["command_timeout"] {
                pool.commandTimeout = reader.duration(timeout, context: "\(context) command_timeout", maximum: .seconds(300)) ?? pool.commandTimeout
            }
            if let count = fields["scan_count"] {
                pool.scanCount = reader.integer(count, context: "\(context) scan_count", range: 1...PoolConfiguration.largestScanCount) ?? pool.scanCount
            }
            if let limit = fields["max_pending_patterns"] {
                pool.maxPendingPatterns = reader.integer(
                    limit, context: "\(context) max_pending_patterns", range: 1...PoolConfiguration.largestMaxPendingPatterns) ?? pool.maxPendingPatterns
            }
            pools.append(pool)
        }
        return pools
    }

    /// What a pool's node URLs say about the pool, each with the first node that said it
    /// (quoted without its password), so that a node saying otherwise is reported.
    private struct NodeURLSettings {
        var username: (value: String, node: String)?
        var password: (value: String, node: String)?
        var database: (value: Int, node: String, at: Node)?
        var scheme: (usesTLS: Bool, node: String)?

        mutating func add(_ address: RedisNodeAddress, quoted: String, at node: Node, context: String, reader: inout YAMLReader) {
            if let usesTLS = address.usesTLS {
                if let first = scheme, first.usesTLS != usesTLS {
                    reader.report("\(context) node '\(quoted)' is \(usesTLS ? "rediss://" : "redis://") but node '\(first.node)' is \(first.usesTLS ? "rediss://" : "redis://"); a pool's nodes all use TLS or none does", at: node)
                } else if scheme == nil {
                    scheme = (usesTLS, quoted)
                }
            }
            if let value = address.username {
                if let first = username, first.value != value {
                    reader.report("\(context) node '\(quoted)' has the user '\(value)' but node '\(first.node)' has '\(first.value)'; a pool has one user", at: node)
                } else if username == nil {
                    username = (value, quoted)
                }
            }
            if let value = address.password {
                if let first = password, first.value != value {
                    reader.report("\(context) node '\(quoted)' has another password than node '\(first.node)'; a pool has one password", at: node)
                } else if password == nil {
                    password = (value, quoted)
                }
            }
            if let value = address.database {
                if let first = database, first.value != value {
                    reader.report("\(context) node '\(quoted)' selects database \(value) but node '\(first.node)' database \(first.value); a pool has one database", at: node)
                } else if database == nil {
                    database = (value, quoted, node)
                }
            }
        }
    }

    /// The `tls:` keys of a pool and a webhook alike.
    static let tlsSettingKeys: Set<String> = ["ca_file", "cert_file", "key_file", "server_name", "verify"]

    /// Files, server name and verification from a `tls:` section's `fields`.
    static func tlsSettings(_ fields: [String: Node], context: String, reader: inout YAMLReader) -> TLSConfiguration {
        var tls = TLSConfiguration()
        func path(_ key: String) -> String? {
            guard let node = fields[key], let value = reader.string(node, context: "\(context) tls.\(key)") else { return nil }
            if value.isEmpty { reader.report("\(context) tls.\(key) is empty", at: node) }
            return value
        }
        tls.caFile = path("ca_file")
        tls.certFile = path("cert_file")
        tls.keyFile = path("key_file")
        tls.serverName = path("server_name")
        if let verify = fields["verify"] {
            tls.verify = reader.boolean(verify, context: "\(context) tls.verify") ?? tls.verify
        }
        if (tls.certFile == nil) != (tls.keyFile == nil), let given = fields["cert_file"] ?? fields["key_file"] {
            reader.report("\(context) tls needs cert_file and key_file together (a client certificate and its key)", at: given)
        }
        return tls
    }

    /// A pool's `tls:` section, on when `enabled: true` or the nodes are `rediss://`;
    /// nil when TLS is off.
    private static func parseTLS(
        _ node: Node?, fromURLs scheme: (usesTLS: Bool, node: String)?, context: String, reader: inout YAMLReader
    ) -> TLSConfiguration? {
        let keys = tlsSettingKeys.union(["enabled"])
        let fields = node.flatMap { reader.mapping($0, context: "\(context) tls", allowed: keys) } ?? [:]
        let tls = tlsSettings(fields, context: context, reader: &reader)
        let enabledNode = fields["enabled"]
        let enabled = enabledNode.flatMap { reader.boolean($0, context: "\(context) tls.enabled") }
        if let scheme, let enabled, let enabledNode, enabled != scheme.usesTLS {
            reader.report(
                enabled
                    ? "\(context) tls.enabled is true but node '\(scheme.node)' is redis://; write rediss:// for TLS"
                    : "\(context) tls.enabled is false but node '\(scheme.node)' is rediss://, which is TLS",
                at: enabledNode)
        }
        let isOn = scheme?.usesTLS ?? enabled ?? false
        if !isOn, enabled == nil, let node, let setting = fields.keys.sorted().first {
            // Settings without TLS would be ignored: a plain connection the operator did not mean.
            reader.report("\(context) tls sets \(setting) but TLS is off; add tls.enabled: true or use rediss:// nodes", at: node)
        }
        return isOn ? tls : nil
    }

    /// The longest `sources.redis_stream.block`: the reading loop beats for `/healthz`
    /// between reads, and a loop is stalled after at least 60 s without a beat.
    public static let longestStreamBlock: Duration = .seconds(30)

    /// How every address is written; no port is implied.
    static let addressForm = "host:port with a port from 1 to 65535 (IPv6 in brackets, such as [::1]:6379)"

    private static func address(_ node: Node, context: String, reader: inout YAMLReader) -> HostPort? {
        guard let text = reader.string(node, context: context) else { return nil }
        guard let address = HostPort(text) else {
            reader.report("\(context) must be \(addressForm), got '\(text)'", at: node)
            return nil
        }
        return address
    }

    private static func parseSources(_ node: Node, poolNames: [String], reader: inout YAMLReader) -> Sources {
        var sources = Sources()
        guard let fields = reader.mapping(node, context: "sources", allowed: ["kafka", "redis_pubsub", "redis_stream"]) else {
            return sources
        }
        if let kafka = fields["kafka"] {
            sources.kafka = parseKafka(kafka, poolNames: poolNames, reader: &reader)
        }
        if let pubsub = fields["redis_pubsub"],
           let values = reader.mapping(pubsub, context: "sources.redis_pubsub", allowed: Set(["pool", "channels", "patterns", "format", "keepalive"]).union(readingKeys)),
           let pool = requiredPool(values["pool"], in: pubsub, context: "sources.redis_pubsub", poolNames: poolNames, reader: &reader) {
            var source = RedisPubSubSourceConfiguration(pool: pool)
            source.channels = values["channels"].flatMap { reader.strings($0, context: "sources.redis_pubsub.channels") } ?? []
            source.patterns = values["patterns"].flatMap { reader.strings($0, context: "sources.redis_pubsub.patterns") } ?? []
            source.format = format(values["format"], context: "sources.redis_pubsub.format", reader: &reader)
            if let keepalive = values["keepalive"] {
                source.keepalive = reader.duration(
                    keepalive, context: "sources.redis_pubsub.keepalive", minimum: .milliseconds(100), maximum: .seconds(3600)) ?? source.keepalive
            }
            source.reading = parseReading(values, format: source.format, in: pubsub, context: "sources.redis_pubsub", poolNames: poolNames, reader: &reader)
            if source.channels.isEmpty, source.patterns.isEmpty {
                reader.report("sources.redis_pubsub needs channels or patterns", at: pubsub)
            }
            sources.redisPubSub = source
        }
        if let stream = fields["redis_stream"],
           let values = reader.mapping(stream, context: "sources.redis_stream", allowed: Set(["pool", "streams", "group", "format", "claim_idle", "block"]).union(readingKeys)),
           let pool = requiredPool(values["pool"], in: stream, context: "sources.redis_stream", poolNames: poolNames, reader: &reader) {
            let streams = values["streams"].flatMap { reader.strings($0, context: "sources.redis_stream.streams") } ?? []
            if streams.isEmpty {
                reader.report("sources.redis_stream needs streams", at: stream)
            }
            var source = RedisStreamSourceConfiguration(pool: pool, streams: streams)
            source.group = values["group"].flatMap { reader.string($0, context: "sources.redis_stream.group") } ?? source.group
            source.format = format(values["format"], context: "sources.redis_stream.format", reader: &reader)
            source.reading = parseReading(values, format: source.format, in: stream, context: "sources.redis_stream", poolNames: poolNames, reader: &reader)
            if let idle = values["claim_idle"] {
                source.claimIdle = reader.duration(idle, context: "sources.redis_stream.claim_idle", maximum: .seconds(86_400)) ?? source.claimIdle
            }
            if let block = values["block"] {
                source.block = reader.duration(
                    block, context: "sources.redis_stream.block", minimum: .milliseconds(100), maximum: longestStreamBlock) ?? source.block
            }
            sources.redisStream = source
        }
        return sources
    }

    private static func parseKafka(_ node: Node, poolNames: [String], reader: inout YAMLReader) -> KafkaSourceConfiguration? {
        let allowed = Set(["brokers", "topics", "group", "group_instance_id", "format", "properties", "max_buffered_bytes"]).union(readingKeys)
        guard let values = reader.mapping(node, context: "sources.kafka", allowed: allowed) else { return nil }
        guard let brokersNode = values["brokers"], let brokers = reader.string(brokersNode, context: "sources.kafka.brokers"),
              let topicsNode = values["topics"], let topics = reader.strings(topicsNode, context: "sources.kafka.topics"),
              !topics.isEmpty
        else {
            reader.report("sources.kafka needs brokers and topics", at: node)
            return nil
        }
        var kafka = KafkaSourceConfiguration(brokers: brokers, topics: topics)
        kafka.group = values["group"].flatMap { reader.string($0, context: "sources.kafka.group") } ?? kafka.group
        if let instance = values["group_instance_id"],
           let name = reader.string(instance, context: "sources.kafka.group_instance_id") {
            if let problem = groupInstanceIDProblem(name) {
                reader.report("sources.kafka.group_instance_id \(problem)", at: instance)
            } else {
                kafka.groupInstanceID = name
            }
        }
        kafka.format = format(values["format"], context: "sources.kafka.format", reader: &reader)
        if let budget = values["max_buffered_bytes"] {
            kafka.maxBufferedBytes = reader.byteSize(budget, context: "sources.kafka.max_buffered_bytes", range: kafkaBufferedBytesRange)
        }
        kafka.reading = parseReading(values, format: kafka.format, in: node, context: "sources.kafka", poolNames: poolNames, reader: &reader)
        if let properties = values["properties"] {
            if case .mapping(let mapping) = properties {
                for (key, value) in mapping {
                    if let name = reader.string(key, context: "a Kafka property name"),
                       let text = reader.string(value, context: "Kafka property \(name)") {
                        if let reason = refusedKafkaProperties[name] {
                            reader.report("sources.kafka.properties: \(name) cannot be set: \(reason)", at: key)
                        } else {
                            kafka.properties[name] = text
                        }
                    }
                }
            } else {
                reader.report("sources.kafka.properties must be a mapping", at: properties)
            }
        }
        return kafka
    }

    /// `sources.kafka.max_buffered_bytes`: below a few MiB the consumer would stop fetching
    /// after every few hundred events; above 2 GiB librdkafka's byte limit
    /// (`queued.max.messages.kbytes`, at most 2,097,151 KiB) could not hold its half.
    static let kafkaBufferedBytesRange = (4 << 20)...(2 << 30)

    /// Why `name` cannot be a `group.instance.id`, or nil when it can. Kafka's own rule
    /// (its Java client refuses the others): 1 to 249 of `a-z A-Z 0-9 . _ -`, not `.` or `..`.
    static func groupInstanceIDProblem(_ name: String) -> String? {
        if name.isEmpty { return "is empty; a static member needs a name unique in its group, such as ${POD_NAME}" }
        if name == "." || name == ".." { return "cannot be '\(name)'" }
        let maxLength = 249
        if name.count > maxLength { return "has \(name.count) characters; Kafka allows at most \(maxLength)" }
        let legal = name.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"):
                true
            default:
                false
            }
        }
        return legal ? nil : "may hold only letters, digits, '.', '_' and '-' (a pod name does), got '\(name)'"
    }

    /// librdkafka properties a user may not set, with why: the first three would
    /// commit offsets of events not yet applied (at-least-once lost without a word),
    /// the others are set by keys of their own.
    static let refusedKafkaProperties: [String: String] = {
        let commitsEarly = "invalidator commits an offset only once its event is applied or dead-lettered; this would commit events before they are applied, and a crash would lose their invalidations"
        let useBrokers = "set sources.kafka.brokers instead"
        return [
            "enable.auto.commit": commitsEarly,
            "auto.commit.enable": commitsEarly,
            "enable.auto.offset.store": commitsEarly,
            "group.id": "set sources.kafka.group instead",
            "group.instance.id": "set sources.kafka.group_instance_id instead",
            "bootstrap.servers": useBrokers,
            "metadata.broker.list": useBrokers,
        ]
    }()

    private static func format(_ node: Node?, context: String, reader: inout YAMLReader) -> EventFormat {
        guard let node, let name = reader.string(node, context: context) else { return .auto }
        guard let format = EventFormat(rawValue: name) else {
            reader.report("\(context) '\(name)' is not one of native, debezium, cloudevents, direct, auto", at: node)
            return .auto
        }
        return format
    }

    private static func requiredPool(
        _ node: Node?, in parent: Node, context: String, poolNames: [String], reader: inout YAMLReader
    ) -> String? {
        guard let node else {
            reader.report("\(context) needs a pool", at: parent)
            return nil
        }
        guard let name = reader.string(node, context: "\(context).pool") else { return nil }
        if !poolNames.contains(name) {
            reader.report("\(context).pool '\(name)' is not a pool defined under pools", at: node)
        }
        return name
    }

    private static func parseRulesReference(
        _ node: Node, poolNames: [String], webhooks: [WebhookTarget], canaryEntity: String, reader: inout YAMLReader
    ) -> RulesSource {
        switch node {
        case .scalar:
            return .files(reader.string(node, context: "rules").map { [$0] } ?? [])
        case .sequence(let sequence):
            if sequence.allSatisfy({ if case .scalar = $0 { true } else { false } }) {
                return .files(reader.strings(node, context: "rules") ?? [])
            }
            return .inline(RuleSet(RulesLoader.parseRules(
                node, knownPools: poolNames, webhooks: webhooks, reservedEntity: canaryEntity, reader: &reader)))
        default:
            reader.report("rules must be a path, a list of paths, or an inline list of rules", at: node)
            return .files([])
        }
    }

    private static func parseCanary(_ node: Node, poolNames: [String], reader: inout YAMLReader) -> CanaryConfiguration {
        var canary = CanaryConfiguration()
        let allowed: Set<String> = ["enabled", "interval", "timeout", "pools", "entity", "key_prefix", "fail_healthz_after"]
        guard let values = reader.mapping(node, context: "canary", allowed: allowed) else { return canary }
        if let enabled = values["enabled"] {
            canary.enabled = reader.boolean(enabled, context: "canary.enabled") ?? canary.enabled
        }
        if let interval = values["interval"] {
            canary.interval = reader.duration(interval, context: "canary.interval", minimum: .seconds(1), maximum: .seconds(3600))
                ?? canary.interval
        }
        if let timeout = values["timeout"] {
            canary.timeout = reader.duration(timeout, context: "canary.timeout", minimum: .seconds(1), maximum: .seconds(600))
                ?? canary.timeout
        }
        if let pools = values["pools"] {
            var names: [String] = []
            for (name, node) in reader.stringNodes(pools, context: "canary.pools") {
                if !poolNames.contains(name) {
                    reader.report("canary.pools: '\(name)' is not a pool defined under pools", at: node)
                } else if !names.contains(name) {
                    names.append(name)
                }
            }
            if case .sequence(let sequence) = pools, sequence.isEmpty {
                reader.report("canary.pools is empty; leave it out to use every pool", at: pools)
            }
            canary.pools = names
        }
        if let entity = values["entity"], let name = reader.string(entity, context: "canary.entity") {
            if name.isEmpty {
                reader.report("canary.entity is empty", at: entity)
            } else {
                canary.entity = name
            }
        }
        if let prefix = values["key_prefix"], let text = reader.string(prefix, context: "canary.key_prefix") {
            // Longer prefixes leave too little of the key limit for the id (worker, source, sequence).
            let longest = Planner.maximumKeyBytes / 2
            if text.isEmpty {
                reader.report("canary.key_prefix is empty; canary keys need a prefix of their own", at: prefix)
            } else if text.utf8.count > longest {
                reader.report("canary.key_prefix has \(text.utf8.count) bytes; at most \(longest)", at: prefix)
            } else {
                canary.keyPrefix = text
            }
        }
        if let failAfter = values["fail_healthz_after"] {
            canary.failHealthzAfter = reader.integer(failAfter, context: "canary.fail_healthz_after", range: 0...1000)
                ?? canary.failHealthzAfter
        }
        return canary
    }

    /// `retry:` of the config, or of a webhook (`context` names which).
    static func parseRetry(_ node: Node, context: String, reader: inout YAMLReader) -> RetryPolicy {
        var retry = RetryPolicy()
        guard let values = reader.mapping(node, context: context, allowed: ["attempts", "initial_backoff", "max_backoff"]) else {
            return retry
        }
        if let attempts = values["attempts"] {
            retry.attempts = reader.integer(attempts, context: "\(context).attempts", range: 1...100) ?? retry.attempts
        }
        if let initial = values["initial_backoff"] {
            retry.initialBackoff = reader.duration(initial, context: "\(context).initial_backoff", maximum: .seconds(3600)) ?? retry.initialBackoff
        }
        if let maximum = values["max_backoff"] {
            retry.maxBackoff = reader.duration(maximum, context: "\(context).max_backoff", maximum: .seconds(3600)) ?? retry.maxBackoff
        }
        if retry.maxBackoff < retry.initialBackoff {
            reader.report("\(context).max_backoff is shorter than \(context).initial_backoff", at: node)
        }
        return retry
    }

    /// The largest `dead_letters.max_records`: at about 1 KB a record, 100 GB, more
    /// than a Redis node holds, so a larger cap could never act before `maxmemory`.
    public static let largestDeadLetterMaxRecords = 100_000_000

    /// The destination, and the record cap of a stream store (nil: none).
    private static func parseDeadLetters(
        _ node: Node, poolNames: [String], hasKafkaSource: Bool, reader: inout YAMLReader
    ) -> (DeadLetterDestination?, maxRecords: Int?) {
        guard let values = reader.mapping(node, context: "dead_letters", allowed: ["pool", "stream", "kafka_topic", "max_records"]) else {
            return (nil, Configuration.defaultDeadLetterMaxRecords)
        }
        if let topic = values["kafka_topic"] {
            if values["stream"] != nil {
                reader.report("dead_letters takes either kafka_topic or a stream, not both", at: node)
            }
            if let maxRecords = values["max_records"] {
                reader.report("dead_letters.max_records caps a Redis stream store; a Kafka topic is bounded by its retention instead (set the topic's retention.ms above the longest time you may take to replay)", at: maxRecords)
            }
            if !hasKafkaSource {
                reader.report("dead_letters.kafka_topic is written to the brokers of sources.kafka, which the config does not have; add sources.kafka or use { pool, stream }", at: topic)
            }
            // With a topic, `pool` is optional: where replays of the topic take turns.
            let lockPool = values["pool"].flatMap {
                requiredPool($0, in: node, context: "dead_letters", poolNames: poolNames, reader: &reader)
            }
            return (reader.string(topic, context: "dead_letters.kafka_topic").map { .kafkaTopic(topic: $0, lockPool: lockPool) }, nil)
        }
        var maxRecords: Int? = Configuration.defaultDeadLetterMaxRecords
        if let node = values["max_records"],
           let value = reader.integer(node, context: "dead_letters.max_records", range: 0...largestDeadLetterMaxRecords) {
            // 0 turns the cap off.
            maxRecords = value == 0 ? nil : value
        }
        guard let pool = requiredPool(values["pool"], in: node, context: "dead_letters", poolNames: poolNames, reader: &reader) else {
            return (nil, maxRecords)
        }
        let stream = values["stream"].flatMap { reader.string($0, context: "dead_letters.stream") } ?? defaultDeadLetterStream
        return (.redisStream(pool: pool, stream: stream), maxRecords)
    }

    // MARK: Source reading (fields, op_values, allow, pools)

    /// The keys every source takes for how its messages are read.
    static let readingKeys: Set<String> = ["fields", "op_values", "allow", "pools"]

    /// A source's `fields`, `op_values`, and for `format: direct` its `allow` list
    /// (required) and `pools`.
    private static func parseReading(
        _ values: [String: Node], format: EventFormat, in source: Node, context: String, poolNames: [String],
        reader: inout YAMLReader
    ) -> SourceReading {
        var reading = SourceReading()
        if let fields = values["fields"] {
            reading.fields.locations = parseFieldLocations(fields, format: format, context: "\(context).fields", reader: &reader)
        }
        if let opValues = values["op_values"] {
            reading.fields.opValues = parseOpValues(opValues, format: format, context: "\(context).op_values", reader: &reader)
        }
        let allow = values["allow"]
        let pools = values["pools"]
        guard format == .direct else {
            for node in [allow, pools].compactMap({ $0 }) {
                reader.report("\(context): allow and pools are for format: direct, which names keys to drop; rules decide for other formats", at: node)
            }
            return reading
        }
        guard let allow else {
            reader.report("\(context) has format: direct and needs allow: the templates its messages may drop (such as 'user:{tenant}:*')", at: source)
            return reading
        }
        var entries: [AllowEntry] = []
        for (text, node) in reader.stringNodes(allow, context: "\(context).allow") {
            do {
                entries.append(try AllowEntry(compiling: text))
            } catch {
                reader.report("\(context).allow: \(error.message)", at: node)
            }
        }
        if entries.isEmpty, case .sequence(let sequence) = allow, sequence.isEmpty {
            reader.report("\(context).allow is empty, so no direct message could run", at: allow)
        }
        var policy = DirectInvalidationPolicy(allow: entries)
        if let pools {
            var names: [String] = []
            for (name, node) in reader.stringNodes(pools, context: "\(context).pools") {
                if poolNames.contains(name) {
                    names.append(name)
                } else {
                    reader.report("\(context).pools: '\(name)' is not a pool defined under pools", at: node)
                }
            }
            policy.pools = names
        }
        reading.direct = policy
        return reading
    }

    /// `fields`: canonical name to a dotted path, or (for `id`) a list of paths
    /// whose values make a composite id.
    private static func parseFieldLocations(
        _ node: Node, format: EventFormat, context: String, reader: inout YAMLReader
    ) -> [String: FieldMapping.Location] {
        let mappable = FieldMapping.mappableFields(for: format)
        guard !mappable.isEmpty else {
            reader.report("\(context) needs an explicit format (native, debezium, cloudevents or direct), not auto: each reads different fields", at: node)
            return [:]
        }
        guard let fields = reader.mapping(node, context: context, allowed: Set(mappable)) else { return [:] }
        var locations: [String: FieldMapping.Location] = [:]
        for (name, value) in fields {
            let texts: [(String, Node)]
            if case .sequence = value {
                guard name == "id", format != .direct else {
                    reader.report("\(context).\(name) must be one field name or dotted path; only id may list several (a composite id)", at: value)
                    continue
                }
                texts = reader.stringNodes(value, context: "\(context).\(name)")
                if texts.isEmpty {
                    reader.report("\(context).\(name) lists no fields", at: value)
                    continue
                }
            } else {
                guard let text = reader.string(value, context: "\(context).\(name)") else { continue }
                texts = [(text, value)]
            }
            var paths: [[String]] = []
            for (text, textNode) in texts {
                let path = text.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
                if path.contains("") {
                    reader.report("\(context).\(name) '\(text)' is not a field name or dotted path such as payload.after.user_id", at: textNode)
                } else if path.count > FieldMapping.maximumPathDepth {
                    reader.report("\(context).\(name) '\(text)' is deeper than \(FieldMapping.maximumPathDepth) fields", at: textNode)
                } else {
                    paths.append(path)
                }
            }
            if paths.count == texts.count {
                locations[name] = FieldMapping.Location(paths: paths)
            }
        }
        return locations
    }

    /// `op_values`: the publisher's op names to create, update, delete or read.
    private static func parseOpValues(
        _ node: Node, format: EventFormat, context: String, reader: inout YAMLReader
    ) -> [String: ChangeEvent.Operation] {
        guard format == .native || format == .cloudevents else {
            reader.report("\(context) maps op names of native and cloudevents messages; format \(format.rawValue) has none to map", at: node)
            return [:]
        }
        guard case .mapping(let mapping) = node else {
            reader.report("\(context) must be a mapping of the publisher's op names to create, update, delete or read", at: node)
            return [:]
        }
        var values: [String: ChangeEvent.Operation] = [:]
        for (key, value) in mapping {
            guard let name = reader.string(key, context: "an op name in \(context)"),
                  let target = reader.string(value, context: "\(context).\(name)") else { continue }
            guard let operation = ChangeEvent.Operation(rawValue: target) else {
                reader.report("\(context).\(name) '\(target)' is not one of create, update, delete, read", at: value)
                continue
            }
            values[name] = operation
        }
        return values
    }
}
