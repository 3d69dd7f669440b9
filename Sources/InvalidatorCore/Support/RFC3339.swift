/// RFC 3339 timestamps without Foundation, for the hot decode path.
public enum RFC3339 {
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
