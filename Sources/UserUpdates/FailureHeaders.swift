/// A moment in UTC, to the millisecond, as druid-sync writes it in headers.
///
/// The domain keeps no clock: the service reads the time (for example
/// `UTCTimestamp(secondsSince1970: Date().timeIntervalSince1970)`) and passes it in.
public struct UTCTimestamp: Sendable, Hashable, Comparable, CustomStringConvertible {
    public let millisecondsSince1970: Int64

    public init(millisecondsSince1970: Int64) {
        self.millisecondsSince1970 = millisecondsSince1970
    }

    /// Rounds down to the millisecond. `secondsSince1970` must be finite and within a few
    /// million years of 1970.
    public init(secondsSince1970: Double) {
        let milliseconds = secondsSince1970 * 1000
        // Truncation goes toward zero; step down for negative fractions. (Written out
        // because `rounded(.down)` would pull libm into this dependency-free module.)
        var whole = Int64(milliseconds)
        if Double(whole) > milliseconds { whole -= 1 }
        self.millisecondsSince1970 = whole
    }

    public static func < (lhs: UTCTimestamp, rhs: UTCTimestamp) -> Bool {
        lhs.millisecondsSince1970 < rhs.millisecondsSince1970
    }

    /// RFC 3339 in UTC with milliseconds, e.g. `2026-12-02T10:15:00.000Z`.
    public var rfc3339: String {
        let milliseconds = millisecondsSince1970
        let (days, millisecondOfDay) = floorDivision(milliseconds, 86_400_000)
        let (year, month, day) = civilDate(fromDaysSince1970: days)
        let secondOfDay = Int(millisecondOfDay / 1000)
        return fourDigits(year) + "-" + twoDigits(month) + "-" + twoDigits(day) + "T" + twoDigits(secondOfDay / 3600)
            + ":" + twoDigits(secondOfDay / 60 % 60) + ":" + twoDigits(secondOfDay % 60) + "."
            + threeDigits(Int(millisecondOfDay % 1000)) + "Z"
    }

    public var description: String { rfc3339 }

    private func floorDivision(_ value: Int64, _ divisor: Int64) -> (Int64, Int64) {
        let quotient = value / divisor
        let remainder = value % divisor
        return remainder < 0 ? (quotient - 1, remainder + divisor) : (quotient, remainder)
    }

    /// The proleptic Gregorian date of a day count from 1970-01-01 (Howard Hinnant's
    /// `civil_from_days`, which works in 400-year eras starting on 1 March).
    private func civilDate(fromDaysSince1970 days: Int64) -> (year: Int, month: Int, day: Int) {
        let shifted = days + 719_468
        let era = (shifted >= 0 ? shifted : shifted - 146_096) / 146_097
        let dayOfEra = shifted - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
        let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        return (Int(year), Int(month), Int(day))
    }

    private func threeDigits(_ value: Int) -> String {
        value < 10 ? "00\(value)" : value < 100 ? "0\(value)" : "\(value)"
    }
}

/// The headers druid-sync reads and writes on its retry and dead-letter copies
/// (event-schema.md section 5). All names start with `druid-sync-`, never `x-`: recent
/// brokers drop client-set `x-death`.
public enum FailureHeaders {
    /// Attempts already made (a retry copy's count); absent on a first delivery.
    public static let attempt = "druid-sync-attempt"
    /// When the first attempt failed, RFC 3339; set on the first retry copy and kept after.
    public static let firstFailureAt = "druid-sync-first-failure-at"
    /// Why the latest attempt failed, on retry copies.
    public static let lastReason = "druid-sync-last-reason"
    /// Dead-letter copies: why the message was given up.
    public static let reason = "druid-sync-reason"
    /// Dead-letter copies: DRUID's HTTP status, when there was one.
    public static let httpStatus = "druid-sync-http-status"
    /// Dead-letter copies: attempts made, this one included.
    public static let attempts = "druid-sync-attempts"
    /// Dead-letter copies: when the last attempt failed, RFC 3339.
    public static let lastFailureAt = "druid-sync-last-failure-at"
    /// Dead-letter copies: the event's id.
    public static let eventId = "druid-sync-event-id"
    /// Dead-letter copies: the queue the message was consumed from.
    public static let originalQueue = "druid-sync-original-queue"

