import CRdKafka

/// An error reported by librdkafka, or by this module when a handle is misused.
package struct KafkaError: Error, Hashable, Sendable, CustomStringConvertible {
    /// librdkafka's name for the error (`rd_kafka_err2name`), e.g. `_TRANSPORT`,
    /// `REBALANCE_IN_PROGRESS`; names starting with `_` are client-side errors.
    package let code: String
    /// The numeric `rd_kafka_resp_err_t`.
    package let rawCode: Int32
    package let message: String
    /// Trying the same operation again later may succeed.
    package let isRetriable: Bool
    /// The client instance is unusable and must be recreated.
    package let isFatal: Bool

    package var description: String { "\(code): \(message)" }

    init(_ err: rd_kafka_resp_err_t, message: String? = nil, isRetriable: Bool? = nil, isFatal: Bool = false) {
        self.code = String(cString: rd_kafka_err2name(err))
        self.rawCode = err.rawValue
        self.message = message ?? String(cString: rd_kafka_err2str(err))
        self.isRetriable = isRetriable ?? Self.retriableCodes.contains(err.rawValue)
        self.isFatal = isFatal || err == RD_KAFKA_RESP_ERR__FATAL
    }

    /// The error `err` stands for, or `nil` for success.
    init?(ifFailed err: rd_kafka_resp_err_t) {
        guard err != RD_KAFKA_RESP_ERR_NO_ERROR else { return nil }
        self.init(err)
    }

    /// Takes over (and destroys) an `rd_kafka_error_t`.
    init(consuming error: OpaquePointer) {
        defer { rd_kafka_error_destroy(error) }
        self.init(
            rd_kafka_error_code(error),
            message: String(cString: rd_kafka_error_string(error)),
            isRetriable: rd_kafka_error_is_retriable(error) != 0 ? true : nil,
            isFatal: rd_kafka_error_is_fatal(error) != 0
        )
    }

    var isQueueFull: Bool { rawCode == RD_KAFKA_RESP_ERR__QUEUE_FULL.rawValue }

    var isPartitionEnd: Bool { rawCode == RD_KAFKA_RESP_ERR__PARTITION_EOF.rawValue }

    /// The operation was attempted on a closed consumer or producer.
    static let closed = KafkaError(RD_KAFKA_RESP_ERR__STATE, message: "the Kafka client is closed", isRetriable: false)

    static func timedOut(_ what: String) -> KafkaError {
        KafkaError(RD_KAFKA_RESP_ERR__TIMED_OUT, message: "\(what) timed out")
    }

    /// Transport problems, timeouts and transient broker states: the errors Kafka itself calls retriable.
    private static let retriableCodes: Set<Int32> = Set([
        RD_KAFKA_RESP_ERR__TRANSPORT, RD_KAFKA_RESP_ERR__TIMED_OUT, RD_KAFKA_RESP_ERR__MSG_TIMED_OUT,
        RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN, RD_KAFKA_RESP_ERR__QUEUE_FULL, RD_KAFKA_RESP_ERR__WAIT_COORD,
        RD_KAFKA_RESP_ERR__RESOLVE, RD_KAFKA_RESP_ERR__TIMED_OUT_QUEUE,
        RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION,
        RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS, RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
        RD_KAFKA_RESP_ERR_NOT_COORDINATOR, RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS,
        RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART, RD_KAFKA_RESP_ERR_KAFKA_STORAGE_ERROR,
        RD_KAFKA_RESP_ERR_FETCH_SESSION_ID_NOT_FOUND, RD_KAFKA_RESP_ERR_OFFSET_NOT_AVAILABLE,
        RD_KAFKA_RESP_ERR_UNSTABLE_OFFSET_COMMIT, RD_KAFKA_RESP_ERR_BROKER_NOT_AVAILABLE,
    ].map(\.rawValue))
}
