#if canImport(Glibc)
import Glibc
#endif
import InvalidatorKafka
import Synchronization
import Testing

/// `nextEvent(waitingAtMost:)`, `interruptWait()` and the poll thread's wait on a full buffer.
extension KafkaConsumerTests {
    @Test func nextEventTimesOutWhenIdle() async throws {
        let fixture = try KafkaFixture(topic: "changes", partitions: 2)
        let consumer = try fixture.consumer(group: "g", topics: ["changes"])
        try await waitForAssignment(consumer)

        for timeout in [Duration.milliseconds(5), .milliseconds(100), .milliseconds(300)] {
            let start = ContinuousClock.now
            let outcome = try await consumer.nextEvent(waitingAtMost: timeout)
            let elapsed = ContinuousClock.now - start
            #expect(outcome.isTimedOut, "\(timeout)")
            #expect(elapsed >= timeout, "\(timeout)")
            #expect(elapsed < timeout + .seconds(5), "returned \(elapsed - timeout) late")
        }
        // No time to wait at all: an answer at once.
        let start = ContinuousClock.now
        #expect(try await consumer.nextEvent(waitingAtMost: .zero).isTimedOut)
        #expect(ContinuousClock.now - start < .seconds(5))

        await consumer.close()
        #expect(try await consumer.nextEvent(waitingAtMost: .seconds(30)).isClosed)
    }

    @Test func nextEventReturnsProducedEvents() async throws {
        let fixture = try KafkaFixture(topic: "changes", partitions: 2)
        let consumer = try fixture.consumer(group: "g", topics: ["changes"])
        try await waitForAssignment(consumer)

        try await fixture.produce(topic: "changes", partitions: 2, perPartition: 20)
        var messages: [KafkaMessage] = []
        let deadline = ContinuousClock.now + .seconds(30)
        while messages.count < 40, ContinuousClock.now < deadline {
            if case .event(.messages(let batch)) = try await consumer.nextEvent(waitingAtMost: .milliseconds(200)) {
                messages += batch
            }
        }
        await consumer.close()

        #expect(messages.count == 40)
        #expect(messages.offsetsByPartition == [0: Array(0..<20), 1: Array(0..<20)])
    }

    @Test func interruptWaitEndsAWaitAtOnce() async throws {
        let fixture = try KafkaFixture(topic: "changes", partitions: 1)
        let consumer = try fixture.consumer(group: "g", topics: ["changes"])
        try await waitForAssignment(consumer)

        // A pending wait ends at once.
        let waiting = Task { try await consumer.nextEvent(waitingAtMost: .seconds(30)) }
        try await Task.sleep(for: .milliseconds(200))
        let interrupted = ContinuousClock.now
        consumer.interruptWait()
        #expect(try await waiting.value.isTimedOut)
        #expect(ContinuousClock.now - interrupted < .seconds(5))

        // An interrupt just before the wait begins is not missed; it ends one wait only.
        consumer.interruptWait()
        var start = ContinuousClock.now
        #expect(try await consumer.nextEvent(waitingAtMost: .seconds(30)).isTimedOut)
        #expect(ContinuousClock.now - start < .seconds(5))
        start = ContinuousClock.now
        #expect(try await consumer.nextEvent(waitingAtMost: .milliseconds(100)).isTimedOut)
        #expect(ContinuousClock.now - start >= .milliseconds(100))

        // Cancelling the waiting task ends its wait too.
        let cancelled = Task { try await consumer.nextEvent(waitingAtMost: .seconds(30)) }
        try await Task.sleep(for: .milliseconds(200))
        start = ContinuousClock.now
        cancelled.cancel()
        #expect(try await cancelled.value.isTimedOut)
        #expect(ContinuousClock.now - start < .seconds(5))

        // So does closing the consumer, with `.closed`.
        let closing = Task { try await consumer.nextEvent(waitingAtMost: .seconds(30)) }
        try await Task.sleep(for: .milliseconds(200))
        start = ContinuousClock.now
        await consumer.close()
        #expect(try await closing.value.isClosed)
        #expect(ContinuousClock.now - start < .seconds(20))
    }

