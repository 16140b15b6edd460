import Testing
import UserUpdates

@Suite struct FailureHeadersTests {
    let now = UTCTimestamp(millisecondsSince1970: 1_796_206_500_250)  // 2026-12-02T10:15:00.250Z
    let producerHeaders: [(String, HeaderValue)] = [("trace-id", .string("t-1")), ("tenant", .int32(7))]

    func text(_ headers: [(String, HeaderValue)]) -> [String] {
        headers.map { "\($0.0)=\($0.1)" }
    }

    @Test func timestamps() {
        #expect(now.rfc3339 == "2026-12-02T10:15:00.250Z")
        #expect(UTCTimestamp(millisecondsSince1970: 0).rfc3339 == "1970-01-01T00:00:00.000Z")
        #expect(UTCTimestamp(millisecondsSince1970: 951_782_400_000).rfc3339 == "2000-02-29T00:00:00.000Z")
        #expect(UTCTimestamp(millisecondsSince1970: -1).rfc3339 == "1969-12-31T23:59:59.999Z")
        #expect(UTCTimestamp(millisecondsSince1970: 4_102_444_799_999).rfc3339 == "2099-12-31T23:59:59.999Z")
        #expect(UTCTimestamp(secondsSince1970: 1_796_206_500.2509).millisecondsSince1970 == 1_796_206_500_250)
        #expect(UTCTimestamp(secondsSince1970: -0.0005).millisecondsSince1970 == -1)
        #expect(FieldSyntax.isRFC3339Timestamp(now.rfc3339))
    }

    @Test(
        arguments: [
            (nil, 0), (HeaderValue.int8(3), 3), (.uint8(3), 3), (.int16(4), 4), (.uint16(4), 4), (.int32(5), 5),
            (.uint32(5), 5),
            (.int64(6), 6), (.uint64(7), 7), (.string("8"), 8), (.string("08"), 8), (.string(""), 0),
            (.string("-1"), 0),
            (.string("3x"), 0), (.string(" 3"), 0), (.int32(-2), 0), (.bool(true), 0), (.double(3), 0),
            (.uint64(.max), 0),
            (.string("99999999999999999999999"), 0), (.void, 0),
        ] as [(HeaderValue?, Int)])
    func attemptsMadeReadsAnyIntegerOrDigits(value: HeaderValue?, expected: Int) {
        var headers = producerHeaders
        if let value { headers.append(("druid-sync-attempt", value)) }
        #expect(FailureHeaders.attemptCount(in: headers) == expected)
    }

