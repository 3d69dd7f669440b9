import Foundation
import InvalidatorCore
import Logging
import ServiceLifecycle

/// Reloads the rules when a rules file changes, as when Kubernetes updates a
/// mounted ConfigMap (an atomic swap of the `..data` symlink to a new directory).
///
/// It compares the files' contents on a timer (every second by default) rather
/// than watching inodes: content comparison sees a symlink swap, an in-place
/// write and a rename alike. A valid new set replaces the planner whole, so each
/// batch uses either the old rules or the new ones, never a mix. An invalid set
/// is rejected: every diagnostic is logged, `invalidator_rule_reloads_total
/// {result="rejected"}` counts it, and the rules in force stay. It is tried again
/// only when the files change again.
public final class RulesReloader: Service, Sendable {
    public let paths: [String]
    private let rules: RulesState
    private let configuration: Configuration
    private let interval: Duration
    private let metrics: WorkerMetrics
    private let logger: Logger

    public init(
        paths: [String], rules: RulesState, configuration: Configuration, interval: Duration = .seconds(1),
        metrics: WorkerMetrics, logger: Logger
    ) {
        self.paths = paths
        self.rules = rules
        self.configuration = configuration
        self.interval = interval
        self.metrics = metrics
        var logger = logger
        logger[metadataKey: "component"] = "rules-reloader"
        self.logger = logger
    }

    /// The files' contents now; nil for a file that cannot be read at the moment.
    func snapshot() -> [Data?] {
        paths.map { FileManager.default.contents(atPath: $0) }
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            var last = self.snapshot()
            while !Task.isCancelled {
                try? await Task.sleep(for: self.interval)
                if Task.isCancelled { break }
                let current = self.snapshot()
                guard current != last else { continue }
                last = current
                self.reload()
            }
        }
    }

    /// Loads the rules files now and swaps them in if valid. Returns true when they were applied.
    @discardableResult
    public func reload() -> Bool {
        do {
            let loaded = try ConfigurationFiles.loadRules(paths: paths, knownPools: configuration.pools.map(\.name))
            rules.replace(with: Planner(rules: loaded, pools: configuration.poolTargets))
            metrics.ruleReload(ok: true)
            logger.info("rules reloaded", metadata: ["rules": "\(loaded.rules.count)", "files": "\(paths)"])
            return true
        } catch let error as ValidationError {
            metrics.ruleReload(ok: false)
            logger.error("new rules rejected; the previous rules stay in force", metadata: [
                "files": "\(paths)", "problems": "\(error.diagnostics.count)",
            ])
            for diagnostic in error.diagnostics {
                logger.error("rules problem: \(diagnostic)")
            }
            return false
        } catch {
            metrics.ruleReload(ok: false)
            logger.error("new rules rejected; the previous rules stay in force", metadata: [
                "files": "\(paths)", "error": "\(error)",
            ])
            return false
        }
    }
}
