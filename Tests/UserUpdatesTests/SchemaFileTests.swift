import Foundation
import Testing
import UserUpdates

/// `deploy/schema/user-update-event.schema.json` is what producers validate against: it
/// must stay valid JSON and agree with the decoder on the facts that matter.
@Suite struct SchemaFileTests {
    let schema: JSONValue

    init() throws {
        let testFile = URL(fileURLWithPath: #filePath)
        let path = testFile.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("deploy/schema/user-update-event.schema.json").path
        let bytes = try #require(FileManager.default.contents(atPath: path), "cannot read \(path)")
        schema = try JSONParser.parse(Array(bytes))
    }

    @Test func isDraft202012AndRequiresUser() {
        #expect(schema["$schema"] == .string("https://json-schema.org/draft/2020-12/schema"))
        #expect(schema["type"] == .string("object"))
        #expect(schema["required"] == .array([.string("user")]))
        #expect(schema["additionalProperties"] == .bool(true))
    }

    @Test func sourceEnumMatchesTheDecoder() {
        #expect(schema["properties"]?["source"]?["enum"] == .array(DeviceSource.allCases.map { .string($0.rawValue) }))
        #expect(schema["properties"]?["source"]?["default"] == .string("unknown"))
    }

    @Test func eventIdAndObjectIdLengths() {
        let eventId = schema["properties"]?["eventId"]
        #expect(eventId?["minLength"] == .number("1"))
        #expect(eventId?["maxLength"] == .number("128"))
        let objectId = schema["$defs"]?["user"]?["properties"]?["objectId"]
        #expect(objectId?["minLength"] == .number("1"))
        #expect(objectId?["maxLength"] == .number("128"))
    }

    @Test func userIsClosedAndNeedsObjectIdAndIds() {
        let user = schema["$defs"]?["user"]
        #expect(user?["additionalProperties"] == .bool(false))
        #expect(user?["required"] == .array([.string("objectId"), .string("ids")]))
        #expect(
            user?["properties"]?.objectMembers?.map(\.key) == ["objectId", "ids", "datas", "assertions", "password"])
        #expect(schema["$defs"]?["ids"]?["minProperties"] == .number("1"))
        #expect(schema["$defs"]?["idObject"]?["additionalProperties"] == .bool(false))
    }

    @Test func emailAndPhonePatternsAgreeWithTheDecoder() throws {
        let email = try #require(schema["$defs"]?["email"]?["pattern"]?.stringValue)
        let phone = try #require(schema["$defs"]?["phoneNumber"]?["pattern"]?.stringValue)
        #expect(phone == e164Pattern)
        let schemaEmail = try wholeStringMatcher(email)
        var random = SeededGenerator(state: 2020_12)
        let alphabet = Array("aZ9_-+.@.@") + ["é", "!"]
        for _ in 0..<5000 {
            let length = Int.random(in: 1...10, using: &random)
            let candidate = String((0..<length).map { _ in alphabet.randomElement(using: &random)! })
            #expect(schemaEmail(candidate) == FieldSyntax.isEmail(candidate), "\(candidate.debugDescription)")
        }
        for sample in ["jane@example.com", "jane+x@mail-1.example.com", "a.b@c.d.ef"] {
            #expect(schemaEmail(sample))
        }
    }

    @Test func birthdayAndLocalePatterns() throws {
        let date = try wholeStringMatcher(try #require(schema["$defs"]?["date"]?["pattern"]?.stringValue))
        for text in ["1974-10-22", "22/10/1974", "2024-02-29"] { #expect(date(text)) }
        for text in ["1974-13-01", "1974/10/22", "22-10-1974", "74-10-22"] { #expect(!date(text)) }
        let locale = try wholeStringMatcher(try #require(schema["properties"]?["locale"]?["pattern"]?.stringValue))
        for tag in ["es", "es-ES", "zh-Hant-TW", "es_ES", "e", "1es", "es--ES"] {
            #expect(locale(tag) == FieldSyntax.isLanguageTag(tag), "\(tag)")
        }
    }

    @Test func assertionValuesAcceptBooleanStrings() {
        #expect(
            schema["$defs"]?["assertionValue"]?["anyOf"]
                == .array([
                    .object([(key: "type", value: .string("boolean"))]),
                    .object([(key: "enum", value: .array([.string("true"), .string("false")]))]),
                ]))
    }
}
