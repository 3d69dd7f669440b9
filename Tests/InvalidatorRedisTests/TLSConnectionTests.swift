import InvalidatorCore
import TestSupport
import Testing

@testable import InvalidatorRedis

/// TLS against real redis-server processes with certificates made at test time.
/// Each server also keeps a plain port, which the tests use for their own checks.
@Suite struct TLSConnectionTests {
    @Test func commandsRunOverTLSVerifiedWithTheCA() async throws {
        let certificates = try await TestCertificates.generate()
        let server = try await RedisServer.start(tls: certificates)
        let connection = RedisConnection(
            endpoint: endpoint(server.tlsEndpoint), options: RedisConnectionOptions(tls: RedisTLSOptions(caFile: certificates.caFile)),
            logger: quietLogger)
        let long = String(repeating: "x", count: 200_000)
        let replies = try await connection.pipeline([["SET", "k", long], ["STRLEN", "k"], ["UNLINK", "k"]])
        #expect(replies == [.status("OK"), .integer(200_000), .integer(1)])
        // The server counts a TLS connection on its TLS port only.
        #expect(try server.call("CLIENT", "LIST").contains("laddr=127.0.0.1:\(server.tlsPort ?? 0)"))
    }

    /// TLS settings never fall back to plain TCP, whatever the caller hands the socket:
    /// the plain port would answer, the TLS connection must not be made.
    @Test func aTLSConnectionWithoutAContextFailsInsteadOfGoingPlain() async throws {
        let server = try await RedisServer.start()
        let options = RedisConnectionOptions(tls: RedisTLSOptions(verify: false))
        #expect {
            _ = try RedisSocket.connect(to: endpoint(server.endpoint), options: options, tlsContext: nil)
        } throws: { ($0 as? RedisError)?.code == .tls }
    }

    @Test func mutualTLSNeedsTheClientCertificate() async throws {
        let certificates = try await TestCertificates.generate()
        let server = try await RedisServer.start(tls: certificates, requireClientCertificates: true)
        let withoutCertificate = RedisConnection(
            endpoint: endpoint(server.tlsEndpoint), options: RedisConnectionOptions(tls: RedisTLSOptions(caFile: certificates.caFile)),
            logger: quietLogger)
        let refused = await #expect(throws: RedisError.self) { try await withoutCertificate.send(["PING"]) }
        // The server's alert, or, when a reset overtook it, the likely cause.
        let named = refused.map { error in
            error.code == .tls ? error.message.contains("alert certificate required")
                : error.message.contains("does the server require a client certificate?")
        }
        #expect(named == true, "\(String(describing: refused))")

        let tls = RedisTLSOptions(
            caFile: certificates.caFile, certFile: certificates.clientCertificateFile, keyFile: certificates.clientKeyFile)
        let withCertificate = RedisConnection(
            endpoint: endpoint(server.tlsEndpoint), options: RedisConnectionOptions(tls: tls), logger: quietLogger)
        #expect(try await withCertificate.send(["PING"]) == .status("PONG"))
    }

    @Test func aServerSignedByAnotherCAIsRefused() async throws {
        let certificates = try await TestCertificates.generate()
        let server = try await RedisServer.start(tls: certificates)
        let error = try await connectionError(server, RedisTLSOptions(caFile: certificates.otherCAFile))
        #expect(error.code == .tls)
        #expect(!error.isRetriable)
        // OpenSSL names the chain it could not anchor ("self-signed certificate in certificate chain").
        #expect(error.message.contains("TLS handshake failed: certificate verify failed: "), "\(error)")
    }

    @Test func aCertificateForAnotherNameIsRefused() async throws {
        let certificates = try await TestCertificates.generate()
        let server = try await RedisServer.start(tls: certificates)
        let error = try await connectionError(
            server, RedisTLSOptions(caFile: certificates.caFile, serverName: "cache.example.com"))
        #expect(error.code == .tls)
        #expect(error.message.contains("certificate verify failed: hostname mismatch"), "\(error)")

        // Without verification the same name is accepted (for throwaway setups only).
        let unverified = RedisConnection(
            endpoint: endpoint(server.tlsEndpoint),
            options: RedisConnectionOptions(tls: RedisTLSOptions(serverName: "cache.example.com", verify: false)),
            logger: quietLogger)
        #expect(try await unverified.send(["PING"]) == .status("PONG"))
    }

    @Test func anExpiredCertificateIsRefused() async throws {
        let certificates = try await TestCertificates.generate(serverCertificateExpired: true)
        let server = try await RedisServer.start(tls: certificates)
        let error = try await connectionError(server, RedisTLSOptions(caFile: certificates.caFile))
        #expect(error.code == .tls)
        #expect(error.message.contains("certificate verify failed: certificate has expired"), "\(error)")
    }

    @Test func aPlainServerBehindATLSConfigurationIsRefusedClearly() async throws {
        let certificates = try await TestCertificates.generate()
        let server = try await RedisServer.start()
        let connection = RedisConnection(
            endpoint: endpoint(server.endpoint),
            options: RedisConnectionOptions(connectTimeout: .milliseconds(500), tls: RedisTLSOptions(caFile: certificates.caFile)),
            logger: quietLogger)
        let error = await #expect(throws: RedisError.self) { try await connection.send(["PING"]) }
        // The server either answers the TLS hello with a RESP error (not TLS) or waits for more of it.
        #expect(error?.code == .tls || error?.code == .timeout, "\(String(describing: error))")
        #expect(error?.message.contains("is the server speaking TLS on this port?") == true, "\(String(describing: error))")
    }

    @Test func aMissingCAFileIsNamed() async throws {
        let certificates = try await TestCertificates.generate()
        let server = try await RedisServer.start(tls: certificates)
        let error = try await connectionError(server, RedisTLSOptions(caFile: certificates.caFile + ".missing"))
        #expect(error.code == .tls)
        #expect(error.message.contains("cannot read the TLS CA file \(certificates.caFile).missing"), "\(error)")
    }

    /// Client files replaced in place, as cert-manager renews a mounted Secret: new
    /// connections use the new pair, and a pair caught half-way keeps the last good one.
    @Test func aRotatedClientCertificateIsUsedByNewConnectionsWithoutARestart() async throws {
        let otherCA = try await TestCertificates.generate()
        let certificates = try await TestCertificates.generate()
        let server = try await RedisServer.start(tls: certificates, requireClientCertificates: true)
        let mounted = MountedTLSFiles(in: certificates.directory)
        let options = RedisConnectionOptions(
            tls: RedisTLSOptions(caFile: certificates.caFile, certFile: mounted.certificateFile, keyFile: mounted.keyFile))
        func ping() async -> RedisReply? {
            try? await RedisConnection(endpoint: endpoint(server.tlsEndpoint), options: options, logger: quietLogger).send(["PING"])
        }

        try mounted.mount(certificate: otherCA.clientCertificateFile, key: otherCA.clientKeyFile)
        #expect(await ping() == nil, "the server refuses a certificate from another CA")
        let kept = RedisConnection(endpoint: endpoint(server.tlsEndpoint), options: options, logger: quietLogger)
        try mounted.mount(certificate: certificates.clientCertificateFile, key: certificates.clientKeyFile)
        #expect(await ping() == .status("PONG"))
        #expect(try await kept.send(["PING"]) == .status("PONG"), "a connection made before the rotation connects with the new pair")

        try mounted.writeHalfCertificate()
        #expect(await ping() == .status("PONG"), "a half-written certificate keeps the previous pair in use")
        try mounted.mount(certificate: otherCA.clientCertificateFile, key: nil)
        #expect(await ping() == .status("PONG"), "a certificate whose key is not written yet keeps the previous pair in use")
        #expect(try server.call("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes") != "0")
        // The call that finds its connection killed fails; the next one reconnects.
        _ = try? await kept.send(["PING"])
        #expect(try await kept.send(["PING"]) == .status("PONG"), "a reconnection uses the previous pair too")
    }

    @Test func receiveTimesOutWithoutDroppingTheSubscription() async throws {
        let certificates = try await TestCertificates.generate()
        let server = try await RedisServer.start(tls: certificates)
        let connection = RedisConnection(
            endpoint: endpoint(server.tlsEndpoint), options: RedisConnectionOptions(tls: RedisTLSOptions(caFile: certificates.caFile)),
            logger: quietLogger)
        let confirmation = try await connection.send(["SUBSCRIBE", "changes"])
        #expect(confirmation.array?.first?.string == "subscribe")

        #expect(try await connection.receive(waitingAtMost: .milliseconds(300)) == nil)
        #expect(try await connection.receive(waitingAtMost: .zero) == nil)

        // Still the same connection and subscription: no reconnect could resubscribe.
        #expect(try server.call("PUBLISH", "changes", "after the wait") == "1")
        let message = try await connection.receive(waitingAtMost: .seconds(5))
        #expect(message?.array?.last?.string == "after the wait")
    }

    /// A connection that kills itself between two commands of one pipeline: the
    /// pipeline fails as a connection error (which commands ran is unknown to it),
    /// and the next call reconnects.
    @Test func aConnectionKilledMidPipelineReconnects() async throws {
        let certificates = try await TestCertificates.generate()
        let server = try await RedisServer.start(tls: certificates)
        let connection = RedisConnection(
            endpoint: endpoint(server.tlsEndpoint), options: RedisConnectionOptions(tls: RedisTLSOptions(caFile: certificates.caFile)),
            logger: quietLogger)
        guard let id = try await connection.send(["CLIENT", "ID"]).integer else {
            Issue.record("CLIENT ID did not return an integer")
            return
        }
        let killed = await #expect(throws: RedisError.self) {
            try await connection.pipeline([["SET", "before", "v"], ["CLIENT", "KILL", "ID", String(id), "SKIPME", "no"], ["SET", "after", "v"]])
        }
        #expect(killed?.code == .connection)
        #expect(killed?.isRetriable == true)
        #expect(try server.call("EXISTS", "before") == "1")
        #expect(try server.call("EXISTS", "after") == "0")
        #expect(try await connection.send(["SET", "after", "v"]) == .status("OK"))
    }

    /// A pool whose node connection is killed while a large batch runs: the broken
    /// pipeline is retried on a new connection and every key is deleted.
    @Test func aPoolRetriesABatchCutByClientKill() async throws {
        let certificates = try await TestCertificates.generate()
        let server = try await RedisServer.start(tls: certificates)
        let keys = (0..<200_000).map { "key:\($0)" }
        try await server.seed(keys)
        let pool = try makePool(.single, [server.tlsEndpoint], tls: RedisTLSOptions(caFile: certificates.caFile))
        let tlsClient = "laddr=127.0.0.1:\(server.tlsPort ?? 0)"
        let killer = Task {
            // Kills the pool's connection once, as soon as it has run a command.
            while !Task.isCancelled {
                let lines = (try? server.call("CLIENT", "LIST").split(separator: "\n")) ?? []
                if let line = lines.first(where: { $0.contains(tlsClient) && !$0.contains("cmd=NULL") }),
                   let id = line.split(separator: " ").first?.dropFirst("id=".count) {
                    return (try? server.call("CLIENT", "KILL", "ID", String(id))) == "1"
                }
                try? await Task.sleep(for: .milliseconds(1))
            }
            return false
        }
        let report = await pool.execute(keys.map { .delete(key: $0) })
        let killed = await killer.value
        #expect(killed, "the batch ended before its connection could be killed")
        #expect(report.isSuccess, "\(report.failures.count) failed, first: \(String(describing: report.failures.first?.error))")
        #expect(try existingKeys(server, keys) == 0)
        await pool.close()
    }

    @Test func aClusterOverTLSIsDiscoveredOnItsTLSPorts() async throws {
        let certificates = try await TestCertificates.generate()
        let cluster = try await RedisCluster.start(primaries: 3, tls: certificates)
        let keys = (0..<300).map { "user:\($0)" }
        let sessions = (0..<60).map { "session:\($0)" }
        for key in keys + sessions {
            try cluster.server(owning: key).call("SET", key, "v")
        }
        let tagKey = "{tag}:members"
        let tagged = (0..<10).map { "{tag}:item:\($0)" }
        let tagOwner = try cluster.server(owning: tagKey)
        try tagOwner.call(["SADD", tagKey] + tagged)
        for key in tagged { try tagOwner.call("SET", key, "v") }

        // One TLS seed: the other primaries come from CLUSTER SLOTS, on their TLS ports.
        let pool = try makePool(.cluster, [cluster.servers[0].tlsEndpoint], tls: RedisTLSOptions(caFile: certificates.caFile))
        let report = await pool.execute(
            keys.map { .delete(key: $0) } + [.deletePattern(pattern: "session:*"), .purgeTag(setKey: tagKey)])
        #expect(report.isSuccess, "\(report.failures.count) failed, first: \(String(describing: report.failures.first?.error))")
        for server in cluster.servers {
            #expect(try server.keys() == [], "\(server.endpoint)")
            #expect(report.result(for: endpoint(server.tlsEndpoint)) != nil, "no operation reached \(server.tlsEndpoint)")
        }
        await pool.close()
    }

    private func connectionError(_ server: RedisServer, _ tls: RedisTLSOptions) async throws -> RedisError {
        let connection = RedisConnection(
            endpoint: endpoint(server.tlsEndpoint), options: RedisConnectionOptions(tls: tls), logger: quietLogger)
        do {
            _ = try await connection.send(["PING"])
        } catch {
            return error
        }
        throw TestSupportError("connected although TLS should have been refused")
    }
}
