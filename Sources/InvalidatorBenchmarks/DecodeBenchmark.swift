import Foundation
import InvalidatorCore

/// Decode + plan throughput against Foundation's JSONDecoder on the same events, in one run.
enum DecodeBenchmark {
    /// What a Codable consumer would declare for the native format.
    struct CodableEvent: Decodable {
        var entity: String
        var id: String?
        var ids: [String]?
        var op: String
        var tenant: String?
        var changed: [String]?
        var attributes: [String: String]?
        var before: [String: String]?
        var after: [String: String]?
        var version: Int?
        var occurred_at: String?
        var event_id: String?
    }

    static let rules = """
        rules:
          - name: user-profile
            match: { entity: user, op: [update, delete], changed: [email, name] }
            delete: ["user:{tenant}:{id}", "org-members:{before.org_id?}", "org-members:{after.org_id?}"]
            patterns: ["session:{tenant}:{id}:*"]
            tags: ["tenant:{tenant}:users"]
          - name: product
            match: { entity: product }
            delete: ["product:{id}"]
        """

    /// `rules` plus a `notify` action on every user event: what rendering a JSON message costs.
    static let notifyRules = rules + """

          - name: listeners
            match: { entity: user }
            notify: { channel: "cache:invalidate", message: { pattern: "user:{tenant}:{id}", tenantId: "{tenant}" } }
        """

    /// Rich events: attributes, before/after images, a version, a time and an id.
    static func richEvents(count: Int) -> [[UInt8]] {
        (0..<count).map { index in
            Array("""
                {"entity":"user","id":"\(index)","op":"update","tenant":"acme","changed":["email"],\
                "attributes":{"org_id":"o\(index % 97)"},"before":{"org_id":"o7"},"after":{"org_id":"o\(index % 97)"},\
                "version":\(index),"occurred_at":"2026-11-20T10:00:00Z","event_id":"e-\(index)"}
                """.utf8)
        }
    }

    /// The end-to-end benchmark's events: one key each.
    static let minimalRules = """
        rules:
          - name: user
            match: { entity: user }
            delete: ["user:{id}"]
        """

    static func minimalEvents(count: Int) -> [[UInt8]] {
        (0..<count).map { index in Array(#"{"entity":"user","id":"\#(index)","op":"update"}"#.utf8) }
    }

    static func run(count: Int, rounds: Int) throws {
        try measure(name: "rich", events: richEvents(count: count), rules: rules, rounds: rounds)
        try measure(name: "minimal", events: minimalEvents(count: count), rules: minimalRules, rounds: rounds)
        try measure(name: "rich + notify", events: richEvents(count: count), rules: notifyRules, rounds: rounds)
    }

    static func measure(name: String, events: [[UInt8]], rules: String, rounds: Int) throws {
        let count = events.count
        let datas = events.map { Data($0) }
        let planner = Planner(
            rules: try RulesLoader.load(yaml: rules, file: "bench-rules.yaml"),
            pools: [PoolTarget(name: "primary")])
        let decoder = EventDecoder(format: .auto)
        let jsonDecoder = JSONDecoder()

        var operations = 0
        let ours = try best(of: rounds, count: count) {
            for bytes in events {
                operations &+= planner.plan(try decoder.decode(bytes)).pools.count
            }
        }
        let decodedEvents = try events.map { try decoder.decode($0) }
        let decodeOnly = try best(of: rounds, count: count) {
            for bytes in events {
                operations &+= try decoder.decode(bytes).ids.count
            }
        }
        let planOnly = try best(of: rounds, count: count) {
            for event in decodedEvents {
                operations &+= planner.plan(event).pools.count
            }
        }
        var decoded = 0
        let foundation = try best(of: rounds, count: count) {
            for data in datas {
                decoded &+= try jsonDecoder.decode(CodableEvent.self, from: data).entity.utf8.count
            }
        }
        print("decode benchmark: \(count) \(name) events (\(events[0].count) bytes each), best of \(rounds) rounds, 1 core")
        print(String(format: "  JSONDecoder (decode only)          %10.0f events/s", foundation))
        print(String(format: "  invalidator (decode only)          %10.0f events/s", decodeOnly))
        print(String(format: "  invalidator (plan only)            %10.0f events/s", planOnly))
        print(String(format: "  invalidator (decode + plan)        %10.0f events/s", ours))
        print(String(format: "  ratio                              %10.2fx", ours / foundation))
        precondition(operations > 0 && decoded > 0)
    }

    /// Events per second of the fastest round.
    static func best(of rounds: Int, count: Int, _ body: () throws -> Void) throws -> Double {
        var fastest = Duration.seconds(1_000_000)
        for _ in 0..<rounds {
            let elapsed = try ContinuousClock().measure(body)
            fastest = min(fastest, elapsed)
        }
        return Double(count) / fastest.seconds
    }
}
