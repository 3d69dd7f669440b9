/// Which messages of each partition are finished, so a committed position never
/// passes a message whose operations are not yet applied or dead-lettered.
///
/// Messages are tracked in the order they arrive (offsets increase within a
/// partition). A message may carry several pieces of work (its batch, a delayed
/// redelete); it is finished when all of them are. The commit position of a
/// partition is the offset after the longest finished prefix.
package struct CompletionTracker<Partition: Hashable & Sendable>: Sendable {
    private struct PartitionState: Sendable {
        /// Offsets in arrival order, ascending; `head` is the first not yet passed.
        var offsets: [Int64] = []
        /// Pieces of work left per entry of `offsets`; 0 when finished.
        var remaining: [Int32] = []
        var head = 0
        var unfinished = 0
        /// One past the longest finished prefix.
        var finishedPosition: Int64?
        /// The position last handed out for commit.
        var committed: Int64?

        /// Where `offset` sits in `offsets`, by binary search (offsets ascend).
        func index(of offset: Int64) -> Int? {
            var low = head
            var high = offsets.count
            while low < high {
                let middle = (low + high) / 2
                if offsets[middle] < offset { low = middle + 1 } else { high = middle }
            }
            return low < offsets.count && offsets[low] == offset ? low : nil
        }

        /// Moves past the finished prefix; returns the commit position if it changed.
        mutating func advance() -> Int64? {
            while head < offsets.count, remaining[head] == 0 {
                // Saturating: a broker's offset is data too, and Int64.max + 1 would trap.
                finishedPosition = offsets[head] == .max ? .max : offsets[head] + 1
                head += 1
            }
            // Drop the passed prefix now and then, so the arrays do not grow forever.
            if head > 1024, head * 2 > offsets.count {
                offsets.removeFirst(head)
                remaining.removeFirst(head)
                head = 0
            }
            guard let position = finishedPosition, position != committed else { return nil }
            committed = position
            return position
        }
    }

    private var partitions: [Partition: PartitionState] = [:]
    package private(set) var inFlight = 0

    package init() {}

    /// Starts tracking a message with one piece of work.
    package mutating func track(_ partition: Partition, offset: Int64) {
        track(partition, offsets: CollectionOfOne(offset))
    }

    /// Starts tracking messages of one partition, in arrival order, each with one piece of work.
    package mutating func track(_ partition: Partition, offsets: some Sequence<Int64>) {
        // One hash per run of messages: the state is mutated in place through the dictionary.
        inFlight += Self.startTracking(offsets, in: &partitions[partition, default: PartitionState()])
    }

    private static func startTracking(_ offsets: some Sequence<Int64>, in state: inout PartitionState) -> Int {
        var count = 0
        for offset in offsets {
            state.offsets.append(offset)
            state.remaining.append(1)
            count += 1
        }
        state.unfinished += count
        return count
    }

    /// Adds a piece of work to a tracked, unfinished message (e.g. a scheduled redelete).
    package mutating func addWork(_ partition: Partition, offset: Int64) {
        guard let slot = partitions.index(forKey: partition),
              let index = partitions.values[slot].index(of: offset), partitions.values[slot].remaining[index] > 0
        else { return }
        partitions.values[slot].remaining[index] += 1
    }

    /// Finishes one piece of a message's work.
    package mutating func complete(_ partition: Partition, offset: Int64) {
        complete(partition, offsets: CollectionOfOne(offset))
    }

    /// Finishes one piece of the work of each of these messages of one partition.
    package mutating func complete(_ partition: Partition, offsets: some Sequence<Int64>) {
        // Mutated in place through the dictionary's values: a copy would duplicate the arrays per message.
        guard let slot = partitions.index(forKey: partition) else { return }
        for offset in offsets {
            guard let index = partitions.values[slot].index(of: offset), partitions.values[slot].remaining[index] > 0
            else { continue }
            partitions.values[slot].remaining[index] -= 1
            if partitions.values[slot].remaining[index] == 0 {
                partitions.values[slot].unfinished -= 1
                inFlight -= 1
            }
        }
    }

    /// The next offset to commit for `partition` if it moved since the last call:
    /// one past the longest finished prefix. Nil when there is nothing new to commit.
    package mutating func takeCommitPosition(_ partition: Partition) -> Int64? {
        guard partitions[partition] != nil else { return nil }
        return partitions[partition]!.advance()
    }

    /// Commit positions that moved, for every partition.
    package mutating func takeCommitPositions() -> [Partition: Int64] {
        var positions: [Partition: Int64] = [:]
        for partition in Array(partitions.keys) {
            if let position = takeCommitPosition(partition) {
                positions[partition] = position
            }
        }
        return positions
    }

    /// Forgets the last handed-out position after a failed commit, so the next
    /// `takeCommitPosition` offers it again.
    package mutating func resetCommitted(_ partition: Partition) {
        partitions[partition]?.committed = nil
    }

    /// Stops tracking a partition (revoked); its unfinished messages no longer count as in flight.
    package mutating func forget(_ partition: Partition) {
        guard let state = partitions.removeValue(forKey: partition) else { return }
        inFlight -= state.unfinished
    }

    package func unfinishedCount(_ partition: Partition) -> Int {
        partitions[partition]?.unfinished ?? 0
    }
}
