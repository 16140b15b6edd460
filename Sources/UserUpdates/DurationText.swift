/// Durations as the configuration writes them: a whole number and a unit, `500ms`, `10s`,
/// `2m`, `1h`. A bare whole number means seconds (`30` is `30s`), the unit most settings
/// are thought of in. No fractions, signs, spaces or compound forms (`1m30s`): write `90s`.
public enum DurationText {
    /// The duration `text` names, or nil when it is not in the form above or exceeds
    /// `maximumSeconds` (a year by default: a guard against typos such as `30000h`).
    public static func parse(_ text: String, maximumSeconds: Int64 = 366 * 86_400) -> Duration? {
        let utf8 = Array(text.utf8)
        var digitCount = 0
        while digitCount < utf8.count, FieldSyntax.isDigit(utf8[digitCount]) { digitCount += 1 }
        guard digitCount > 0, digitCount <= 15 else { return nil }
        guard let amount = Int64(String(decoding: utf8[..<digitCount], as: UTF8.self)) else { return nil }
        let unit = String(decoding: utf8[digitCount...], as: UTF8.self)
        let milliseconds: Int64
        switch unit {
        case "ms": milliseconds = amount
        case "s", "": milliseconds = amount * 1000
        case "m": milliseconds = amount * 60_000
        case "h": milliseconds = amount * 3_600_000
        default: return nil
        }
        guard milliseconds <= maximumSeconds * 1000 else { return nil }
        return .milliseconds(milliseconds)
    }

    /// The shortest text `parse` reads back as `duration`: the largest unit that divides it
    /// (`2m`, `90s`, `1500ms`, `0s`). Below a millisecond the value is rounded down.
    public static func format(_ duration: Duration) -> String {
        let milliseconds = milliseconds(duration)
        if milliseconds == 0 { return "0s" }
        if milliseconds % 3_600_000 == 0 { return "\(milliseconds / 3_600_000)h" }
        if milliseconds % 60_000 == 0 { return "\(milliseconds / 60_000)m" }
        if milliseconds % 1000 == 0 { return "\(milliseconds / 1000)s" }
        return "\(milliseconds)ms"
    }

    /// `duration` in whole milliseconds, rounded down (as `x-message-ttl` wants it).
    public static func milliseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}
