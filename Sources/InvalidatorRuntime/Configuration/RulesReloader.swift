import Foundation
import InvalidatorCore
import Logging
import ServiceLifecycle

/// Reloads the rules when a rules file changes, as when Kubernetes updates a
/// mounted ConfigMap (an atomic swap of the `..data` symlink to a new directory).
///
/// It compares the files' contents on a timer (every second by default) rather
/// than watching inodes: content comparison sees a symlink swap, an in-place
/// write and a rename alike. A change is loaded only once the files have stopped
/// changing for `settleInterval`, so a file written in place is never read
/// half-written. A valid new set replaces the planner whole, so each batch uses
/// either the old rules or the new ones, never a mix.
///
/// A reload can never silently stop invalidation: an invalid set, and an empty
/// one (unless the config says `allow_empty_rules: true`), is rejected: every
/// problem is logged, `invalidator_rule_reloads_total{result="rejected"}` counts
/// it, and the rules in force stay. It is tried again only when the files change
/// again. An accepted reload logs the rules added, removed and changed, and sets
/// `invalidator_rules` to the number in force.
package final class RulesReloader: Service, Sendable {
    package let paths: [String]
    private let rules: RulesState
    private let configuration: Configuration
    private let interval: Duration
    private let settleInterval: Duration
    /// The contents the rules in force were loaded from; nil to take them when the reloader starts.
    private let loadedContents: [Data?]?
    private let metrics: WorkerMetrics
    private let logger: Logger

    package init(
        paths: [String], rules: RulesState, configuration: Configuration, interval: Duration = .seconds(1),
        settleInterval: Duration = .milliseconds(300), loadedContents: [Data?]? = nil, metrics: WorkerMetrics, logger: Logger
    ) {
        self.loadedContents = loadedContents
        self.paths = paths
        self.rules = rules
        self.configuration = configuration
        self.interval = interval
        self.settleInterval = settleInterval
        self.metrics = metrics
        var logger = logger
        logger[metadataKey: "component"] = "rules-reloader"
        self.logger = logger
    }

    /// The files' contents now; nil for a file that cannot be read at the moment.
    func snapshot() -> [Data?] {
        paths.map { FileManager.default.contents(atPath: $0) }
    }

    package func run() async throws {
        await cancelWhenGracefulShutdown {
            var last = self.loadedContents ?? self.snapshot()
            while !Task.isCancelled {
                // The polling timer: file contents have no event to wait on.
                try? await Task.sleep(for: self.interval)
                if Task.isCancelled { break }
                guard var current = Optional(self.snapshot()), current != last else { continue }
                // The settle timer: a file still being written differs at the next look.
                while !Task.isCancelled {
                    try? await Task.sleep(for: self.settleInterval)
                    let later = self.snapshot()
                    if later == current { break }
                    current = later
                }
                if Task.isCancelled { break }
                last = current
                _ = self.reload(current)
            }
        }
    }

    /// Loads the rules files as they are now and swaps them in if acceptable. Returns true when they were applied.
    @discardableResult
    package func reload() -> Bool {
        reload(snapshot())
    }

    private func reload(_ contents: [Data?]) -> Bool {
        let loaded: RuleSet
        do {
            loaded = try ConfigurationFiles.loadRules(files: try texts(contents), for: configuration)
        } catch let error as ValidationError {
            reject("the new rules are invalid", problems: error.diagnostics.map(\.description))
            return false
        } catch {
            reject("the new rules cannot be read", problems: ["\(error)"])
            return false
        }
        let previous = rules.planner.rules
        if loaded.rules.isEmpty, !configuration.allowEmptyRules {
            reject("the new rules set is empty, which would invalidate nothing", problems: [
                "if no rules is intended, set allow_empty_rules: true in the config and restart; otherwise fix the rules files (a template that rendered no rules?)",
            ])
            return false
        }
        rules.replace(with: configuration.planner(rules: loaded))
        metrics.ruleReload(ok: true)
        metrics.rulesInForce(loaded.rules.count)
        let change = RulesChange(from: previous, to: loaded)
        logger.info("rules reloaded", metadata: [
            "rules": "\(loaded.rules.count)", "files": "\(paths)", "added": "\(change.added)",
            "removed": "\(change.removed)", "changed": "\(change.changed)",
        ])
        if !change.removed.isEmpty {
            logger.warning("rules removed by the reload", metadata: ["removed": "\(change.removed)", "rules": "\(loaded.rules.count)"])
        }
        return true
    }

    /// The snapshot as texts, in `paths` order.
    private func texts(_ contents: [Data?]) throws(FileReadError) -> [(path: String, text: String)] {
        var texts: [(path: String, text: String)] = []
        for (path, data) in zip(paths, contents) {
            guard let data else { throw FileReadError(path: path, reason: "cannot be read") }
            guard let text = String(data: data, encoding: .utf8) else { throw FileReadError(path: path, reason: "not UTF-8 text") }
            texts.append((path, text))
        }
        return texts
    }

    private func reject(_ reason: String, problems: [String]) {
        metrics.ruleReload(ok: false)
        logger.error("new rules rejected; the previous rules stay in force", metadata: [
            "reason": "\(reason)", "files": "\(paths)", "problems": "\(problems.count)",
            "rules": "\(rules.planner.rules.rules.count)",
        ])
        for problem in problems {
            logger.error("rules problem: \(problem)")
        }
    }
}

/// Rule names a reload added, removed, and kept under the same name with another definition.
struct RulesChange: Equatable {
    var added: [String] = []
    var removed: [String] = []
    var changed: [String] = []

    init(from old: RuleSet, to new: RuleSet) {
        let oldByName = Dictionary(old.rules.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        let newNames = Set(new.rules.map(\.name))
        for rule in new.rules {
            if let previous = oldByName[rule.name] {
                if previous != rule { changed.append(rule.name) }
            } else {
                added.append(rule.name)
            }
        }
        removed = old.rules.map(\.name).filter { !newNames.contains($0) }
    }
}
