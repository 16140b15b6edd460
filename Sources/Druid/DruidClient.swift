public import HTTPClient
public import UserUpdates

/// The two DRUID calls druid-sync makes: a challenge-code token, then the administrative
/// user update it authorises.
///
/// Every ``update(_:)`` uses a new code verifier and so a new token: DRUID lets a verifier
/// create one token only, and the token lives 60 s. Nothing is cached between calls, so
/// the client is a plain value, safe to share and to call concurrently.
public struct DruidClient: Sendable {
    public let configuration: DruidClientConfiguration
    private let http: any HTTPExecutor
    private let tokenURL: String
    /// `{graph}/activityid/v1/user/update?code_verifier=`, completed per call.
    private let updateURLPrefix: String
    /// Every token form field but `code_challenge`, already encoded, ending with
    /// `&code_challenge=` so a call only appends its challenge.
    private let tokenFormPrefix: [UInt8]
    private let tokenHeaders: [(name: String, value: String)]

    /// - Parameters:
    ///   - http: the HTTP client (shared with the rest of the service), or a fake in tests.
    public init(configuration: DruidClientConfiguration, http: some HTTPExecutor) {
        self.configuration = configuration
        self.http = http
        tokenURL = DruidClient.trimmingTrailingSlashes(configuration.authURL) + "/oauth2/token"
        updateURLPrefix =
            DruidClient.trimmingTrailingSlashes(configuration.graphURL) + "/activityid/v1/user/update?code_verifier="
        var form = FormEncoding.encode([
            ("grant_type", "urn:druid:oauth2:grant-type:code_challenge"),
            ("client_id", configuration.clientId),
            ("client_secret", configuration.clientSecret.revealed),
            ("scope", configuration.scope),
            ("code_challenge_method", "S256"),
        ])
        form.append(contentsOf: "&code_challenge=".utf8)
        tokenFormPrefix = form
        tokenHeaders = [
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Accept", "application/json"),
        ]
    }

    /// The linked OpenSSL, e.g. `OpenSSL 3.0.17 1 Jul 2025`, for `--version` and start-up logs.
    public static var openSSLVersion: String { linkedOpenSSLVersion() }

    /// Applies `activity` in DRUID: obtains a token with a new code verifier, then posts
    /// the update with that verifier.
    ///
    /// Never fails: every failure, transport errors included, is a ``DruidAnswer`` whose
    /// details contain no secret (token, verifier, client secret, password). Not
    /// cancellable: the configured timeout bounds each of the two calls.
    public func update(_ activity: UpdateActivity) async -> DruidAnswer {
        await withUnsafeContinuation { continuation in
            update(activity) { continuation.resume(returning: $0) }
        }
    }

    /// ``update(_:)`` without a task: `completion` is called once with DRUID's answer,
    /// normally on the HTTP client's I/O thread (so it must be quick and must not block).
    ///
    /// The update request is built and sent from the token's completion, so with
    /// ``HTTPClient`` both calls run on its I/O thread without a hop in between.
    public func update(_ activity: UpdateActivity, completion: @escaping @Sendable (DruidAnswer) -> Void) {
        let verifier: CodeVerifier
        do {
            verifier = try CodeVerifier()
        } catch {
            completion(.unavailable(status: nil, retryAfter: nil, detail: "cannot make a code verifier: \(error)"))
            return
        }
        let client = self
        http.send(tokenRequest(challenge: verifier.challenge)) { tokenResult in
            switch client.interpretToken(tokenResult) {
            case .failure(let failure):
                completion(failure.answer)
            case .success(let token):
                client.http.send(client.updateRequest(activity, verifier: verifier, token: token)) { result in
                    let redactor = Redactor(
                        secrets: [
                            client.configuration.clientSecret.revealed, verifier.revealed, token.accessToken.revealed,
                        ],
                        requestBody: activity.body)
                    completion(AnswerInterpretation.update(result, redactor: redactor))
                }
            }
        }
    }

