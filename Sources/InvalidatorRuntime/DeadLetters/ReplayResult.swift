import Foundation
import InvalidatorCore

/// What `replay` should do.
package struct ReplayOptions: Sendable {
    /// Show what would be replayed; change nothing.
    package var dryRun = false
    /// At most this many matching records.
    package var limit: Int?
    /// Only records with one of these reasons (any when empty).
    package var reasons: [String] = []
    /// Only records of one of these rules (the record's rule or any of its operations' rules).
    package var rules: [String] = []
    /// Only records of one of these nodes (`host:port`).
    package var nodes: [String] = []
    /// Only `delivery-failed` records of one of these webhook targets.
    package var targets: [String] = []
    /// Only records written at or after this time (milliseconds since the epoch).
    package var sinceMilliseconds: Int64?
    /// Operations per second across the replay; nil for no limit.
    package var ratePerSecond: Double?
    /// Plan the original event again with the current rules instead of repeating the recorded operations.
    package var reprocess = false
    /// How long a record stays claimed by this replay; a crashed replay's claims expire after it.
    package var lockTTL: Duration = .seconds(300)
    /// Names this replay in locks and logs.
    package var replayerID: String
    /// Records read per XRANGE.
    package var batchSize = 200
    /// How long a Kafka topic store may leave a request unanswered before the run stops.
    package var storeTimeout: Duration = .seconds(30)

    package init(replayerID: String = Worker.defaultWorkerID) {
        self.replayerID = replayerID
    }

    /// Parses `--since`: an RFC 3339 time (`2026-11-20T10:00:00Z`), or a duration
    /// ago (`90m`, `2h`, `500ms`). nil when it is neither.
    package static func parseSince(_ text: String, now: Date = Date()) -> Int64? {
        if let duration = DurationParser.parse(text) {
            return Int64((now.timeIntervalSince1970 * 1000).rounded()) - duration.milliseconds
        }
        return RFC3339.millisecondsSinceEpoch(text)
    }
}

/// What happened to one dead-letter record.
package struct ReplayRecordResult: Sendable {
    package enum Outcome: String, Sendable {
        /// Its work succeeded; the record was removed.
        case replayed
        /// It failed again and stays (updated), or it could not be read.
        case failed
        /// Left alone (another replay holds it, or it was already gone).
        case skipped
        /// Dry run: would be replayed.
        case wouldReplay = "would-replay"
        /// Dry run: cannot succeed as things are (bad input, a template the event cannot fill).
        case wouldFail = "would-fail"
    }

    /// The record's id in its store: a stream entry id, or `topic/partition@offset`.
    package var id: String
    package var outcome: Outcome
    /// The record's reason; for `failed`, the reason it stays with.
    package var reason: String
    package var rule: String?
    package var pool: String?
    package var node: String?
    /// Operations executed (or, in a dry run, that would be).
    package var operations: [String]
    /// For `failed`: attempts after this replay.
    package var attempts: Int?
    /// For `failed`: the error; for `skipped`: why.
    package var detail: String?

    package var json: JSONValue {
        .object([
            "id": .string(id),
            "result": .string(outcome.rawValue),
            "reason": .string(reason),
            "rule": rule.map(JSONValue.string) ?? .null,
            "pool": pool.map(JSONValue.string) ?? .null,
            "node": node.map(JSONValue.string) ?? .null,
            "operations": .array(operations.map(JSONValue.string)),
            "attempts": attempts.map { .number(String($0)) } ?? .null,
            "detail": detail.map(JSONValue.string) ?? .null,
        ])
    }
}

