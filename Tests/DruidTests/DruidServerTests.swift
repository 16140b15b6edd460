import Druid
import Foundation
import HTTPClient
import Testing
import UserUpdates

/// DruidClient through the real HTTPClient against the aiohttp test server's minimal DRUID
/// (one-use tokens, S256 check), each test under its own path scope.
@Suite("DruidClient over HTTP (test server)")
struct DruidOverHTTPTests {
    let http: HTTPClient
    let scope = UUID().uuidString
    var base: String { "\(TestServers.plainURL)/d/\(scope)" }

    init() throws { http = try HTTPClient() }

    func client(secret: String = clientSecretValue, auth: String? = nil) -> DruidClient {
        DruidClient(configuration: configuration(auth: auth ?? base, graph: base, secret: secret), http: http)
    }

    func serverLog() async throws -> [[String: Any]] {
        jsonArray(try await http.execute(HTTPRequest(url: "\(base)/admin/log")).body)
    }

    func can(_ endpoint: String, status: Int, body: String = "{}", headers: [String: String] = [:]) async throws {
        let spec = try JSONSerialization.data(withJSONObject: [
            "endpoint": endpoint, "status": status, "body": body, "headers": headers,
        ])
        _ = try await http.execute(HTTPRequest(method: .post, url: "\(base)/admin/canned", body: Array(spec)))
    }

    @Test("32 concurrent updates: each gets its own verifier and one-use token, all accepted")
    func concurrentUpdates() async throws {
        defer { http.shutdown() }
        let client = client()
        let answers = await withTaskGroup(of: DruidAnswer.self) { group in
            for _ in 0..<32 { group.addTask { await client.update(activity()) } }
            var answers: [DruidAnswer] = []
            for await answer in group { answers.append(answer) }
            return answers
        }
        #expect(answers.allSatisfy { $0 == .accepted(status: 200) }, "\(answers.map(summary))")
        let log = try await serverLog()
        let tokens = log.filter { $0["endpoint"] as? String == "token" }
        let updates = log.filter { $0["endpoint"] as? String == "update" }
        #expect(tokens.count == 32 && updates.count == 32)
        let challenges = Set(tokens.compactMap { ($0["form"] as? [String: String])?["code_challenge"] })
        let verifiers = updates.compactMap { $0["verifier"] as? String }
        #expect(challenges.count == 32)
        #expect(Set(verifiers.compactMap { CodeVerifier($0)?.challenge }) == challenges)
        let headers = try #require(updates.first?["headers"] as? [String: String])
        #expect(headers["from"] == "ep-main")
        #expect(headers["content-type"] == "application/json")
        #expect(headers["accept-language"] == "es-ES")
        #expect(headers["expect"] == nil)
        let form = try #require(tokens.first?["form"] as? [String: String])
        #expect(form["client_secret"] == clientSecretValue)
        #expect(form["grant_type"] == "urn:druid:oauth2:grant-type:code_challenge")
        #expect(
            tokens.first?["headers"].flatMap { ($0 as? [String: String])?["content-type"] }
                == "application/x-www-form-urlencoded")
    }

    @Test("a wrong client secret is .credentialsRefused, and the echoed secret is hidden")
    func wrongSecret() async throws {
        defer { http.shutdown() }
        let answer = await client(secret: "wrong-secret-value").update(activity())
        #expect(summary(answer) == "credentialsRefused 400")
        #expect(detail(answer).contains("InvalidGrantException"))
        #expect(!detail(answer).contains("wrong-secret-value"))
    }

    @Test("token 503 with Retry-After, then update 429 and 400 with field errors")
    func cannedAnswers() async throws {
        defer { http.shutdown() }
        try await can("token", status: 503, headers: ["Retry-After": "7"])
        #expect(summary(await client().update(activity())) == "unavailable 503 retry 7")
        try await can("update", status: 429, headers: ["Retry-After": "2"])
        #expect(summary(await client().update(activity())) == "unavailable 429 retry 2")
        try await can(
            "update", status: 400,
            body: #"{"result":{"status":400,"errors":[{"message":"email","details":"already exists"}]}}"#)
        #expect(
            await client().update(activity())
                == .rejected(
                    status: 400, errors: [DruidFieldError(message: "email", details: "already exists")]))
        try await can("update", status: 200, body: #"{"result":{"status":504}}"#)
        #expect(summary(await client().update(activity())) == "unavailable 504")
    }

    @Test("an unreachable DRUID is .unavailable without a status")
    func unreachable() async throws {
        defer { http.shutdown() }
        let answer = await client(auth: "http://127.0.0.1:\(closedPort())").update(activity())
        #expect(summary(answer) == "unavailable -")
        #expect(detail(answer).contains("could not connect"))
    }
}

/// DruidClient against the project's DRUID emulator (deploy/emulator), when it is present.
/// Serialized: fault injection and the request log are global to the emulator.
@Suite("DruidClient against the DRUID emulator", .serialized, .enabled(if: DruidEmulator.isAvailable))
struct DruidEmulatorTests {
    let http: HTTPClient
    let emulator: TestServerProcess

