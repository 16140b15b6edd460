import Testing

@testable import DruidSync

@Suite("Latency percentiles of the stats line")
struct LatencyWindowTests {
    @Test func percentilesOfASmallWindowAreExact() throws {
        var window = LatencyWindow()
        for milliseconds in 1...100 { window.add(.milliseconds(milliseconds)) }
        let (p50, p99) = try #require(window.percentiles())
        #expect(p50 == .milliseconds(51))
        #expect(p99 == .milliseconds(100))
    }

    @Test func aLargeWindowIsSampledAndStaysRepresentative() throws {
        var window = LatencyWindow()
        // 100,000 values spread evenly over 1…1000 ms: the sample keeps the shape.
        for index in 0..<100_000 { window.add(.milliseconds(index % 1000 + 1)) }
        let (p50, p99) = try #require(window.percentiles())
        #expect(p50 > .milliseconds(450) && p50 < .milliseconds(550), "p50 \(p50)")
        #expect(p99 > .milliseconds(960), "p99 \(p99)")
        window.reset()
        #expect(window.percentiles() == nil)
    }
}
