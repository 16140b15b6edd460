import UserUpdates

/// DRUID's answers are read with the domain's JSON parser; these accessors keep the
/// answer-reading code short.
extension JSONValue {
    /// The parsed document, or nil when `bytes` is not JSON.
    static func parse(_ bytes: [UInt8]) -> JSONValue? { try? JSONParser.parse(bytes) }

    var string: String? { stringValue }

    /// A number that is a whole number, whatever its JSON spelling (`400`, `4e2`, `400.0`).
    var integer: Int? {
        guard case .number(let text) = self else { return nil }
        if let exact = Int(text) { return exact }
        return Double(text).flatMap { Int(exactly: $0) }
    }

    var array: [JSONValue]? { arrayElements }
}