/// The outcome of one `replay` run.
package struct ReplayResult: Sendable {
    package var dryRun: Bool
    /// Per matching record, in stream order.
    package var records: [ReplayRecordResult]
    /// Records left in the store after the run (all of them, not only those matched).
    package var remaining: Int

    package var replayed: Int { records.count { $0.outcome == .replayed } }
    package var wouldReplay: Int { records.count { $0.outcome == .wouldReplay } }
    package var wouldFail: Int { records.count { $0.outcome == .wouldFail } }
    package var failed: Int { records.count { $0.outcome == .failed } }
    package var skipped: Int { records.count { $0.outcome == .skipped } }

    /// Still failing records per reason, sorted by reason (in a dry run: those that would fail).
    package var failedByReason: [(reason: String, count: Int)] { tally(dryRun ? .wouldFail : .failed) { $0.reason } }
    /// Skipped records per cause.
    package var skippedByCause: [(cause: String, count: Int)] { tally(.skipped) { $0.detail ?? "skipped" }.map { ($0.0, $0.1) } }

    /// 0 when nothing this run handled remains failed, 1 otherwise. Records
    /// skipped because another replay holds them are that replay's to report.
    /// A dry run changes nothing and exits 0.
    package var exitCode: Int32 { !dryRun && failed > 0 ? 1 : 0 }

    private func tally(_ outcome: ReplayRecordResult.Outcome, _ key: (ReplayRecordResult) -> String) -> [(String, Int)] {
        var counts: [String: Int] = [:]
        for record in records where record.outcome == outcome { counts[key(record), default: 0] += 1 }
        return counts.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }

    /// `replayed 12, still failing 3 (operation-failed 3), skipped 2 (locked by another replay 2), remaining 3`.
    package var summary: String {
        if dryRun {
            let operations = records.filter { $0.outcome == .wouldReplay }.reduce(0) { $0 + $1.operations.count }
            var line = "dry run: would replay \(wouldReplay) record\(wouldReplay == 1 ? "" : "s") (\(operations) operation\(operations == 1 ? "" : "s"))"
            if wouldFail > 0 { line += ", \(wouldFail) would still fail (\(failedByReason.map { "\($0.reason) \($0.count)" }.joined(separator: ", ")))" }
            return line + "; nothing changed, \(remaining) in the store"
        }
        var line = "replayed \(replayed), still failing \(failed)"
        if failed > 0 { line += " (\(failedByReason.map { "\($0.reason) \($0.count)" }.joined(separator: ", ")))" }
        line += ", skipped \(skipped)"
        if skipped > 0 { line += " (\(skippedByCause.map { "\($0.cause) \($0.count)" }.joined(separator: ", ")))" }
        return line + ", remaining \(remaining)"
    }

    /// One line per record, then the summary.
    package var text: String {
        var lines: [String] = []
        for record in records {
            var line = "\(record.id)  \(record.outcome.rawValue.padded(12))  \(record.reason)"
            if let rule = record.rule { line += "  rule=\(rule)" }
            if let pool = record.pool { line += "  pool=\(pool)" }
            if let node = record.node { line += "  node=\(node)" }
            if !record.operations.isEmpty { line += "  \(record.operations.count) op\(record.operations.count == 1 ? "" : "s")" }
            if let attempts = record.attempts { line += "  attempts=\(attempts)" }
            if let detail = record.detail { line += ": \(detail)" }
            lines.append(line)
            if dryRun && record.outcome == .wouldReplay {
                lines += record.operations.map { "    " + $0 }
            }
        }
        lines.append(summary)
        return lines.joined(separator: "\n") + "\n"
    }

    package var json: JSONValue {
        .object([
            "dry_run": .bool(dryRun),
            "replayed": .number(String(replayed)),
            "would_replay": .number(String(wouldReplay)),
            "would_fail": .number(String(wouldFail)),
            "still_failing": .number(String(failed)),
            "still_failing_by_reason": .object(JSONObject(failedByReason.map { .init(key: $0.reason, value: .number(String($0.count))) })),
            "skipped": .number(String(skipped)),
            "skipped_by_cause": .object(JSONObject(skippedByCause.map { .init(key: $0.cause, value: .number(String($0.count))) })),
            "remaining": .number(String(remaining)),
            "records": .array(records.map(\.json)),
        ])
    }
}

extension String {
    fileprivate func padded(_ width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
}
