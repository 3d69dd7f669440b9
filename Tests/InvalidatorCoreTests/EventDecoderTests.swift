import InvalidatorCore
import Testing

@Suite struct EventDecoderTests {
    let decoder = EventDecoder(format: .auto)

    func decode(_ text: String, format: EventFormat = .auto) throws(EventDecodingError) -> ChangeEvent {
        try EventDecoder(format: format).decode(Array(text.utf8))
    }

    @Test func decodesTheNativeExampleFromTheDesign() throws {
        let event = try decode("""
            {"entity": "user", "id": "123", "op": "update", "tenant": "acme",
             "changed": ["email"], "attributes": {"org_id": "o9"},
             "before": {"org_id": "o7"}, "after": {"org_id": "o9"},
             "version": 42, "occurred_at": "2026-11-20T10:00:00Z", "event_id": "e-1"}
            """)
        #expect(event.entity == "user")
        #expect(event.ids == ["123"])
        #expect(event.op == .update)
        #expect(event.tenant == "acme")
        #expect(event.changed == ["email"])
        #expect(event.attributes["org_id"] == .string("o9"))
        #expect(event.before?["org_id"] == .string("o7"))
        #expect(event.after?["org_id"] == .string("o9"))
        #expect(event.version == "42")
        #expect(event.occurredAt == "2026-11-20T10:00:00Z")
        #expect(event.eventID == "e-1")
    }

