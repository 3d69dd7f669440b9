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

            With --check-keys it samples each pool with SCAN (--sample keys from every node, \
            1000 by default) and prints, per rule template and pool, how many sampled keys have \
            the template's shape (each placeholder a wildcard; tags with the pool's tag_prefix). \
            A template that no sampled key matches is a warning naming the most common key \
            prefixes seen, such as an application prefix the template lacks; exit 1 only if a \
            node could not be read.

            Warnings, on stderr, that never change the exit status: a patterns entry without a \
            wildcard (it deletes one key of that exact name), a delete entry that is nothing \
            but a placeholder. A rule naming a pool the config does not define is an error.
            """
    )

    @Option(help: "A config file; its rules files are checked too.")
    var config: String?

    @Option(help: "A rules file, checked on its own (pool names are not checked).")
    var rules: String?

    @Flag(help: "With --config: also PING every Redis node and reach the Kafka brokers.")
    var checkConnectivity = false

    @Flag(help: "With --config: sample each pool's keys with SCAN and count, per rule template, the keys of its shape.")
    var checkKeys = false

    @Option(help: "With --check-keys: keys sampled from each node.")
    var sample: Int = 1000

    func validate() throws {
        guard (config == nil) != (rules == nil) else {
            throw ValidationError("give exactly one of --config or --rules")
        }
        if checkConnectivity, config == nil {
            throw ValidationError("--check-connectivity needs --config")
        }
        if checkKeys, config == nil {
            throw ValidationError("--check-keys needs --config")
        }
        guard sample > 0 else {
            throw ValidationError("--sample must be at least 1")
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
                warnAboutRules(loaded.rules, pools: loaded.configuration.pools)
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
                if checkKeys, await !checkKeyShapes(loaded) { throw ExitCode(1) }
            } else if let rules {
                let loaded = try ConfigurationFiles.loadRules(paths: [rules], knownPools: nil)
                print("\(rules): valid: \(loaded.rules.count) rules")
                if loaded.rules.isEmpty {
                    warnEmptyRules("`run` refuses to start with it unless the config sets allow_empty_rules: true")
                }
                warnAboutRules(loaded)
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

    /// Templates that load but probably miss what was meant.
    private func warnAboutRules(_ rules: RuleSet, pools: [PoolConfiguration]? = nil) {
        for warning in RuleWarnings.warnings(for: rules, pools: pools) {
            FileHandle.standardError.write(Data("warning: \(warning)\n".utf8))
        }
    }

    /// Samples every pool and prints, per rule template, the sampled keys of its shape;
    /// warns about templates no sampled key has. False when a pool could not be read.
    private func checkKeyShapes(_ loaded: LoadedConfiguration) async -> Bool {
        var logger = Logger(label: "invalidator")
        logger.logLevel = .critical
        let pools = PoolSet(configuration: loaded.configuration, logger: logger)
        var samples: [(pool: String, tagPrefix: String, keys: [[UInt8]])] = []
        var allRead = true
        for pool in loaded.configuration.pools {
            guard let redisPool = pools.pool(named: pool.name) else { continue }
            do {
                let byNode = try await redisPool.sampleKeys(perNode: sample)
                let keys = byNode.values.flatMap { $0 }
                print("keys     pool \(pool.name): sampled \(keys.count) key\(keys.count == 1 ? "" : "s") from \(byNode.count) node\(byNode.count == 1 ? "" : "s")")
                samples.append((pool.name, pool.tagPrefix, keys))
            } catch {
                print("keys     pool \(pool.name): FAILED \(error)")
                allRead = false
            }
        }
        await pools.close()
        for entry in KeyShapeCheck.check(loaded.rules, samples: samples) {
            print("  rule \(entry.rule)  \(entry.field) \(entry.template)  pool \(entry.pool)  \(entry.matching)/\(entry.sampled) sampled keys match \(entry.shape)")
            guard entry.matching == 0, entry.sampled > 0 else { continue }
            let hint = entry.closestPrefixes.isEmpty
                ? ""
                : "; the closest key prefixes seen: " + entry.closestPrefixes.map { "'\($0.prefix)' (\($0.keys) keys)" }.joined(separator: ", ")
            FileHandle.standardError.write(Data(
                "warning: rule '\(entry.rule)': \(entry.field) '\(entry.template)' matches none of the \(entry.sampled) keys sampled from pool '\(entry.pool)' (shape \(entry.shape))\(hint)\n".utf8))
        }
        return allRead
    }
}
