#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets (Fuzz/corpus/<target>/seed-*).

Event inputs start with a mode byte (see EventFuzzTarget.Mode in
Sources/InvalidatorFuzzing): bits 0-1 the format (auto, native, debezium,
cloudevents), bits 2-3 the source (kafka, redis stream, redis pub/sub, kafka with
ce_ headers), bit 4 an 8-byte little-endian broker timestamp after it, bit 5 the
mapped variant of the format (FuzzRules.mappedDecoder; with auto: direct messages).
Run it again after changing the seeds; findings are added beside them by hand.
"""
import json
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
AUTO, NATIVE, DEBEZIUM, CLOUDEVENTS = 0, 1, 2, 3
KAFKA, STREAM, PUBSUB, HEADERS = 0, 4, 8, 12
TIMESTAMP = 16
MAPPED, DIRECT = 32, 32 | AUTO


def write(target, name, data):
    directory = os.path.join(ROOT, target)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "seed-" + name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def event(name, mode, payload, timestamp=None):
    body = payload if isinstance(payload, bytes) else (payload if isinstance(payload, str) else json.dumps(payload)).encode()
    prefix = bytes([mode | (TIMESTAMP if timestamp is not None else 0)])
    if timestamp is not None:
        prefix += struct.pack("<q", timestamp)
    write("event", name, prefix + body)


user = {"entity": "user", "id": "123", "op": "update", "tenant": "acme", "changed": ["email"],
        "attributes": {"org_id": "o9", "region": "eu"}, "before": {"org_id": "o7"},
        "after": {"org_id": "o9", "address": {"city": "Oslo"}}, "version": 42,
        "occurred_at": "2026-11-20T10:00:00Z", "event_id": "e-1"}
event("native-user", AUTO, user)
event("native-user-pubsub", PUBSUB | NATIVE, user)
event("go-zero-time", PUBSUB, {"entity": "user", "id": "1", "op": "update", "tenant": "a", "occurred_at": "0001-01-01T00:00:00Z"})
event("year-9999", KAFKA, {"entity": "user", "id": "1", "op": "update", "tenant": "a", "occurred_at": "9999-12-31T23:59:59.999999+14:00"})
event("bad-time", KAFKA, {"entity": "user", "id": "1", "op": "update", "tenant": "a", "occurred_at": "2026-13-45T99:99:99-99:99"})
event("broker-time-min", KAFKA, {"entity": "user", "id": "1", "op": "update", "tenant": "a"}, timestamp=-(2**63))
event("broker-time-max", KAFKA, {"entity": "user", "id": "1", "op": "update", "tenant": "a"}, timestamp=2**63 - 1)
event("huge-numbers", NATIVE, '{"entity":"user","id":1e999999,"op":"update","tenant":-0.0e-99999,"version":123456789012345678901234567890,"changed":["email"]}')
event("negative-id", NATIVE, '{"entity":"product","id":-9223372036854775809,"op":"delete","attributes":{"sku":1.5e308}}')
event("bulk", NATIVE, {"entity": "product", "ids": ["1", 2, "3", "1"], "op": "delete", "attributes": {"category": "shoes"}})
event("notify-hostile-ids", NATIVE, {"entity": "product", "ids": ["a\"b", "c\\\\d", "{e}", "\u00fcn\u00ef", "\",\"x\":\"y"], "op": "update", "tenant": "t\"}", "attributes": {"sku": "s\\\\1"}})
glob = "*?[]\\{}^-!"
event("glob-id", NATIVE, {"entity": "user", "id": glob, "op": "update", "tenant": glob, "changed": ["email"], "attributes": {"region": "[a-z]*"}, "version": 1})
event("hash-tags", NATIVE, {"entity": "user", "id": "}{x}{", "op": "update", "tenant": "{t}", "changed": ["name"]})
event("nul-bytes", NATIVE, '{"entity":"user","id":"a\\u0000b","op":"update","tenant":"t\\u0000","changed":["email"]}')
event("raw-nul", NATIVE, b'{"entity":"user","id":"a\x00b","op":"update"}')
event("invalid-utf8-id", NATIVE, b'{"entity":"user","id":"\xff\xfe","op":"update","tenant":"acme","changed":["email"]}')
event("lone-surrogate", NATIVE, '{"entity":"user","id":"\\ud800","op":"update"}')
event("emoji", NATIVE, '{"entity":"user","id":"\\ud83d\\ude00","op":"update","tenant":"caf\u00e9","changed":["email"]}')
event("deep", NATIVE, '{"entity":"user","id":"1","op":"update","attributes":' + '{"a":' * 70 + '1' + '}' * 70 + '}')
event("deep-ok", NATIVE, '{"entity":"user","id":"1","op":"update","attributes":' + '{"a":' * 60 + '1' + '}' * 60 + '}')
event("long-key", NATIVE, {"entity": "user", "id": "x" * 1100, "op": "update", "tenant": "t", "changed": ["email"]})
event("missing-tenant", NATIVE, {"entity": "user", "id": "1", "op": "update", "changed": ["email"]})
event("object-tenant", NATIVE, {"entity": "user", "id": "1", "op": "update", "tenant": {"x": 1}, "changed": ["email"]})
event("empty-ids", NATIVE, {"entity": "user", "ids": [], "op": "update"})
event("id-and-ids", NATIVE, {"entity": "user", "id": "1", "ids": ["2"], "op": "update"})
event("duplicate-keys", NATIVE, '{"entity":"user","id":"1","id":"2","op":"update","op":"delete","tenant":"a","tenant":"b"}')
event("not-json", AUTO, "not json at all")
event("array", AUTO, "[1,2,3]")
event("trailing", AUTO, '{"entity":"user","id":"1","op":"update"} x')
debezium_row = {"id": 42, "tenant": "acme", "sku": "A-1", "category": "toys"}
debezium = {"before": None, "after": debezium_row, "source": {"table": "product", "db": "shop", "ts_ms": 1764000000000},
            "op": "c", "ts_ms": 1764000000000}
event("debezium-plain", DEBEZIUM, debezium)
event("debezium-schema", AUTO, {"schema": {"type": "struct", "fields": []}, "payload": debezium})
event("debezium-old-ts", DEBEZIUM, dict(debezium, ts_ms=-10000000000000))
event("debezium-huge-ts", DEBEZIUM, dict(debezium, ts_ms=9223372036854775807))
event("debezium-delete", AUTO, {"payload": {"before": debezium_row, "after": None, "source": {"collection": "inventory"}, "op": "d"}})
event("debezium-no-id", DEBEZIUM, {"before": None, "after": {"name": "x"}, "source": {"table": "t"}, "op": "u"})
cloud = {"specversion": "1.0", "id": "c-1", "source": "/users", "type": "user.changed", "time": "2026-11-20T10:00:00Z",
         "tenant": "acme", "data": {"entity": "user", "id": "9", "op": "update", "changed": ["email"]}}
event("cloudevent", CLOUDEVENTS, cloud)
event("cloudevent-string-data", AUTO, dict(cloud, data=json.dumps(cloud["data"])))
# Mapped fields (FuzzRules.mappedDecoder) and direct messages under its allow-list.
event("mapped-native", MAPPED | NATIVE, {"type": "user", "action": "created", "ctx": {"tenantId": "acme"}, "payload": {"after": {"user_id": 42}}})
event("mapped-native-glob", MAPPED | NATIVE, {"type": "user", "action": "removed", "ctx": {"tenantId": glob}, "payload": {"after": {"user_id": glob}}})
event("mapped-cloudevent", MAPPED | CLOUDEVENTS, dict(cloud, data={"type": "users", "action": "update", "ctx": {"tenantId": "acme"}, "payload": {"after": {"user_id": "9"}}}))
event("mapped-debezium-composite", MAPPED | DEBEZIUM, {"before": None, "after": {"org_id": 7, "user_id": "u1", "tenant_id": "acme"}, "source": {"table": "users"}, "op": "u"})
event("mapped-debezium-half-key", MAPPED | DEBEZIUM, {"before": None, "after": {"org_id": 7, "tenant_id": "acme"}, "source": {"table": "users"}, "op": "c"})
event("direct-pattern", DIRECT | PUBSUB, {"pattern": "user:acme:*", "tenantId": "acme"})
event("direct-other-tenant", DIRECT | PUBSUB, {"pattern": "user:globex:*", "tenantId": "acme"})
event("direct-star", DIRECT | PUBSUB, {"pattern": "*", "tenantId": "acme"})
event("direct-star-tenant", DIRECT | PUBSUB, {"pattern": "user:*:*", "tenantId": "*"})
event("direct-glob-tenant", DIRECT | STREAM, b'event\x00' + json.dumps({"pattern": "user:" + glob + ":*", "tenantId": glob}).encode())
event("direct-all-kinds", DIRECT | KAFKA, {"keys": ["user:acme:1", "static:a?"], "pattern": ["api:v1:acme:users:*", "user:acme:[0-9]*"], "tags": "acme:users", "tenantId": "acme"})
event("direct-unclosed-class", DIRECT | KAFKA, {"pattern": "user:acme:[x", "tenantId": "acme"})
event("cloudevent-zero-time", AUTO, dict(cloud, time="0001-01-01T00:00:00Z"))
event("cloudevent-no-data", AUTO, {k: v for k, v in cloud.items() if k != "data"})
headers = b"ce_specversion:1.0\nce_id:b-1\nce_source:/s\nce_type:t\nce_time:0001-01-01T00:00:00Z\nce_tenant:acme\n\n"
event("binary-cloudevent", HEADERS, headers + b'{"entity":"user","id":"5","op":"update","changed":["email"]}')
event("binary-cloudevent-bad-header", HEADERS, headers.replace(b"acme", b"a\xff\xfe") + b'{"entity":"user","id":"5","op":"update","changed":["email"]}')
event("binary-cloudevent-nil-specversion", HEADERS, b"ce_specversion\nce_id:b-1\n\n" + b'{"entity":"user","id":"5","op":"update"}')
event("stream-event-field", STREAM, b"event\x00" + json.dumps(user).encode())
event("stream-fields", STREAM, b"entity\x00user\x00id\x007\x00op\x00update\x00tenant\x00acme\x00changed\x00email")
event("stream-fields-binary", STREAM, b"entity\x00user\x00id\x00\xff\xfe\x00op\x00update")
event("stream-odd-fields", STREAM, b"entity\x00user\x00id")

# Rules files.
with open(os.path.join(os.path.dirname(ROOT), "..", "examples", "rules.yaml")) as f:
    write("rules", "examples", f.read())
write("rules", "every-feature", """rules:
  - name: r.1:x_y-z
    match: { entity: [user, org], op: [update, delete], changed: [email] }
    pools: [primary]
    delete: ["u:{tenant}:{id}", "o:{before.org_id?}", "cart:{{{id}}}", "n:{after.a.b.c}"]
    patterns: ["s:{tenant}:{id}:*", "p:{attributes.x}?"]
    tags: ["t:{tenant}"]
    expire: { keys: ["page:{id}"], ttl: 1.5s }
    bump: ["v:{id}"]
    redelete_after: 250ms
    precompute:
      - { stream: "jobs", job: warm, args: { id: "{id}", v: "{version}" } }
