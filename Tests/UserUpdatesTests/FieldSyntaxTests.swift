import Foundation
import Testing
import UserUpdates

/// DRUID's patterns from event-schema.md section 2, anchored to the whole string (`\A…\z`)
/// so that the regex engine's `$` cannot accept a trailing newline.
let druidEmailPattern = #"^[_A-Za-z0-9-+]+(\.[_A-Za-z0-9-]+)*@[A-Za-z0-9-]+(\.[A-Za-z0-9]+)*(\.[A-Za-z]{2,})$"#
let e164Pattern = #"^\+[1-9][0-9]{1,14}$"#

func wholeStringMatcher(_ pattern: String) throws -> (String) -> Bool {
    let anchored = #"\A(?:"# + pattern.dropFirst().dropLast() + #")\z"#
    let regex = try NSRegularExpression(pattern: anchored)
    return { text in
        regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) != nil
    }
}

/// SplitMix64: a seeded generator, so a failing fuzz case can be replayed.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite struct FieldSyntaxTests {
    @Test(arguments: [
        "jane@example.com", "j@e.co", "Jane.Doe@Example.COM", "jane+tag@example.com", "a_b-c@x-y.com",
        "_@a.bc", "-@-.bc", "+@a.bc", "a.b.c@d.e.fg", "a+b.c@d.ef", "a@b.c1.de", "0@0.0.ab", "a@a-.bc",
    ])
    func emailsDruidAccepts(email: String) {
        #expect(FieldSyntax.isEmail(email))
    }

    @Test(arguments: [
        "", "jane", "@example.com", "jane@", "jane@example", "jane@example.c", "jane@example.c0m",
        "jane@@example.com", "ja@ne@example.com", ".jane@example.com", "jane.@example.com", "ja..ne@example.com",
        "jane.d+x@example.com",  // '+' only in the first dot-separated part
        "jane@exa-mple.co-m", "jane@a.b-c.com",  // '-' only in the first domain label
        "jane@.example.com", "jane@example..com", "jane@example.com.", "jane@example.com\n",
        "jane doe@example.com", "jané@example.com", "jane@exämple.com", "jane@example.cöm", "jane@[1.2.3.4]",
        "jane@example.com ", " jane@example.com", "jane@localhost", "\"j\"@example.com",
    ])
    func emailsDruidRefuses(email: String) {
        #expect(!FieldSyntax.isEmail(email))
    }

    @Test func emailMatchesTheRegexOnGeneratedInputs() throws {
        let regex = try wholeStringMatcher(druidEmailPattern)
        var random = SeededGenerator(state: 20_261_202)
        let alphabet = Array("aZ9_-+.@.@aa") + ["é", " ", "\n", "!"]
        var accepted = 0
        for _ in 0..<20_000 {
            let length = Int.random(in: 0...12, using: &random)
            let candidate = String((0..<length).map { _ in alphabet.randomElement(using: &random)! })
            let expected = regex(candidate)
            #expect(FieldSyntax.isEmail(candidate) == expected, "\(candidate.debugDescription)")
            if expected { accepted += 1 }
        }
        // Mutations of valid addresses reach the interesting boundaries more often.
        let seeds = ["jane.doe+x@mail-1.example.com", "a@b.cd", "x_y@z.q1.ab"]
        for _ in 0..<20_000 {
            var characters = Array(seeds.randomElement(using: &random)!)
            let position = Int.random(in: 0..<characters.count, using: &random)
            switch Int.random(in: 0..<3, using: &random) {
            case 0: characters[position] = alphabet.randomElement(using: &random)!
            case 1: characters.remove(at: position)
            default: characters.insert(alphabet.randomElement(using: &random)!, at: position)
            }
            let candidate = String(characters)
            let expected = regex(candidate)
            #expect(FieldSyntax.isEmail(candidate) == expected, "\(candidate.debugDescription)")
            if expected { accepted += 1 }
        }
        #expect(accepted > 1000, "the generator must produce valid addresses too")
    }

    @Test(arguments: ["+34600111222", "+12", "+123456789012345", "+9000"])
    func phoneNumbersDruidAccepts(phone: String) {
        #expect(FieldSyntax.isE164PhoneNumber(phone))
    }

    @Test(arguments: [
        "", "+", "+1", "+0123", "34600111222", "+1234567890123456", "+34 600 111 222", "+34-600", "++34600",
        "+34600111222\n", "+３４６００", "+3a", " +34600",
    ])
    func phoneNumbersDruidRefuses(phone: String) {
        #expect(!FieldSyntax.isE164PhoneNumber(phone))
    }

    @Test func phoneMatchesTheRegexOnGeneratedInputs() throws {
        let regex = try wholeStringMatcher(e164Pattern)
        var random = SeededGenerator(state: 164)
        let alphabet = Array("+0123456789123456789 a")
        for _ in 0..<20_000 {
            let length = Int.random(in: 0...18, using: &random)
            let candidate = String((0..<length).map { _ in alphabet.randomElement(using: &random)! })
            #expect(FieldSyntax.isE164PhoneNumber(candidate) == regex(candidate), "\(candidate.debugDescription)")
        }
    }

    @Test(arguments: [
        ("1974-10-22", 1974, 10, 22), ("22/10/1974", 1974, 10, 22), ("2024-02-29", 2024, 2, 29),
        ("29/02/2000", 2000, 2, 29), ("0001-01-01", 1, 1, 1), ("31/12/9999", 9999, 12, 31), ("2023-04-30", 2023, 4, 30),
    ])
    func realDates(text: String, year: Int, month: Int, day: Int) throws {
        let date = try #require(FieldSyntax.calendarDate(text))
        #expect(date == CalendarDate(year: year, month: month, day: day))
    }

    @Test(arguments: [
        "2023-02-29", "29/02/1900", "2100-02-29", "2023-04-31", "31/06/2020", "2020-13-01", "2020-00-10",
        "2020-01-00", "0000-01-01", "1974-1-22", "22/10/74", "1974/10/22", "22-10-1974", "1974-10-22T00:00:00Z",
        "19741022", "", "２０２０-01-01", "1974-10-2a", " 1974-10-22", "10/22/1974",
    ])
    func notRealDates(text: String) {
        #expect(FieldSyntax.calendarDate(text) == nil)
    }

    @Test func leapYears() {
        #expect(CalendarDate.isLeap(2024))
        #expect(CalendarDate.isLeap(2000))
        #expect(!CalendarDate.isLeap(1900))
        #expect(!CalendarDate.isLeap(2023))
    }

    @Test func dateTexts() throws {
        let date = try #require(CalendarDate(year: 7, month: 3, day: 9))
        #expect(date.druidText == "09/03/0007")
        #expect(date.description == "0007-03-09")
    }

    @Test(arguments: [
        "2026-12-02T10:15:00Z", "2026-12-02t10:15:00z", "2026-12-02T10:15:00.123456Z", "2026-12-02T10:15:00+01:00",
        "2026-12-02T23:59:60-23:59", "2024-02-29T00:00:00Z",
    ])
    func rfc3339Timestamps(text: String) {
        #expect(FieldSyntax.isRFC3339Timestamp(text))
    }

    @Test(arguments: [
        "", "2026-12-02", "2026-12-02T10:15Z", "2026-12-02 10:15:00Z", "2026-12-02T10:15:00", "2026-12-02T24:00:00Z",
        "2026-12-02T10:60:00Z", "2026-12-02T10:15:61Z", "2023-02-29T10:15:00Z", "2026-12-02T10:15:00.Z",
        "2026-12-02T10:15:00+0100", "2026-12-02T10:15:00+24:00", "2026-12-02T10:15:00Z ", "2026-12-02T10:15:00ZZ",
        "2026-12-02T10:15:00+01:60",
    ])
    func notRFC3339Timestamps(text: String) {
        #expect(!FieldSyntax.isRFC3339Timestamp(text))
    }

    @Test(arguments: [
        "es", "es-ES", "pt-BR", "zh-Hant-TW", "de-CH-1996", "sgn-BE-FR", "en-US-x-twain", "abcdefgh-12345678",
    ])
    func languageTags(tag: String) {
        #expect(FieldSyntax.isLanguageTag(tag))
    }

    @Test(arguments: [
        "", "e", "es_ES", "-es", "es-", "es--ES", "es ES", "1es", "abcdefghi", "es-123456789", "es-ÉS",
        String(repeating: "ab-", count: 22) + "ab",
    ])
    func notLanguageTags(tag: String) {
        #expect(!FieldSyntax.isLanguageTag(tag))
    }
}
