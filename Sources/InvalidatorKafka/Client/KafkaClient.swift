import CRdKafka
import Dispatch
import Logging
import Synchronization

/// A change of a consumer's assignment, reported on the thread that polls.
enum RebalanceChange: Sendable {
    case assigned([TopicPartition])
    /// `lost`: the partitions were taken away (session expiry, fencing) and may
    /// already belong to another member, so committing them is pointless.
    case revoked([TopicPartition], lost: Bool)
}

/// What one poll of a consumer produced.
enum PolledItem {
    case message(KafkaMessage)
    case error(KafkaError)
}

/// A consumer's group-membership request on the wire, as librdkafka's interceptors see it.
enum GroupRequest: Sendable {
    /// A JoinGroup request was sent: the member is (re)joining its group.
    case joinSent
    /// A SyncGroup request was answered: the join is over, successful or not.
    case syncAnswered
}

/// Receivers for librdkafka's callbacks. librdkafka calls them on its own
/// threads (logs, group requests) or on the thread that polls (everything else).
struct ClientCallbacks: Sendable {
    var logger: Logger
    /// Consumer only. Runs inside the rebalance callback, before the partitions
    /// are revoked from (or after they are added to) the assignment.
    var rebalance: (@Sendable (RebalanceChange) -> Void)? = nil
    /// Producer only. The token given to `produce`, and the outcome.
    var delivery: (@Sendable (UInt, Result<KafkaDelivery, KafkaError>) -> Void)? = nil
    /// Errors librdkafka reports outside of any request (all brokers down, fatal errors ...).
    var error: (@Sendable (KafkaError) -> Void)? = nil
    /// Consumer only. Runs on librdkafka's broker threads: must neither block nor call librdkafka.
    var groupRequest: (@Sendable (GroupRequest) -> Void)? = nil
}

/// Owns one `rd_kafka_t` and is the only code that calls librdkafka's
/// consumer and producer functions.
///
/// Threading: the methods marked "poll thread" are called only by the one
/// thread that owns the handle and polls it (consumer or producer poll loop),
/// which is also the thread that finally calls `destroy()`. The other methods
/// may be called from any thread; they pass through a gate so that `destroy()`
/// waits for calls in progress and later calls fail with `KafkaError.closed`.
/// Blocking calls (`commit`, `committed`, `flush`) must not run on Swift's
/// cooperative pool; their callers move them to a thread of their own.
// @unchecked Sendable: librdkafka documents `rd_kafka_t` as thread-safe; the only
// unsafe transition, destroy, is serialised with every other call by `gate`.
final class KafkaClient: @unchecked Sendable {
    enum Kind { case consumer, producer }

    /// The handle; valid until `destroy()`.
    let handle: OpaquePointer
    let logger: Logger
    /// The callbacks' box, retained for as long as the handle can call back.
    private let callbacksBox: Unmanaged<CallbacksBox>
    private let gate = HandleGate()

    /// Creates the handle. `properties` are applied in order, so later entries win.
    init(kind: Kind, properties: [(String, String)], callbacks: ClientCallbacks) throws(KafkaError) {
        guard let conf = rd_kafka_conf_new() else { throw KafkaError(RD_KAFKA_RESP_ERR__FAIL, message: "out of memory") }
        for (name, value) in properties {
            try Self.set(conf, name, value)
        }
        let box = Unmanaged.passRetained(CallbacksBox(callbacks))
        rd_kafka_conf_set_opaque(conf, box.toOpaque())
        rd_kafka_conf_set_log_cb(conf, Self.logCallback)
        rd_kafka_conf_set_error_cb(conf, Self.errorCallback)
        switch kind {
        case .consumer:
            rd_kafka_conf_set_rebalance_cb(conf, Self.rebalanceCallback)
            if callbacks.groupRequest != nil {
                _ = rd_kafka_conf_interceptor_add_on_new(conf, Self.interceptorName, Self.addGroupRequestInterceptors, box.toOpaque())
            }
        case .producer:
            rd_kafka_conf_set_dr_msg_cb(conf, Self.deliveryCallback)
        }

        var errstr = [CChar](repeating: 0, count: 512)
        let type = kind == .consumer ? RD_KAFKA_CONSUMER : RD_KAFKA_PRODUCER
        guard let rk = rd_kafka_new(type, conf, &errstr, errstr.count) else {
            rd_kafka_conf_destroy(conf)
            box.release()
            throw KafkaError(RD_KAFKA_RESP_ERR__INVALID_ARG, message: Self.string(errstr), isRetriable: false)
        }
        self.handle = rk
        self.logger = callbacks.logger
        self.callbacksBox = box
        if kind == .consumer {
            // Serve errors and rebalances from the consumer queue, on the poll thread.
            rd_kafka_poll_set_consumer(rk)
        }
    }