    init() throws {
        http = try HTTPClient()
        emulator = try DruidEmulator.start()
    }

    var base: String { "http://127.0.0.1:\(emulator.port)" }
    var client: DruidClient { DruidClient(configuration: configuration(auth: base, graph: base), http: http) }

    func admin(_ method: HTTPMethod, _ path: String, _ body: String = "") async throws -> [String: Any] {
        let response = try await http.execute(
            HTTPRequest(
                method: method, url: base + path, headers: [("Content-Type", "application/json")],
                body: Array(body.utf8)))
        #expect(response.status == 200, "admin \(path): \(String(decoding: response.body, as: UTF8.self))")
        return jsonObject(response.body)
    }

    func finish() {
        emulator.stop()
        http.shutdown()
    }

    @Test("updates are applied, unknown users and invalid fields rejected, faults mapped")
    func updates() async throws {
        defer { finish() }
        _ = try await admin(
            .post, "/admin/users",
            #"{"users":[{"objectId":"u1","ids":{"email":"old@b.es"}},{"objectId":"u2","ids":{"email":"taken@b.es"}}]}"#)

        #expect(await client.update(activity(email: "new@b.es")) == .accepted(status: 200))
        let user = try await admin(.get, "/admin/users/u1")
        #expect(((user["ids"] as? [String: Any])?["email"] as? [String: Any])?["value"] as? String == "new@b.es")

        #expect(summary(await client.update(activity(objectId: "nobody"))) == "rejected 404 [\"objectId\"]")
        #expect(summary(await client.update(activity(email: "not-an-email"))) == "rejected 400 [\"email\"]")
        #expect(summary(await client.update(activity(email: "taken@b.es"))) == "rejected 400 [\"email\"]")

        _ = try await admin(.post, "/admin/faults", #"{"endpoint":"token","status":503,"count":1,"retryAfter":"5"}"#)
        #expect(summary(await client.update(activity())) == "unavailable 503 retry 5")
        _ = try await admin(.post, "/admin/faults", #"{"endpoint":"update","status":429,"count":1,"retryAfter":"3"}"#)
        #expect(summary(await client.update(activity())) == "unavailable 429 retry 3")
        _ = try await admin(.post, "/admin/faults", #"{"endpoint":"update","status":401,"count":1}"#)
        #expect(await client.update(activity()) == .unauthorized)
        _ = try await admin(.post, "/admin/faults", #"{"endpoint":"update","status":403,"count":1}"#)
        #expect(summary(await client.update(activity())) == "credentialsRefused 403")
        _ = try await admin(
            .post, "/admin/faults",
            #"{"endpoint":"token","status":200,"count":1,"body":{"error":"nope","type":"InvalidGrantException"}}"#)
        #expect(summary(await client.update(activity())) == "credentialsRefused 200")

        // libcurl resends once, on a new connection, a request whose reused connection
        // closed before any answer (the stale keep-alive race); the second drop is final.
        _ = try await admin(.post, "/admin/faults", #"{"endpoint":"update","drop":true,"count":2}"#)
        let dropped = await client.update(activity())
        #expect(summary(dropped) == "unavailable -", "\(dropped)")
        _ = try await admin(.delete, "/admin/faults")

        // The emulator saw distinct challenges, and each update's verifier matched its own.
        let tokens = try await admin(.get, "/admin/requests?endpoint=token")["requests"] as? [[String: Any]] ?? []
        let challenges = tokens.compactMap { ($0["body"] as? [String: String])?["code_challenge"] }
        #expect(challenges.count == tokens.count && Set(challenges).count == challenges.count)
    }

    @Test("requestToken succeeds with the right secret and says why not with a wrong one")
    func requestToken() async throws {
        defer { finish() }
        let token = try await client.requestToken().get()
        #expect(token.tokenType == "bearer")
        let wrong = DruidClient(configuration: configuration(auth: base, graph: base, secret: "wrong"), http: http)
        guard case .failure(let failure) = await wrong.requestToken() else {
            Issue.record("a wrong secret got a token")
            return
        }
        #expect(summary(failure.answer) == "credentialsRefused 400")
        #expect("\(failure)".contains("invalid client credentials"))
    }
}

enum DruidEmulator {
    static let script = URL(fileURLWithPath: #filePath).resolvingSymlinksInPath()
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("deploy/emulator/druid_emulator.py").path

    static var isAvailable: Bool { FileManager.default.fileExists(atPath: script) }

    static func start() throws -> TestServerProcess {
        try TestServerProcess(
            arguments: [
                script, "--host", "127.0.0.1", "--port", "0", "--client", "client-1:\(clientSecretValue)",
                "--entry-point", "ep-main", "--quiet",
            ],
            readyMarker: "druid-emulator listening")
    }
}