    @Test func firstRetryCopy() {
        let headers = FailureHeaders.retryHeaders(
            original: producerHeaders, attemptsMade: 1, reason: "druid-unavailable: HTTP 503", now: now)
        #expect(
            HeaderTable.equal(
                headers,
                producerHeaders + [
                    ("druid-sync-attempt", .int64(1)),
                    ("druid-sync-first-failure-at", .string("2026-12-02T10:15:00.250Z")),
                    ("druid-sync-last-reason", .string("druid-unavailable: HTTP 503")),
                ]))
    }

    @Test func laterRetryCopyKeepsTheFirstFailureAndReplacesTheRest() {
        let original =
            producerHeaders + [
                ("druid-sync-attempt", .int32(3)), ("druid-sync-first-failure-at", .string("2026-12-01T00:00:00.000Z")),
                ("druid-sync-last-reason", .string("old")),
            ]
        let headers = FailureHeaders.retryHeaders(original: original, attemptsMade: 4, reason: nil, now: now)
        #expect(
            HeaderTable.equal(
                headers,
                producerHeaders + [
                    ("druid-sync-attempt", .int64(4)),
                    ("druid-sync-first-failure-at", .string("2026-12-01T00:00:00.000Z")),
                ]))
        #expect(FailureHeaders.attemptCount(in: headers) == 4)
    }

    @Test func deadLetterCopy() {
        let original =
            producerHeaders + [
                ("druid-sync-attempt", .int64(9)), ("druid-sync-first-failure-at", .string("2026-12-01T00:00:00.000Z")),
                ("druid-sync-last-reason", .string("druid-unavailable: HTTP 503")),
            ]
        let headers = FailureHeaders.deadLetterHeaders(
            original: original, reason: "retries-exhausted: HTTP 503", httpStatus: 503, attempts: 10, eventId: "e-1",
            originalQueue: "druid-sync.user-updates", now: now)
        #expect(
            text(headers)
                == text(
                    producerHeaders + [
                        ("druid-sync-reason", .string("retries-exhausted: HTTP 503")),
                        ("druid-sync-http-status", .int64(503)),
                        ("druid-sync-attempts", .int64(10)),
                        ("druid-sync-first-failure-at", .string("2026-12-01T00:00:00.000Z")),
                        ("druid-sync-last-failure-at", .string("2026-12-02T10:15:00.250Z")),
                        ("druid-sync-event-id", .string("e-1")),
                        ("druid-sync-original-queue", .string("druid-sync.user-updates")),
                    ]))
        // A copy moved back to the work queue starts with a fresh budget.
        #expect(FailureHeaders.attemptCount(in: headers) == 0)
    }

    @Test func deadLetterCopyOfAnInvalidEvent() {
        let headers = FailureHeaders.deadLetterHeaders(
            original: [], reason: "invalid-event: user.ids is empty", httpStatus: nil, attempts: 1, eventId: "m-1",
            originalQueue: "q", now: now)
        #expect(
            headers.map(\.0) == [
                "druid-sync-reason", "druid-sync-attempts", "druid-sync-first-failure-at", "druid-sync-last-failure-at",
                "druid-sync-event-id", "druid-sync-original-queue",
            ])
        #expect(HeaderTable.value("druid-sync-first-failure-at", in: headers) == .string(now.rfc3339))
    }

    @Test func deadLetterReasonIsCut() {
        let headers = FailureHeaders.deadLetterHeaders(
            original: [], reason: String(repeating: "ü", count: 2000), httpStatus: nil, attempts: 1, eventId: "e",
            originalQueue: "q", now: now)
        let reason = HeaderTable.value("druid-sync-reason", in: headers)?.stringValue ?? ""
        #expect(reason.utf8.count <= 1024)
        #expect(reason.utf8.count >= 1020)
    }

    @Test func headersForEachOutcome() {
        let original = producerHeaders + [("druid-sync-attempt", .int64(2))]
        func headers(_ outcome: Outcome) -> [(String, HeaderValue)]? {
            FailureHeaders.headers(
                for: outcome, original: original, attempt: 3, eventId: "e", originalQueue: "q", now: now)
        }
        #expect(headers(.ack) == nil)
        #expect(headers(.retryNow) == nil)
        let counted = headers(
            .retry(queueIndex: 2, delay: .seconds(120), reason: "druid-unavailable: HTTP 503", countsAsAttempt: true))
        #expect(counted.map(FailureHeaders.attemptCount(in:)) == 3)
        let notCounted = headers(
            .retry(queueIndex: 2, delay: .seconds(120), reason: "credentials-refused: HTTP 403", countsAsAttempt: false)
        )
        #expect(notCounted.map(FailureHeaders.attemptCount(in:)) == 2)
        #expect(
            notCounted.flatMap { HeaderTable.value("druid-sync-last-reason", in: $0) }
                == .string("credentials-refused: HTTP 403"))
        let dead = headers(.deadLetter(reason: "user-not-found", httpStatus: 404))
        #expect(dead.flatMap { HeaderTable.value("druid-sync-attempts", in: $0) } == .int64(3))
        #expect(dead.flatMap { HeaderTable.value("druid-sync-http-status", in: $0) } == .int64(404))
        #expect(dead.flatMap { HeaderTable.value("druid-sync-reason", in: $0) } == .string("user-not-found"))
    }
}
