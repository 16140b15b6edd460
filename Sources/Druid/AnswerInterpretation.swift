import HTTPClient
import UserUpdates

/// Turns DRUID's HTTP answers into ``DruidAnswer``s: pure functions over values.
enum AnswerInterpretation {
    /// 408, 429 and 5xx: DRUID cannot answer now; asking later may work.
    static func isTransient(_ status: Int) -> Bool {
        status == 408 || status == 429 || (500...599).contains(status)
    }

    /// Reads the answer of `POST /oauth2/token`.
    static func token(
        _ result: Result<HTTPResponse, HTTPClientError>, redactor: Redactor
    ) -> Result<DruidToken, DruidTokenFailure> {
        let response: HTTPResponse
        switch result {
        case .failure(let error):
            return .failure(
                DruidTokenFailure(
                    answer: .unavailable(
                        status: nil, retryAfter: nil, detail: redactor.clean("token request failed: \(error)"))))
        case .success(let answer):
            response = answer
        }
        let status = response.status
        let json = JSONValue.parse(response.body)
        let refusal = json.flatMap(tokenErrorText)
        let reason = refusal.map { ": \($0)" } ?? ""

        if isTransient(status) {
            return .failure(
                DruidTokenFailure(
                    answer: .unavailable(
                        status: status, retryAfter: retryAfter(response),
                        detail: redactor.clean("token endpoint answered HTTP \(status)\(reason)"))))
        }
        if (400...499).contains(status) {
            return .failure(
                DruidTokenFailure(
                    answer: .credentialsRefused(
                        status: status, detail: redactor.clean("token endpoint answered HTTP \(status)\(reason)"))))
        }
        if let refusal {
            // DRUID also refuses with HTTP 200 and an `error` key.
            return .failure(
                DruidTokenFailure(
                    answer: .credentialsRefused(
                        status: status, detail: redactor.clean("token endpoint refused the client: \(refusal)"))))
        }
        guard (200...299).contains(status) else {
            return .failure(
                DruidTokenFailure(
                    answer: .unavailable(
                        status: status, retryAfter: nil, detail: "token endpoint answered unexpected HTTP \(status)")))
        }
        guard let accessToken = json?["access_token"]?.string, !accessToken.isEmpty else {
            return .failure(
                DruidTokenFailure(
                    answer: .unavailable(
                        status: status, retryAfter: nil,
                        detail: "token endpoint answered HTTP \(status) without an access_token")))
        }
        let lifetime = json?["expires_in"]?.integer.map { Duration.seconds($0) }
        return .success(
            DruidToken(
                tokenType: json?["token_type"]?.string, lifetime: lifetime, accessToken: Secret(accessToken)))
    }

    /// `type: error` of a token error answer, or nil when it has no (non-null) `error` key.
    private static func tokenErrorText(_ json: JSONValue) -> String? {
        guard let error = json["error"], error != .null else { return nil }
        let text = error.string ?? "error"
        if let type = json["type"]?.string, !type.isEmpty { return "\(type): \(text)" }
        return text
    }

    /// Reads the answer of `POST /activityid/v1/user/update`.
    ///
    /// A 2xx whose envelope says otherwise (`result.status`) counts as that status.
    static func update(_ result: Result<HTTPResponse, HTTPClientError>, redactor: Redactor) -> DruidAnswer {
        let response: HTTPResponse
        switch result {
        case .failure(let error):
            return .unavailable(status: nil, retryAfter: nil, detail: redactor.clean("update request failed: \(error)"))
        case .success(let answer):
            response = answer
        }
        let json = JSONValue.parse(response.body)
        var status = response.status
        var statusText = "HTTP \(status)"
        if (200...299).contains(status), let envelopeStatus = json?["result"]?["status"]?.integer,
            (100...599).contains(envelopeStatus), !(200...299).contains(envelopeStatus)
        {
            status = envelopeStatus
            statusText += " with result.status \(envelopeStatus)"
        }
        if (200...299).contains(status) { return .accepted(status: status) }
        if status == 401 { return .unauthorized }

        let errors = fieldErrors(json, redactor: redactor)
        let summary = errors.first.map { ": \($0.message): \($0.details)" } ?? ""
        let detail = redactor.clean("update answered \(statusText)\(summary)")
        if status == 403 { return .credentialsRefused(status: status, detail: detail) }
        if isTransient(status) {
            return .unavailable(status: status, retryAfter: retryAfter(response), detail: detail)
        }
        if (400...499).contains(status) { return .rejected(status: status, errors: errors) }
        return .unavailable(
            status: status, retryAfter: nil, detail: redactor.clean("update answered unexpected \(statusText)"))
    }

    /// `result.errors` of DRUID's envelope: `message` is the field, `details` the text.
    private static func fieldErrors(_ json: JSONValue?, redactor: Redactor) -> [DruidFieldError] {
        guard let entries = json?["result"]?["errors"]?.array else { return [] }
        return entries.prefix(50).compactMap { entry in
            let message = entry["message"]?.string
            let details = entry["details"]?.string
            guard message != nil || details != nil else { return nil }
            return DruidFieldError(
                message: redactor.clean(message ?? ""), details: redactor.clean(details ?? ""))
        }
    }

    private static func retryAfter(_ response: HTTPResponse) -> Duration? {
        response.header("retry-after").flatMap { RetryAfter.delay(from: $0) }
    }
}

/// Keeps secrets out of the texts a ``DruidAnswer`` carries, including text DRUID wrote,
/// which might quote what it was sent.
struct Redactor {
    /// Secret values to blank out: client secret, verifier, token.
    let secrets: [String]
    /// The request body, searched for passwords only when a text is actually cleaned.
    let requestBody: [UInt8]

    /// `text` with every secret (and any password from the request body) replaced by
    /// `***`, control characters dropped, and at most 300 characters.
    func clean(_ text: String) -> String {
        var cleaned = String(
            String.UnicodeScalarView(text.unicodeScalars.filter { $0.value >= 0x20 && $0.value != 0x7F }))
        var hidden = secrets
        if !requestBody.isEmpty, let body = JSONValue.parse(requestBody) {
            Redactor.collectPasswords(in: body, into: &hidden)
        }
        // Longest first, so a secret containing another is replaced whole.
        for secret in hidden.sorted(by: { $0.count > $1.count }) where secret.count >= 3 {
            cleaned = cleaned.replacing(secret, with: "***")
        }
        if cleaned.count > 300 { cleaned = String(cleaned.prefix(300)) + "…" }
        return cleaned
    }

    private static func collectPasswords(in value: JSONValue, into found: inout [String]) {
        switch value {
        case .object(let members):
            for (key, member) in members {
                if key.lowercased().contains("password") {
                    if let text = member.string { found.append(text) }
                    if let text = member["value"]?.string { found.append(text) }
                }
                collectPasswords(in: member, into: &found)
            }
        case .array(let elements):
            for element in elements { collectPasswords(in: element, into: &found) }
        default:
            break
        }
    }
}