    private static func set(_ conf: OpaquePointer, _ name: String, _ value: String) throws(KafkaError) {
        var errstr = [CChar](repeating: 0, count: 512)
        if rd_kafka_conf_set(conf, name, value, &errstr, errstr.count) != RD_KAFKA_CONF_OK {
            rd_kafka_conf_destroy(conf)
            throw KafkaError(RD_KAFKA_RESP_ERR__INVALID_ARG, message: "\(name): \(string(errstr))", isRetriable: false)
        }
    }

    /// Releases the handle once every call in progress on other threads has returned.
    /// Poll thread; called once, last.
    func destroy() {
        gate.closeAndWait()
        rd_kafka_destroy(handle)
        // No callback can run any more: release what they referred to.
        callbacksBox.release()
    }

    /// The value librdkafka holds for property `name` in this handle's configuration,
    /// after defaults and adjustments; nil for an unknown property or a closed handle.
    func setting(_ name: String) -> String? {
        try? gate.enter { () -> String? in
            var size = 0
            guard let conf = rd_kafka_conf(handle), rd_kafka_conf_get(conf, name, nil, &size) == RD_KAFKA_CONF_OK, size > 0 else {
                return nil
            }
            var value = [CChar](repeating: 0, count: size)
            guard rd_kafka_conf_get(conf, name, &value, &size) == RD_KAFKA_CONF_OK else { return nil }
            return Self.string(value)
        }
    }

    /// Wakes a poll in progress so the poll thread notices a stop request promptly.
    func wakeUp() {
        try? gate.enter { rd_kafka_yield(handle) }
    }

    // MARK: Consumer

