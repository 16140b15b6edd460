public import UserUpdates

/// Where DRUID is and who druid-sync is to it.
public struct DruidClientConfiguration: Sendable {
    /// The auth host's base URL, e.g. `https://auth.demo.dru-id.com` (a trailing `/` is ignored).
    public var authURL: String
    /// The graph host's base URL, e.g. `https://graph.demo.dru-id.com` (a trailing `/` is ignored).
    public var graphURL: String
    /// The app's client id.
    public var clientId: String
    /// The app's client secret.
    public var clientSecret: Secret
    /// The entry point id sent as `From`, e.g. `231705665113870-main`.
    public var entryPoint: String
    /// The scope asked for with each token. Default `update`.
    public var scope: String
    /// The time allowed for each of the two calls (token, update). Default 10 s.
    public var timeout: Duration

    public init(
        authURL: String,
        graphURL: String,
        clientId: String,
        clientSecret: Secret,
        entryPoint: String,
        scope: String = "update",
        timeout: Duration = .seconds(10)
    ) {
        self.authURL = authURL
        self.graphURL = graphURL
        self.clientId = clientId
        self.clientSecret = clientSecret
        self.entryPoint = entryPoint
        self.scope = scope
        self.timeout = timeout
    }
}
