/// The DRUID "update user" activity one event becomes, ready to send.
///
/// `body` is the JSON request body and contains the user's password when the event had
/// one, so it is never logged; `redactedJSON` is the printable form.
public struct UpdateActivity: Sendable {
    /// The JSON body of `POST /activityid/v1/user/update`.
    public let body: [UInt8]
    /// The `Accept-Language` header value, when the event or the configuration gave a locale.
    public let acceptLanguage: String?
    /// The DRUID objectId of the user, for logs.
    public let objectId: String
    /// Where the password's string literal (quotes included) sits in `body`, if it has one.
    public let passwordRange: Range<Int>?

    /// - Parameter passwordRange: the password's string literal in `body`, quotes included;
    ///   nil when the body has no password.
    public init(body: [UInt8], acceptLanguage: String?, objectId: String, passwordRange: Range<Int>?) {
        precondition(passwordRange.map { $0.lowerBound >= 0 && $0.upperBound <= body.count } ?? true)
        self.body = body
        self.acceptLanguage = acceptLanguage
        self.objectId = objectId
        self.passwordRange = passwordRange
    }

    /// The same JSON with the password shown as `***`, for `druid-sync translate` and
    /// debugging. Built on demand: the daemon's path never needs it.
    public var redactedJSON: String {
        guard let passwordRange else { return String(decoding: body, as: UTF8.self) }
        // The body with the password's string literal swapped for "***": nothing else differs.
        var redacted = Array(body[..<passwordRange.lowerBound])
        redacted.append(contentsOf: #""***""#.utf8)
        redacted.append(contentsOf: body[passwordRange.upperBound...])
        return String(decoding: redacted, as: UTF8.self)
    }
}
