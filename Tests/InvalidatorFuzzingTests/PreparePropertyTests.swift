import InvalidatorCore
import InvalidatorFuzzing
import PropertyBased
import Testing

/// For any event built from hostile values, in any of the accepted shapes, the
/// whole per-event path holds: the event is planned, dead-lettered or skipped,
/// never trapped on; no value widens a pattern; its records read back; replay
/// decides as the worker did (the invariants of the event fuzz target).
@Suite struct PreparePropertyTests {
    /// Glob, hash-tag, escape and separator characters, and some Latin-1, often empty.
    static let values = Gen.oneOf(
        Gen<Character?>.element(of: Array("*?[]\\^-!:{}\"ab \u{7f}é")).map { $0! }, Gen.latin1
    ).string(of: 0...10)
    static let numbers = Gen.oneOf(
        Gen.int64().map { String($0) },
        Gen<String?>.element(of: ["1e999999", "-0", "0.5", "123456789012345678901234567890", "-9223372036854775809"]).map { $0! })
    /// Times from year 1 (Go's zero time) to 9999, some with offsets, and garbage.
    static let times = Gen.oneOf(
        Gen.int(in: 1...9999).map { year in String(repeating: "0", count: 4 - String(year).count) + "\(year)-01-01T00:00:00Z" },
        Gen<String?>.element(of: ["0001-01-01T00:00:00Z", "2026-02-31T25:61:61.9999999-23:59", "2026", "", "T"]).map { $0! })

    /// The event's JSON in one of the shapes a source accepts, with the mode byte of the event fuzz target.
    static func input(shape: Int, id: String, tenant: String, number: String, time: String, region: String) -> [UInt8] {
        let native = """
            {"entity":"user","id":\(quoted(id)),"op":"update","tenant":\(quoted(tenant)),"version":\(number),"changed":["email"],\
            "attributes":{"region":\(quoted(region))},"before":{"org_id":\(quoted(tenant))},\
            "after":{"org_id":\(quoted(region)),"address":{"city":\(quoted(id))}},"occurred_at":\(quoted(time))}
            """
        switch shape {
        case 0: return [0x00] + Array(native.utf8)
        case 1:
            return [0x00] + Array(#"{"specversion":"1.0","id":"c","source":"/s","type":"t","time":\#(quoted(time)),"tenant":\#(quoted(tenant)),"data":\#(native)}"#.utf8)
        case 2:
            return [0x00] + Array(#"{"payload":{"op":"u","ts_ms":\#(number),"source":{"table":"product"},"before":{"id":\#(quoted(id))},"after":{"id":\#(quoted(id)),"tenant":\#(quoted(tenant)),"category":\#(quoted(region))}}}"#.utf8)
        default:
            let headers = "ce_specversion:1.0\nce_id:b\nce_source:/s\nce_type:t\nce_time:\(time)\nce_tenant:\(tenant)\n\n"
            return [0x0C] + Array(headers.utf8) + Array(native.utf8)
        }
    }

    static func quoted(_ text: String) -> String {
        JSONValue.string(text).serialized()
    }

    @Test func everyEventIsPlannedOrDeadLetteredAndKeepsEveryInvariant() async {
        await propertyCheck(
            count: 1_000, input: Gen.int(in: 0...3), Self.values, Self.values, Self.numbers, Self.times, Self.values
        ) { shape, id, tenant, number, time, region in
            let problems = FuzzTargets.run(.event, Self.input(shape: shape, id: id, tenant: tenant, number: number, time: time, region: region))
            #expect(problems.isEmpty, "shape \(shape): \(problems)")
        }
    }
}
