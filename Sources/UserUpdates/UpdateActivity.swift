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
    /// The same JSON with the password shown as `***`, for `druid-sync translate` and debugging.
    public let redactedJSON: String

    public init(body: [UInt8], acceptLanguage: String?, objectId: String, redactedJSON: String) {
        self.body = body
        self.acceptLanguage = acceptLanguage
        self.objectId = objectId
        self.redactedJSON = redactedJSON
    }
}
