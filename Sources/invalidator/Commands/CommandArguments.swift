import ArgumentParser
import Foundation
import InvalidatorCore

enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case text, json
}

struct EventFormatArgument: ExpressibleByArgument, CustomStringConvertible {
    var description: String { format.rawValue }

    var format: EventFormat
    static let auto = EventFormatArgument(format: .auto)

    init(format: EventFormat) {
        self.format = format
    }

    init?(argument: String) {
        guard let format = EventFormat(rawValue: argument) else { return nil }
        self.format = format
    }

    static var allValueStrings: [String] { EventFormat.allCases.map(\.rawValue) }
}

/// `--event` values: inline JSON, `@path`, or `-` for standard input.
enum EventArgument {
    static func read(_ value: String) throws -> [UInt8] {
        if value == "-" {
            return Array(FileHandle.standardInput.readDataToEndOfFile())
        }
        if value.hasPrefix("@") {
            let path = String(value.dropFirst())
            guard let data = FileManager.default.contents(atPath: path) else {
                throw CommandFailure(message: "cannot read event file \(path)")
            }
            return Array(data)
        }
        return Array(value.utf8)
    }
}
