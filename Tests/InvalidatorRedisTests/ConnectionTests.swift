import Foundation
import TestSupport
import Testing

@testable import InvalidatorRedis

@Suite struct ConnectionTests {
    @Test func pipelineReturnsErrorRepliesAsValues() async throws {
        let server = try await RedisServer.start()
        let connection = RedisConnection(endpoint: endpoint(server.endpoint), logger: quietLogger)
        let replies = try await connection.pipeline([
            ["SET", "k", "v"], ["INCR", "k"], ["GET", "k"], ["GET", "missing"], ["RPUSH", "list", "a", "b"], ["LRANGE", "list", "0", "-1"],
        ])
        #expect(replies[0] == .status("OK"))
        #expect(replies[1].error?.code == .other)
        #expect(replies[2].string == "v")
        #expect(replies[3] == .null)
        #expect(replies[4] == .integer(2))
        #expect(replies[5] == .array([.bulk(Array("a".utf8)), .bulk(Array("b".utf8))]))
    }

    @Test func binaryAndEmptyArgumentsRoundTrip() async throws {
        let server = try await RedisServer.start()
        let connection = RedisConnection(endpoint: endpoint(server.endpoint), logger: quietLogger)
        let value = "a\u{0}b\r\nc é"
        _ = try await connection.send(["SET", "weird key", value])
        _ = try await connection.send(["SET", "empty", ""])
        #expect(try await connection.send(["GET", "weird key"]).string == value)
        #expect(try await connection.send(["STRLEN", "empty"]) == .integer(0))
    }

    @Test func longArgumentsAndManyArgumentsRoundTrip() async throws {
        let server = try await RedisServer.start()
        let connection = RedisConnection(endpoint: endpoint(server.endpoint), logger: quietLogger)
        let long = String(repeating: "x", count: 123_457)
        let keys = (0..<1_234).map { "key:\($0)" }
        let replies = try await connection.pipeline([
            ["SET", "long", long], ["MSET"] + keys.flatMap { [$0, "v"] }, ["UNLINK"] + keys, ["STRLEN", "long"],
        ])
        #expect(replies == [.status("OK"), .status("OK"), .integer(1_234), .integer(123_457)])
    }

    @Test func unreachableNodeThrowsAConnectionError() async throws {
        let server = try await RedisServer.start()
        server.kill()
        let connection = RedisConnection(endpoint: endpoint(server.endpoint), logger: quietLogger)
        await #expect(throws: RedisError.self) { try await connection.send(["PING"]) }
        do {
            _ = try await connection.send(["PING"])
        } catch {
            #expect(error.code == .connection)
            #expect(error.isRetriable)
        }
    }

    @Test func slowReplyTimesOutAndTheConnectionRecovers() async throws {
        let server = try await RedisServer.start()
        let options = RedisConnectionOptions(commandTimeout: .milliseconds(200))
        let connection = RedisConnection(endpoint: endpoint(server.endpoint), options: options, logger: quietLogger)
        do {
            _ = try await connection.send(["BLPOP", "nothing", "30"])
            Issue.record("BLPOP should have timed out")
        } catch {
            #expect(error.code == .timeout)
            #expect(error.isRetriable)
        }
        #expect(try await connection.send(["PING"]) == .status("PONG"))
    }

    @Test func authenticatesAndSelectsTheDatabase() async throws {
        let server = try await RedisServer.start(["--requirepass", "s3cret-pass"])
        let good = RedisConnection(
            endpoint: endpoint(server.endpoint),
            options: RedisConnectionOptions(password: "s3cret-pass", database: 3),
            logger: quietLogger
        )
        _ = try await good.send(["SET", "in-db-3", "v"])
        #expect(try await server.cli("-a", "s3cret-pass", "--no-auth-warning", "-n", "3", "GET", "in-db-3") == "v")

        let bad = RedisConnection(
            endpoint: endpoint(server.endpoint),
            options: RedisConnectionOptions(password: "wrong-pass"),
            logger: quietLogger
        )
        do {
            _ = try await bad.send(["PING"])
            Issue.record("a wrong password must fail")
        } catch {
            #expect(error.code == .wrongPass)
            #expect(!error.isRetriable)
            #expect(!error.description.contains("wrong-pass"))
        }
    }

    @Test func reconnectsAfterTheServerRestartsOnTheSamePort() async throws {
        let server = try await RedisServer.start()
        let connection = RedisConnection(
            endpoint: endpoint(server.endpoint),
            options: RedisConnectionOptions(reconnectInitialBackoff: .milliseconds(1)),
            logger: quietLogger
        )
        #expect(try await connection.send(["PING"]) == .status("PONG"))
        server.kill()
        try await server.restart()
        // The old socket is dead: the first call reports it, a later one reconnects.
        var reply: RedisReply?
        for _ in 0..<20 where reply == nil {
            reply = try? await connection.send(["PING"])
            if reply == nil { try await Task.sleep(for: .milliseconds(5)) }
        }
        #expect(reply == .status("PONG"))
    }

    @Test func concurrentCallsShareOneConnectionSafely() async throws {
        let server = try await RedisServer.start()
        let connection = RedisConnection(endpoint: endpoint(server.endpoint), logger: quietLogger)
        let results = try await withThrowingTaskGroup(of: RedisReply.self) { group in
            for index in 0..<50 {
                group.addTask { try await connection.send(["INCR", "counter-\(index % 5)"]) }
            }
            return try await group.reduce(into: [RedisReply]()) { $0.append($1) }
        }
        #expect(results.count == 50)
        #expect(try server.call("GET", "counter-0") == "10")
    }
}
