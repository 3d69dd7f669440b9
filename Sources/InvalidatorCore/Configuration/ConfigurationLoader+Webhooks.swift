import Yams

extension ConfigurationLoader {
    /// Methods a webhook may use; PURGE is what Varnish and several CDNs take.
    public static let webhookMethods = ["GET", "POST", "PUT", "PATCH", "DELETE", "PURGE"]
    /// The longest `batch.max`: a request of more entries than this is past what any purge API takes.
    public static let largestWebhookBatch = 10_000

    /// `webhooks:`: name to target.
    static func parseWebhooks(_ node: Node, reader: inout YAMLReader) -> [WebhookTarget] {
        guard case .mapping(let mapping) = node else {
            reader.report("webhooks must be a mapping of target name to target", at: node)
            return []
        }
        var targets: [WebhookTarget] = []
        for (key, value) in mapping {
            guard let name = reader.string(key, context: "a webhook name") else { continue }
            guard !targets.contains(where: { $0.name == name }) else {
                reader.report("webhook '\(name)' is defined twice", at: key)
                continue
            }
            if let target = parseWebhook(value, name: name, reader: &reader) {
                targets.append(target)
            }
        }
        return targets
    }

    private static func parseWebhook(_ node: Node, name: String, reader: inout YAMLReader) -> WebhookTarget? {
        let context = "webhook '\(name)'"
        let allowed: Set<String> = ["url", "method", "headers", "timeout", "body", "batch", "tls", "retry"]
        guard let fields = reader.mapping(node, context: context, allowed: allowed) else { return nil }
        guard let urlNode = fields["url"] else {
            reader.report("\(context) needs a url", at: node)
            return nil
        }
        guard let (url, redactedURL) = reader.secretString(urlNode, context: "\(context) url") else { return nil }
        let scheme = WebhookURL.scheme(of: url)
        if let problem = WebhookURL.problem(url) {
            reader.report("\(context) url '\(redactedURL)' \(problem)", at: urlNode)
        }
        var target = WebhookTarget(name: name, url: url, redactedURL: redactedURL)
        if let methodNode = fields["method"], let method = reader.string(methodNode, context: "\(context) method") {
            if webhookMethods.contains(method.uppercased()) {
                target.method = method.uppercased()
            } else {
                reader.report("\(context) method '\(method)' is not one of \(webhookMethods.joined(separator: ", "))", at: methodNode)
            }
        }
        if let headers = fields["headers"] {
            target.headers = parseHeaders(headers, context: "\(context) headers", reader: &reader)
        }
        if let timeout = fields["timeout"] {
            target.timeout = reader.duration(timeout, context: "\(context) timeout", minimum: .milliseconds(100), maximum: .seconds(300))
                ?? target.timeout
        }
        if let bodyNode = fields["body"] {
            if case .mapping = bodyNode {} else {
                reader.report("\(context) body must be a mapping: rules' bodies are merged over it", at: bodyNode)
            }
            if let (body, redacted) = reader.secretJSONValue(bodyNode, context: "\(context) body") {
                target.body = body
                target.redactedBody = redacted
                // Searched in the redacted body: a secret is never quoted.
                if let placeholder = firstPlaceholder(in: redacted) {
                    reader.report("\(context) body uses \(placeholder), but a target's body is the same for every request; put event values in the rules' webhook bodies", at: bodyNode)
                }
            }
        }
        if let batchNode = fields["batch"] {
            target.batch = parseBatch(batchNode, body: target.body, context: "\(context) batch", reader: &reader)
        }
        if let tlsNode = fields["tls"],
           let tlsFields = reader.mapping(tlsNode, context: "\(context) tls", allowed: tlsSettingKeys) {
            target.tls = tlsSettings(tlsFields, context: context, reader: &reader)
            if scheme == "http" {
                reader.report("\(context) has tls settings but its url is http://; write https:// for TLS", at: tlsNode)
            }
        }
        if let retry = fields["retry"] {
            target.retry = parseRetry(retry, context: "\(context) retry", reader: &reader)
        }
        return target
    }

