import InvalidatorCore
import Testing

/// The one address parser and the one RFC 3339 parser.
@Suite struct HostPortAndRFC3339Tests {
    @Test(arguments: [
        ("redis-0:6379", "redis-0", 6379),
        ("127.0.0.1:1", "127.0.0.1", 1),
        ("[::1]:6379", "::1", 6379),
        ("::1:7000", "::1", 7000),  // as Redis writes IPv6 in MOVED replies
        ("[2001:db8::7]:65535", "2001:db8::7", 65535),
    ])
    func parsesHostAndPort(_ text: String, _ host: String, _ port: Int) throws {
        let address = try #require(HostPort(text))
        #expect(address == HostPort(host: host, port: port))
    }

    @Test(arguments: ["redis-0", "redis-0:", ":6379", "redis-0:0", "redis-0:65536", "redis-0:-1", "redis-0:x", "[::1]", "[]:1",
                      "[::1:6379", "::1]:6379", "a b:1", ""])
    func refusesAnythingElse(_ text: String) {
        #expect(HostPort(text) == nil, "\(text)")
    }

    @Test func describesIPv6InBrackets() {
        #expect(HostPort(host: "::1", port: 6379).description == "[::1]:6379")
        #expect(HostPort(host: "redis-0", port: 6379).description == "redis-0:6379")
        #expect(HostPort("::1:6379") == HostPort("[::1]:6379"))
    }

    @Test func parsesRFC3339Times() {
        #expect(RFC3339.millisecondsSinceEpoch("1970-01-01T00:00:00Z") == 0)
        #expect(RFC3339.millisecondsSinceEpoch("2026-11-20T10:00:00.123Z") == 1_795_168_800_123)
        #expect(RFC3339.millisecondsSinceEpoch("2026-11-20T12:00:00.123+02:00") == 1_795_168_800_123)
        #expect(RFC3339.millisecondsSinceEpoch("2026-11-20t10:00:00z") == 1_795_168_800_000)
        #expect(RFC3339.millisecondsSinceEpoch("1969-12-31T23:59:59.5Z") == -500)
        #expect(RFC3339.secondsSinceEpoch("2024-02-29T00:00:00.25Z") == 1_709_164_800.25)
        #expect(RFC3339.millisecondsSinceEpoch(RFC3339.format(millisecondsSinceEpoch: 1_795_168_800_123)) == 1_795_168_800_123)
    }

    @Test(arguments: [
        "2026-11-20T10:00:00", "2026-11-20", "2026/11/20T10:00:00Z", "2026-11-20T10-00-00Z", "2026-13-01T00:00:00Z",
        "2026-02-29T00:00:00Z", "2026-04-31T00:00:00Z", "2026-11-20T24:00:00Z", "2026-11-20T10:00:00.Z",
        "2026-11-20T10:00:00Zjunk", "2026-11-20T10:00:00+0200", "2026-11-20T10:00:00+02:00:00", "2h",
    ])
    func refusesWhatIsNotRFC3339(_ text: String) {
        #expect(RFC3339.millisecondsSinceEpoch(text) == nil, "\(text)")
    }
}
