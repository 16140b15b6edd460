import Testing
import UserUpdates

@Suite struct ActivityTranslatorTests {
    let translator = ActivityTranslator(settings: TranslationSettings(clientId: "druid-sync-demo"))

    func activity(_ json: String, settings: TranslationSettings? = nil) throws -> UpdateActivity {
        let event = try decode(json).get()
        return (settings.map(ActivityTranslator.init) ?? translator).activity(for: event)
    }

    func body(_ json: String, settings: TranslationSettings? = nil) throws -> JSONValue {
        try parsedJSON(try activity(json, settings: settings).body)
    }

    @Test func sectionOneBecomesSectionThree() throws {
        let activity = try activity(sectionOneExample)
        let produced = try parsedJSON(activity.body)
        let expected = try parsedJSON(sectionThreeExample)
        #expect(produced == expected)  // values, member order and number text
        #expect(keyPaths(produced) == keyPaths(expected))
        #expect(activity.acceptLanguage == "es-ES")
        #expect(activity.objectId == "f385e71af90e7e644b4bead7ffe7380974457de9")
    }

    @Test func topLevelKeyOrder() throws {
        let produced = try body(sectionOneExample)
        #expect(produced.objectMembers?.map(\.key) == ["actor", "verb", "object", "source"])
        #expect(
            produced["object"]?.objectMembers?.map(\.key) == [
                "objectType", "objectId", "password", "ids", "datas", "assertions",
            ])
        #expect(produced["actor"]?.objectMembers?.map(\.key) == ["id", "objectType"])
        #expect(produced["source"]?.objectMembers?.map(\.key) == ["id", "objectType"])
    }

    @Test func bodyIsCompactAndExact() throws {
        let json = event(user: #""objectId":"u","ids":{"email":"a@b.cd"}"#)
        let text = String(decoding: try activity(json).body, as: UTF8.self)
        #expect(
            text
                == #"{"actor":{"id":"druid-sync-demo","objectType":"application"},"verb":"update","object":{"objectType":"user","objectId":"u","ids":{"email":{"objectType":"user_id","value":"a@b.cd"}},"datas":{}},"source":{"id":"unknown","objectType":"device"}}"#
        )
    }

    @Test func redactedJSONMasksOnlyThePassword() throws {
        let activity = try activity(sectionOneExample)
        #expect(!activity.redactedJSON.contains("only-when-it-changes"))
        var expected = try parsedJSON(activity.body)
        guard case .object(var top) = expected, case .object(var object) = top[2].value else {
            Issue.record("unexpected shape")
            return
        }
        object[2] = (key: "password", value: .string("***"))
        top[2] = (key: "object", value: .object(object))
        expected = .object(top)
        #expect(try parsedJSON(activity.redactedJSON) == expected)
    }

    @Test func passwordRangeIsThePasswordLiteral() throws {
        let withPassword = try activity(sectionOneExample)
        let range = try #require(withPassword.passwordRange)
        #expect(try parsedJSON(Array(withPassword.body[range])) == .string("only-when-it-changes"))
        #expect(try activity(event(user: user())).passwordRange == nil)
    }

    @Test func withoutPasswordTheRedactedJSONIsTheBody() throws {
        let activity = try activity(event(user: user()))
        #expect(activity.redactedJSON == String(decoding: activity.body, as: UTF8.self))
        #expect(try parsedJSON(activity.body)["object"]?["password"] == nil)
    }

    @Test func confirmedOnlyWhenGiven() throws {
        let ids = try body(
            event(user: #""objectId":"u","ids":{"a":"1","b":{"value":"2"},"c":{"value":"3","confirmed":false}}"#))[
                "object"]?["ids"]
        #expect(ids?["a"]?.objectMembers?.map(\.key) == ["objectType", "value"])
        #expect(ids?["b"]?.objectMembers?.map(\.key) == ["objectType", "value"])
        #expect(ids?["c"]?["confirmed"] == .bool(false))
        #expect(ids?["c"]?.objectMembers?.map(\.key) == ["objectType", "value", "confirmed"])
        #expect(ids?.objectMembers?.map(\.key) == ["a", "b", "c"])
    }

    @Test(arguments: [
        (#""x""#, "x"), ("42", "42"), ("-1.50e+3", "-1.50e+3"), ("0.0", "0.0"), ("true", "true"), ("false", "false"),
        (#"{"value":7}"#, "7"), (#""""#, ""),
    ])
    func datasAreSentAsStrings(json: String, expected: String) throws {
        let datum = try body(event(user: user(#""datas":{"d":"# + json + "}")))["object"]?["datas"]?["d"]
        #expect(
            datum
                == .object([(key: "objectType", value: .string("user_data")), (key: "value", value: .string(expected))])
        )
    }

    @Test(arguments: ["1974-10-22", "22/10/1974"])
    func birthdayIsAlwaysDayMonthYear(birthday: String) throws {
        let datum = try body(event(user: user(#""datas":{"birthday":"\#(birthday)"}"#)))["object"]?["datas"]?[
            "birthday"]
        #expect(datum?["value"] == .string("22/10/1974"))
    }

    @Test func datasKeepEventOrderAndAreAlwaysSent() throws {
        let datas = try body(event(user: user(#""datas":{"z":"1","a":"2","m":"3"}"#)))["object"]?["datas"]
        #expect(datas?.objectMembers?.map(\.key) == ["z", "a", "m"])
        #expect(try body(event(user: user()))["object"]?["datas"] == .object([]))
    }

    @Test func assertionsOmittedWhenNone() throws {
        #expect(try body(event(user: user()))["object"]?["assertions"] == nil)
        #expect(try body(event(user: user(#""assertions":{}"#)))["object"]?["assertions"] == nil)
        #expect(try body(event(user: user(#""assertions":[]"#)))["object"]?["assertions"] == nil)
    }

    @Test func assertionsKeepOrderTypologyAndCount() throws {
        let settings = TranslationSettings(clientId: "c", assertionTypology: "brand")
        let assertions = try body(
            event(
                user: user(
                    #""assertions":[{"type":"z","value":"true"},{"type":"a","typology":"legal","value":false},{"type":"m","value":true}]"#
                )),
            settings: settings)["object"]?["assertions"]
        #expect(assertions?.objectMembers?.map(\.key) == ["objectType", "items", "totalItems"])
        #expect(assertions?["objectType"] == .string("assertions"))
        #expect(assertions?["totalItems"] == .number("3"))
        let items = try #require(assertions?["items"]?.arrayElements)
        #expect(items.map { $0["type"] } == [.string("z"), .string("a"), .string("m")])
        #expect(items.map { $0["typology"] } == [.string("brand"), .string("legal"), .string("brand")])
        #expect(items.map { $0["value"] } == [.bool(true), .bool(false), .bool(true)])
        #expect(items[0].objectMembers?.map(\.key) == ["objectType", "type", "typology", "value"])
        #expect(items[0]["objectType"] == .string("assertion"))
    }

    @Test func objectFormAssertionsFollowEventKeyOrder() throws {
        let items = try body(event(user: user(#""assertions":{"optin":false,"terms":true}"#)))["object"]?[
            "assertions"]?["items"]
        #expect(items?.arrayElements?.map { $0["type"] } == [.string("optin"), .string("terms")])
    }

    @Test func settingsReachTheBody() throws {
        let settings = TranslationSettings(clientId: "my-app", verb: "update_admin", defaultLocale: "fr-FR")
        let activity = try activity(event(user: user()), settings: settings)
        let produced = try parsedJSON(activity.body)
        #expect(produced["actor"]?["id"] == .string("my-app"))
        #expect(produced["verb"] == .string("update_admin"))
        #expect(activity.acceptLanguage == "fr-FR")
    }

    @Test func eventLocaleBeatsTheDefault() throws {
        let settings = TranslationSettings(clientId: "c", defaultLocale: "fr-FR")
        #expect(
            try activity(event(user: user(), extra: #""locale":"es-ES""#), settings: settings).acceptLanguage == "es-ES"
        )
        #expect(try activity(event(user: user())).acceptLanguage == nil)
    }

    @Test(arguments: DeviceSource.allCases)
    func sourceBecomesDevice(source: DeviceSource) throws {
        let produced = try body(event(user: user(), extra: #""source":"\#(source.rawValue)""#))
        #expect(
            produced["source"]
                == .object([
                    (key: "id", value: .string(source.rawValue)), (key: "objectType", value: .string("device")),
                ]))
    }

    @Test func awkwardTextIsEscapedAndSurvives() throws {
        let json = event(
            user: #""objectId":"u\"1\\","password":"p\"\n\u0001😀","ids":{"na\"me":"v\t1"},"datas":{"é":"ñ\u2028"}"#)
        let activity = try activity(json)
        let produced = try parsedJSON(activity.body)
        #expect(produced["object"]?["objectId"] == .string("u\"1\\"))
        #expect(produced["object"]?["password"] == .string("p\"\n\u{1}😀"))
        #expect(produced["object"]?["ids"]?["na\"me"]?["value"] == .string("v\t1"))
        #expect(produced["object"]?["datas"]?["é"]?["value"] == .string("ñ\u{2028}"))
        #expect(try parsedJSON(activity.redactedJSON)["object"]?["password"] == .string("***"))
    }

    @Test func translatedUserDecodesBackToTheSameState() throws {
        // The body restates the event's user: reading it back yields the same ids, datas and assertions.
        let original = try decode(sectionOneExample).get()
        let object = try #require(try parsedJSON(translator.activity(for: original).body)["object"])
        let ids = try #require(object["ids"]?.objectMembers)
        #expect(ids.map(\.key) == original.user.ids.map(\.name))
        #expect(ids.map { $0.value["value"] } == original.user.ids.map { .string($0.value) })
        let datas = try #require(object["datas"]?.objectMembers)
        #expect(datas.map { $0.value["value"] } == original.user.datas.map { .string($0.value.druidText) })
    }
}
