/// A date without a time of day, as a user's birthday is.
public struct CalendarDate: Sendable, Hashable, CustomStringConvertible {
    public let year: Int
    public let month: Int
    public let day: Int

    /// A date, or nil when it does not exist (month 13, 30 February, 29 February 2023 …).
    /// Years run from 1 to 9999, the ones both accepted text forms can hold.
    public init?(year: Int, month: Int, day: Int) {
        guard (1...9999).contains(year), (1...12).contains(month),
            (1...CalendarDate.daysIn(month: month, year: year)).contains(day)
        else { return nil }
        self.year = year
        self.month = month
        self.day = day
    }

    /// The date as DRUID wants it: `dd/MM/yyyy`.
    public var druidText: String {
        twoDigits(day) + "/" + twoDigits(month) + "/" + fourDigits(year)
    }

    /// The date as ISO 8601: `yyyy-MM-dd`.
    public var description: String {
        fourDigits(year) + "-" + twoDigits(month) + "-" + twoDigits(day)
    }

    /// Gregorian leap years: every fourth year, except centuries not divisible by 400.
    public static func isLeap(_ year: Int) -> Bool {
        year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
    }

    static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: isLeap(year) ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }
}

/// The syntax checks of the event contract (section 2), written as byte loops.
///
/// The email and phone checks are exactly DRUID's regular expressions matched against the
/// whole value (no trailing newline allowed, unlike `$` in some engines); tests compare them
/// with a regex engine on many generated inputs.
public enum FieldSyntax {
    /// Whether `text` matches DRUID's email pattern
    /// `^[_A-Za-z0-9-+]+(\.[_A-Za-z0-9-]+)*@[A-Za-z0-9-]+(\.[A-Za-z0-9]+)*(\.[A-Za-z]{2,})$`.
    ///
    /// No character class contains `@` or `.`, so the value splits without backtracking:
    /// the local part is dot-separated non-empty runs (`+` allowed in the first run only),
    /// the domain is a first label of letters, digits and `-`, then labels of letters and
    /// digits, the last of which is at least two letters.
    public static func isEmail(_ text: String) -> Bool {
        var text = text
        return text.withUTF8 { utf8 in
            guard let at = utf8.firstIndex(of: UInt8(ascii: "@")) else { return false }
            return isEmailLocalPart(UnsafeBufferPointer(rebasing: utf8[..<at]))
                && isEmailDomain(UnsafeBufferPointer(rebasing: utf8[(at + 1)...]))
        }
    }

    private static func isEmailLocalPart(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        var segmentLength = 0
        var isFirstSegment = true
        for byte in bytes {
            if byte == UInt8(ascii: ".") {
                guard segmentLength > 0 else { return false }
                segmentLength = 0
                isFirstSegment = false
            } else if isLetterOrDigit(byte) || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
                || (isFirstSegment && byte == UInt8(ascii: "+"))
            {
                segmentLength += 1
            } else {
                return false
            }
        }
        return segmentLength > 0
    }

    private static func isEmailDomain(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        var labelIndex = 0
        var labelLength = 0
        var labelIsAllLetters = true
        for byte in bytes {
            if byte == UInt8(ascii: ".") {
                guard labelLength > 0 else { return false }
                labelIndex += 1
                labelLength = 0
                labelIsAllLetters = true
            } else if isLetterOrDigit(byte) || (labelIndex == 0 && byte == UInt8(ascii: "-")) {
                labelLength += 1
                if !isLetter(byte) { labelIsAllLetters = false }
            } else {
                return false
            }
        }
        return labelIndex >= 1 && labelLength >= 2 && labelIsAllLetters
    }

    /// Whether `text` is an E.164 number as DRUID's pattern `^\+[1-9][0-9]{1,14}$` has it:
    /// `+`, a non-zero digit, then 1 to 14 digits.
    public static func isE164PhoneNumber(_ text: String) -> Bool {
        let utf8 = text.utf8
        guard (3...16).contains(utf8.count) else { return false }
        var position = utf8.startIndex
        guard utf8[position] == UInt8(ascii: "+") else { return false }
        position = utf8.index(after: position)
        guard (UInt8(ascii: "1")...UInt8(ascii: "9")).contains(utf8[position]) else { return false }
        return utf8[utf8.index(after: position)...].allSatisfy(isDigit)
    }

