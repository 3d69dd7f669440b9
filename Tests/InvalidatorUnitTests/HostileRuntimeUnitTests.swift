import Foundation
import InvalidatorCore
import TestDoubles
import Testing

@testable import InvalidatorRuntime

@Suite struct HostileRuntimeUnitTests {
    // MARK: Event ages

    @Test func absurdEventAgesAreClampedOrSkippedNotTrapped() throws {
        let metrics = AllValuesMetrics()
        let worker = WorkerMetrics(factory: metrics)
        // Go's zero time (year 1) and Debezium's ts_ms -10000000000000 (year 1653):
        // both beyond Int64 nanoseconds.
        let yearOne = try #require(RFC3339.secondsSinceEpoch("0001-01-01T00:00:00Z"))
        worker.latency(seconds: Date.nowSeconds - yearOne)
        worker.latency(seconds: 1.18e10)
        worker.latency(seconds: .greatestFiniteMagnitude)
        worker.latency(seconds: .infinity)
        worker.latency(seconds: -.infinity)
        worker.latency(seconds: .nan)
        worker.latency(seconds: -5)
        worker.latency(seconds: 1.5)
        #expect(metrics.recorded(MetricName.endToEndLatency) == [
            longestRecordedLatencyNanoseconds, longestRecordedLatencyNanoseconds, longestRecordedLatencyNanoseconds, 0, 1_500_000_000,
        ])
    }

    // MARK: Offsets

    @Test func theCommitPositionSaturatesAtTheLastOffset() {
        var tracker = CompletionTracker<Int32>()
        tracker.track(0, offset: Int64.max)
        tracker.complete(0, offset: Int64.max)
        #expect(tracker.takeCommitPosition(0) == Int64.max, "Int64.max + 1 would trap; the position saturates")
        tracker.track(1, offsets: [Int64.max - 2, Int64.max - 1, Int64.max])
        tracker.complete(1, offsets: [Int64.max - 2, Int64.max])
        #expect(tracker.takeCommitPosition(1) == Int64.max - 1)
        tracker.complete(1, offset: Int64.max - 1)
        #expect(tracker.takeCommitPosition(1) == Int64.max)
        #expect(tracker.takeCommitPosition(1) == nil, "nothing moved since")
        #expect(tracker.inFlight == 0)
    }

    // MARK: Stream entries read as an object of their fields

    typealias Fields = [(name: [UInt8], value: [UInt8])]

    func fields(_ pairs: [(String, String)]) -> Fields {
        pairs.map { (Array($0.0.utf8), Array($0.1.utf8)) }
    }

    @Test func anEntrysEventFieldOrOnlyFieldIsTheEvent() {
        #expect(RedisStreamSource.payload(of: nil) == nil)
        #expect(RedisStreamSource.payload(of: fields([("data", "x")])) == Array("x".utf8))
        #expect(RedisStreamSource.payload(of: fields([("a", "1"), ("event", "first"), ("event", "last")])) == Array("last".utf8))
        // A single field's value is the event as it is, bytes included.
        #expect(RedisStreamSource.payload(of: [(Array("data".utf8), [0xFF, 0xFE])]) == [0xFF, 0xFE])
    }

    @Test func severalFieldsAreAJSONObjectWithEveryByteEscapedAsNeeded() throws {
        let payload = try #require(RedisStreamSource.payload(of: fields([
            ("entity", "user"), ("id", #"a"b\c"#), ("op", "update"), ("note", "line\nbreak\u{01}"), ("city", "Zürich 中"),
        ])))
        let object = try #require(try JSONParser.parse(bytes: payload).objectValue)
        #expect(object.fields.map(\.key) == ["entity", "id", "op", "note", "city"])
        #expect(object["id"] == .string(#"a"b\c"#))
        #expect(object["note"] == .string("line\nbreak\u{01}"))
        #expect(object["city"] == .string("Zürich 中"))
        let event = try EventDecoder(format: .auto).decode(payload)
        #expect(event.ids == [#"a"b\c"#])
    }

    @Test func aFieldValueThatIsNotUTF8MakesTheEntryInvalidJSONInsteadOfARepairedId() throws {
        var entry = fields([("entity", "user"), ("op", "update")])
        entry.append((Array("id".utf8), Array("3".utf8) + [0xFF]))
        let payload = try #require(RedisStreamSource.payload(of: entry))
        #expect(payload.contains(0xFF), "the bytes are kept, not repaired")
        let error = #expect(throws: EventDecodingError.self) { try EventDecoder(format: .auto).decode(payload) }
        #expect(error?.reason == .invalidJSON)
    }

    @Test func aFieldNameThatIsNotUTF8MakesTheEntryInvalidJSON() throws {
        var entry = fields([("entity", "user"), ("id", "5"), ("op", "update")])
        entry.append(([0xC0, 0x80], Array("x".utf8)))
        let payload = try #require(RedisStreamSource.payload(of: entry))
        let error = #expect(throws: EventDecodingError.self) { try EventDecoder(format: .auto).decode(payload) }
        #expect(error?.reason == .invalidJSON)
    }

    // MARK: CloudEvents headers in the batch and in the record

    static let rules = """
        rules:
          - name: org
            match: { entity: org }
            delete: ["org:{tenant}:{id}"]
        """

    func cloudEvent(id: String, tenant: [UInt8], offset: Int64) -> IncomingEvent {
        let headers: [(key: String, value: [UInt8]?)] = [
            ("ce_specversion", Array("1.0".utf8)), ("ce_id", Array("c-\(id)".utf8)), ("ce_source", Array("/orgs".utf8)),
            ("ce_type", Array("org.changed".utf8)), ("ce_tenant", tenant), ("traceparent", [0xFF]),
        ]
        return IncomingEvent(
            source: .kafka(topic: "entity-changes", partition: 0, offset: offset),
            payload: Array(#"{"entity":"org","id":"\#(id)","op":"update"}"#.utf8), headers: headers)
    }

    @Test func aBinaryCloudEventWithAHeaderThatIsNotUTF8IsDeadLetteredAsInvalidJSON() throws {
        let planner = Planner(rules: try RulesLoader.load(yaml: Self.rules, file: "rules.yaml"), pools: [PoolTarget(name: "primary")])
        let batch = [cloudEvent(id: "7", tenant: [0x61, 0xFF, 0xFE], offset: 0), cloudEvent(id: "8", tenant: Array("acme".utf8), offset: 1)]

        let prepared = BatchPreparer(workerID: "w").prepare(batch[...], in: batch, planner: planner, now: "2026-01-01T00:00:00.000Z")

        #expect(prepared.plans.count == 1)
        #expect(prepared.planEventIndexes == [1])
        let keys = prepared.plans.first?.pools.flatMap { $0.operations.map(\.operation) }
        #expect(keys == [.delete(key: "org:acme:8")])
        let record = try #require(prepared.rejected.first)
        #expect(prepared.rejected.count == 1)
        #expect(record.reason == .invalidJSON)
        #expect(record.errorMessage.contains("ce_tenant"), "\(record.errorMessage)")
        #expect(record.headers["ce_tenant"] == [0x61, 0xFF, 0xFE])
        #expect(record.headers["traceparent"] == nil, "only ce_ headers are kept")
    }

    @Test func aRecordKeepsAHeaderThatIsNotUTF8AsBase64AndReadsItBackAsBytes() throws {
        var record = DeadLetter(
            event: Array(#"{"entity":"org","id":"7","op":"update"}"#.utf8), source: .kafka(topic: "t", partition: 0, offset: 1),
            reason: .invalidJSON, errorClass: "invalid-json", errorMessage: "CloudEvent header ce_tenant is not valid UTF-8",
            failedAt: "2026-01-01T00:00:00.000Z", worker: "w")
        record.headers = ["ce_specversion": Array("1.0".utf8), "ce_tenant": [0x61, 0xFF, 0xFE]]
        let text = record.json.serialized()
        #expect(text.contains(#""headers":{"ce_specversion":"1.0","ce_tenant":{"base64":"Yf/+"}}"#), "\(text)")
        let decoded = try DeadLetter(jsonText: text)
        #expect(decoded.headers["ce_tenant"] == [0x61, 0xFF, 0xFE])
        #expect(decoded.headers["ce_specversion"] == Array("1.0".utf8))
        // Read back, the event is rejected again, not repaired into tenant "a\u{FFFD}\u{FFFD}".
        let error = #expect(throws: EventDecodingError.self) {
            try EventDecoder(format: .auto).decodeCloudEventBinary(
                headers: decoded.headers.merging(["ce_id": Array("1".utf8), "ce_source": Array("s".utf8), "ce_type": Array("t".utf8)]) { a, _ in a },
                data: decoded.event)
        }
        #expect(error?.reason == .invalidJSON)
    }
}

extension Date {
    static var nowSeconds: Double { Date().timeIntervalSince1970 }
}
