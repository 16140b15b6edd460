#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Reads an HTTP `Retry-After` value (RFC 9110 §10.2.3): delay-seconds or an HTTP-date.
enum RetryAfter {
    /// The delay `value` asks for, or nil if it is neither form. A date in the past is a
    /// zero delay. `now` is the current time in seconds since the Unix epoch.
    static func delay(from value: String, now: Int64 = currentEpochSeconds()) -> Duration? {
        let trimmed = value.utf8.drop(while: { $0 == 0x20 || $0 == 0x09 })
        guard let first = trimmed.first else { return nil }
        if first >= UInt8(ascii: "0") && first <= UInt8(ascii: "9") {
            var seconds: Int64 = 0
            for byte in trimmed {
                if byte == 0x20 || byte == 0x09 { break }
                guard byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") else { return nil }
                // Anything past a year is as good as "much later"; stop before overflowing.
                seconds = min(seconds * 10 + Int64(byte - UInt8(ascii: "0")), 365 * 86_400)
            }
            return .seconds(seconds)
        }
        guard let date = httpDateEpochSeconds(value) else { return nil }
        return .seconds(max(0, date - now))
    }

    /// Seconds since the epoch of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) or of the
    /// obsolete RFC 850 (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime
    /// (`Sun Nov  6 08:49:37 1994`) forms, which recipients must still accept.
    static func httpDateEpochSeconds(_ text: String) -> Int64? {
        var tokens: [Substring] = text.split(whereSeparator: { $0 == " " || $0 == "," || $0 == "-" || $0 == ":" })
        guard tokens.count >= 7, !tokens[0].isEmpty, tokens[0].allSatisfy(\.isLetter) else { return nil }
        tokens.removeFirst()  // the weekday says nothing the date does not
        let day: Int64
        let month: Int64
        var year: Int64
        let clock: ArraySlice<Substring>
        if let asctimeMonth = monthNumber(tokens[0]) {
            guard let parsedDay = Int64(tokens[1]), let parsedYear = Int64(tokens[5]) else { return nil }
            (month, day, year, clock) = (asctimeMonth, parsedDay, parsedYear, tokens[2...4])
        } else {
            guard let parsedDay = Int64(tokens[0]), let parsedMonth = monthNumber(tokens[1]),
                let parsedYear = Int64(tokens[2]), tokens.count >= 7, tokens[6] == "GMT"
            else { return nil }
            (month, day, year, clock) = (parsedMonth, parsedDay, parsedYear, tokens[3...5])
            if tokens[2].count == 2 { year += year < 70 ? 2000 : 1900 }
        }
        let parts = clock.compactMap { Int64($0) }
        guard parts.count == 3, (1...31).contains(day), (0...23).contains(parts[0]),
            (0...59).contains(parts[1]), (0...60).contains(parts[2]), year >= 1970, year <= 9999
        else { return nil }
        return daysSinceEpoch(year: year, month: month, day: day) * 86_400 + parts[0] * 3_600 + parts[1] * 60 + parts[2]
    }

    private static func monthNumber(_ name: Substring) -> Int64? {
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        return months.firstIndex(of: String(name)).map { Int64($0 + 1) }
    }

    /// Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's days_from_civil).
    static func daysSinceEpoch(year: Int64, month: Int64, day: Int64) -> Int64 {
        let shiftedYear = month <= 2 ? year - 1 : year
        let era = (shiftedYear >= 0 ? shiftedYear : shiftedYear - 399) / 400
        let yearOfEra = shiftedYear - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    static func currentEpochSeconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec)
    }
}
