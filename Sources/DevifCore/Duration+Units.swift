/// The one place a `Duration` becomes the units C calls and clocks take.
extension Duration {
    /// Whole milliseconds, truncated toward zero.
    package var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds &* 1000 &+ attoseconds / 1_000_000_000_000_000
    }

    /// Milliseconds rounded up, for poll timeouts: never wake before the
    /// deadline and spin.
    package var millisecondsRoundedUp: Int64 {
        let (seconds, attoseconds) = components
        return seconds &* 1000 &+ (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
    }

    /// Microseconds, truncated toward zero.
    package var microseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds &* 1_000_000 &+ attoseconds / 1_000_000_000_000
    }

    /// Nanoseconds, truncated toward zero (saturating), for dispatch deadlines.
    package var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        let (scaled, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        let (sum, carry) = scaled.addingReportingOverflow(attoseconds / 1_000_000_000)
        return overflow || carry ? (seconds < 0 ? .min : .max) : sum
    }

    /// Seconds as a `Double`.
    package var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
