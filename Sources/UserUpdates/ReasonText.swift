/// Limits on the free text druid-sync puts in headers and logs: dead-letter reasons,
/// retry reasons, field names quoted from an event.
public enum ReasonText {
    /// The longest reason a dead-letter or retry header carries, in UTF-8 bytes (section 5).
    public static let maximumBytes = 1024

    /// `text` cut to at most `maximumBytes` UTF-8 bytes, on a character boundary, with `…`
    /// at the end when something was cut.
    public static func truncated(_ text: String, maximumBytes: Int = maximumBytes) -> String {
        guard text.utf8.count > maximumBytes else { return text }
        let ellipsis = "…"
        let budget = maximumBytes - ellipsis.utf8.count
        guard budget > 0 else { return "" }
        var kept = ""
        var used = 0
        for character in text {
            let size = character.utf8.count
            if used + size > budget { break }
            kept.append(character)
            used += size
        }
        return kept + ellipsis
    }

    /// A name taken from an event (a datas key, an unknown field) made safe to show in a
    /// reason: simple names as they are, anything else as a JSON string literal; at most
    /// 64 bytes.
    static func fieldName(_ name: String) -> String {
        let isSimple =
            !name.isEmpty
            && name.utf8.allSatisfy {
                FieldSyntax.isLetterOrDigit($0) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-")
            }
        if isSimple { return truncated(name, maximumBytes: 64) }
        var writer = JSONWriter(reservingCapacity: name.utf8.count + 2)
        writer.writeString(truncated(name, maximumBytes: 62))
        return String(decoding: writer.bytes, as: UTF8.self)
    }
}
