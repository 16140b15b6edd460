import Testing
import UserUpdates

@testable import Druid

@Suite("Encodings, JSON and Retry-After")
struct ParsingTests {
    @Test("form encoding keeps * - . _ and letters, turns spaces into +, escapes the rest")
    func formEncoding() {
        var output: [UInt8] = []
        FormEncoding.append("a b&c=d/é*-._~+", to: &output)
        #expect(String(decoding: output, as: UTF8.self) == "a+b%26c%3Dd%2F%C3%A9*-._%7E%2B")
        let form = FormEncoding.encode([("x y", "1"), ("z", "")])
        #expect(String(decoding: form, as: UTF8.self) == "x+y=1&z=")
    }

    @Test("unreserved characters are exactly A-Z a-z 0-9 - . _ ~")
    func unreservedCharacters() {
        let unreserved = (0...255).map(UInt8.init).filter(PercentEncoding.isUnreserved)
        let expected = "-.0123456789" + "ABCDEFGHIJKLMNOPQRSTUVWXYZ" + "_" + "abcdefghijklmnopqrstuvwxyz" + "~"
        #expect(String(decoding: unreserved, as: UTF8.self) == expected)
    }

    @Test("JSON: DRUID's envelope")
    func jsonEnvelope() throws {
        let text = #"""
            { "content": {"objectType":"user","confirmed":true},
              "result": {"status": 400, "elapsed": 12.5e0,
                         "errors": [ {"message":"email","details":"The value is not valid"} ] } }
            """#
        let value = try #require(JSONValue.parse(Array(text.utf8)))
        #expect(value["result"]?["status"]?.integer == 400)
        #expect(value["result"]?["elapsed"] == .number("12.5e0"))
        #expect(value["content"]?["confirmed"] == .bool(true))
        #expect(value["result"]?["errors"]?.array?.first?["details"]?.string == "The value is not valid")
    }

    @Test("JSON: whole numbers whatever their spelling")
    func jsonIntegers() throws {
        let value = try #require(JSONValue.parse(Array(#"[400, 4e2, 400.0, 400.5, "400"]"#.utf8)))
        #expect(value.array?.map(\.integer) == [400, 400, 400, nil, nil])
    }

    @Test("JSON: invalid texts are refused", arguments: ["", "{", "{\"a\":}", "[1,]", "01", "tru", "[1] 2"])
    func jsonInvalid(_ text: String) {
        #expect(JSONValue.parse(Array(text.utf8)) == nil)
    }

    @Test("Retry-After in seconds")
    func retryAfterSeconds() {
        #expect(RetryAfter.delay(from: "120") == .seconds(120))
        #expect(RetryAfter.delay(from: " 0") == .seconds(0))
        #expect(RetryAfter.delay(from: "99999999999999999999999") == .seconds(365 * 86_400))
        #expect(RetryAfter.delay(from: "-5") == nil)
        #expect(RetryAfter.delay(from: "5s") == nil)
        #expect(RetryAfter.delay(from: "") == nil)
        #expect(RetryAfter.delay(from: "soon") == nil)
    }

    @Test("Retry-After as an HTTP-date, in all three RFC 9110 forms")
    func retryAfterDates() {
        let date: Int64 = 784_111_777  // Sun, 06 Nov 1994 08:49:37 GMT
        for text in ["Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"] {
            #expect(RetryAfter.httpDateEpochSeconds(text) == date, "\(text)")
            #expect(RetryAfter.delay(from: text, now: date - 30) == .seconds(30), "\(text)")
            #expect(RetryAfter.delay(from: text, now: date + 30) == .seconds(0), "\(text)")
        }
        #expect(RetryAfter.httpDateEpochSeconds("Thu, 29 Feb 2024 23:59:60 GMT") == 1_709_251_200)
        #expect(RetryAfter.httpDateEpochSeconds("Sun, 06 Foo 1994 08:49:37 GMT") == nil)
        #expect(RetryAfter.httpDateEpochSeconds("Sun, 06 Nov 1994 25:49:37 GMT") == nil)
    }
}
