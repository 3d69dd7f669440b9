/// `canary:`: synthetic change events sent through each real source, whose key
/// the worker checks is gone on every node, from outside the pipeline.
///
/// The built-in rule that applies canary events is always in force, whether or
/// not `enabled`: `invalidator probe` (and other workers of the group) rely on
/// every worker applying them.
public struct CanaryConfiguration: Hashable, Sendable {
    /// Whether the worker runs rounds every `interval`.
    public var enabled = false
    public var interval: Duration = .seconds(30)
    /// A key not gone on every node within this long is a failed round.
    public var timeout: Duration = .seconds(60)
    /// The pools canary keys are written to and deleted from; nil: every pool.
    public var pools: [String]?
    /// The entity of canary events: users' rules may not match it.
    public var entity = CanaryConfiguration.defaultEntity
    public var keyPrefix = "invalidator:canary:"
    /// `fail_healthz_after`: this many consecutive failed rounds of a source make
    /// `/healthz` fail; 0 never does.
    public var failHealthzAfter = 0

    public static let defaultEntity = "invalidator-canary"
    /// The name plans and `explain` show for the built-in rule.
    public static let ruleName = "canary"

    public init() {}

    /// The key a canary event with `id` deletes.
    public func key(for id: String) -> String { keyPrefix + id }

    /// The pools the built-in rule deletes on, out of `all`.
    public func targetPools(in all: [String]) -> [String] {
        pools.map { names in all.filter(names.contains) } ?? all
    }
}
