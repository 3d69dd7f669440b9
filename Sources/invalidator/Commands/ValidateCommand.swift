import ArgumentParser
import Foundation
import InvalidatorCore
import InvalidatorRuntime
import Logging

struct ValidateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract: "Check a config file (with its rules) or a rules file.",
        discussion: """
            Exit 0 when valid, 1 when not. Every problem is printed as file:line:column: message.
            An empty rules set is valid but warned about on stderr: `run` refuses it unless the \
            config sets allow_empty_rules: true. So is a pool with tls.verify: false.

            Examples:
              invalidator validate --config invalidator.yaml
              invalidator validate --rules rules.yaml
              invalidator validate --config invalidator.yaml --check-connectivity

            With --check-connectivity it also PINGs every Redis node of every pool and \
            reaches the Kafka brokers (reading the group's committed offsets, without \
            joining it), printing each target as ok or FAILED; exit 1 if any failed. \
            For a Redis stream of dead letters it prints the node's maxmemory-policy, \
            appendonly and save settings (unknown where CONFIG GET is refused) and warns \
            on stderr when the node may evict the stream (allkeys-*) or keeps no copy \
            across a restart; warnings do not change the exit status.
            """
    )

    @Option(help: "A config file; its rules files are checked too.")
    var config: String?

    @Option(help: "A rules file, checked on its own (pool names are not checked).")
    var rules: String?

    @Flag(help: "With --config: also PING every Redis node and reach the Kafka brokers.")
    var checkConnectivity = false

    func validate() throws {
        guard (config == nil) != (rules == nil) else {
            throw ValidationError("give exactly one of --config or --rules")
        }
        if checkConnectivity, config == nil {
            throw ValidationError("--check-connectivity needs --config")
        }
    }

    func run() async throws {
        do {
            if let config {
                let loaded = try ConfigurationFiles.load(configPath: config)
                let pools = loaded.configuration.pools.count
                print("\(config): valid: \(loaded.rules.rules.count) rules, \(pools) pool\(pools == 1 ? "" : "s")")
                for warning in loaded.configuration.warnings {
                    FileHandle.standardError.write(Data("warning: \(warning)\n".utf8))
                }
                if loaded.rules.rules.isEmpty {
                    warnEmptyRules(loaded.configuration.allowEmptyRules
                        ? "allow_empty_rules is true, so `run` starts anyway"
                        : "`run` refuses to start with it unless the config sets allow_empty_rules: true")
                }
                if checkConnectivity {
                    var logger = Logger(label: "invalidator")
                    logger.logLevel = .critical
                    let results = await ConnectivityCheck.run(loaded.configuration, logger: logger)
                    for result in results { print(result) }
                    for result in results {
                        for warning in result.warnings {
                            FileHandle.standardError.write(Data("warning: \(result.target): \(warning)\n".utf8))
                        }
                    }
                    if results.contains(where: { !$0.isOK }) { throw ExitCode(1) }
                }
            } else if let rules {
                let loaded = try ConfigurationFiles.loadRules(paths: [rules], knownPools: nil)
                print("\(rules): valid: \(loaded.rules.count) rules")
                if loaded.rules.isEmpty {
                    warnEmptyRules("`run` refuses to start with it unless the config sets allow_empty_rules: true")
                }
            }
        } catch let error as InvalidatorCore.ValidationError {
            FileHandle.standardError.write(Data((error.description + "\n").utf8))
            throw ExitCode(1)
        } catch let error as FileReadError {
            throw CommandFailure(message: error.description)
        }
    }

    /// Valid, but no event would invalidate anything: said on stderr, exit status unchanged.
    private func warnEmptyRules(_ consequence: String) {
        FileHandle.standardError.write(Data("warning: the rules set is empty, so no event would invalidate anything; \(consequence)\n".utf8))
    }
}
