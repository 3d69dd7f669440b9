import InvalidatorCore

/// A message as a source received it, before decoding.
package struct IncomingEvent: Sendable {
    package var source: SourceCoordinates
    /// nil for a Kafka tombstone, which carries no change and is skipped.
    package var payload: [UInt8]?
    /// Message headers (Kafka), for CloudEvents binary mode.
    package var headers: [(key: String, value: [UInt8]?)]
    /// Broker timestamp in milliseconds, used for latency when the event has no `occurred_at`.
    package var timestampMilliseconds: Int64?
    /// The source's format and field mapping (and allow-list, for `format: direct`).
    package var decoder: EventDecoder

    package init(source: SourceCoordinates, payload: [UInt8]?, decoder: EventDecoder = EventDecoder(),
                headers: [(key: String, value: [UInt8]?)] = [], timestampMilliseconds: Int64? = nil) {
        self.source = source
        self.decoder = decoder
        self.payload = payload
        self.headers = headers
        self.timestampMilliseconds = timestampMilliseconds
    }

    /// The `ce_*` headers, as bytes, when the message is a binary-mode CloudEvent; empty otherwise.
    var cloudEventHeaders: [String: [UInt8]] {
        guard headers.contains(where: { $0.key.hasPrefix(EventDecoder.cloudEventHeaderPrefix) }) else { return [:] }
        var selected: [String: [UInt8]] = [:]
        for header in headers where header.key.hasPrefix(EventDecoder.cloudEventHeaderPrefix) {
            selected[header.key] = header.value
        }
        return EventDecoder.isBinaryCloudEvent(headers: selected) ? selected : [:]
    }
}
