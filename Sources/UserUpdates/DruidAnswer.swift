/// What happened when druid-sync asked DRUID to apply one update: the input of the
/// outcome policy. Produced by the `Druid` client; contains no secrets.
public enum DruidAnswer: Sendable, Equatable {
    /// A token was granted and the update answered 2xx.
    case accepted(status: Int)
    /// The update answered a 4xx that is the message's fault (400, 404, 409, 422 …),
    /// with the field errors DRUID listed in `result.errors`, if any.
    case rejected(status: Int, errors: [DruidFieldError])
    /// The update answered 401: the token was not accepted. A new verifier and token may help.
    case unauthorized
    /// The token endpoint refused our client (InvalidGrant, 400/401, or an `error` key in a 200),
    /// or DRUID answered 403 anywhere: the service's credentials or permissions are wrong.
    case credentialsRefused(status: Int?, detail: String)
    /// DRUID could not be reached or could not answer now: 408, 429, 5xx, timeout,
    /// connection refused or reset, TLS failure. `retryAfter` is DRUID's `Retry-After`, if any.
    case unavailable(status: Int?, retryAfter: Duration?, detail: String)
}

/// One entry of DRUID's `result.errors`: `message` is the field name, `details` the text.
public struct DruidFieldError: Sendable, Equatable {
    public let message: String
    public let details: String

    public init(message: String, details: String) {
        self.message = message
        self.details = details
    }
}
