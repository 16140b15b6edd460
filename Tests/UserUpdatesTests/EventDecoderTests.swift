import Testing
import UserUpdates

@Suite struct EventDecoderTests {
    // MARK: The example

    @Test func sectionOneExampleDecodes() throws {
        let event = try decode(sectionOneExample, contentType: "application/json", messageId: "m-1").get()
        #expect(event.eventId == "6f1c2d0e-8c1b-4a55-9a7e-3f0d2b8e1c44")
        #expect(event.eventIdOrigin == .body)
        #expect(event.occurredAt == "2026-12-02T10:15:00Z")
        #expect(event.source == .pc)
        #expect(event.locale == "es-ES")
        #expect(event.user.objectId == "f385e71af90e7e644b4bead7ffe7380974457de9")
        #expect(
            event.user.ids == [
                UserId(name: "email", value: "jane@example.com", confirmed: true),
                UserId(name: "phone_number", value: "+34600111222"),
                UserId(name: "screen_name", value: "janed"),
            ])
        #expect(
            event.user.datas == [
                UserDatum(name: "name", value: .string("Jane")),
                UserDatum(name: "surname", value: .string("Doe")),
                UserDatum(name: "birthday", value: .date(try #require(CalendarDate(year: 1974, month: 10, day: 22)))),
                UserDatum(name: "country", value: .string("ES")),
            ])
        #expect(
            event.user.assertions == [
                UserAssertion(type: "terms", value: true), UserAssertion(type: "optin", value: false),
            ])
        #expect(event.user.password == Secret("only-when-it-changes"))
    }

    @Test func passwordNeverPrints() throws {
        let event = try decode(sectionOneExample).get()
        #expect(!String(describing: event).contains("only-when-it-changes"))
        #expect(!String(reflecting: event).contains("only-when-it-changes"))
    }

    @Test func minimalEventGetsDefaults() throws {
        let decoded = try decode(event(user: user())).get()
        #expect(decoded.source == .unknown)
        #expect(decoded.locale == nil)
        #expect(decoded.occurredAt == nil)
        #expect(decoded.user.datas.isEmpty)
        #expect(decoded.user.assertions.isEmpty)
        #expect(decoded.user.password == nil)
    }

    // MARK: Event id

    @Test func eventIdFallsBackToMessageIdThenDigest() throws {
        let body = #"{"user":{"# + user() + "}}"
        let fromMessage = try decode(body, messageId: "msg-7").get()
        #expect(fromMessage.eventId == "msg-7")
        #expect(fromMessage.eventIdOrigin == .messageId)
        let fromDigest = try decode(body, messageId: "").get()
        #expect(fromDigest.eventId == "sha256-of-\(body.utf8.count)-bytes")
        #expect(fromDigest.eventIdOrigin == .bodyDigest)
        #expect(try decode(body).get().eventIdOrigin == .bodyDigest)
    }

    @Test func eventIdLengthLimits() throws {
        let longest = String(repeating: "é", count: 128)
        #expect(try decode(#"{"eventId":"\#(longest)","user":{"# + user() + "}}").get().eventId == longest)
        #expect(
            reason(#"{"eventId":"\#(longest)x","user":{"# + user() + "}}")
                == "invalid-event: eventId is not 1 to 128 characters long")
        #expect(
            reason(#"{"eventId":"","user":{"# + user() + "}}")
                == "invalid-event: eventId is not 1 to 128 characters long")
        #expect(
            reason(#"{"eventId":42,"user":{"# + user() + "}}")
                == "invalid-event: eventId is not a string (it is a number)")
    }

    @Test func invalidEventCarriesTheBestId() {
        // Body id readable: used even though the event is invalid.
        guard case .failure(let withBodyId) = decode(event(user: #""ids":{"a":"b"}"#), messageId: "m") else {
            Issue.record("accepted")
            return
        }
        #expect(withBodyId.eventId == "e-1")
        #expect(withBodyId.eventIdOrigin == .body)
        // Body id unusable: message id.
        guard case .failure(let withMessageId) = decode(#"{"eventId":7}"#, messageId: "m") else {
            Issue.record("accepted")
            return
        }
        #expect(withMessageId.eventId == "m")
        #expect(withMessageId.eventIdOrigin == .messageId)
        // Not JSON, no message id: digest.
        guard case .failure(let withDigest) = decode("nope") else {
            Issue.record("accepted")
            return
        }
        #expect(withDigest.eventId == "sha256-of-4-bytes")
        #expect(withDigest.eventIdOrigin == .bodyDigest)
    }

    @Test func digestIsComputedOnlyWhenNeeded() {
        let decoder = EventDecoder(digest: { _ in
            Issue.record("digest computed although the event has an id")
            return "x"
        })
        _ = decoder.decode(body: Array(sectionOneExample.utf8), contentType: nil, messageId: nil)
        _ = decoder.decode(body: Array("{".utf8), contentType: nil, messageId: "m")
    }

    // MARK: Body and properties

    @Test func sizeLimit() {
        let decoder = EventDecoder(maxMessageBytes: 100, digest: fakeDigest)
        let small = event(user: user())
        #expect(small.utf8.count <= 100)
        #expect((try? decoder.decode(body: Array(small.utf8), contentType: nil, messageId: nil).get()) != nil)
        let large = event(user: user(#""password":"\#(String(repeating: "x", count: 100))""#))
        guard case .failure(let invalid) = decoder.decode(body: Array(large.utf8), contentType: nil, messageId: "m")
        else {
            Issue.record("accepted an oversized body")
            return
        }
        #expect(invalid.reason == "invalid-event: body is larger than 100 bytes")
        #expect(!invalid.reason.contains("xxxx"))
    }

    @Test(
        arguments: [
            nil, "", "application/json", "Application/JSON", "application/json; charset=utf-8",
            "application/json;charset=UTF-8",
            " application/json ; charset=\"utf-8\"", "application/json; foo=bar", "application/json;",
        ] as [String?])
    func acceptedContentTypes(contentType: String?) throws {
        #expect(throws: Never.self) { try decode(event(user: user()), contentType: contentType).get() }
    }

    @Test(arguments: [
        ("text/plain", #"invalid-event: content type "text/plain" is not application/json"#),
        ("application/xml", #"invalid-event: content type "application/xml" is not application/json"#),
        (
            "application/json; charset=latin1",
            #"invalid-event: content type "application/json; charset=latin1" is not application/json"#
        ),
        ("application/jsonx", #"invalid-event: content type "application/jsonx" is not application/json"#),
        (
            "application/json; garbage",
            #"invalid-event: content type "application/json; garbage" is not application/json"#
        ),
        (
            "application/vnd.api+json",
            #"invalid-event: content type "application/vnd.api+json" is not application/json"#
        ),
    ])
    func refusedContentTypes(contentType: String, expected: String) {
        guard case .failure(let invalid) = decode(event(user: user()), contentType: contentType) else {
            Issue.record("accepted \(contentType)")
            return
        }
        #expect(invalid.reason == expected)
    }

    @Test func notJSONNotUTF8NotAnObject() {
        #expect(reason("{") == "invalid-event: body is not JSON (unterminated object at byte 1)")
        #expect(reason("") == "invalid-event: body is not JSON (unexpected end of input at byte 0)")
        #expect(reason("[1]") == "invalid-event: body is not a JSON object")
        #expect(reason(#""text""#) == "invalid-event: body is not a JSON object")
        let latin1: [UInt8] = Array(#"{"eventId":"caf"#.utf8) + [0xE9] + Array(#""}"#.utf8)
        guard case .failure(let invalid) = testDecoder.decode(body: latin1, contentType: nil, messageId: nil) else {
            Issue.record("accepted Latin-1")
            return
        }
        #expect(invalid.reason == "invalid-event: body is not UTF-8 (invalid byte at byte 15)")
    }

    @Test func unknownTopLevelFieldsAreIgnored() throws {
        let decoded = try decode(event(user: user(), extra: #""schemaVersion":2,"trace":{"id":[1,2]}"#)).get()
        #expect(decoded.eventId == "e-1")
    }

    @Test func knownTopLevelFieldTwiceIsRefused() {
        #expect(
            reason(event(user: user(), extra: #""source":"pc","source":"mobile""#))
                == "invalid-event: source appears more than once")
        #expect(reason(event(user: user(), extra: #""user":{}"#)) == "invalid-event: user appears more than once")
    }

    // MARK: user

    @Test(arguments: [
        (#"{"eventId":"e"}"#, "invalid-event: user is missing"),
        (#"{"user":[]}"#, "invalid-event: user is not an object"),
        (#"{"user":null}"#, "invalid-event: user is not an object"),
        (#"{"user":{"ids":{"a":"b"}}}"#, "invalid-event: user.objectId is missing"),
        (#"{"user":{"objectId":"","ids":{"a":"b"}}}"#, "invalid-event: user.objectId is empty"),
        (#"{"user":{"objectId":7,"ids":{"a":"b"}}}"#, "invalid-event: user.objectId is not a string"),
        (#"{"user":{"objectId":"u"}}"#, "invalid-event: user.ids is missing"),
        (#"{"user":{"objectId":"u","ids":{}}}"#, "invalid-event: user.ids is empty"),
        (#"{"user":{"objectId":"u","ids":["a"]}}"#, "invalid-event: user.ids is not an object"),
        (
            #"{"user":{"objectId":"u","ids":{"a":"b"},"nickname":"x"}}"#,
            "invalid-event: user.nickname is not a known field"
        ),
        (
            #"{"user":{"objectId":"u","ids":{"a":"b"},"my field":1}}"#,
            #"invalid-event: user."my field" is not a known field"#
        ),
        (
            #"{"user":{"objectId":"u","objectId":"v","ids":{"a":"b"}}}"#,
            "invalid-event: user.objectId appears more than once"
        ),
        (#"{"user":{"objectId":"u","ids":{"a":"b"},"password":1}}"#, "invalid-event: user.password is not a string"),
        (#"{"user":{"objectId":"u","ids":{"a":"b"},"password":null}}"#, "invalid-event: user.password is not a string"),
    ])
    func userRules(json: String, expected: String) {
        #expect(reason(json) == expected)
    }

    @Test func objectIdLengthLimit() throws {
        let longest = String(repeating: "a", count: 128)
        #expect(try decode(event(user: #""objectId":"\#(longest)","ids":{"a":"b"}"#)).get().user.objectId == longest)
        #expect(
            reason(event(user: #""objectId":"\#(longest)a","ids":{"a":"b"}"#))
                == "invalid-event: user.objectId is longer than 128 characters")
    }

    // MARK: ids

    @Test func idForms() throws {
        let ids = try decode(
            event(
                user:
                    #""objectId":"u","ids":{"national_id":"X1","screen_name":{"value":"jd"},"email":{"value":"a@b.cd","confirmed":false},"loyalty_card":{"value":"42","confirmed":true}}"#
            )
        ).get().user.ids
        #expect(
            ids == [
                UserId(name: "national_id", value: "X1"), UserId(name: "screen_name", value: "jd"),
                UserId(name: "email", value: "a@b.cd", confirmed: false),
                UserId(name: "loyalty_card", value: "42", confirmed: true),
            ])
    }

    @Test(arguments: [
        (#""email":{"value":"jane@example"}"#, "invalid-event: user.ids.email.value is not an email"),
        (#""email":"jane@example""#, "invalid-event: user.ids.email is not an email"),
        (
            #""phone_number":{"value":"600111222"}"#,
            "invalid-event: user.ids.phone_number.value is not an E.164 phone number"
        ),
        (#""phone_number":"+0600""#, "invalid-event: user.ids.phone_number is not an E.164 phone number"),
        (#""screen_name":7"#, "invalid-event: user.ids.screen_name is not a string or an object with a string value"),
        (
            #""screen_name":null"#,
            "invalid-event: user.ids.screen_name is not a string or an object with a string value"
        ),
        (#""screen_name":{}"#, "invalid-event: user.ids.screen_name.value is missing"),
        (#""screen_name":{"value":1}"#, "invalid-event: user.ids.screen_name.value is not a string"),
        (
            #""screen_name":{"value":"a","confirmed":"yes"}"#,
            "invalid-event: user.ids.screen_name.confirmed is not a boolean"
        ),
        (
            #""screen_name":{"value":"a","verified":true}"#,
            "invalid-event: user.ids.screen_name.verified is not a known field"
        ),
        (
            #""screen_name":{"value":"a","value":"b"}"#,
            "invalid-event: user.ids.screen_name.value appears more than once"
        ),
        (#""screen_name":"a","screen_name":"b""#, "invalid-event: user.ids.screen_name appears more than once"),
    ])
    func idRules(ids: String, expected: String) {
        #expect(reason(event(user: #""objectId":"u","ids":{"# + ids + "}")) == expected)
    }

    @Test func duplicateIdsAreFoundInLargeObjectsToo() {
        let many = (0..<40).map { #""id\#($0)":"v""# }.joined(separator: ",")
        #expect(reason(event(user: #""objectId":"u","ids":{"# + many + "}")) == nil)
        #expect(
            reason(event(user: #""objectId":"u","ids":{"# + many + #","id7":"w"}"#))
                == "invalid-event: user.ids.id7 appears more than once")
    }

    @Test func emailRuleAppliesOnlyToEmail() throws {
        #expect(reason(event(user: #""objectId":"u","ids":{"Email":"not an email","mail":"nope"}"#)) == nil)
    }

    // MARK: datas

    @Test func dataForms() throws {
        let datas = try decode(
            event(
                user: user(
                    #""datas":{"name":"Jane","age":42,"score":-1.5e2,"vip":true,"city":{"value":"Madrid"},"kids":{"value":0},"birthday":{"value":"22/10/1974"}}"#
                ))
        ).get().user.datas
        #expect(
            datas == [
                UserDatum(name: "name", value: .string("Jane")), UserDatum(name: "age", value: .number("42")),
                UserDatum(name: "score", value: .number("-1.5e2")), UserDatum(name: "vip", value: .bool(true)),
                UserDatum(name: "city", value: .string("Madrid")), UserDatum(name: "kids", value: .number("0")),
                UserDatum(name: "birthday", value: .date(try #require(CalendarDate(year: 1974, month: 10, day: 22)))),
            ])
    }

    @Test(arguments: [
        (#"[]"#, "invalid-event: user.datas is not an object"),
        (#"{"a":null}"#, "invalid-event: user.datas.a is not a string, number, boolean or an object with a value"),
        (#"{"a":[1]}"#, "invalid-event: user.datas.a is not a string, number, boolean or an object with a value"),
        (#"{"a":{"value":{"x":1}}}"#, "invalid-event: user.datas.a.value is not a string, number or boolean"),
        (#"{"a":{"value":null}}"#, "invalid-event: user.datas.a.value is not a string, number or boolean"),
        (#"{"a":{}}"#, "invalid-event: user.datas.a.value is missing"),
        (#"{"a":{"value":1,"label":"x"}}"#, "invalid-event: user.datas.a.label is not a known field"),
        (#"{"a":1,"a":2}"#, "invalid-event: user.datas.a appears more than once"),
        (
            #"{"birthday":"1974-02-29"}"#,
            "invalid-event: user.datas.birthday is not a real date as YYYY-MM-DD or dd/MM/yyyy"
        ),
        (
            #"{"birthday":"29/02/1900"}"#,
            "invalid-event: user.datas.birthday is not a real date as YYYY-MM-DD or dd/MM/yyyy"
        ),
        (
            #"{"birthday":19741022}"#,
            "invalid-event: user.datas.birthday is not a real date as YYYY-MM-DD or dd/MM/yyyy"
        ),
        (
            #"{"birthday":{"value":"1974/10/22"}}"#,
            "invalid-event: user.datas.birthday.value is not a real date as YYYY-MM-DD or dd/MM/yyyy"
        ),
        (
            #"{"birthday":{"value":true}}"#,
            "invalid-event: user.datas.birthday.value is not a real date as YYYY-MM-DD or dd/MM/yyyy"
        ),
    ])
    func dataRules(datas: String, expected: String) {
        #expect(reason(event(user: user(#""datas":"# + datas))) == expected)
    }

    @Test(arguments: ["2024-02-29", "29/02/2024", "2000-02-29", "31/12/1999", "1970-01-01"])
    func leapDayAndOtherRealBirthdays(birthday: String) {
        #expect(reason(event(user: user(#""datas":{"birthday":"\#(birthday)"}"#))) == nil)
    }

    // MARK: assertions

    @Test func assertionForms() throws {
        let objectForm = try decode(event(user: user(#""assertions":{"terms":true,"optin":"false","news":"true"}"#)))
            .get()
        #expect(
            objectForm.user.assertions == [
                UserAssertion(type: "terms", value: true), UserAssertion(type: "optin", value: false),
                UserAssertion(type: "news", value: true),
            ])
        let arrayForm = try decode(
            event(
                user: user(
                    #""assertions":[{"type":"terms","typology":"legal","value":true},{"value":"false","type":"optin"}]"#
                ))
        ).get()
        #expect(
            arrayForm.user.assertions == [
                UserAssertion(type: "terms", typology: "legal", value: true),
                UserAssertion(type: "optin", value: false),
            ])
        #expect(try decode(event(user: user(#""assertions":{}"#))).get().user.assertions.isEmpty)
        #expect(try decode(event(user: user(#""assertions":[]"#))).get().user.assertions.isEmpty)
    }

    @Test(arguments: [
        (#""yes""#, "invalid-event: user.assertions is not an object or an array"),
        (#"{"terms":1}"#, "invalid-event: user.assertions.terms is not a boolean"),
        (#"{"terms":"TRUE"}"#, "invalid-event: user.assertions.terms is not a boolean"),
        (#"{"terms":null}"#, "invalid-event: user.assertions.terms is not a boolean"),
        (#"{"terms":{"value":true}}"#, "invalid-event: user.assertions.terms is not a boolean"),
        (#"{"terms":true,"terms":false}"#, "invalid-event: user.assertions.terms appears more than once"),
        (#"[true]"#, "invalid-event: user.assertions[0] is not an object"),
        (#"[{"type":"a","value":true},{"value":true}]"#, "invalid-event: user.assertions[1].type is missing"),
        (#"[{"type":"a"}]"#, "invalid-event: user.assertions[0].value is missing"),
        (#"[{"type":"","value":true}]"#, "invalid-event: user.assertions[0].type is empty"),
        (#"[{"type":1,"value":true}]"#, "invalid-event: user.assertions[0].type is not a string"),
        (
            #"[{"type":"a","typology":false,"value":true}]"#,
            "invalid-event: user.assertions[0].typology is not a string"
        ),
        (#"[{"type":"a","typology":"","value":true}]"#, "invalid-event: user.assertions[0].typology is empty"),
        (#"[{"type":"a","value":"no"}]"#, "invalid-event: user.assertions[0].value is not a boolean"),
        (#"[{"type":"a","value":true,"extra":1}]"#, "invalid-event: user.assertions[0].extra is not a known field"),
        (#"[{"type":"a","type":"b","value":true}]"#, "invalid-event: user.assertions[0].type appears more than once"),
    ])
    func assertionRules(assertions: String, expected: String) {
        #expect(reason(event(user: user(#""assertions":"# + assertions))) == expected)
    }

    // MARK: source, locale, occurredAt

    @Test(arguments: DeviceSource.allCases)
    func everySourceIsAccepted(source: DeviceSource) throws {
        #expect(try decode(event(user: user(), extra: #""source":"\#(source.rawValue)""#)).get().source == source)
    }

    @Test(arguments: [#""PC""#, #""desktop""#, "1", "null", #""""#])
    func unknownSourcesAreRefused(source: String) {
        #expect(
            reason(event(user: user(), extra: #""source":"# + source))
                == "invalid-event: source is not one of unknown, pc, mobile, tablet, game_console, itv")
    }

    @Test func locale() throws {
        #expect(try decode(event(user: user(), extra: #""locale":"pt-BR""#)).get().locale == "pt-BR")
        #expect(
            reason(event(user: user(), extra: #""locale":"es_ES""#))
                == "invalid-event: locale is not a BCP 47 language tag")
        #expect(
            reason(event(user: user(), extra: #""locale":5"#)) == "invalid-event: locale is not a BCP 47 language tag")
    }

    @Test func occurredAt() throws {
        let decoded = try decode(event(user: user(), extra: #""occurredAt":"2026-12-02T10:15:00.5+01:00""#)).get()
        #expect(decoded.occurredAt == "2026-12-02T10:15:00.5+01:00")
        #expect(
            reason(event(user: user(), extra: #""occurredAt":"2026-12-02 10:15""#))
                == "invalid-event: occurredAt is not an RFC 3339 timestamp")
        #expect(
            reason(event(user: user(), extra: #""occurredAt":1764670500"#))
                == "invalid-event: occurredAt is not an RFC 3339 timestamp")
    }

    // MARK: Reasons

    @Test func reasonsNeverQuoteValues() {
        let secretish = "hunter2-\u{1F511}"
        let reasons = [
            reason(event(user: user(#""datas":{"birthday":"\#(secretish)"}"#))),
            reason(event(user: #""objectId":"u","ids":{"email":"\#(secretish)"}"#)),
            reason(event(user: user(#""assertions":{"a":"\#(secretish)"}"#))),
            reason(event(user: user(), extra: #""locale":"\#(secretish)""#)),
        ]
        for reason in reasons {
            #expect(reason != nil)
            #expect(reason?.contains("hunter2") == false)
        }
    }

    @Test func longFieldNamesAreShortened() throws {
        let longName = String(repeating: "n", count: 5000)
        let text = try #require(reason(event(user: user(#""\#(longName)":1"#))))
        #expect(text.utf8.count < 200)
        #expect(text.hasPrefix("invalid-event: user.nnnn"))
        #expect(text.hasSuffix("… is not a known field"))
    }

    @Test func controlCharactersInNamesAreEscaped() throws {
        let text = try #require(reason(event(user: user(#""a\nb":1"#))))
        #expect(text == #"invalid-event: user."a\nb" is not a known field"#)
    }

    @Test func borrowedBufferEntryPoint() throws {
        let bytes = Array(sectionOneExample.utf8)
        let event = try bytes.withUnsafeBytes { testDecoder.decode(body: $0, contentType: nil, messageId: nil) }.get()
        #expect(event.user.ids.count == 3)
    }
}