""")
write("rules", "huge-durations", """rules:
  - name: r
    match: { entity: user }
    delete: ["u:{id}"]
    redelete_after: 99999999999999999999h
    expire: { keys: ["p:{id}"], ttl: 1e400s }
""")
write("rules", "bad-templates", """rules:
  - name: r
    match: { entity: user }
    delete: ["u:{idd}", "u:{id", "u:}", "{{", "u:{attributes.}", "u:{before..x}"]
    patterns: ["*:{id}", "{id}*", "[a]{id}"]
""")
write("rules", "empty", "rules: []\n")
write("rules", "not-yaml", "rules: [ {\n  - : : :\n\t\x00")
write("rules", "anchors", "base: &b { entity: user }\nrules:\n  - name: r\n    match: *b\n    delete: ['u:{id}']\n")
write("rules", "deep", "rules: " + "[" * 200 + "]" * 200 + "\n")
write("rules", "duplicate-names", "rules:\n  - { name: a, match: { entity: u }, delete: ['a:{id}'] }\n  - { name: a, match: { entity: u }, bump: ['b:{id}'] }\n")
write("rules", "types", "rules:\n  - name: 7\n    match: { entity: [1, {a: b}], op: 5 }\n    delete: 3\n    redelete_after: -1s\n")

# Config files; lines after "#env" are environment variables.
with open(os.path.join(os.path.dirname(ROOT), "..", "examples", "invalidator.yaml")) as f:
    write("configuration", "examples", f.read())
write("configuration", "every-pool", """pools:
  single: { mode: single, nodes: ["${HOST}:6379"], password: "${file:/secrets/redis}", database: 3, connect_timeout: 2s, command_timeout: 250ms }
  replicated: { mode: replicated, nodes: ["a:1", "b:2"], tag_prefix: "t:" }
  sharded: { mode: sharded, nodes: ["[::1]:7000", "h:7001"] }
  cluster: { mode: cluster, nodes: ["c:7000"] }
