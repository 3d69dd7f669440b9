/// One entry of `webhooks:`: an HTTP endpoint a rule's `webhook` action sends
/// to, such as a CDN's purge-by-tag API or an app's revalidation route.
///
/// Header values, and every part of the URL or body that came from a `${...}`
/// substitution, are secrets: the descriptions of this type and every output
/// show `***` in their place (``redactedURL``, ``redactedBody``).
public struct WebhookTarget: Hashable, Sendable {
    public struct Header: Hashable, Sendable {
        public var name: String
        public var value: String
        public init(name: String, value: String) {
            self.name = name
            self.value = value
        }
    }

    /// `batch: {field, max}`: the requests of one batch of events whose bodies differ
    /// only in the array at `field` are merged into one, `max` elements at most.
    public struct Batch: Hashable, Sendable {
        public var field: String
        public var max: Int
        public init(field: String, max: Int) {
            self.field = field
            self.max = max
        }
    }

    /// `timeout` when the config does not set it.
    public static let defaultTimeout: Duration = .seconds(5)

    public var name: String
    public var url: String
    /// `url` with each `${...}` substitution shown as `***`.
    public var redactedURL: String
    public var method = "POST"
    public var headers: [Header] = []
    /// The whole exchange, connect to last byte of the response.
    public var timeout = WebhookTarget.defaultTimeout
    /// Fields every request carries; a rule's `body` is merged over them.
    public var body: JSONValue = .object([:])
    /// `body` with each string that came from a `${...}` substitution shown as `***`.
    public var redactedBody: JSONValue = .object([:])
    public var batch: Batch?
    /// nil: TLS as the URL's scheme says, with the system's CA store and verification.
    public var tls: TLSConfiguration?
    /// nil: the config's `retry`.
    public var retry: RetryPolicy?

    public init(name: String, url: String, redactedURL: String? = nil) {
        self.name = name
        self.url = url
        self.redactedURL = redactedURL ?? url
    }
}

/// Descriptions that never show a secret, however the target is printed.
extension WebhookTarget: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    private var redactedHeaders: [String] { headers.map { "\($0.name): ***" } }

    public var description: String {
        "WebhookTarget(name: \(name), url: \(redactedURL), method: \(method), headers: \(redactedHeaders), "
            + "timeout: \(timeout), body: \(redactedBody.serialized()), batch: \(batch.map { "\($0)" } ?? "nil"))"
    }

    public var debugDescription: String { description }

    public var customMirror: Mirror {
        Mirror(self, children: [
            "name": name, "url": redactedURL, "method": method, "headers": redactedHeaders, "timeout": timeout,
            "body": redactedBody.serialized(), "batch": batch as Any, "tls": tls as Any, "retry": retry as Any,
        ], displayStyle: .struct)
    }
}

extension WebhookTarget {
    /// `body`, a request body built on this target's, with the target's secrets
    /// shown as in ``redactedBody``: every part equal to the target's own is
    /// replaced by its redacted form, including the target's leading entries of a list.
    public func redacting(_ body: JSONValue) -> JSONValue {
        Self.redacting(body, base: self.body, redacted: redactedBody)
    }

    private static func redacting(_ value: JSONValue, base: JSONValue, redacted: JSONValue) -> JSONValue {
        if base == redacted { return value }
        if value == base { return redacted }
        switch (value, base, redacted) {
        case (.object(var object), .object(let baseObject), .object(let redactedObject)):
            for index in object.fields.indices {
                let key = object.fields[index].key
                if let baseValue = baseObject[key], let redactedValue = redactedObject[key] {
                    object.fields[index].value = redacting(object.fields[index].value, base: baseValue, redacted: redactedValue)
                }
            }
            return .object(object)
        case (.array(let elements), .array(let baseElements), .array(let redactedElements))
            where elements.starts(with: baseElements) && baseElements.count == redactedElements.count:
            return .array(redactedElements + elements.dropFirst(baseElements.count))
        default:
            return value
        }
    }
}

extension WebhookTarget {
    /// `body` over the target's body: the rule's fields win, except the batch field,
    /// whose lists are concatenated (the target's entries first).
    public func merging(_ body: JSONValue) -> JSONValue {
        guard case .object(var merged) = self.body, case .object(let fields) = body else { return body }
        for field in fields.fields {
            // In place, so the target's field order holds whatever the rule overrides.
            guard let index = merged.fields.lastIndex(where: { $0.key == field.key }) else {
                merged.fields.append(field)
                continue
            }
            if field.key == batch?.field, let base = merged.fields[index].value.arrayValue, let added = field.value.arrayValue {
                merged.fields[index].value = .array(base + added)
            } else {
                merged.fields[index].value = field.value
            }
        }
        return .object(merged)
    }
}

/// What one event asks of one webhook target: its rendered body. The dispatcher
/// merges the items of a batch per target (see ``WebhookTarget/Batch``).
public struct WebhookItem: Hashable, Sendable {
    public var target: String
    /// The rule's body rendered for the event. The target's `body`, which may hold
    /// secrets, is merged under it only when a request is sent, so records and
    /// output never carry it.
    public var body: JSONValue
    public var rule: String

    public init(target: String, body: JSONValue, rule: String) {
        self.target = target
        self.body = body
        self.rule = rule
    }
}

/// Sends webhook items over HTTP: the contract between the runtime and the HTTP layer,
/// which the executable hands to the runtime (so the runtime, and what builds on it
/// such as the fuzz targets, do not link an HTTP stack).
public protocol WebhookDelivering: Sendable {
    /// Delivers `items`, merged per target as each target's `batch` says, with the
    /// target's retries. Returns one failure per item that was not delivered.
    func deliver(_ items: [WebhookItem]) async -> [WebhookDeliveryFailure]

    /// Closes the connections, once no `deliver` is running.
    func shutdown() async
}

/// An item a target did not take, after every attempt the retry policy allowed.
public struct WebhookDeliveryFailure: Hashable, Sendable {
    /// Index of the item in the array given to `deliver`.
    public var item: Int
    public var target: String
    /// A short stable code: `http-503`, `timeout`, `connection`, `circuit-open`, ...
    public var errorClass: String
    /// What went wrong; never a header value, nor a URL or body part from a secret.
    public var message: String
    /// Requests sent for it; 0 when its target's circuit was open.
    public var attempts: Int

    public init(item: Int, target: String, errorClass: String, message: String, attempts: Int) {
        self.item = item
        self.target = target
        self.errorClass = errorClass
        self.message = message
        self.attempts = attempts
    }
}
