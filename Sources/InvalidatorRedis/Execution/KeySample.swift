import InvalidatorCore

extension RedisPool {
    /// Up to `perNode` keys from each node (each primary of a cluster), read with SCAN,
    /// for checking that rules name keys that exist. Read-only.
    ///
    /// - Throws: ``RedisError`` when a node cannot be read (after the pool's retries).
    package func sampleKeys(perNode: Int) async throws(RedisError) -> [RedisEndpoint: [[UInt8]]] {
        let placement = try await self.placement()
        var samples: [RedisEndpoint: [[UInt8]]] = [:]
        for node in placement.allNodes {
            var keys = Set<[UInt8]>()
            var cursor = "0"
            repeat {
                let outcome = await runner.run([["SCAN", cursor, "COUNT", String(configuration.tuning.scanCount)]], on: node)[0]
                let reply: RedisReply
                switch outcome.result {
                case .success(let value): reply = value
                case .failure(let error): throw error
                }
                guard let parts = reply.array, parts.count == 2, let next = parts[0].string, let page = parts[1].array?.compactMap(\.bytes) else {
                    throw RedisError(code: .protocolViolation, message: "unexpected scan reply from \(outcome.node)")
                }
                for key in page where keys.count < perNode { keys.insert(key) }
                cursor = next
            } while cursor != "0" && keys.count < perNode
            samples[node] = keys.sorted { $0.lexicographicallyPrecedes($1) }
        }
        return samples
    }
}
