import Foundation
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
        let token = "\(options.replayerID):\(UUID().uuidString.prefix(8))"
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
        do {
            // Another replay may have finished it between our read and our claim.
            guard let current = try await reader.entry(entry.id), let record = current.record else {
                try await reader.release(entry.id, owner: token)
                return skipped(entry.id, listed, "already replayed")
            }
            let result: ReplayRecordResult
            switch try await attempt(entry.id, record, options: options, limiter: limiter) {
            case .succeeded(let succeeded):
                try await reader.remove(entry.id)
                result = succeeded
            case .failed(let updated, let failed):
                try await reader.replace(entry.id, with: updated)
                result = failed
            }
            try await reader.release(entry.id, owner: token)
            return result
        } catch {
            try? await reader.release(entry.id, owner: token)
            throw error
        }
    }
}