    @Test func decodesBulkIdsAndNumericIds() throws {
        let event = try decode(#"{"entity":"user","ids":["1",2,"3"],"op":"delete"}"#)
        #expect(event.ids == ["1", "2", "3"])
    }

    @Test(arguments: [
        (#"{"id":"1","op":"update"}"#, "entity"),
        (#"{"entity":"user","op":"update"}"#, "id or ids"),
        (#"{"entity":"user","id":"1","ids":["2"],"op":"update"}"#, "not both"),
        (#"{"entity":"user","ids":[],"op":"update"}"#, "empty"),
        (#"{"entity":"user","id":"1","op":"upsert"}"#, "op 'upsert'"),
        (#"{"entity":"user","id":"","op":"update"}"#, "non-empty"),
        (#"{"entity":"user","id":{"a":1},"op":"update"}"#, "non-empty string or a number"),
        (#"{"entity":"user","id":"1","op":"update","changed":"email"}"#, "changed"),
        (#"{"entity":"user","id":"1","op":"update","attributes":[1]}"#, "attributes"),
        (#"[1,2]"#, "JSON object"),
    ])
    func reportsSchemaViolations(_ text: String, mentioning fragment: String) {
        do {
            _ = try decode(text)
            Issue.record("expected a schema violation for \(text)")
        } catch {
            #expect(error.reason == .schemaViolation)
            #expect(error.message.contains(fragment), "\(error.message)")
        }
    }

    @Test func reportsInvalidJSON() {
        #expect(throws: EventDecodingError(.invalidJSON, "unexpected end of input at byte 13")) {
            try decode(#"{"entity":"u""#)
        }
    }

    @Test func derivesChangedFieldsFromBeforeAndAfter() throws {
        let event = try decode(#"{"entity":"user","id":"1","op":"update","before":{"a":1,"b":2,"c":3},"after":{"a":1,"b":5,"d":4}}"#)
        #expect(event.changed == nil)
        #expect(Set(event.effectiveChanged ?? []) == ["b", "c", "d"])
    }

    @Test func decodesDebeziumWithSchemaEnvelope() throws {
        let event = try decode("""
            {"schema": {"type": "struct"}, "payload": {
              "before": {"id": 7, "email": "a@x", "tenant": "acme"},
              "after": {"id": 7, "email": "b@x", "tenant": "acme"},
              "source": {"table": "users", "db": "app"}, "op": "u", "ts_ms": 1763632800123}}
            """)
        #expect(event.entity == "users")
        #expect(event.ids == ["7"])
        #expect(event.op == .update)
        #expect(event.tenant == "acme")
        #expect(event.effectiveChanged == ["email"])
        #expect(event.attributes["email"] == .string("b@x"))
        #expect(event.occurredAt == "2025-11-20T10:00:00.123Z")
    }

    @Test func decodesUnwrappedDebeziumDeletesFromBefore() throws {
        let event = try decode(#"{"before":{"id":"k1"},"after":null,"source":{"table":"orders"},"op":"d"}"#)
        #expect(event.entity == "orders")
        #expect(event.op == .delete)
        #expect(event.ids == ["k1"])
        #expect(event.attributes["id"] == .string("k1"))
    }

    @Test(arguments: [("c", ChangeEvent.Operation.create), ("u", .update), ("d", .delete), ("r", .read)])
    func mapsDebeziumOps(_ code: String, _ op: ChangeEvent.Operation) throws {
        let event = try decode(#"{"payload":{"after":{"id":1},"source":{"table":"t"},"op":"\#(code)"}}"#)
        #expect(event.op == op)
    }

    @Test func rejectsDebeziumTruncateAndRowsWithoutId() {
        #expect(throws: EventDecodingError.self) {
            try decode(#"{"payload":{"source":{"table":"t"},"op":"t"}}"#)
        }
        #expect(throws: EventDecodingError.self) {
            try decode(#"{"payload":{"after":{"name":"x"},"source":{"table":"t"},"op":"c"}}"#)
        }
    }

    @Test func decodesStructuredCloudEvents() throws {
        let event = try decode("""
            {"specversion": "1.0", "id": "ce-9", "source": "/users", "type": "user.changed",
             "time": "2026-11-20T10:00:00Z", "tenant": "acme",
             "data": {"entity": "user", "id": "5", "op": "update"}}
            """)
        #expect(event.entity == "user")
        #expect(event.eventID == "ce-9")
        #expect(event.occurredAt == "2026-11-20T10:00:00Z")
        #expect(event.tenant == "acme")
    }

    @Test func cloudEventDataMayBeAJSONString() throws {
        let event = try decode(#"{"specversion":"1.0","id":"1","source":"s","type":"t","data":"{\"entity\":\"user\",\"id\":\"5\",\"op\":\"delete\"}"}"#)
        #expect(event.op == .delete)
    }

    @Test func rejectsCloudEventsWithoutRequiredAttributes() {
        #expect(throws: EventDecodingError.self) {
            try decode(#"{"specversion":"1.0","id":"1","type":"t","data":{"entity":"user","id":"5","op":"update"}}"#)
        }
    }

    @Test func decodesCloudEventsBinaryMode() throws {
        let headers = ["ce_specversion": "1.0", "ce_id": "b-1", "ce_source": "/s", "ce_type": "t", "ce_time": "2026-01-01T00:00:00Z"]
        let event = try decoder.decodeCloudEventBinary(
            headers: headers.mapValues { Array($0.utf8) }, data: Array(#"{"entity":"user","id":"5","op":"update"}"#.utf8))
        #expect(event.eventID == "b-1")
        #expect(event.occurredAt == "2026-01-01T00:00:00Z")
        #expect(throws: EventDecodingError.self) {
            try decoder.decodeCloudEventBinary(headers: ["ce_id": Array("x".utf8)], data: Array("{}".utf8))
        }
    }

    @Test func aCloudEventHeaderThatIsNotUTF8IsInvalid() throws {
        var headers = ["ce_specversion": "1.0", "ce_id": "b-1", "ce_source": "/s", "ce_type": "t"].mapValues { Array($0.utf8) }
        headers["ce_tenant"] = [0x61, 0xFF, 0xFE]
        let error = #expect(throws: EventDecodingError.self) {
            try decoder.decodeCloudEventBinary(headers: headers, data: Array(#"{"entity":"user","id":"5","op":"update"}"#.utf8))
        }
        #expect(error?.reason == .invalidJSON)
    }

    @Test func anExplicitFormatDoesNotGuess() {
        // A native event read as Debezium has no payload.op: rejected, not silently reinterpreted.
        #expect(throws: EventDecodingError.self) {
            try decode(#"{"entity":"user","id":"1","op":"update"}"#, format: .debezium)
        }
    }
}
