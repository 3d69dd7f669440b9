import InvalidatorCore
import Synchronization

/// The planner in force. Replaced whole on a rules reload; a batch takes one
/// snapshot, so it never mixes old and new rules.
public final class RulesState: Sendable {
    private let current: Mutex<Planner>

    public init(_ planner: Planner) {
        current = Mutex(planner)
    }

    public var planner: Planner {
        current.withLock { $0 }
    }

    public func replace(with planner: Planner) {
        current.withLock { $0 = planner }
    }
}