    /// Timeouts of 1-5 ms (and, with `interrupting`, interrupts every millisecond from
    /// another task) race the messages' arrival: each must arrive exactly once.
    @Test(arguments: [false, true])
    func noEventIsLostAcrossManyShortTimeouts(interrupting: Bool) async throws {
        let partitions: Int32 = 4
        let perPartition = 500
        let fixture = try KafkaFixture(topic: "changes", partitions: partitions)
        let consumer = try fixture.consumer(group: "g", topics: ["changes"])
        try await waitForAssignment(consumer)

        // Produced in small rounds, so that messages keep arriving while waits time out.
        let producing = Task {
            let producer = try fixture.producer()
            for round in 0..<(perPartition / 10) {
                for index in (round * 10)..<(round * 10 + 10) {
                    for partition in 0..<partitions {
                        try await producer.send(KafkaProducerRecord(
                            topic: "changes", partition: partition, value: Array("p\(partition)-\(index)".utf8)))
                    }
                }
                try await producer.flush()
                try await Task.sleep(for: .milliseconds(3))
            }
            await producer.close()
        }

        let interrupter = Task {
            while interrupting, !Task.isCancelled {
                consumer.interruptWait()
                try? await Task.sleep(for: .milliseconds(1))
            }
        }
        defer { interrupter.cancel() }

        var messages: [KafkaMessage] = []
        var timeouts = 0
        let total = Int(partitions) * perPartition
        let deadline = ContinuousClock.now + .seconds(60)
        var settleUntil: ContinuousClock.Instant?
        // After the last message, keep waiting a while: a duplicate would show up.
        while ContinuousClock.now < settleUntil ?? deadline {
            switch try await consumer.nextEvent(waitingAtMost: .milliseconds(Int.random(in: 1...5))) {
            case .event(.messages(let batch)): messages += batch
            case .event(.partitionsRevoked(let revocation)): revocation.complete()
            case .event(.partitionsAssigned): break
            case .timedOut: timeouts += 1
            case .closed: Issue.record("closed")
            }
            if messages.count >= total, settleUntil == nil { settleUntil = .now + .milliseconds(300) }
        }
        interrupter.cancel()
        try await producing.value
        await consumer.close()

        #expect(messages.count == total)
        for partition in 0..<partitions {
            #expect(messages.offsetsByPartition[partition] == Array(0..<Int64(perPartition)), "partition \(partition)")
        }
        #expect(timeouts > 10, "the waits timed out \(timeouts) times")
    }

    /// A buffer of 10 with 1,000 messages ready: the poll thread waits for the reader
    /// without spinning, and every message still arrives in order.
    @Test func fullBufferStopsThePollThreadUntilTheReaderTakesMessages() async throws {
        let partitions: Int32 = 4
        let fixture = try KafkaFixture(topic: "changes", partitions: partitions)
        try await fixture.produce(topic: "changes", partitions: partitions, perPartition: 250)
        let consumer = try fixture.consumer(group: "g", topics: ["changes"], maxBufferedMessages: 10, maxBatchSize: 5)
        try await waitForAssignment(consumer)

        // Nothing reads: the buffer fills up and stays within its bound.
        #expect(try await eventually { consumer.bufferedMessageCount >= 10 })
        try await Task.sleep(for: .milliseconds(300))
        let processBefore = processCPUTime()
        let pollThreadBefore = consumer.pollThreadCPUTime
        try await Task.sleep(for: .seconds(1))
        let processUsed = processCPUTime() - processBefore
        let pollThreadAfter = consumer.pollThreadCPUTime
        #expect(consumer.bufferedMessageCount >= 10 && consumer.bufferedMessageCount < 10 + 5)
        if let pollThreadBefore, let pollThreadAfter {
            // Blocked, not sleep-polling: no CPU time at all, give or take a wake-up.
            #expect(pollThreadAfter - pollThreadBefore < .milliseconds(5), "poll thread used \(pollThreadAfter - pollThreadBefore)")
        }
        // Reported, not asserted: the process also runs the mock cluster and, in
        // parallel, other tests. Alone, it uses about 0.0x s (librdkafka's fetches).
        print("full buffer: in 1 s the process used \(processUsed) of CPU, the poll thread \((pollThreadAfter ?? .zero) - (pollThreadBefore ?? .zero))")

        var messages: [KafkaMessage] = []
        let deadline = ContinuousClock.now + .seconds(30)
        while messages.count < 1000, ContinuousClock.now < deadline {
            if case .event(.messages(let batch)) = try await consumer.nextEvent(waitingAtMost: .milliseconds(200)) {
                #expect(batch.count <= 5)
                messages += batch
            }
        }
        await consumer.close()
        #expect(messages.count == 1000)
        for partition in 0..<partitions {
            #expect(messages.offsetsByPartition[partition] == Array(0..<250), "partition \(partition)")
        }
    }
}

/// Reads with `nextEvent` until the consumer has all its partitions (the mock takes ~3 s to form the group).
private func waitForAssignment(_ consumer: KafkaConsumer) async throws {
    let deadline = ContinuousClock.now + .seconds(30)
    while ContinuousClock.now < deadline {
        if case .event(.partitionsAssigned) = try await consumer.nextEvent(waitingAtMost: .milliseconds(500)) { return }
    }
    Issue.record("no assignment within 30 s")
}

/// CPU time used by the whole process so far.
private func processCPUTime() -> Duration {
    var time = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &time)
    return .seconds(time.tv_sec) + .nanoseconds(time.tv_nsec)
}

extension KafkaConsumerWait {
    var isTimedOut: Bool {
        if case .timedOut = self { true } else { false }
    }

    var isClosed: Bool {
        if case .closed = self { true } else { false }
    }
}
