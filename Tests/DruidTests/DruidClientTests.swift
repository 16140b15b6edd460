import Druid
import Foundation
import HTTPClient
import Synchronization
import Testing
import UserUpdates

/// A DRUID stand-in at the HTTP-executor level: it records every request and answers with
/// a closure, so answer mapping is tested without sockets.
final class FakeDruidTransport: HTTPExecutor {
    typealias Answer = @Sendable (HTTPRequest) -> Result<HTTPResponse, HTTPClientError>

    private let state: Mutex<(requests: [HTTPRequest], token: Answer, update: Answer)>

    init(token: @escaping Answer = FakeDruidTransport.grantToken, update: @escaping Answer = FakeDruidTransport.accept)
    {
        state = Mutex((requests: [], token: token, update: update))
    }

    func execute(_ request: HTTPRequest) async throws(HTTPClientError) -> HTTPResponse {
        let answer = state.withLock { state in
            state.requests.append(request)
            return request.url.contains("/oauth2/token") ? state.token : state.update
        }
        return try answer(request).get()
    }

    var requests: [HTTPRequest] { state.withLock { $0.requests } }
    var tokenRequests: [HTTPRequest] { requests.filter { $0.url.contains("/oauth2/token") } }
    var updateRequests: [HTTPRequest] { requests.filter { $0.url.contains("/user/update") } }