sources:
  redis_stream: { pool: single, stream: s, group: g, claim_idle: 1m }
  redis_pubsub: { pool: replicated, channels: [a], patterns: ["b*"] }
retry: { attempts: 100, initial_backoff: 1h, max_backoff: 1h }
shutdown: { drain_timeout: 1h }
""")
write("configuration", "overflow", """pools:
  p: { mode: single, nodes: ["h:99999999999999999999"], database: 99999999999999999999, command_timeout: 99999999999999999999h }
retry: { attempts: -1, initial_backoff: 9999999999999h, max_backoff: 1e309s }
""")
write("configuration", "kafka-auto-commit", """pools:
  p: { nodes: ["h:1"] }
sources:
  kafka: { brokers: "k:9092", topics: [t], properties: { enable.auto.commit: "true", enable.auto.offset.store: "true", group.id: x } }
""")
write("configuration", "duplicate-pools", """pools:
  ${A}: { nodes: ["h:1", "h:1"] }
  ${B}: { nodes: ["h:2"] }
#env
A=main
B=main
""")
write("configuration", "overrides", """pools:
  p: { nodes: ["h:1"] }
#env
INVALIDATOR__RETRY__ATTEMPTS=1000
INVALIDATOR__POOLS__P__NODES=[a:1,a:1]
INVALIDATOR__SOURCES__KAFKA__PROPERTIES__ENABLE_AUTO_COMMIT=true
INVALIDATOR__HTTP__LISTEN=:99999
""")
write("configuration", "secrets", """pools:
  p: { nodes: ["h:1"], password: "${file:/etc/shadow}", username: "${MISSING}" }
""")
write("configuration", "empty", "")
write("configuration", "scalar", "42\n")
write("configuration", "deep", "pools: " + "{a: " * 300 + "1" + "}" * 300 + "\n")
write("configuration", "binary", b"pools:\n  \xff\xfe: { nodes: [\"\x00:1\"] }\n")
