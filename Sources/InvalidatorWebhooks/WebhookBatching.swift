import InvalidatorCore

/// One HTTP request for a target: its body and the items it carries, as indices
/// into the array given to ``WebhookDispatcher/deliver(_:)``.
struct WebhookRequest: Sendable, Equatable {
    var body: JSONValue
    /// Sorted, no duplicates.
    var items: [Int]
}

/// Turns one target's items into requests: equal bodies are sent once; with a
/// `batch`, bodies equal except for the array at the top-level field `batch.field`
/// are merged, their arrays concatenated without duplicates (first occurrence
/// kept) and split into requests of at most `batch.max` elements.
enum WebhookBatching {
    static func requests(for items: [(index: Int, body: JSONValue)], batch: WebhookTarget.Batch?) -> [WebhookRequest] {
        var groups: [Group] = []
        var groupByKey: [JSONValue: Int] = [:]
        for (index, body) in items {
            let (key, fieldPosition, elements) = split(body, batch: batch)
            let groupIndex: Int
            if let existing = groupByKey[key] {
                groupIndex = existing
            } else {
                groupIndex = groups.count
                groupByKey[key] = groupIndex
                groups.append(Group(template: key, fieldPosition: fieldPosition))
            }
            groups[groupIndex].add(item: index, elements: elements)
        }
        let maxElements = max(batch?.max ?? 1, 1)
        return groups.flatMap { $0.requests(maxElements: maxElements) }
    }

    /// The body with its batch array emptied (what merged bodies share), where that
    /// array is among the object's fields, and its elements. Bodies without such an
    /// array are their own key.
    private static func split(_ body: JSONValue, batch: WebhookTarget.Batch?)
        -> (key: JSONValue, fieldPosition: Int?, elements: [JSONValue])
    {
        guard let batch, case .object(var object) = body,
            let position = object.fields.lastIndex(where: { $0.key == batch.field }),
            case .array(let elements) = object.fields[position].value
        else { return (body, nil, []) }
        object.fields[position].value = .array([])
        return (.object(object), position, elements)
    }

    /// Items whose bodies share a key.
    private struct Group {
        let template: JSONValue
        /// Where the batch array is in `template`'s fields; nil: not batched.
        let fieldPosition: Int?
        /// Distinct elements in order of first occurrence, and the items carrying each.
        var elements: [JSONValue] = []
        var carriers: [[Int]] = []
        var positionOfElement: [JSONValue: Int] = [:]
        /// Items with no element of their own: they ride on the group's first request.
        var itemsWithoutElements: [Int] = []

        init(template: JSONValue, fieldPosition: Int?) {
            self.template = template
            self.fieldPosition = fieldPosition
        }

        mutating func add(item: Int, elements itemElements: [JSONValue]) {
            guard !itemElements.isEmpty else {
                itemsWithoutElements.append(item)
                return
            }
            for element in itemElements {
                if let position = positionOfElement[element] {
                    carriers[position].append(item)
                } else {
                    positionOfElement[element] = elements.count
                    elements.append(element)
                    carriers.append([item])
                }
            }
        }

        func requests(maxElements: Int) -> [WebhookRequest] {
            guard let fieldPosition, case .object(let object) = template, !elements.isEmpty else {
                return [WebhookRequest(body: template, items: itemsWithoutElements.sorted())]
            }
            return stride(from: 0, to: elements.count, by: maxElements).map { start in
                let end = min(start + maxElements, elements.count)
                var body = object
                body.fields[fieldPosition].value = .array(Array(elements[start..<end]))
                var items = Set(carriers[start..<end].joined())
                if start == 0 { items.formUnion(itemsWithoutElements) }
                return WebhookRequest(body: .object(body), items: items.sorted())
            }
        }
    }
}
