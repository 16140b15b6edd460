import DruidSync
import Testing

@Suite struct ConfigurationURLTests {
    func endpoints(_ url: String) throws -> [Configuration.AMQPEndpoint] {
        try Configuration.fromEnvironment(["DRUID_SYNC_AMQP_URL": url], readFile: { _ in "" }).amqp.endpoints
    }

    @Test(arguments: [
        // url, TLS, host, port, user, password, virtual host
        ("amqp://guest:guest@127.0.0.1:5672/%2F", false, "127.0.0.1", 5672, "guest", "guest", "/"),
        ("amqp://mq.example", false, "mq.example", 5672, "guest", "guest", "/"),
        ("amqp://mq.example/", false, "mq.example", 5672, "guest", "guest", "/"),
        ("AMQPS://mq.example", true, "mq.example", 5671, "guest", "guest", "/"),
        ("amqps://svc:pw@mq.example:6000/prod", true, "mq.example", 6000, "svc", "pw", "prod"),
        ("amqp://us%40er:p%40ss%3Aw%2Frd@h/v%2Fhost", false, "h", 5672, "us@er", "p@ss:w/rd", "v/host"),
        ("amqp://only-user@h", false, "h", 5672, "only-user", "guest", "/"),
        ("amqp://:secret@h", false, "h", 5672, "guest", "secret", "/"),
        ("amqp://u:p@ss@h", false, "h", 5672, "u", "p@ss", "/"),
        ("amqp://[::1]:5673/%2Fdev", false, "::1", 5673, "guest", "guest", "/dev"),
        ("amqp://[fe80::1]", false, "fe80::1", 5672, "guest", "guest", "/"),
        ("amqp://h/caf%C3%A9", false, "h", 5672, "guest", "guest", "café"),
    ])
    func parsesOneURL(
        url: String, usesTLS: Bool, host: String, port: Int, user: String, password: String, virtualHost: String
    ) throws {
        let endpoint = try #require(try endpoints(url).first)
        #expect(endpoint.usesTLS == usesTLS)
        #expect(endpoint.host == host)
        #expect(endpoint.port == port)
        #expect(endpoint.user == user)
        #expect(endpoint.password.revealed == password)
        #expect(endpoint.virtualHost == virtualHost)
    }

    @Test func listOfURLsKeepsItsOrder() throws {
        let list = try endpoints(" amqps://a:1@mq1:5671/%2F , amqp://b:2@mq2/other,amqp://mq3 ")
        #expect(list.map(\.host) == ["mq1", "mq2", "mq3"])
        #expect(list.map(\.usesTLS) == [true, false, false])
        #expect(list.map(\.virtualHost) == ["/", "other", "/"])
        #expect(list.map(\.password.revealed) == ["1", "2", "guest"])
    }

    @Test(arguments: [
        ("amqp://guest:guest@127.0.0.1:5672/%2F", "amqp://guest:***@127.0.0.1:5672/%2F"),
        ("amqps://us%40er:x@h/v%2Fhost", "amqps://us%40er:***@h:5671/v%2Fhost"),
        ("amqp://[::1]/prod", "amqp://guest:***@[::1]:5672/prod"),
    ])
    func redactedURLs(url: String, redacted: String) throws {
        #expect(try endpoints(url).first?.redactedURL == redacted)
    }

    @Test(arguments: [
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("https://graph.demo.dru-id.com/", "https://graph.demo.dru-id.com"),
        ("HTTPS://graph.demo.dru-id.com///", "https://graph.demo.dru-id.com"),
        ("https://tenant.example/druid/", "https://tenant.example/druid"),
        ("http://[::1]:8080", "http://[::1]:8080"),
    ])
    func druidBaseURLs(url: String, expected: String) throws {
        let configuration = try Configuration.fromEnvironment(
            ["DRUID_SYNC_AUTH_URL": url, "DRUID_SYNC_GRAPH_URL": url], readFile: { _ in "" })
        #expect(configuration.druid.authURL == expected)
        #expect(configuration.druid.graphURL == expected)
    }
}
