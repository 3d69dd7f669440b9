import Dispatch
import Foundation
import Logging
import Synchronization

/// A Kafka producer with delivery reports.
///
/// `produce` waits for one message's delivery; `send` only enqueues and leaves
/// failures to the next `flush`. A dedicated thread serves delivery reports.
package final class KafkaProducer: Sendable {
    private let client: KafkaClient
    private let deliveries: DeliveryTracker
    /// Blocking librdkafka calls run here, off Swift's cooperative pool.
    private let blockingCalls = DispatchQueue(label: "kafka-producer-flush")

    package init(configuration: KafkaProducerConfiguration, logger: Logger) throws(KafkaError) {
        let deliveries = DeliveryTracker()
        // The callbacks retain `deliveries` only; released when the handle is destroyed.
        let client = try KafkaClient(
            kind: .producer,
            properties: configuration.librdkafkaProperties,
            callbacks: ClientCallbacks(
                logger: logger,
                delivery: { deliveries.complete($0, $1) },
                error: { logger.warning("Kafka producer error", metadata: ["error": "\($0)", "retriable": "\($0.isRetriable)"]) }
            )
        )
        self.client = client
        self.deliveries = deliveries
        let thread = Thread {
            while !deliveries.isStopping {
                client.pollEvents(timeoutMs: 100)
            }
            // Serve the reports of purged messages, then nothing can call back any more.
            client.pollEvents(timeoutMs: 0)
            client.destroy()
            deliveries.finish()
        }
        thread.name = "kafka-producer"
        thread.start()
    }

    deinit {
        deliveries.requestStop()
        client.wakeUp()
    }

    /// Enqueues a message; waits (without blocking a thread) while librdkafka's queue is full.
    /// A failed delivery is reported by the next `flush`.
    package func send(_ record: KafkaProducerRecord) async throws(KafkaError) {
        try await enqueue(record, token: DeliveryTracker.unawaited)
    }

    /// Produces a message and waits until the broker has stored it.
    @discardableResult
    package func produce(_ record: KafkaProducerRecord) async throws(KafkaError) -> KafkaDelivery {
        let token = deliveries.reserve()
        do {
            try await enqueue(record, token: token)
        } catch {
            deliveries.cancel(token)
            throw error
        }
        return try await deliveries.outcome(of: token)
    }

    /// Waits until every message sent so far is delivered or failed. Throws on timeout,
    /// or the first delivery failure of a `send` since the previous flush.
    package func flush(timeout: Duration = .seconds(30)) async throws(KafkaError) {
        try await withCheckedContinuation { continuation in
            blockingCalls.async { [client] in
                continuation.resume(returning: Result { () throws(KafkaError) in try client.flush(timeoutMs: timeout.milliseconds) })
            }
        }.get()
        if let failure = deliveries.takeSendFailure() { throw failure }
    }

    /// Delivers what it can within `timeout`, fails the rest, and releases the producer.
    package func close(timeout: Duration = .seconds(10)) async {
        try? await flush(timeout: timeout)
        client.purge()
        deliveries.requestStop()
        client.wakeUp()
        await deliveries.waitUntilFinished()
    }

    private func enqueue(_ record: KafkaProducerRecord, token: UInt) async throws(KafkaError) {
        while true {
            let reports = deliveries.reportCount
            do {
                return try client.produce(record, token: token)
            } catch where error.isQueueFull {
                // Each delivery report frees a place in the queue: wait for the next one.
                await deliveries.waitForReport(after: reports)
            }
        }
    }
}

/// Matches delivery reports to the callers waiting for them.
private final class DeliveryTracker: Sendable {
    /// The token of messages nobody awaits.
    static let unawaited: UInt = 0

    private enum Slot {
        case pending(CheckedContinuation<Result<KafkaDelivery, KafkaError>, Never>?)
        case delivered(Result<KafkaDelivery, KafkaError>)
    }

    private struct State {
        var nextToken: UInt = 1
        var slots: [UInt: Slot] = [:]
        var sendFailure: KafkaError?
        var stopping = false
        var finished = false
        var finishWaiters: [CheckedContinuation<Void, Never>] = []
        /// Delivery reports seen so far, and who waits for the next (a place in a full queue).
        var reports = 0
        var reportWaiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())

    var isStopping: Bool { state.withLock { $0.stopping } }

    func reserve() -> UInt {
        state.withLock { state in
            defer { state.nextToken += 1 }
            state.slots[state.nextToken] = .pending(nil)
            return state.nextToken
        }
    }

    func cancel(_ token: UInt) {
        _ = state.withLock { $0.slots.removeValue(forKey: token) }
    }

    func outcome(of token: UInt) async throws(KafkaError) -> KafkaDelivery {
        try await withCheckedContinuation { continuation in
            state.withLock { state in
                if case .delivered(let result) = state.slots[token] {
                    state.slots[token] = nil
                    continuation.resume(returning: result)
                } else if state.finished {
                    continuation.resume(returning: .failure(.closed))
                } else {
                    state.slots[token] = .pending(continuation)
                }
            }
        }.get()
    }

    func complete(_ token: UInt, _ result: Result<KafkaDelivery, KafkaError>) {
        // The lock only updates state; continuations resume after it is released.
        typealias Waiter = CheckedContinuation<Result<KafkaDelivery, KafkaError>, Never>
        let (waiter, reportWaiters) = state.withLock { state -> (Waiter?, [CheckedContinuation<Void, Never>]) in
            state.reports += 1
            let reportWaiters = state.reportWaiters
            state.reportWaiters = []
            guard token != Self.unawaited else {
                if case .failure(let error) = result, state.sendFailure == nil { state.sendFailure = error }
                return (nil, reportWaiters)
            }
            if case .pending(let waiter?) = state.slots[token] {
                state.slots[token] = nil
                return (waiter, reportWaiters)
            }
            state.slots[token] = .delivered(result)
            return (nil, reportWaiters)
        }
        waiter?.resume(returning: result)
        reportWaiters.forEach { $0.resume() }
    }

    var reportCount: Int { state.withLock { $0.reports } }

    /// Returns once more than `count` delivery reports were seen, or the handle is gone.
    func waitForReport(after count: Int) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resumeNow = state.withLock { state in
                if state.reports > count || state.finished { return true }
                state.reportWaiters.append(continuation)
                return false
            }
            if resumeNow { continuation.resume() }
        }
    }

    func takeSendFailure() -> KafkaError? {
        state.withLock { state in
            defer { state.sendFailure = nil }
            return state.sendFailure
        }
    }

    func requestStop() {
        state.withLock { $0.stopping = true }
    }

    /// The handle is gone: fail whoever still waits.
    func finish() {
        let (pending, waiters) = state.withLock { state -> ([CheckedContinuation<Result<KafkaDelivery, KafkaError>, Never>], [CheckedContinuation<Void, Never>]) in
            state.finished = true
            let pending = state.slots.values.compactMap { slot in if case .pending(let waiter?) = slot { waiter } else { nil } }
            state.slots = [:]
            defer {
                state.finishWaiters = []
                state.reportWaiters = []
            }
            return (pending, state.finishWaiters + state.reportWaiters)
        }
        pending.forEach { $0.resume(returning: .failure(.closed)) }
        waiters.forEach { $0.resume() }
    }

    func waitUntilFinished() async {
        await withCheckedContinuation { continuation in
            state.withLock { state in
                if state.finished { continuation.resume() } else { state.finishWaiters.append(continuation) }
            }
        }
    }
}
