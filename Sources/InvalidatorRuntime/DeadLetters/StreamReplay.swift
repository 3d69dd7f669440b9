import InvalidatorCore

/// Replaying a Redis stream store: read the entries present at the start, claim
/// each (so concurrent replays never apply a record twice), check it is still
/// there, run it, then `XDEL` it or replace it atomically.
extension Replayer {
    func replayStream(
        _ reader: DeadLetterReader, options: ReplayOptions, limiter: RateLimiter?, results: inout [ReplayRecordResult]
    ) async throws {
        // Only what is there now: records rewritten by this run land after `end`.
        guard let end = try await reader.lastID() else { return }
        let token = ReplayLock.owner(replayerID: options.replayerID)
        var start = options.sinceMilliseconds.map { "\(max($0, 0))-0" } ?? "-"
        while true {
            let batch = try await reader.read(from: start, through: end, count: options.batchSize)
            for entry in batch where matches(entry, options) {
                if let limit = options.limit, results.count >= limit { return }
                results.append(try await handle(entry, in: reader, options: options, token: token, limiter: limiter))
            }
            guard batch.count == options.batchSize, let last = batch.last, last.id != end else { return }
            start = "(" + last.id
        }
    }

    private func handle(
        _ entry: StoredDeadLetter, in reader: DeadLetterReader, options: ReplayOptions, token: String, limiter: RateLimiter?
    ) async throws -> ReplayRecordResult {
        // Never removed: an operator has to look at it.
        guard let listed = entry.record else { return unreadable(entry, dryRun: options.dryRun) }
        if options.dryRun {
            return describe(entry.id, listed, work: prepare(listed, reprocess: options.reprocess))
        }
        guard try await reader.claim(entry.id, owner: token, ttl: options.lockTTL) else {
            return skipped(entry.id, listed, "locked by another replay")
        }
        let result: ReplayRecordResult
        do {
            result = try await replayClaimed(entry.id, listed, in: reader, options: options, limiter: limiter)
        } catch {
            try? await reader.release(entry.id, owner: token)
            throw error
        }
        try await reader.release(entry.id, owner: token)
        return result
    }

    /// Runs a claimed record and settles it in the stream.
    private func replayClaimed(
        _ id: String, _ listed: DeadLetter, in reader: DeadLetterReader, options: ReplayOptions, limiter: RateLimiter?
    ) async throws -> ReplayRecordResult {
        // Another replay may have finished it between our read and our claim.
        guard let current = try await reader.entry(id), let record = current.record else {
            return skipped(id, listed, "already replayed")
        }
        switch try await attempt(id, record, options: options, limiter: limiter) {
        case .succeeded(let result):
            try await reader.remove(id)
            return result
        case .failed(let updated, let result):
            try await reader.replace(id, with: updated)
            return result
        }
    }
}
