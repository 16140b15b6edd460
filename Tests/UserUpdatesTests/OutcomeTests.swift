import Testing
import UserUpdates

@Suite struct OutcomeTests {
    let policy = RetryPolicy()

    func outcome(_ answer: DruidAnswer, attempt: Int = 1, immediateRetries: Int = 0) -> Outcome {
        policy.outcome(for: answer, attempt: attempt, immediateRetries: immediateRetries)
    }

    @Test(arguments: [200, 201, 204, 299])
    func acceptedIsAck(status: Int) {
        #expect(outcome(.accepted(status: status)) == .ack)
    }

    @Test func invalidEventIsDeadLetteredAtOnce() {
        let invalid = InvalidEvent(reason: "invalid-event: user.ids is empty", eventId: "e", eventIdOrigin: .body)
        #expect(
            policy.outcome(for: invalid)
                == .deadLetter(reason: "invalid-event: user.ids is empty", httpStatus: nil))
    }

    @Test func rejectedWithErrorsListsThem() {
        #expect(
            outcome(.rejected(status: 400, errors: [DruidFieldError(message: "email", details: "already exists")]))
                == .deadLetter(reason: "druid-rejected: email: already exists", httpStatus: 400))
        #expect(
            outcome(
                .rejected(
                    status: 400,
                    errors: [
                        DruidFieldError(message: "email", details: "already exists"),
                        DruidFieldError(message: "birthday", details: "The value is not valid"),
                    ]))
                == .deadLetter(
                    reason: "druid-rejected: email: already exists; birthday: The value is not valid", httpStatus: 400))
    }

    @Test func rejectedErrorsAreOneLine() {
        #expect(
            outcome(.rejected(status: 400, errors: [DruidFieldError(message: "", details: "bad\nthing")]))
                == .deadLetter(reason: "druid-rejected: bad thing", httpStatus: 400))
    }

    @Test func rejectedWithoutErrors() {
        #expect(
            outcome(.rejected(status: 400, errors: []))
                == .deadLetter(reason: "druid-rejected: HTTP 400", httpStatus: 400))
    }

    @Test func notFound() {
        #expect(outcome(.rejected(status: 404, errors: [])) == .deadLetter(reason: "user-not-found", httpStatus: 404))
        #expect(
            outcome(.rejected(status: 404, errors: [DruidFieldError(message: "user", details: "x")]))
                == .deadLetter(reason: "user-not-found", httpStatus: 404))
    }

    @Test(arguments: [405, 409, 410, 413, 415, 422, 451, 499])
    func otherClientErrorsAreRejected(status: Int) {
        #expect(
            outcome(.rejected(status: status, errors: []))
                == .deadLetter(reason: "druid-rejected: HTTP \(status)", httpStatus: status))
    }

    @Test func longErrorListsAreCutTo1KiB() {
        let errors = (0..<200).map { DruidFieldError(message: "field\($0)", details: "é is not valid") }
        guard case .deadLetter(let reason, _) = outcome(.rejected(status: 400, errors: errors)) else {
            Issue.record("not a dead letter")
            return
        }
        #expect(reason.utf8.count <= 1024)
        #expect(reason.utf8.count > 1000)
        #expect(reason.hasPrefix("druid-rejected: field0: é is not valid; field1"))
        #expect(reason.hasSuffix("…"))
    }

    // MARK: 401

    @Test func unauthorizedRetriesAtOnceTwice() {
        #expect(outcome(.unauthorized, immediateRetries: 0) == .retryNow)
        #expect(outcome(.unauthorized, immediateRetries: 1) == .retryNow)
        #expect(
            outcome(.unauthorized, attempt: 1, immediateRetries: 2)
                == .retry(
                    queueIndex: 0, delay: .seconds(5), reason: "druid-unavailable: HTTP 401", countsAsAttempt: true))
        #expect(
            outcome(.unauthorized, attempt: 10, immediateRetries: 2)
                == .deadLetter(reason: "retries-exhausted: HTTP 401", httpStatus: 401))
    }

    // MARK: credentials

    @Test(arguments: [1, 5, 10, 11, 50])
    func credentialsRefusedIsNeverDeadLettered(attempt: Int) {
        let result = outcome(.credentialsRefused(status: 403, detail: "Forbidden"), attempt: attempt)
        guard case .retry(let index, let delay, let reason, let countsAsAttempt) = result else {
            Issue.record("expected a retry, got \(result)")
            return
        }
        #expect(!countsAsAttempt)
        #expect(index == min(attempt, 5) - 1)
        #expect(delay == RetryPolicy.defaultDelays[index])
        #expect(reason == "credentials-refused: HTTP 403 (Forbidden)")
    }

    @Test func credentialsRefusedByTheTokenEndpoint() {
        #expect(
            outcome(.credentialsRefused(status: nil, detail: "InvalidGrantException: bad client"))
                == .retry(
                    queueIndex: 0, delay: .seconds(5),
                    reason: "credentials-refused: token refused (InvalidGrantException: bad client)",
                    countsAsAttempt: false))
    }

    @Test func forbiddenFiledAsRejectedIsStillCredentials() {
        #expect(
            outcome(.rejected(status: 403, errors: []))
                == .retry(
                    queueIndex: 0, delay: .seconds(5), reason: "credentials-refused: HTTP 403", countsAsAttempt: false))
    }

    // MARK: unavailable

    @Test(arguments: [
        (1, 0, Duration.seconds(5)), (2, 1, .seconds(30)), (3, 2, .seconds(120)), (4, 3, .seconds(600)),
        (5, 4, .seconds(1800)),
        (6, 4, .seconds(1800)), (9, 4, .seconds(1800)),
    ])
    func unavailableBacksOffByAttempt(attempt: Int, queueIndex: Int, delay: Duration) {
        #expect(
            outcome(.unavailable(status: 503, retryAfter: nil, detail: "Service Unavailable"), attempt: attempt)
                == .retry(
                    queueIndex: queueIndex, delay: delay, reason: "druid-unavailable: HTTP 503", countsAsAttempt: true))
    }

    @Test(arguments: [
        // (attempt, Retry-After, expected queue)
        (1, Duration.seconds(1), 0), (1, .seconds(5), 0), (1, .seconds(6), 1), (1, .seconds(30), 1),
        (1, .seconds(31), 2),
        (1, .seconds(600), 3), (1, .seconds(601), 4), (1, .seconds(7200), 4), (3, .seconds(1), 2),
        (3, .milliseconds(1), 2),
        (2, .seconds(119), 2), (5, .seconds(1), 4), (1, .zero, 0),
    ])
    func retryAfterPicksTheFirstLongEnoughQueue(attempt: Int, retryAfter: Duration, expectedQueue: Int) {
        let result = outcome(.unavailable(status: 429, retryAfter: retryAfter, detail: ""), attempt: attempt)
        #expect(
            result
                == .retry(
                    queueIndex: expectedQueue, delay: RetryPolicy.defaultDelays[expectedQueue],
                    reason: "druid-unavailable: HTTP 429",
                    countsAsAttempt: true))
    }

    @Test func exhaustion() {
        #expect(
            outcome(.unavailable(status: 503, retryAfter: nil, detail: ""), attempt: 10)
                == .deadLetter(reason: "retries-exhausted: HTTP 503", httpStatus: 503))
        #expect(
            outcome(.unavailable(status: 503, retryAfter: .seconds(5), detail: ""), attempt: 11)
                == .deadLetter(reason: "retries-exhausted: HTTP 503", httpStatus: 503))
        #expect(
            outcome(.unavailable(status: nil, retryAfter: nil, detail: "timeout"), attempt: 10)
                == .deadLetter(reason: "retries-exhausted: timeout", httpStatus: nil))
        #expect(
            outcome(
                .unavailable(status: nil, retryAfter: nil, detail: "connection refused\n(127.0.0.1:8080)"), attempt: 10)
                == .deadLetter(reason: "retries-exhausted: connection refused (127.0.0.1:8080)", httpStatus: nil))
        #expect(
            outcome(.unavailable(status: nil, retryAfter: nil, detail: ""), attempt: 10)
                == .deadLetter(reason: "retries-exhausted: DRUID unavailable", httpStatus: nil))
        if case .retry = outcome(.unavailable(status: 503, retryAfter: nil, detail: ""), attempt: 9) {
        } else {
            Issue.record("attempt 9 of 10 must still be retried")
        }
    }

    @Test func transportDetailIsShort() {
        let detail = String(repeating: "x", count: 5000)
        guard
            case .deadLetter(let reason, _) = outcome(
                .unavailable(status: nil, retryAfter: nil, detail: detail), attempt: 10)
        else {
            Issue.record("not a dead letter")
            return
        }
        #expect(reason.utf8.count <= "retries-exhausted: ".utf8.count + 200)
    }

    @Test(arguments: [408, 429, 500, 502, 503, 504])
    func retryableStatusesFiledAsRejectedAreStillRetried(status: Int) {
        #expect(
            outcome(.rejected(status: status, errors: []))
                == .retry(
                    queueIndex: 0, delay: .seconds(5), reason: "druid-unavailable: HTTP \(status)",
                    countsAsAttempt: true))
    }

    @Test func unauthorizedFiledAsRejectedRetriesNow() {
        #expect(outcome(.rejected(status: 401, errors: [])) == .retryNow)
    }

    @Test func customPolicy() {
        let policy = RetryPolicy(delays: [.milliseconds(500)], maxAttempts: 2)
        #expect(
            policy.outcome(
                for: .unavailable(status: 500, retryAfter: .seconds(60), detail: ""), attempt: 1, immediateRetries: 0)
                == .retry(
                    queueIndex: 0, delay: .milliseconds(500), reason: "druid-unavailable: HTTP 500",
                    countsAsAttempt: true))
        #expect(
            policy.outcome(for: .unavailable(status: 500, retryAfter: nil, detail: ""), attempt: 2, immediateRetries: 0)
                == .deadLetter(reason: "retries-exhausted: HTTP 500", httpStatus: 500))
        let single = RetryPolicy(delays: [.seconds(1)], maxAttempts: 1)
        #expect(
            single.outcome(for: .unavailable(status: 502, retryAfter: nil, detail: ""), attempt: 1, immediateRetries: 0)
                == .deadLetter(reason: "retries-exhausted: HTTP 502", httpStatus: 502))
    }

    @Test func queueIndexForAttemptsBeyondTheList() {
        let retry = RetryPolicy()
        #expect(retry.queueIndex(afterAttempt: 0) == 0)
        #expect(retry.queueIndex(afterAttempt: 1) == 0)
        #expect(retry.queueIndex(afterAttempt: 100) == 4)
        #expect(retry.delays == [.seconds(5), .seconds(30), .seconds(120), .seconds(600), .seconds(1800)])
        #expect(retry.maxAttempts == 10)
    }
}