    /// Every value is a secret: an API token is what most of them hold.
    private static func parseHeaders(_ node: Node, context: String, reader: inout YAMLReader) -> [WebhookTarget.Header] {
        guard case .mapping(let mapping) = node else {
            reader.report("\(context) must be a mapping of header name to value", at: node)
            return []
        }
        var headers: [WebhookTarget.Header] = []
        for (key, value) in mapping {
            guard let name = reader.string(key, context: "a header name in \(context)"),
                  let text = reader.string(value, context: "\(context).\(name)")
            else { continue }
            if name.isEmpty || !name.utf8.allSatisfy(WebhookURL.isTokenByte) {
                reader.report("\(context): '\(name)' is not a header name (letters, digits and !#$%&'*+-.^_`|~)", at: key)
            } else if headers.contains(where: { $0.name.lowercased() == name.lowercased() }) {
                reader.report("\(context) sets \(name) twice", at: key)
            } else if text.utf8.contains(where: { $0 == UInt8(ascii: "\r") || $0 == UInt8(ascii: "\n") || $0 == 0 }) {
                // The value is a secret: say what is wrong, never what it is.
                reader.report("\(context).\(name) holds a line break or NUL, which would split the request", at: value)
            } else {
                headers.append(WebhookTarget.Header(name: name, value: text))
            }
        }
        return headers
    }

    /// The first string in `value` that reads as a template with a placeholder, such as `{id}`.
    private static func firstPlaceholder(in value: JSONValue) -> Placeholder? {
        switch value {
        case .string(let text):
            guard let template = try? Template(compiling: text) else { return nil }
            for case .placeholder(let placeholder) in template.segments { return placeholder }
            return nil
        case .array(let elements):
            return elements.lazy.compactMap(firstPlaceholder).first
        case .object(let object):
            return object.fields.lazy.compactMap { firstPlaceholder(in: $0.value) }.first
        default:
            return nil
        }
    }

    private static func parseBatch(_ node: Node, body: JSONValue, context: String, reader: inout YAMLReader) -> WebhookTarget.Batch? {
        guard let fields = reader.mapping(node, context: context, allowed: ["field", "max"]) else { return nil }
        guard let fieldNode = fields["field"], let maxNode = fields["max"] else {
            reader.report("\(context) needs a field (a list in the body) and a max", at: node)
            return nil
        }
        guard let field = reader.string(fieldNode, context: "\(context).field"),
              let max = reader.integer(maxNode, context: "\(context).max", range: 1...largestWebhookBatch)
        else { return nil }
        if field.isEmpty {
            reader.report("\(context).field is empty", at: fieldNode)
            return nil
        }
        if let value = body.objectValue?[field], value.arrayValue == nil {
            reader.report("\(context).field '\(field)' is not a list in the body, so requests could not be merged on it", at: fieldNode)
            return nil
        }
        return WebhookTarget.Batch(field: field, max: max)
    }
}

/// The checks a webhook URL passes at load, so the HTTP layer only ever sees an
/// absolute `http://` or `https://` URL with a host.
enum WebhookURL {
    /// `http` or `https` (lowercased), or nil for any other scheme.
    static func scheme(of url: String) -> String? {
        guard let colon = url.firstIndex(of: ":") else { return nil }
        let scheme = url[..<colon].lowercased()
        return scheme == "http" || scheme == "https" ? scheme : nil
    }

    /// What is wrong with `url`, or nil. Says nothing of the URL's content, which may hold a secret.
    static func problem(_ url: String) -> String? {
        guard let scheme = scheme(of: url) else { return "must start with http:// or https://" }
        let rest = url.dropFirst(scheme.count + 1)
        guard rest.hasPrefix("//") else { return "must start with http:// or https://" }
        if url.utf8.contains(where: { $0 <= 0x20 || $0 == 0x7F }) {
            return "holds a space or control character; percent-encode it"
        }
        let authority = rest.dropFirst(2).prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        let hostAndPort = authority.split(separator: "@", omittingEmptySubsequences: false).last ?? ""
        var host = hostAndPort
        var port: Substring?
        if hostAndPort.hasPrefix("[") {
            guard let close = hostAndPort.firstIndex(of: "]") else { return "has an unclosed '[' in its host" }
            host = hostAndPort[...close]
            let after = hostAndPort[hostAndPort.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { return "has text after its IPv6 host" }
                port = after.dropFirst()
            }
        } else if let colon = hostAndPort.lastIndex(of: ":") {
            host = hostAndPort[..<colon]
            port = hostAndPort[hostAndPort.index(after: colon)...]
        }
        if host.isEmpty || host == "[]" { return "has no host" }
        if let port, !(port.allSatisfy(\.isASCII) && Int(port).map { (1...65535).contains($0) } == true) {
            return "has a port that is not from 1 to 65535"
        }
        return nil
    }

    /// RFC 9110 token characters, which header names are made of.
    static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            true
        default:
            "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }
}
