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
            and tag prefixes are used.

            Examples:
              invalidator explain --rules rules.yaml --event '{"entity":"user","id":"42","op":"update"}'
              invalidator explain --config invalidator.yaml --event @event.json --format json
              producer | invalidator explain --rules rules.yaml --event -
            """
    )

    @Option(help: "A rules file.")
    var rules: String?

    @Option(help: "A config file (its pools and rules are used).")
    var config: String?

    @Option(help: "The event: inline JSON, @file, or - for standard input.")
    var event: String

    @Option(help: "Event format: native, debezium, cloudevents or auto.")
    var eventFormat: EventFormatArgument = .auto

    @Option(help: "Output format: text or json.")
    var format: OutputFormat = .text

    func validate() throws {
        guard (config == nil) != (rules == nil) else {
            throw ValidationError("give exactly one of --config or --rules")
        }
    }

    func run() async throws {
        let planner = try loadPlanner()
        let bytes = try EventArgument.read(event)
        let decoded: ChangeEvent
        do {
            decoded = try EventDecoder(format: eventFormat.format).decode(bytes)
        } catch {
            throw CommandFailure(message: "the event would be dead-lettered: \(error)")
        }
        let plan = planner.plan(decoded)
        switch format {
        case .text: print(PlanDescription.text(plan), terminator: "")
        case .json: print(PlanDescription.json(plan).prettySerialized())
        }
    }

    private func loadPlanner() throws -> Planner {
        do {
            if let config {
                let loaded = try ConfigurationFiles.load(configPath: config)
                return Planner(rules: loaded.rules, pools: loaded.configuration.poolTargets)
            }
            let ruleSet = try ConfigurationFiles.loadRules(paths: [rules!], knownPools: nil)
            let named = ruleSet.mentionedPools
            return Planner(rules: ruleSet, pools: (named.isEmpty ? ["default"] : named).map { PoolTarget(name: $0) })
        } catch let error as InvalidatorCore.ValidationError {
            throw CommandFailure(message: "invalid rules or config:\n" + error.description)
        } catch let error as FileReadError {
            throw CommandFailure(message: error.description)
        }
    }
}
