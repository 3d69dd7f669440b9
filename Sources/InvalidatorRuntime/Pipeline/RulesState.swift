import InvalidatorCore
import Synchronization

/// The planner in force. Replaced whole on a rules reload; a batch takes one
/// snapshot, so it never mixes old and new rules.
package final class RulesState: Sendable {
    private let current: Mutex<Planner>

    package init(_ planner: Planner) {
        current = Mutex(planner)
    }

    package var planner: Planner {
        current.withLock { $0 }
    }

    package func replace(with planner: Planner) {
        current.withLock { $0 = planner }
    }
}
