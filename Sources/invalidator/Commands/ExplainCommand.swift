import ArgumentParser
import Foundation
import InvalidatorCore
import InvalidatorRuntime

struct ExplainCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "explain",
        abstract: "Print the plan for one event without touching Redis.",
        discussion: """
            With --rules alone, pools are the ones the rules name (rules without pools target all of \
            them, or a pool called 'default' when no rule names one). With --config, the config's pools \
            and tag prefixes are used, and --source reads the event as that source of the config \
            does (its format, fields and op_values, and for format: direct its allow-list and pools); \
            a config with one source reads events as that source unless --event-format is given. \
            The notify messages and webhook requests the event would send once its Redis operations \
            succeeded come last, every secret as ***.

            Examples:
              invalidator explain --rules rules.yaml --event '{"entity":"user","id":"42","op":"update"}'
              invalidator explain --config invalidator.yaml --event @event.json --format json
              producer | invalidator explain --rules rules.yaml --event -
              invalidator explain --config invalidator.yaml --source redis_pubsub --event '{"pattern":"user:acme:*","tenantId":"acme"}'
            """
    )

    @Option(help: "A rules file.")
    var rules: String?

    @Option(help: "A config file (its pools and rules are used).")
    var config: String?

    @Option(help: "The event: inline JSON, @file, or - for standard input.")
    var event: String

    @Option(help: "Event format: native, debezium, cloudevents or auto (direct needs --source).")
    var eventFormat: EventFormatArgument?

    @Option(help: "Read the event as this source of --config does: kafka, redis_pubsub or redis_stream.")
    var source: SourceArgument?

    @Option(help: "Output format: text or json.")
    var format: OutputFormat = .text

    func validate() throws {
        guard (config == nil) != (rules == nil) else {
            throw ValidationError("give exactly one of --config or --rules")
        }
        if source != nil, config == nil {
            throw ValidationError("--source names a source of --config")
        }
        if source != nil, eventFormat != nil {
            throw ValidationError("give --source or --event-format, not both: a source has its own format")
        }
        if eventFormat?.format == .direct {
            throw ValidationError("direct messages are read with their source's allow-list: use --config and --source")
        }
    }

    func run() async throws {
        let (planner, decoder) = try loadPlanner()
        let bytes = try EventArgument.read(event)
        let decoded: DecodedMessage
        do {
            decoded = try decoder.decodeMessage(bytes)
        } catch {
            throw CommandFailure(message: "the event would be dead-lettered: \(error)")
        }
        let plan = planner.plan(decoded)
        switch format {
        case .text: print(PlanDescription.text(plan, webhooks: planner.webhooks), terminator: "")
        case .json: print(PlanDescription.json(plan, webhooks: planner.webhooks).prettySerialized())
        }
    }

    private func loadPlanner() throws -> (Planner, EventDecoder) {
        let flagDecoder = EventDecoder(format: eventFormat?.format ?? .auto)
        do {
            if let config {
                let loaded = try ConfigurationFiles.load(configPath: config)
                let planner = loaded.configuration.planner(rules: loaded.rules)
                return (planner, try sourceDecoder(loaded.configuration.sources) ?? flagDecoder)
            }
            guard let rules else { throw CommandFailure(message: "give exactly one of --config or --rules") }
            let ruleSet = try ConfigurationFiles.loadRules(paths: [rules], knownPools: nil)
            let named = ruleSet.mentionedPools
            return (Planner(rules: ruleSet, pools: (named.isEmpty ? ["default"] : named).map { PoolTarget(name: $0) }), flagDecoder)
        } catch let error as InvalidatorCore.ValidationError {
            throw CommandFailure(message: "invalid rules or config:\n" + error.description)
        } catch let error as FileReadError {
            throw CommandFailure(message: error.description)
        }
    }

    /// The decoder of `--source`, or of the config's only source when no flag picks a format.
    private func sourceDecoder(_ sources: Sources) throws -> EventDecoder? {
        let decoders: [SourceArgument: EventDecoder] = [
            .kafka: sources.kafka?.decoder, .redisPubSub: sources.redisPubSub?.decoder, .redisStream: sources.redisStream?.decoder,
        ].compactMapValues { $0 }
        if let source {
            guard let decoder = decoders[source] else {
                throw CommandFailure(message: "the config has no \(source.rawValue) source")
            }
            return decoder
        }
        return eventFormat == nil && decoders.count == 1 ? decoders.values.first : nil
    }
}

/// `--source`: a source section of the config.
enum SourceArgument: String, ExpressibleByArgument, CaseIterable {
    case kafka
    case redisPubSub = "redis_pubsub"
    case redisStream = "redis_stream"
}
