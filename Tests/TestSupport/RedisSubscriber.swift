import Foundation

/// A raw SUBSCRIBE (or SSUBSCRIBE) connection, as an app listening for
/// invalidation messages would hold one: what it receives is exactly what the
/// server delivered.
public final class RedisSubscriber {
    private let client: RedisTestClient

    /// Subscribes to `channel` on `server`; `sharded` uses SSUBSCRIBE, which
    /// a cluster accepts only on the owner of the channel's slot.
    public init(_ server: RedisServer, channel: String, sharded: Bool = false) throws {
        client = try RedisTestClient(port: server.port)
        try client.setReceiveTimeout(seconds: 10)
        let reply = try client.call([sharded ? "SSUBSCRIBE" : "SUBSCRIBE", channel])
        guard reply == "\(sharded ? "ssubscribe" : "subscribe")\n\(channel)\n1" else {
            throw TestSupportError("subscribing to \(channel) answered \(reply)")
        }
    }

    /// The payloads of the messages that arrive: the first within `firstSeconds`, each
    /// next one within `quietSeconds` of the one before.
    public func payloads(firstWithin firstSeconds: Int, thenQuietFor quietSeconds: Int) throws -> [[UInt8]] {
        defer { try? client.setReceiveTimeout(seconds: 10) }
        try client.setReceiveTimeout(seconds: firstSeconds)
        // A receive that times out ends the wait; whole messages arrive in one read.
        guard let first = try? next() else { return [] }
        try client.setReceiveTimeout(seconds: quietSeconds)
        var payloads = [first.payload]
        while let message = try? next() { payloads.append(message.payload) }
        return payloads
    }

    /// The next message: its kind (`message` or `smessage`), channel and payload bytes.
    public func next() throws -> (kind: String, channel: String, payload: [UInt8]) {
        let push = try client.receive()
        guard push.count == 3 else { throw TestSupportError("unexpected push with \(push.count) elements") }
        return (String(decoding: push[0], as: UTF8.self), String(decoding: push[1], as: UTF8.self), push[2])
    }
}
