import CRdKafka
import Logging
import Synchronization

/// An in-process Kafka cluster (librdkafka's mock cluster) listening on loopback,
/// for tests and local trials. Not a real broker: a partition keeps only about
/// 5 MB, and fetch requests are not ended early when data arrives, so clients
/// should set `fetch.wait.max.ms` low (e.g. 10).
// @unchecked Sendable: the mock cluster API hands every call to the cluster's own
// thread; `closed` makes destruction happen once, after which no call reaches it.
package final class KafkaMockCluster: @unchecked Sendable {
    /// The `bootstrap.servers` value that reaches the cluster.
    package let bootstrapServers: String
    /// Broker ids run from 1 to this number.
    package let brokerCount: Int32
    private let client: KafkaClient
    private let cluster: OpaquePointer
    private let closed = Mutex(false)

    package init(brokers: Int32 = 3, logger: Logger = Logger(label: "kafka-mock")) throws(KafkaError) {
        // The cluster lives on a handle of its own, which only serves as its owner.
        let client = try KafkaClient(kind: .producer, properties: [], callbacks: ClientCallbacks(logger: logger))
        guard let cluster = rd_kafka_mock_cluster_new(client.handle, brokers) else {
            client.destroy()
            throw KafkaError(RD_KAFKA_RESP_ERR__FAIL, message: "could not start the mock cluster", isRetriable: false)
        }
        self.client = client
        self.cluster = cluster
        self.brokerCount = brokers
        self.bootstrapServers = String(cString: rd_kafka_mock_cluster_bootstraps(cluster))
    }

    deinit {
        close()
    }

    /// Creates a topic; `replicationFactor` is at most the number of brokers.
    package func createTopic(_ name: String, partitions: Int32, replicationFactor: Int32 = 1) throws(KafkaError) {
        try check { rd_kafka_mock_topic_create(cluster, name, partitions, replicationFactor) }
    }

    /// Makes a broker drop its connections and refuse new ones.
    package func setBrokerDown(_ id: Int32) throws(KafkaError) {
        try check { rd_kafka_mock_broker_set_down(cluster, id) }
    }

    package func setBrokerUp(_ id: Int32) throws(KafkaError) {
        try check { rd_kafka_mock_broker_set_up(cluster, id) }
    }

    /// Stops the cluster. Idempotent.
    package func close() {
        let wasClosed = closed.withLock { closed in
            defer { closed = true }
            return closed
        }
        guard !wasClosed else { return }
        rd_kafka_mock_cluster_destroy(cluster)
        client.destroy()
    }

    private func check(_ call: () -> rd_kafka_resp_err_t) throws(KafkaError) {
        // Holding the lock keeps close() from destroying the cluster during the call.
        let err = try closed.withLock { closed throws(KafkaError) in
            guard !closed else { throw KafkaError.closed }
            return call()
        }
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err) }
    }
}
