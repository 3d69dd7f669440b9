extension FixedWidthInteger {
    /// `self + other`, or the nearest bound where the sum would overflow (and trap).
    package func addingSaturating(_ other: Self) -> Self {
        let (sum, overflow) = addingReportingOverflow(other)
        guard overflow else { return sum }
        return other > 0 ? .max : .min
    }
}