    /// The date `text` names, as `YYYY-MM-DD` or `dd/MM/yyyy` (digits exactly that many),
    /// or nil when the text has neither form or the date does not exist.
    public static func calendarDate(_ text: String) -> CalendarDate? {
        let utf8 = Array(text.utf8)
        guard utf8.count == 10 else { return nil }
        if utf8[4] == UInt8(ascii: "-"), utf8[7] == UInt8(ascii: "-"),
            let year = number(utf8, 0, 4), let month = number(utf8, 5, 2), let day = number(utf8, 8, 2)
        {
            return CalendarDate(year: year, month: month, day: day)
        }
        if utf8[2] == UInt8(ascii: "/"), utf8[5] == UInt8(ascii: "/"),
            let day = number(utf8, 0, 2), let month = number(utf8, 3, 2), let year = number(utf8, 6, 4)
        {
            return CalendarDate(year: year, month: month, day: day)
        }
        return nil
    }

    /// Whether `text` is an RFC 3339 `date-time`: `2026-12-02T10:15:00Z`,
    /// `2026-12-02t10:15:00.250+01:00` … The date must exist; seconds may be 60 (a leap
    /// second); `T` and `Z` may be lower case as RFC 3339 allows; the offset is at most 23:59.
    public static func isRFC3339Timestamp(_ text: String) -> Bool {
        let utf8 = Array(text.utf8)
        guard utf8.count >= 20, utf8[4] == UInt8(ascii: "-"), utf8[7] == UInt8(ascii: "-"),
            utf8[10] == UInt8(ascii: "T") || utf8[10] == UInt8(ascii: "t"),
            utf8[13] == UInt8(ascii: ":"), utf8[16] == UInt8(ascii: ":"),
            let year = number(utf8, 0, 4), let month = number(utf8, 5, 2), let day = number(utf8, 8, 2),
            CalendarDate(year: year, month: month, day: day) != nil,
            let hour = number(utf8, 11, 2), hour <= 23,
            let minute = number(utf8, 14, 2), minute <= 59,
            let second = number(utf8, 17, 2), second <= 60
        else { return false }
        var position = 19
        if utf8[position] == UInt8(ascii: ".") {
            position += 1
            let fractionStart = position
            while position < utf8.count, isDigit(utf8[position]) { position += 1 }
            guard position > fractionStart else { return false }
        }
        guard position < utf8.count else { return false }
        switch utf8[position] {
        case UInt8(ascii: "Z"), UInt8(ascii: "z"):
            return position + 1 == utf8.count
        case UInt8(ascii: "+"), UInt8(ascii: "-"):
            guard position + 6 == utf8.count, utf8[position + 3] == UInt8(ascii: ":"),
                let offsetHour = number(utf8, position + 1, 2), offsetHour <= 23,
                let offsetMinute = number(utf8, position + 4, 2), offsetMinute <= 59
            else { return false }
            return true
        default:
            return false
        }
    }

    /// Whether `text` is a plausible BCP 47 language tag, checked loosely: subtags of 1 to 8
    /// ASCII letters or digits separated by single `-`, the first one 2 to 8 letters, at most
    /// 64 characters in all. `es-ES`, `pt-BR`, `zh-Hant-TW`, `de-CH-1996` pass; `es_ES`,
    /// `-es`, `es--ES`, `e` and anything with spaces do not.
    public static func isLanguageTag(_ text: String) -> Bool {
        let utf8 = text.utf8
        guard !utf8.isEmpty, utf8.count <= 64 else { return false }
        var subtagIndex = 0
        var subtagLength = 0
        for byte in utf8 {
            if byte == UInt8(ascii: "-") {
                guard subtagIndex > 0 || subtagLength >= 2, subtagLength > 0 else { return false }
                subtagIndex += 1
                subtagLength = 0
            } else if subtagIndex == 0 ? isLetter(byte) : isLetterOrDigit(byte) {
                subtagLength += 1
                guard subtagLength <= 8 else { return false }
            } else {
                return false
            }
        }
        return subtagLength > 0 && (subtagIndex > 0 || subtagLength >= 2)
    }

    // MARK: Bytes

    static func isDigit(_ byte: UInt8) -> Bool { byte &- UInt8(ascii: "0") < 10 }
    static func isLetter(_ byte: UInt8) -> Bool { (byte | 0x20) &- UInt8(ascii: "a") < 26 }
    static func isLetterOrDigit(_ byte: UInt8) -> Bool { isLetter(byte) || isDigit(byte) }

    /// The decimal number in `bytes[start..<start + count]`, or nil if any byte is not a digit.
    static func number(_ bytes: [UInt8], _ start: Int, _ count: Int) -> Int? {
        var value = 0
        for byte in bytes[start..<start + count] {
            guard isDigit(byte) else { return nil }
            value = value * 10 + Int(byte - UInt8(ascii: "0"))
        }
        return value
    }
}

func twoDigits(_ value: Int) -> String { value < 10 ? "0\(value)" : "\(value)" }

func fourDigits(_ value: Int) -> String {
    let text = String(value)
    return String(repeating: "0", count: max(0, 4 - text.count)) + text
}
