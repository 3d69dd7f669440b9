/// RFC 3339 timestamps without Foundation, for the hot decode path: the one
/// formatter and the one parser (event times, dead-letter times, `replay --since`).
public enum RFC3339 {
    /// `2026-11-20T10:00:00Z`, `...T10:00:00.123+02:00` (`t`, `z` or a space also
    /// accepted) as seconds since the Unix epoch, with the fraction; nil for
    /// anything else, such as a time without an offset or a 31st of February.
    public static func secondsSinceEpoch(_ text: String) -> Double? {
        parse(text).map { Double($0.seconds) + $0.fraction }
    }

    /// As ``secondsSinceEpoch(_:)``, in whole milliseconds (rounded down).
    public static func millisecondsSinceEpoch(_ text: String) -> Int64? {
        parse(text).map { $0.seconds * 1000 + Int64(($0.fraction * 1000).rounded(.down)) }
    }

    private static func parse(_ text: String) -> (seconds: Int64, fraction: Double)? {
        var text = text
        return text.withUTF8(parse)
    }

    private static func parse(_ bytes: UnsafeBufferPointer<UInt8>) -> (seconds: Int64, fraction: Double)? {
        func number(_ start: Int, _ count: Int) -> Int64? {
            guard start + count <= bytes.count else { return nil }
            var value: Int64 = 0
            for byte in bytes[start..<start + count] {
                guard byte >= 48, byte <= 57 else { return nil }
                value = value * 10 + Int64(byte - 48)
            }
            return value
        }
        func byte(_ index: Int, in allowed: StaticString) -> Bool {
            guard index < bytes.count else { return false }
            return UnsafeBufferPointer(start: allowed.utf8Start, count: allowed.utf8CodeUnitCount).contains(bytes[index])
        }
        guard bytes.count >= 20,
              let year = number(0, 4), byte(4, in: "-"), let month = number(5, 2), byte(7, in: "-"), let day = number(8, 2),
              byte(10, in: "Tt "), let hour = number(11, 2), byte(13, in: ":"), let minute = number(14, 2),
              byte(16, in: ":"), let second = number(17, 2),
              (1...12).contains(month), (1...daysIn(month: month, year: year)).contains(day),
              hour <= 23, minute <= 59, second <= 60
        else { return nil }
        var index = 19
        var fraction = 0.0
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            var scale = 0.1
            let digits = index
            while index < bytes.count, bytes[index] >= 48, bytes[index] <= 57 {
                fraction += Double(bytes[index] - 48) * scale
                scale /= 10
                index += 1
            }
            guard index > digits else { return nil }
        }
        guard index < bytes.count else { return nil }
        var offset: Int64 = 0
        switch bytes[index] {
        case UInt8(ascii: "Z"), UInt8(ascii: "z"):
            guard index + 1 == bytes.count else { return nil }
        case UInt8(ascii: "+"), UInt8(ascii: "-"):
            guard index + 6 == bytes.count, let hours = number(index + 1, 2), byte(index + 3, in: ":"),
                  let minutes = number(index + 4, 2), hours <= 23, minutes <= 59
            else { return nil }
            offset = (hours * 60 + minutes) * 60 * (bytes[index] == UInt8(ascii: "-") ? -1 : 1)
        default:
            return nil
        }
        let days = daysSinceEpoch(year: year, month: month, day: day)
        return (days * 86_400 + hour * 3600 + minute * 60 + second - offset, fraction)
    }

    private static func daysIn(month: Int64, year: Int64) -> Int64 {
        switch month {
        case 2: year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    /// Howard Hinnant's days-from-civil algorithm.
    private static func daysSinceEpoch(year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    /// `2026-11-20T10:00:00.123Z` for milliseconds since the Unix epoch.
    public static func format(millisecondsSinceEpoch: Int64) -> String {
        let (seconds, milliseconds) = millisecondsSinceEpoch.quotientAndRemainder(dividingBy: 1000)
        let (daysRaw, secondsOfDayRaw) = seconds.quotientAndRemainder(dividingBy: 86_400)
        let days = secondsOfDayRaw < 0 ? daysRaw - 1 : daysRaw
        let secondsOfDay = secondsOfDayRaw < 0 ? secondsOfDayRaw + 86_400 : secondsOfDayRaw
        let (year, month, day) = civilDate(daysSinceEpoch: days)
        let millis = milliseconds < 0 ? milliseconds + 1000 : milliseconds
        return pad(year, 4) + "-" + pad(month, 2) + "-" + pad(day, 2) + "T"
            + pad(secondsOfDay / 3600, 2) + ":" + pad(secondsOfDay / 60 % 60, 2) + ":" + pad(secondsOfDay % 60, 2)
            + "." + pad(millis, 3) + "Z"
    }

    /// Howard Hinnant's days-to-civil algorithm.
    private static func civilDate(daysSinceEpoch: Int64) -> (Int64, Int64, Int64) {
        let shifted = daysSinceEpoch + 719_468
        let era = (shifted >= 0 ? shifted : shifted - 146_096) / 146_097
        let dayOfEra = shifted - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
        let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }

    private static func pad(_ value: Int64, _ width: Int) -> String {
        let digits = String(value)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }
}
