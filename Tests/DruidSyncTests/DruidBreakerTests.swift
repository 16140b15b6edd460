import Testing

@testable import DruidSync

@Suite("DRUID outage breaker")
struct DruidBreakerTests {
    @Test func opensAfterTheThresholdOfFailuresInARow() {
        var breaker = DruidBreaker(threshold: 3)
        #expect(breaker.recordServiceFailure() == nil)
        #expect(breaker.recordServiceFailure() == nil)
        #expect(!breaker.isOpen)
        #expect(breaker.recordServiceFailure() == .opened)
        #expect(breaker.isOpen)
        #expect(breaker.recordServiceFailure() == nil, "already open: no second transition")
    }

    @Test func anAnswerInBetweenResetsTheRun() {
        var breaker = DruidBreaker(threshold: 3)
        _ = breaker.recordServiceFailure()
        _ = breaker.recordServiceFailure()
        #expect(breaker.recordAnswer() == nil)
        #expect(breaker.recordServiceFailure() == nil)
        #expect(breaker.recordServiceFailure() == nil)
        #expect(!breaker.isOpen)
    }

    @Test func closesOnTheFirstAnswerWhileOpen() {
        var breaker = DruidBreaker(threshold: 1)
        #expect(breaker.recordServiceFailure() == .opened)
        breaker.recordProbeFailure()
        #expect(breaker.recordAnswer() == .closed)
        #expect(breaker.state == .closed(consecutiveFailures: 0))
    }

    @Test func probeDelaysDoubleUpToTheLongestAndHonourRetryAfter() {
        var breaker = DruidBreaker(threshold: 1, firstProbeDelay: .seconds(1), longestProbeDelay: .seconds(8))
        _ = breaker.recordServiceFailure()
        var delays: [Duration] = []
        for _ in 0..<6 {
            delays.append(breaker.nextProbeDelay(retryAfter: nil))
            breaker.recordProbeFailure()
        }
        #expect(delays == [.seconds(1), .seconds(2), .seconds(4), .seconds(8), .seconds(8), .seconds(8)])
        #expect(breaker.nextProbeDelay(retryAfter: .seconds(20)) == .seconds(20))
        #expect(breaker.nextProbeDelay(retryAfter: .seconds(2)) == .seconds(8))
    }
}