    /// The attempts already made according to `headers`: the `druid-sync-attempt` value as
    /// an integer of any width or a string of digits. Absent, negative or unreadable
    /// values count as 0, so a garbled header costs retries, never the message.
    public static func attemptCount(in headers: [(String, HeaderValue)]) -> Int {
        guard let number = HeaderTable.value(attempt, in: headers)?.integerValue, number > 0 else { return 0 }
        return number
    }

    /// The headers of the copy an `outcome` publishes, or nil when it publishes none
    /// (`ack`, `retryNow`).
    /// - Parameters:
    ///   - original: the delivery's headers, in order.
    ///   - attempt: this delivery's attempt number (1-based), as given to `RetryPolicy.outcome(for:attempt:immediateRetries:)`.
    public static func headers(
        for outcome: Outcome, original: [(String, HeaderValue)], attempt: Int, eventId: String, originalQueue: String,
        now: UTCTimestamp
    ) -> [(String, HeaderValue)]? {
        switch outcome {
        case .ack, .retryNow:
            return nil
        case .retry(_, _, let reason, let countsAsAttempt):
            let attemptsMade = countsAsAttempt ? attempt : attempt - 1
            return retryHeaders(original: original, attemptsMade: max(attemptsMade, 0), reason: reason, now: now)
        case .deadLetter(let reason, let httpStatus):
            return deadLetterHeaders(
                original: original, reason: reason, httpStatus: httpStatus, attempts: attempt, eventId: eventId,
                originalQueue: originalQueue, now: now)
        }
    }

    /// The headers of a retry copy: the original ones, then `druid-sync-attempt`
    /// (`attemptsMade`), `druid-sync-first-failure-at` (kept from the original, else `now`)
    /// and `druid-sync-last-reason` when a reason is given.
    public static func retryHeaders(
        original: [(String, HeaderValue)], attemptsMade: Int, reason: String?, now: UTCTimestamp
    ) -> [(String, HeaderValue)] {
        let firstFailure = firstFailureText(in: original, now: now)
        var headers = original.filter { $0.0 != attempt && $0.0 != firstFailureAt && $0.0 != lastReason }
        headers.append((attempt, .int64(Int64(attemptsMade))))
        headers.append((firstFailureAt, .string(firstFailure)))
        if let reason { headers.append((lastReason, .string(ReasonText.truncated(reason)))) }
        return headers
    }

    /// The headers of a dead-letter copy: the original ones without druid-sync's retry
    /// bookkeeping (so a copy moved back to the work queue starts with a fresh attempt
    /// budget), then the section 5 list.
    public static func deadLetterHeaders(
        original: [(String, HeaderValue)], reason: String, httpStatus: Int?, attempts: Int, eventId: String,
        originalQueue: String, now: UTCTimestamp
    ) -> [(String, HeaderValue)] {
        let firstFailure = firstFailureText(in: original, now: now)
        let replaced: Set<String> = [
            attempt, lastReason, firstFailureAt, self.reason, self.httpStatus, self.attempts, lastFailureAt,
            self.eventId, self.originalQueue,
        ]
        var headers = original.filter { !replaced.contains($0.0) }
        headers.append((self.reason, .string(ReasonText.truncated(reason))))
        if let httpStatus { headers.append((self.httpStatus, .int64(Int64(httpStatus)))) }
        headers.append((self.attempts, .int64(Int64(attempts))))
        headers.append((firstFailureAt, .string(firstFailure)))
        headers.append((lastFailureAt, .string(now.rfc3339)))
        headers.append((self.eventId, .string(eventId)))
        headers.append((self.originalQueue, .string(originalQueue)))
        return headers
    }

    private static func firstFailureText(in headers: [(String, HeaderValue)], now: UTCTimestamp) -> String {
        if let text = HeaderTable.value(firstFailureAt, in: headers)?.stringValue, !text.isEmpty { return text }
        return now.rfc3339
    }
}