    static let grantToken: Answer = { _ in
        .success(json(200, #"{"access_token":"tok-\#(UUID().uuidString)","token_type":"bearer","expires_in":60}"#))
    }
    static let accept: Answer = { _ in
        .success(json(200, #"{"content":{"objectType":"user"},"result":{"status":200,"errors":[]}}"#))
    }

    static func json(_ status: Int, _ body: String, headers: [(name: String, value: String)] = []) -> HTTPResponse {
        HTTPResponse(status: status, headers: [("content-type", "application/json")] + headers, body: Array(body.utf8))
    }
}

let clientSecretValue = "s3cret-value"
let passwordValue = "hunter2-Password!"

func configuration(
    auth: String = "https://auth.example.test", graph: String = "https://graph.example.test",
    secret: String = clientSecretValue
) -> DruidClientConfiguration {
    DruidClientConfiguration(
        authURL: auth, graphURL: graph, clientId: "client-1", clientSecret: Secret(secret),
        entryPoint: "ep-main", timeout: .seconds(3))
}

func activity(
    objectId: String = "u1", language: String? = "es-ES", clientId: String = "client-1",
    email: String = "a@b.es"
) -> UpdateActivity {
    let body = #"""
        {"actor":{"id":"\#(clientId)","objectType":"application"},"verb":"update",
         "object":{"objectType":"user","objectId":"\#(objectId)","password":"\#(passwordValue)",
                   "ids":{"email":{"objectType":"user_id","value":"\#(email)","confirmed":true}}},
         "source":{"id":"pc","objectType":"device"}}
        """#
    return UpdateActivity(body: Array(body.utf8), acceptLanguage: language, objectId: objectId, passwordRange: nil)
}

/// Decodes an `application/x-www-form-urlencoded` body.
func formFields(_ body: [UInt8]) -> [String: String] {
    var fields: [String: String] = [:]
    for pair in String(decoding: body, as: UTF8.self).split(separator: "&") {
        let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map {
            $0.replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? "?"
        }
        fields[parts[0]] = parts.count > 1 ? parts[1] : ""
    }
    return fields
}

func queryItem(_ url: String, _ name: String) -> String? {
    URLComponents(string: url)?.queryItems?.first { $0.name == name }?.value
}

/// A short, comparable form of an answer (details left out).
func summary(_ answer: DruidAnswer) -> String {
    switch answer {
    case .accepted(let status): return "accepted \(status)"
    case .rejected(let status, let errors): return "rejected \(status) \(errors.map(\.message))"
    case .unauthorized: return "unauthorized"
    case .credentialsRefused(let status, _): return "credentialsRefused \(status.map(String.init) ?? "-")"
    case .unavailable(let status, let retryAfter, _):
        return
            "unavailable \(status.map(String.init) ?? "-")\(retryAfter.map { " retry \($0.components.seconds)" } ?? "")"
    }
}

func detail(_ answer: DruidAnswer) -> String {
    switch answer {
    case .credentialsRefused(_, let detail), .unavailable(_, _, let detail): return detail
    case .rejected(_, let errors): return errors.map { "\($0.message) \($0.details)" }.joined(separator: "; ")
    case .accepted, .unauthorized: return ""
    }
}

@Suite("DruidClient requests and answers (fake transport)")
struct DruidClientTests {
    @Test("the token request is a form POST with every field, encoded")
    func tokenRequest() async throws {
        let transport = FakeDruidTransport()
        let secret = "s&e=c r+t/é%"
        let client = DruidClient(
            configuration: configuration(auth: "https://auth.example.test/", secret: secret), http: transport)
        #expect(await client.update(activity()) == .accepted(status: 200))
        let request = try #require(transport.tokenRequests.first)
        #expect(request.method == .post)
        #expect(request.url == "https://auth.example.test/oauth2/token")
        #expect(request.timeout == .seconds(3))
        #expect(
            request.headers.contains { $0.name == "Content-Type" && $0.value == "application/x-www-form-urlencoded" })
        let fields = formFields(request.body)
        #expect(
            fields == [
                "grant_type": "urn:druid:oauth2:grant-type:code_challenge", "client_id": "client-1",
                "client_secret": secret, "scope": "update", "code_challenge_method": "S256",
                "code_challenge": fields["code_challenge"] ?? "",
            ])
        #expect(fields["code_challenge"]?.count == 43)
        #expect(!String(decoding: request.body, as: UTF8.self).contains(" "))
    }

    @Test("the update carries the token, the verifier of the challenge, the headers and the body")
    func updateRequest() async throws {
        let transport = FakeDruidTransport()
        let client = DruidClient(configuration: configuration(graph: "https://graph.example.test//"), http: transport)
        let sent = activity()
        #expect(await client.update(sent) == .accepted(status: 200))
        let token = try #require(transport.tokenRequests.first)
        let update = try #require(transport.updateRequests.first)
        #expect(update.method == .post)
        #expect(update.url.hasPrefix("https://graph.example.test/activityid/v1/user/update?code_verifier="))
        let verifier = try #require(queryItem(update.url, "code_verifier"))
        #expect(CodeVerifier(verifier)?.challenge == formFields(token.body)["code_challenge"])
        let headers = Dictionary(update.headers.map { ($0.name, $0.value) }, uniquingKeysWith: { first, _ in first })
        #expect(headers["Authorization"]?.hasPrefix("Bearer tok-") == true)
        #expect(headers["Content-Type"] == "application/json")
        #expect(headers["Accept"] == "application/json")
        #expect(headers["From"] == "ep-main")
        #expect(headers["Accept-Language"] == "es-ES")
        #expect(update.body == sent.body)
        #expect(update.timeout == .seconds(3))

        _ = await client.update(activity(language: nil))
        let second = try #require(transport.updateRequests.last)
        #expect(!second.headers.contains { $0.name == "Accept-Language" })
    }

    @Test("every update uses a new verifier, whose challenge obtained its token")
    func newVerifierPerCall() async throws {
        let transport = FakeDruidTransport()
        let client = DruidClient(configuration: configuration(), http: transport)
        for _ in 0..<20 { #expect(await client.update(activity()) == .accepted(status: 200)) }
        let challenges = transport.tokenRequests.map { formFields($0.body)["code_challenge"] ?? "" }
        let verifiers = transport.updateRequests.map { queryItem($0.url, "code_verifier") ?? "" }
        let tokens = transport.updateRequests.map { $0.headers.first { $0.name == "Authorization" }?.value ?? "" }
        #expect(Set(challenges).count == 20)
        #expect(Set(verifiers).count == 20)
        #expect(Set(tokens).count == 20)
        #expect(verifiers.map { CodeVerifier($0)?.challenge ?? "" } == challenges)
    }

    @Test(
        "token answers map to outcomes, and no update follows a refused token",
        arguments: [
            (200, #"{"error":"invalid client","type":"InvalidGrantException"}"#, [], "credentialsRefused 200"),
            (400, #"{"error":"invalid grant","type":"InvalidGrantException"}"#, [], "credentialsRefused 400"),
            (401, #"{"error":"unauthorized"}"#, [], "credentialsRefused 401"),
            (403, "", [], "credentialsRefused 403"),
            (404, "<html>not found</html>", [], "credentialsRefused 404"),
            (408, "", [], "unavailable 408"),
            (429, "", [("retry-after", "3")], "unavailable 429 retry 3"),
            (500, #"{"error":"boom"}"#, [], "unavailable 500"),
            (503, "", [("retry-after", "17")], "unavailable 503 retry 17"),
            (200, #"{"token_type":"bearer"}"#, [], "unavailable 200"),
            (200, "<html>captive portal</html>", [], "unavailable 200"),
            (302, "", [], "unavailable 302"),
        ] as [(Int, String, [(name: String, value: String)], String)])
    func tokenAnswers(
        _ status: Int, _ body: String, _ headers: [(name: String, value: String)], _ expected: String
    )
        async
    {
        let transport = FakeDruidTransport(token: { _ in
            .success(FakeDruidTransport.json(status, body, headers: headers))
        })
        let client = DruidClient(configuration: configuration(), http: transport)
        #expect(summary(await client.update(activity())) == expected)
        #expect(transport.updateRequests.isEmpty)
        switch await client.requestToken() {
        case .success(let token): Issue.record("unexpected token \(token)")
        case .failure(let failure): #expect(summary(failure.answer) == expected)
        }
    }

    @Test(
        "update answers map to outcomes",
        arguments: [
            (200, #"{"result":{"status":200}}"#, [], "accepted 200"),
            (201, "", [], "accepted 201"),
            (204, "", [], "accepted 204"),
            (200, #"{"result":{"status":500,"errors":[]}}"#, [], "unavailable 500"),
            (
                200, #"{"result":{"status":404,"errors":[{"message":"objectId","details":"user not found"}]}}"#, [],
                "rejected 404 [\"objectId\"]"
            ),
            (200, #"{"result":{"status":401}}"#, [], "unauthorized"),
            (
                400,
                #"{"result":{"status":400,"errors":[{"message":"email","details":"The value is not valid"},{"message":"phone_number","details":"bad"}]}}"#,
                [], "rejected 400 [\"email\", \"phone_number\"]"
            ),
            (400, "not json", [], "rejected 400 []"),
            (404, "", [], "rejected 404 []"),
            (409, "", [], "rejected 409 []"),
            (422, "", [], "rejected 422 []"),
            (401, #"{"result":{"status":401}}"#, [], "unauthorized"),
            (403, "", [], "credentialsRefused 403"),
            (408, "", [], "unavailable 408"),
            (429, "", [("retry-after", "5")], "unavailable 429 retry 5"),
            (500, "", [], "unavailable 500"),
            (502, "<html>bad gateway</html>", [], "unavailable 502"),
            (503, "", [("retry-after", "Fri, 31 Dec 1999 23:59:59 GMT")], "unavailable 503 retry 0"),
            (504, "", [("retry-after", "garbage")], "unavailable 504"),
            (301, "", [], "unavailable 301"),
        ] as [(Int, String, [(name: String, value: String)], String)])
    func updateAnswers(
        _ status: Int, _ body: String, _ headers: [(name: String, value: String)], _ expected: String
    )
        async
    {
        let transport = FakeDruidTransport(update: { _ in
            .success(FakeDruidTransport.json(status, body, headers: headers))
        })
        let client = DruidClient(configuration: configuration(), http: transport)
        #expect(summary(await client.update(activity())) == expected)
    }

    @Test("field errors keep DRUID's message and details")
    func fieldErrors() async {
        let transport = FakeDruidTransport(update: { _ in
            .success(
                FakeDruidTransport.json(
                    400, #"{"result":{"status":400,"errors":[{"message":"email","details":"already exists"}]}}"#))
        })
        let client = DruidClient(configuration: configuration(), http: transport)
        #expect(
            await client.update(activity())
                == .rejected(
                    status: 400, errors: [DruidFieldError(message: "email", details: "already exists")]))
    }

    @Test(
        "transport failures are .unavailable without a status",
        arguments: [
            HTTPClientError.Code.timeout, .couldNotConnect, .connectionReset, .tls("SSL certificate problem"),
            .shutdown,
        ])
    func transportFailures(_ code: HTTPClientError.Code) async {
        for failingStep in ["token", "update"] {
            let failure: FakeDruidTransport.Answer = { _ in .failure(HTTPClientError(code: code, detail: "boom")) }
            let transport =
                failingStep == "token"
                ? FakeDruidTransport(token: failure) : FakeDruidTransport(update: failure)
            let client = DruidClient(configuration: configuration(), http: transport)
            let answer = await client.update(activity())
            #expect(summary(answer) == "unavailable -")
            #expect(detail(answer).contains(failingStep))
        }
    }

    @Test("no secret reaches an answer's details, even when DRUID echoes it")
    func noSecretsInDetails() async throws {
        // A hostile DRUID that quotes everything it was sent in every text it returns.
        let echo: @Sendable (HTTPRequest) -> String = { request in
            let everything =
                request.url + " " + request.headers.map { "\($0.name): \($0.value)" }.joined(separator: " ")
                + " " + String(decoding: request.body, as: UTF8.self)
            return everything.replacingOccurrences(of: "\\", with: "").replacingOccurrences(of: "\"", with: "'")
                .replacingOccurrences(of: "\n", with: " ")
        }
        let statuses = [400, 403, 404, 500, 503]
        var answers: [DruidAnswer] = []
        for status in statuses {
            let tokenTransport = FakeDruidTransport(token: { request in
                .success(FakeDruidTransport.json(status, #"{"error":"\#(echo(request))","type":"X"}"#))
            })
            answers.append(await DruidClient(configuration: configuration(), http: tokenTransport).update(activity()))
            let updateTransport = FakeDruidTransport(update: { request in
                let text = echo(request)
                return .success(
                    FakeDruidTransport.json(
                        status,
                        #"{"result":{"status":\#(status),"errors":[{"message":"\#(text)","details":"\#(text)"}]}}"#))
            })
            let client = DruidClient(configuration: configuration(), http: updateTransport)
            answers.append(await client.update(activity()))
            let update = try #require(updateTransport.updateRequests.last)
            let verifier = try #require(queryItem(update.url, "code_verifier"))
            let token = try #require(
                update.headers.first { $0.name == "Authorization" }?.value.dropFirst("Bearer ".count))
            for secret in [verifier, String(token), clientSecretValue, passwordValue] {
                #expect(!detail(answers.last!).contains(secret), "\(summary(answers.last!)) leaks a secret")
                #expect(!"\(answers.last!)".contains(secret))
            }
        }
        #expect(answers.contains { detail($0).contains("***") }, "the test's DRUID did echo secrets")
        for answer in answers {
            #expect(!detail(answer).isEmpty)
            #expect(!detail(answer).contains(clientSecretValue), "\(summary(answer)) leaks the client secret")
            #expect(!detail(answer).contains(passwordValue), "\(summary(answer)) leaks the password")
        }
    }

    @Test("requestToken reports the grant without the token")
    func requestTokenSuccess() async throws {
        let transport = FakeDruidTransport(token: { _ in
            .success(
                FakeDruidTransport.json(200, #"{"access_token":"TOKEN-VALUE","token_type":"bearer","expires_in":60}"#))
        })
        let client = DruidClient(configuration: configuration(), http: transport)
        let token = try await client.requestToken().get()
        #expect(token.tokenType == "bearer")
        #expect(token.lifetime == .seconds(60))
        #expect(!"\(token)".contains("TOKEN-VALUE"))
        #expect(transport.updateRequests.isEmpty)
    }

    @Test("requestToken failures say why")
    func requestTokenFailure() async throws {
        let transport = FakeDruidTransport(token: { _ in
            .success(
                FakeDruidTransport.json(400, #"{"error":"invalid client credentials","type":"InvalidGrantException"}"#))
        })
        let client = DruidClient(configuration: configuration(), http: transport)
        guard case .failure(let failure) = await client.requestToken() else {
            Issue.record("expected a failure")
            return
        }
        #expect(
            "\(failure)"
                == "DRUID refused the client credentials (HTTP 400): token endpoint answered HTTP 400: InvalidGrantException: invalid client credentials"
        )
    }
}
