import InvalidatorCore
import InvalidatorKafka

/// Replaying a Kafka topic store (see ``DeadLetterTopicReader``): read each
/// partition this replay is assigned from the group's committed offset to the
/// end it had when assigned; settle every record before reading the next.
/// Records the filters leave out are moved to the end of the topic unchanged,
/// since committing past a record is the only way to go on reading.
extension Replayer {
    /// - Parameter remaining: set to the records left for the group, when the brokers could tell.
    func replayTopic(
        _ topic: DeadLetterTopic, options: ReplayOptions, limiter: RateLimiter?, results: inout [ReplayRecordResult],
        remaining: inout Int?
    ) async throws {
        let lock = ReplayLock(pool: topic.lockPool, key: topic.lockKey)
        let owner = ReplayLock.owner(replayerID: options.replayerID)
        guard try await lock.acquire(owner: owner, ttl: options.lockTTL) else {
            throw ReplayAlreadyRunning(topic: topic.topic)
        }
        let reader: DeadLetterTopicReader
        do {
            reader = try DeadLetterTopicReader(topic, logger: logger)
        } catch {
            try? await lock.release(owner: owner)
            throw error
        }
        var failure: (any Error)?
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await reader.watchForStalls(timeout: options.storeTimeout) }
                group.addTask { await self.keepHolding(lock, owner: owner, ttl: options.lockTTL) }
                defer { group.cancelAll() }
                try await readTopic(reader, options: options, limiter: limiter, results: &results)
            }
        } catch {
            failure = error
        }
        // After a failure the count is a best effort; after a full run it must be known.
        do {
            remaining = try await reader.remaining(timeout: options.storeTimeout)
        } catch where failure == nil {
            failure = error
        } catch {}
        await reader.close()
        try? await lock.release(owner: owner)
        if let failure { throw failure }
    }

    /// Extends the lock every third of its TTL until cancelled.
    private func keepHolding(_ lock: ReplayLock, owner: String, ttl: Duration) async {
        // Timer: the lock's renewal period.
        while (try? await Task.sleep(for: ttl / 3)) != nil {
            do {
                if try await !lock.extend(owner: owner, ttl: ttl) {
                    logger.warning("replay lock lost; another replay may start", metadata: ["key": "\(lock.key)"])
                    return
                }
            } catch {
                logger.warning("replay lock could not be extended", metadata: ["key": "\(lock.key)", "error": "\(error)"])
            }
        }
    }

    private func readTopic(
        _ reader: DeadLetterTopicReader, options: ReplayOptions, limiter: RateLimiter?, results: inout [ReplayRecordResult]
    ) async throws {
        /// The first offset this run leaves alone, per partition still being read.
        var ends: [TopicPartition: Int64] = [:]
        var assigned = false
        var events = reader.events.makeAsyncIterator()
        while !assigned || !ends.isEmpty, let event = try await reader.nextEvent(&events) {
            switch event {
            case .partitionsAssigned(let partitions):
                assigned = true
                for partition in partitions {
                    let (start, end) = try await reader.bounds(of: partition, timeout: options.storeTimeout)
                    if start < end { ends[partition] = end }
                }
            case .partitionsRevoked(let revocation):
                // Every record delivered before the revoke is settled already.
                for partition in revocation.partitions { ends[partition] = nil }
                revocation.complete()
            case .messages(let messages):
                for message in messages {
                    guard let end = ends[message.topicPartition], message.offset < end else { continue }
                    if message.nextOffset >= end { ends[message.topicPartition] = nil }
                    let entry = DeadLetterTopicReader.entry(message)
                    guard matches(entry, options) else {
                        if !options.dryRun { try await reader.keep(message) }
                        continue
                    }
                    if let limit = options.limit, results.count >= limit { return }
                    results.append(try await handle(entry, message, in: reader, options: options, limiter: limiter))
                }
            }
        }
    }

    private func handle(
        _ entry: StoredDeadLetter, _ message: KafkaMessage, in reader: DeadLetterTopicReader, options: ReplayOptions,
        limiter: RateLimiter?
    ) async throws -> ReplayRecordResult {
        guard let record = entry.record else {
            if !options.dryRun { try await reader.keep(message) }
            return unreadable(entry, dryRun: options.dryRun)
        }
        if options.dryRun {
            return describe(entry.id, record, work: prepare(record, reprocess: options.reprocess))
        }
        switch try await attempt(entry.id, record, options: options, limiter: limiter) {
        case .succeeded(let result):
            try await reader.settle(message)
            return result
        case .failed(let updated, let result):
            try await reader.replace(message, with: updated)
            return result
        }
    }
}