    /// Before polling starts.
    func subscribe(_ topics: [String]) throws(KafkaError) {
        let list = rd_kafka_topic_partition_list_new(Int32(topics.count))!
        defer { rd_kafka_topic_partition_list_destroy(list) }
        for topic in topics {
            rd_kafka_topic_partition_list_add(list, topic, RD_KAFKA_PARTITION_UA)
        }
        let err = rd_kafka_subscribe(handle, list)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err) }
    }

    /// Waits up to `timeoutMs` for a message or an error; serves rebalance and
    /// error callbacks meanwhile. Poll thread.
    func poll(timeoutMs: Int32) -> PolledItem? {
        guard let rkm = rd_kafka_consumer_poll(handle, timeoutMs) else { return nil }
        defer { rd_kafka_message_destroy(rkm) }
        let m = rkm.pointee
        if m.err != RD_KAFKA_RESP_ERR_NO_ERROR {
            return .error(KafkaError(m.err, message: String(cString: rd_kafka_message_errstr(rkm))))
        }
        var timestampType = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
        let timestamp = rd_kafka_message_timestamp(rkm, &timestampType)
        return .message(KafkaMessage(
            topic: String(cString: rd_kafka_topic_name(m.rkt)),
            partition: m.partition,
            offset: m.offset,
            key: Self.bytes(m.key, m.key_len),
            value: Self.bytes(m.payload, m.len),
            headers: Self.headers(of: rkm),
            timestamp: timestampType == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? nil : timestamp
        ))
    }

    /// Leaves the group, running the rebalance callback for the final revoke. Poll thread.
    func closeConsumer() {
        let err = rd_kafka_consumer_close(handle)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR {
            logger.warning("Kafka consumer close failed", metadata: ["error": "\(KafkaError(err))"])
        }
    }

    /// Commits `offsets` (each the next offset to read) and waits for the broker's answer.
    /// Blocks; any thread but the cooperative pool.
    func commit(_ offsets: [TopicPartition: Int64]) throws(KafkaError) {
        try gate.enter { () throws(KafkaError) in
            let list = Self.makeList(offsets.map { ($0.key, $0.value) })
            defer { rd_kafka_topic_partition_list_destroy(list) }
            let err = rd_kafka_commit(handle, list, 0)
            if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err) }
            if let failed = Self.entries(list).first(where: { $0.err != RD_KAFKA_RESP_ERR_NO_ERROR }) {
                throw KafkaError(failed.err, message: "\(failed.partition): \(String(cString: rd_kafka_err2str(failed.err)))")
            }
        }
    }

    /// The group's committed offsets (next offset to read); partitions without one are left out.
    /// Blocks up to `timeoutMs`; any thread but the cooperative pool.
    func committed(_ partitions: [TopicPartition], timeoutMs: Int32) throws(KafkaError) -> [TopicPartition: Int64] {
        try gate.enter { () throws(KafkaError) in
            let list = Self.makeList(partitions.map { ($0, Int64(RD_KAFKA_OFFSET_INVALID)) })
            defer { rd_kafka_topic_partition_list_destroy(list) }
            let err = rd_kafka_committed(handle, list, timeoutMs)
            if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err) }
            var result: [TopicPartition: Int64] = [:]
            for entry in Self.entries(list) where entry.err == RD_KAFKA_RESP_ERR_NO_ERROR && entry.offset >= 0 {
                result[entry.partition] = entry.offset
            }
            return result
        }
    }

    /// Stops fetching `partitions`; messages already fetched but not yet polled are
    /// dropped by librdkafka and fetched again after `resume`.
    func pause(_ partitions: [TopicPartition]) {
        pauseOrResume(partitions, pause: true)
    }

    func resume(_ partitions: [TopicPartition]) {
        pauseOrResume(partitions, pause: false)
    }

    private func pauseOrResume(_ partitions: [TopicPartition], pause: Bool) {
        guard !partitions.isEmpty else { return }
        try? gate.enter {
            let list = Self.makeList(partitions.map { ($0, Int64(RD_KAFKA_OFFSET_INVALID)) })
            defer { rd_kafka_topic_partition_list_destroy(list) }
            let err = pause ? rd_kafka_pause_partitions(handle, list) : rd_kafka_resume_partitions(handle, list)
            if err != RD_KAFKA_RESP_ERR_NO_ERROR {
                logger.warning("Kafka \(pause ? "pause" : "resume") failed", metadata: ["error": "\(KafkaError(err))"])
            }
        }
    }

    /// The low and high watermarks librdkafka last learned for a partition (no request is made).
    func cachedWatermarks(_ partition: TopicPartition) -> (low: Int64, high: Int64)? {
        try? gate.enter { () -> (low: Int64, high: Int64)? in
            var low: Int64 = 0
            var high: Int64 = 0
            let err = rd_kafka_get_watermark_offsets(handle, partition.topic, partition.partition, &low, &high)
            return err == RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0 ? (low, high) : nil
        } ?? nil
    }

    /// The partition's low and high watermarks, asked of its leader. Blocks up to
    /// `timeoutMs`; any thread but the cooperative pool.
    func queryWatermarks(_ partition: TopicPartition, timeoutMs: Int32) throws(KafkaError) -> (low: Int64, high: Int64) {
        try gate.enter { () throws(KafkaError) in
            var low: Int64 = 0
            var high: Int64 = 0
            let err = rd_kafka_query_watermark_offsets(handle, partition.topic, partition.partition, &low, &high, timeoutMs)
            if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err) }
            return (low, high)
        }
    }

    /// The partitions of `topic`, from a metadata request. Blocks up to `timeoutMs`;
    /// any thread but the cooperative pool.
    func partitions(of topic: String, timeoutMs: Int32) throws(KafkaError) -> [TopicPartition] {
        try gate.enter { () throws(KafkaError) in
            guard let handleForTopic = rd_kafka_topic_new(handle, topic, nil) else {
                throw KafkaError(rd_kafka_last_error())
            }
            defer { rd_kafka_topic_destroy(handleForTopic) }
            var metadata: UnsafePointer<rd_kafka_metadata>?
            let err = rd_kafka_metadata(handle, 0, handleForTopic, &metadata, timeoutMs)
            if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err) }
            defer { rd_kafka_metadata_destroy(metadata) }
            guard let metadata, metadata.pointee.topic_cnt == 1 else { return [] }
            let described = metadata.pointee.topics[0]
            if described.err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(described.err) }
            return (0..<Int(described.partition_cnt)).map { TopicPartition(topic, described.partitions[$0].id) }
        }
    }

    // MARK: Producer

    /// Enqueues one message (copied); the outcome arrives through the delivery callback with `token`.
    func produce(_ record: KafkaProducerRecord, token: UInt) throws(KafkaError) {
        // Everything produceva reads sits in one buffer that outlives the call (librdkafka
        // copies it). The trailing byte keeps pointers to empty keys and values non-null:
        // null means absent (a null key, a tombstone, a header without value).
        var bytes: [UInt8] = []
        func append(_ part: [UInt8]?) -> Int? {
            guard let part else { return nil }
            defer { bytes += part }
            return bytes.count
        }
        let topicAt = append(Array(record.topic.utf8) + [0])!
        let keyAt = append(record.key)
        let valueAt = append(record.value)
        let headersAt = record.headers.map { (name: append(Array($0.key.utf8) + [0])!, value: append($0.value)) }
        bytes.append(0)

        try gate.enter { () throws(KafkaError) in
            let error = bytes.withUnsafeBytes { buffer in
                let base = UnsafeMutableRawPointer(mutating: buffer.baseAddress!)
                var vus: [rd_kafka_vu_t] = [
                    .init(RD_KAFKA_VTYPE_TOPIC) { $0.cstr = UnsafePointer((base + topicAt).assumingMemoryBound(to: CChar.self)) },
                    .init(RD_KAFKA_VTYPE_PARTITION) { $0.i32 = record.partition ?? RD_KAFKA_PARTITION_UA },
                    .init(RD_KAFKA_VTYPE_MSGFLAGS) { $0.i = RD_KAFKA_MSG_F_COPY },
                    .init(RD_KAFKA_VTYPE_OPAQUE) { $0.ptr = UnsafeMutableRawPointer(bitPattern: token) },
                    .init(RD_KAFKA_VTYPE_VALUE) { $0.mem = .init(ptr: valueAt.map { base + $0 }, size: record.value?.count ?? 0) },
                ]
                if let keyAt {
                    vus.append(.init(RD_KAFKA_VTYPE_KEY) { $0.mem = .init(ptr: base + keyAt, size: record.key?.count ?? 0) })
                }
                for (header, at) in zip(record.headers, headersAt) {
                    vus.append(.init(RD_KAFKA_VTYPE_HEADER) {
                        $0.header = .init(
                            name: UnsafePointer((base + at.name).assumingMemoryBound(to: CChar.self)),
                            val: at.value.map { UnsafeRawPointer(base + $0) },
                            size: header.value?.count ?? -1
                        )
                    })
                }
                return rd_kafka_produceva(handle, vus, vus.count)
            }
            if let error { throw KafkaError(consuming: error) }
        }
    }

    /// Serves delivery reports for up to `timeoutMs`. Producer poll thread.
    func pollEvents(timeoutMs: Int32) {
        rd_kafka_poll(handle, timeoutMs)
    }

    /// Waits until every queued message is delivered or failed. Blocks; not on the cooperative pool.
    func flush(timeoutMs: Int32) throws(KafkaError) {
        try gate.enter { () throws(KafkaError) in
            let err = rd_kafka_flush(handle, timeoutMs)
            if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, message: "flush timed out with \(rd_kafka_outq_len(handle)) messages pending") }
        }
    }

    /// Fails every message not yet delivered (their delivery reports say `_PURGE_QUEUE`/`_PURGE_INFLIGHT`).
    func purge() {
        try? gate.enter {
            _ = rd_kafka_purge(handle, Int32(RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT))
        }
    }

    // MARK: Callbacks

    private static func callbacks(_ opaque: UnsafeMutableRawPointer?) -> ClientCallbacks? {
        opaque.map { Unmanaged<CallbacksBox>.fromOpaque($0).takeUnretainedValue().callbacks }
    }

    private static let logCallback: @convention(c) (OpaquePointer?, Int32, UnsafePointer<CChar>?, UnsafePointer<CChar>?) -> Void = { rk, level, facility, message in
        guard let rk, let callbacks = callbacks(rd_kafka_opaque(rk)) else { return }
        let logLevel: Logger.Level = switch level {
        case ...2: .critical
        case 3: .error
        case 4: .warning
        case 5: .notice
        case 6: .info
        default: .debug
        }
        callbacks.logger.log(
            level: logLevel,
            "\(message.map { String(cString: $0) } ?? "")",
            metadata: [
                "kafka.facility": "\(facility.map { String(cString: $0) } ?? "")",
                "kafka.client": "\(String(cString: rd_kafka_name(rk)))",
            ]
        )
    }

    private static let errorCallback: @convention(c) (OpaquePointer?, Int32, UnsafePointer<CChar>?, UnsafeMutableRawPointer?) -> Void = { rk, code, reason, opaque in
        guard let rk, let callbacks = callbacks(opaque) else { return }
        var error = KafkaError(rd_kafka_resp_err_t(code), message: reason.map { String(cString: $0) })
        if error.isFatal {
            var errstr = [CChar](repeating: 0, count: 512)
            let underlying = rd_kafka_fatal_error(rk, &errstr, errstr.count)
            error = KafkaError(underlying, message: string(errstr), isRetriable: false, isFatal: true)
        }
        callbacks.error?(error)
    }

    private static let rebalanceCallback: @convention(c) (OpaquePointer?, rd_kafka_resp_err_t, UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?, UnsafeMutableRawPointer?) -> Void = { rk, err, list, opaque in
        guard let rk, let callbacks = callbacks(opaque) else { return }
        let partitions = list.map { entries($0).map(\.partition) } ?? []
        let cooperative = String(cString: rd_kafka_rebalance_protocol(rk)) == "COOPERATIVE"
        var failure: KafkaError?
        switch err {
        case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
            failure = cooperative
                ? rd_kafka_incremental_assign(rk, list).map { KafkaError(consuming: $0) }
                : KafkaError(ifFailed: rd_kafka_assign(rk, list))
            if failure == nil { callbacks.rebalance?(.assigned(partitions)) }
        case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
            callbacks.rebalance?(.revoked(partitions, lost: rd_kafka_assignment_lost(rk) != 0))
            failure = cooperative
                ? rd_kafka_incremental_unassign(rk, list).map { KafkaError(consuming: $0) }
                : KafkaError(ifFailed: rd_kafka_assign(rk, nil))
        default:
            callbacks.logger.error("Kafka rebalance failed", metadata: ["error": "\(KafkaError(err))"])
            callbacks.rebalance?(.revoked(partitions, lost: true))
            failure = KafkaError(ifFailed: rd_kafka_assign(rk, nil))
        }
        if let failure {
            callbacks.logger.error("Kafka assignment change failed", metadata: ["error": "\(failure)"])
        }
    }

    /// Kafka protocol API keys of the group-membership requests watched.
    private static let joinGroupAPIKey: Int16 = 11
    private static let syncGroupAPIKey: Int16 = 14
    private static let interceptorName = "invalidator-group-requests"

    /// librdkafka lets interceptors of a handle be added only while it is being created.
    private static let addGroupRequestInterceptors: @convention(c) (OpaquePointer?, OpaquePointer?, UnsafeMutableRawPointer?, UnsafeMutablePointer<CChar>?, Int) -> rd_kafka_resp_err_t = { rk, _, opaque, _, _ in
        _ = rd_kafka_interceptor_add_on_request_sent(rk, interceptorName, requestSentInterceptor, opaque)
        _ = rd_kafka_interceptor_add_on_response_received(rk, interceptorName, responseReceivedInterceptor, opaque)
        return RD_KAFKA_RESP_ERR_NO_ERROR
    }

    private static let requestSentInterceptor: @convention(c) (OpaquePointer?, Int32, UnsafePointer<CChar>?, Int32, Int16, Int16, Int32, Int, UnsafeMutableRawPointer?) -> rd_kafka_resp_err_t = { _, _, _, _, apiKey, _, _, _, opaque in
        if apiKey == joinGroupAPIKey { callbacks(opaque)?.groupRequest?(.joinSent) }
        return RD_KAFKA_RESP_ERR_NO_ERROR
    }

    private static let responseReceivedInterceptor: @convention(c) (OpaquePointer?, Int32, UnsafePointer<CChar>?, Int32, Int16, Int16, Int32, Int, Int64, rd_kafka_resp_err_t, UnsafeMutableRawPointer?) -> rd_kafka_resp_err_t = { _, _, _, _, apiKey, _, _, _, _, _, opaque in
        if apiKey == syncGroupAPIKey { callbacks(opaque)?.groupRequest?(.syncAnswered) }
        return RD_KAFKA_RESP_ERR_NO_ERROR
    }

    private static let deliveryCallback: @convention(c) (OpaquePointer?, UnsafePointer<rd_kafka_message_t>?, UnsafeMutableRawPointer?) -> Void = { _, rkm, opaque in
        guard let rkm, let callbacks = callbacks(opaque) else { return }
        let m = rkm.pointee
        let token = UInt(bitPattern: m._private)
        if m.err != RD_KAFKA_RESP_ERR_NO_ERROR {
            callbacks.delivery?(token, .failure(KafkaError(m.err)))
        } else {
            let topic = String(cString: rd_kafka_topic_name(m.rkt))
            callbacks.delivery?(token, .success(KafkaDelivery(topic: topic, partition: m.partition, offset: m.offset)))
        }
    }

    // MARK: Conversions

    private static func string(_ buffer: [CChar]) -> String {
        buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    private static func bytes(_ pointer: UnsafeRawPointer?, _ count: Int) -> [UInt8]? {
        guard let pointer else { return nil }
        return [UInt8](UnsafeRawBufferPointer(start: pointer, count: count))
    }

    private static func headers(of rkm: UnsafeMutablePointer<rd_kafka_message_t>) -> [KafkaHeader] {
        var hdrs: OpaquePointer?
        guard rd_kafka_message_headers(rkm, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR, let hdrs else { return [] }
        var result: [KafkaHeader] = []
        var name: UnsafePointer<CChar>?
        var value: UnsafeRawPointer?
        var size = 0
        var index = 0
        while rd_kafka_header_get_all(hdrs, index, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR {
            result.append(KafkaHeader(key: name.map { String(cString: $0) } ?? "", value: bytes(value, size)))
            index += 1
        }
        return result
    }

    private static func makeList(_ entries: [(TopicPartition, Int64)]) -> UnsafeMutablePointer<rd_kafka_topic_partition_list_t> {
        let list = rd_kafka_topic_partition_list_new(Int32(entries.count))!
        for (partition, offset) in entries {
            rd_kafka_topic_partition_list_add(list, partition.topic, partition.partition).pointee.offset = offset
        }
        return list
    }

    private static func entries(_ list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>) -> [(partition: TopicPartition, offset: Int64, err: rd_kafka_resp_err_t)] {
        (0..<Int(list.pointee.cnt)).map { index in
            let entry = list.pointee.elems[index]
            return (TopicPartition(String(cString: entry.topic), entry.partition), entry.offset, entry.err)
        }
    }
}

/// Heap box so the callbacks can travel through librdkafka's `void *opaque`.
private final class CallbacksBox: Sendable {
    let callbacks: ClientCallbacks
    init(_ callbacks: ClientCallbacks) { self.callbacks = callbacks }
}

/// Lets calls from other threads use the handle until it is destroyed, and makes
/// destruction wait for the calls in progress.
private final class HandleGate: Sendable {
    private struct State {
        var closed = false
        var inside = 0
        var destroyerWaiting = false
    }
    private let state = Mutex(State())
    private let drained = DispatchSemaphore(value: 0)

    func enter<R>(_ body: () throws(KafkaError) -> R) throws(KafkaError) -> R {
        let admitted = state.withLock { state in
            guard !state.closed else { return false }
            state.inside += 1
            return true
        }
        guard admitted else { throw KafkaError.closed }
        defer {
            let wake = state.withLock { state in
                state.inside -= 1
                return state.inside == 0 && state.destroyerWaiting
            }
            if wake { drained.signal() }
        }
        return try body()
    }

    func closeAndWait() {
        let mustWait = state.withLock { state in
            state.closed = true
            state.destroyerWaiting = state.inside > 0
            return state.destroyerWaiting
        }
        if mustWait { drained.wait() }
    }
}

private extension rd_kafka_vu_t {
    init(_ type: rd_kafka_vtype_t, _ set: (inout rd_kafka_vu_t.__Unnamed_union_u) -> Void) {
        self.init()
        vtype = type
        set(&u)
    }
}