    /// Asks for one token, for a `check` command: success proves the URL, the client
    /// credentials and the challenge-code permission; a failure says precisely why not.
    ///
    /// The token is not used; the verifier that obtained it is discarded.
    public func requestToken() async -> Result<DruidToken, DruidTokenFailure> {
        let challenge: String
        do {
            challenge = try CodeVerifier().challenge
        } catch {
            return .failure(
                DruidTokenFailure(
                    answer: .unavailable(
                        status: nil, retryAfter: nil, detail: "cannot make a code verifier: \(error)")))
        }
        let result: Result<HTTPResponse, HTTPClientError>
        do {
            result = .success(try await http.execute(tokenRequest(challenge: challenge)))
        } catch {
            result = .failure(error)
        }
        return interpretToken(result)
    }

    /// `POST {auth}/oauth2/token` with the challenge of a new verifier.
    private func tokenRequest(challenge: String) -> HTTPRequest {
        var body = tokenFormPrefix
        // A base64url challenge has only letters, digits, `-` and `_`: nothing to encode.
        body.append(contentsOf: challenge.utf8)
        return HTTPRequest(
            method: .post, url: tokenURL, headers: tokenHeaders, body: body, timeout: configuration.timeout)
    }

    private func interpretToken(
        _ result: Result<HTTPResponse, HTTPClientError>
    ) -> Result<DruidToken, DruidTokenFailure> {
        AnswerInterpretation.token(
            result, redactor: Redactor(secrets: [configuration.clientSecret.revealed], requestBody: []))
    }

    /// `POST {graph}/activityid/v1/user/update?code_verifier=…` with the token it obtained.
    private func updateRequest(_ activity: UpdateActivity, verifier: CodeVerifier, token: DruidToken) -> HTTPRequest {
        // A verifier has only unreserved characters (RFC 7636 section 4.1; `CodeVerifier`
        // refuses anything else), which a query component carries unescaped.
        let url = updateURLPrefix + verifier.revealed
        var headers: [(name: String, value: String)] = [
            ("Authorization", "Bearer " + token.accessToken.revealed),
            ("Content-Type", "application/json"),
            ("Accept", "application/json"),
            ("From", configuration.entryPoint),
        ]
        if let language = activity.acceptLanguage { headers.append(("Accept-Language", language)) }
        return HTTPRequest(
            method: .post, url: url, headers: headers, body: activity.body, timeout: configuration.timeout)
    }

    private static func trimmingTrailingSlashes(_ url: String) -> String {
        var trimmed = Substring(url)
        while trimmed.hasSuffix("/") { trimmed.removeLast() }
        return String(trimmed)
    }
}

/// A token DRUID granted. Its `description` leaves the token out.
public struct DruidToken: Sendable, CustomStringConvertible {
    /// `token_type` as DRUID sent it, normally `bearer`.
    public let tokenType: String?
    /// `expires_in`: how long the token lives (DRUID documents 60 s).
    public let lifetime: Duration?
    let accessToken: Secret

    public var description: String {
        let lifetimeText = lifetime.map { " for \($0.components.seconds) s" } ?? ""
        return "\(tokenType ?? "untyped") token granted\(lifetimeText)"
    }
}

/// Why no token was granted: ``DruidAnswer/credentialsRefused(status:detail:)`` or
/// ``DruidAnswer/unavailable(status:retryAfter:detail:)``.
public struct DruidTokenFailure: Error, Sendable, CustomStringConvertible {
    public let answer: DruidAnswer

    public init(answer: DruidAnswer) { self.answer = answer }

    public var description: String {
        switch answer {
        case .credentialsRefused(let status, let detail):
            return "DRUID refused the client credentials\(status.map { " (HTTP \($0))" } ?? ""): \(detail)"
        case .unavailable(let status, let retryAfter, let detail):
            var context: [String] = []
            if let status { context.append("HTTP \(status)") }
            if let retryAfter { context.append("retry after \(retryAfter.components.seconds) s") }
            let contextText = context.isEmpty ? "" : " (\(context.joined(separator: ", ")))"
            return "DRUID's token endpoint is unavailable\(contextText): \(detail)"
        case .accepted, .rejected, .unauthorized:
            return "unexpected token answer"
        }
    }
}
