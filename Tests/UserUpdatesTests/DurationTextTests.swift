import Testing
import UserUpdates

@Suite struct DurationTextTests {
    @Test(arguments: [
        ("500ms", Duration.milliseconds(500)), ("10s", .seconds(10)), ("2m", .seconds(120)), ("1h", .seconds(3600)),
        ("30", .seconds(30)), ("0s", .zero), ("0", .zero), ("0ms", .zero), ("007s", .seconds(7)),
        ("1500ms", .milliseconds(1500)),
    ])
    func parses(text: String, expected: Duration) {
        #expect(DurationText.parse(text) == expected)
    }

    @Test(arguments: [
        "", "s", "ms", "1.5s", "-1s", "+1s", "1 s", " 1s", "1s ", "1S", "1d", "1m30s", "1sec", "abc", "1e3", "١s",
    ])
    func refuses(text: String) {
        #expect(DurationText.parse(text) == nil)
    }

    @Test func upperLimit() {
        #expect(DurationText.parse("8784h") == .seconds(366 * 86_400))
        #expect(DurationText.parse("8785h") == nil)
        #expect(DurationText.parse("999999999999999999999h") == nil)
        #expect(DurationText.parse("2h", maximumSeconds: 3600) == nil)
    }

    @Test(arguments: [
        (Duration.milliseconds(500), "500ms"), (.seconds(10), "10s"), (.seconds(120), "2m"), (.seconds(3600), "1h"),
        (.seconds(90), "90s"), (.milliseconds(1500), "1500ms"), (.zero, "0s"), (.seconds(7200), "2h"),
        (.seconds(5400), "90m"),
    ])
    func formats(duration: Duration, expected: String) {
        #expect(DurationText.format(duration) == expected)
        #expect(DurationText.parse(expected) == duration)
    }
}
