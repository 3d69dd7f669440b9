import Foundation
import InvalidatorCore

/// A config with its rules loaded from disk.
package struct LoadedConfiguration: Sendable {
    package var configuration: Configuration
    package var rules: RuleSet
    /// Absolute paths of the rules files, watched for hot reload; empty for inline rules.
    package var rulesFiles: [String]
    /// The rules files' contents as loaded, in `rulesFiles` order: hot reload starts
    /// from them, so a change made between loading and running is not missed.
    package var rulesContents: [Data?] = []

    package init(configuration: Configuration, rules: RuleSet, rulesFiles: [String], rulesContents: [Data?] = []) {
        self.configuration = configuration
        self.rules = rules
        self.rulesFiles = rulesFiles
        self.rulesContents = rulesContents
    }
}

/// Reads config and rules files. The parsing itself is pure and lives in InvalidatorCore.
package enum ConfigurationFiles {
    package static func readText(_ path: String) throws(FileReadError) -> String {
        do {
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            guard let text = String(data: data, encoding: .utf8) else {
                throw FileReadError(path: path, reason: "not UTF-8 text")
            }
            return text
        } catch let error as FileReadError {
            throw error
        } catch {
            let reason = (error as NSError).localizedFailureReason ?? (error as NSError).localizedDescription
            throw FileReadError(path: path, reason: reason.contains("exist") ? "no such file" : reason)
        }
    }

    /// Loads `path` and every rules file it names, with the environment's overrides and
    /// the secret files it references.
    package static func load(
        configPath path: String, environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> LoadedConfiguration {
        let configuration = try ConfigurationLoader.load(
            yaml: readText(path), file: path, environment: environment, readSecretFile: readText)
        switch configuration.rules {
        case .inline(let rules):
            return LoadedConfiguration(configuration: configuration, rules: rules, rulesFiles: [])
        case .files(let paths):
            let folder = URL(fileURLWithPath: path).deletingLastPathComponent()
            let resolved = paths.map { $0.hasPrefix("/") ? $0 : folder.appendingPathComponent($0).path }
            var files: [(path: String, text: String)] = []
            for path in resolved {
                files.append((path, try readText(path)))
            }
            let rules = try loadRules(files: files, for: configuration)
            return LoadedConfiguration(
                configuration: configuration, rules: rules, rulesFiles: resolved, rulesContents: files.map { Data($0.text.utf8) })
        }
    }

    /// Loads and merges rules files; a rule name may appear in only one of them.
    package static func loadRules(paths: [String], knownPools: [String]?, webhooks: [WebhookTarget]? = nil) throws -> RuleSet {
        var files: [(path: String, text: String)] = []
        for path in paths {
            files.append((path, try readText(path)))
        }
        return try loadRules(files: files, knownPools: knownPools, webhooks: webhooks)
    }

    /// Merges rules files already read for `configuration`: its pools, webhooks and canary entity.
    package static func loadRules(files: [(path: String, text: String)], for configuration: Configuration) throws(ValidationError) -> RuleSet {
        try loadRules(
            files: files, knownPools: configuration.pools.map(\.name), webhooks: configuration.webhooks,
            reservedEntity: configuration.canary.entity)
    }

    /// Merges rules files already read; a rule name may appear in only one of them.
    /// - Parameters:
    ///   - webhooks: the config's targets, which `webhook` actions must name; nil checks no names.
    ///   - reservedEntity: the canary entity, which no rule may match.
    package static func loadRules(
        files: [(path: String, text: String)], knownPools: [String]?, webhooks: [WebhookTarget]? = nil,
        reservedEntity: String? = nil
    ) throws(ValidationError) -> RuleSet {
        var rules: [Rule] = []
        var fileByRuleName: [String: String] = [:]
        var diagnostics: [Diagnostic] = []
        for (path, text) in files {
            do {
                for rule in try RulesLoader.load(
                    yaml: text, file: path, knownPools: knownPools, webhooks: webhooks, reservedEntity: reservedEntity).rules {
                    if let other = fileByRuleName[rule.name] {
                        diagnostics.append(Diagnostic(file: path, line: 1, column: 1, message: "rule '\(rule.name)' is also defined in \(other)"))
                    } else {
                        fileByRuleName[rule.name] = path
                        rules.append(rule)
                    }
                }
            } catch {
                diagnostics += error.diagnostics
            }
        }
        guard diagnostics.isEmpty else { throw ValidationError(diagnostics) }
        return RuleSet(rules)
    }
}

extension Configuration {
    /// Where dead letters go; a loaded config always says (by default a stream on the first pool).
    var validDeadLetters: DeadLetterDestination {
        guard let deadLetters else { preconditionFailure("no dead_letters destination; ConfigurationLoader always sets one") }
        return deadLetters
    }

    /// `sources.kafka`, which a loaded config whose dead letters go to a Kafka topic always has.
    var validKafkaSource: KafkaSourceConfiguration {
        guard let kafka = sources.kafka else {
            preconditionFailure("dead_letters.kafka_topic without sources.kafka; ConfigurationLoader refuses such a config")
        }
        return kafka
    }
}
