/// How long a failed message waits before its next attempt, and how many attempts it gets
/// (`DRUID_SYNC_RETRY_DELAYS`, `DRUID_SYNC_MAX_ATTEMPTS`).
public struct RetryPolicy: Sendable, Equatable {
    /// 5 s, 30 s, 2 min, 10 min, 30 min.
    public static let defaultDelays: [Duration] = [
        .seconds(5), .seconds(30), .seconds(120), .seconds(600), .seconds(1800),
    ]
    public static let defaultMaxAttempts = 10

    /// One delay per retry queue; attempt n's failure waits `delays[n - 1]`, and the last
    /// delay repeats for every later attempt. Never empty.
    public let delays: [Duration]
    /// Attempts a message gets before it is dead-lettered as `retries-exhausted`; at least 1.
    public let maxAttempts: Int

    /// - Precondition: `delays` is not empty and `maxAttempts >= 1` (the configuration
    ///   checks both before building a policy).
    public init(delays: [Duration] = RetryPolicy.defaultDelays, maxAttempts: Int = RetryPolicy.defaultMaxAttempts) {
        precondition(!delays.isEmpty, "a retry policy needs at least one delay")
        precondition(maxAttempts >= 1, "a retry policy needs at least one attempt")
        self.delays = delays
        self.maxAttempts = maxAttempts
    }

    /// The retry queue for a message whose attempt number `attempt` (1-based) failed: the
    /// attempt's own queue (`attempt - 1`, the last one for later attempts), or, when DRUID
    /// asked for more patience with `Retry-After`, the first later queue whose delay is at
    /// least that long (the last queue when none is).
    public func queueIndex(afterAttempt attempt: Int, retryAfter: Duration? = nil) -> Int {
        let ownIndex = min(max(attempt, 1) - 1, delays.count - 1)
        guard let retryAfter else { return ownIndex }
        return delays[ownIndex...].firstIndex { $0 >= retryAfter } ?? delays.count - 1
    }
}

/// What to do with a delivery once DRUID answered (event-schema.md section 4).
public enum Outcome: Equatable, Sendable {
    /// DRUID accepted the update: acknowledge the delivery.
    case ack
    /// DRUID refused the token (401): get a new verifier and token and call again at once,
    /// without touching the broker.
    case retryNow
    /// Publish a retry copy to retry queue `queueIndex` (which holds it for `delay`), then
    /// acknowledge. `countsAsAttempt` is false when the fault is the service's credentials,
    /// not the message: the copy keeps its attempt count. `reason` is short and secret-free
    /// (for the `druid-sync-last-reason` header and logs).
    case retry(queueIndex: Int, delay: Duration, reason: String, countsAsAttempt: Bool)
    /// Publish a dead-letter copy with `reason` (≤ 1 KiB, secret-free) and the HTTP status,
    /// if DRUID gave one, then acknowledge.
    case deadLetter(reason: String, httpStatus: Int?)
}

/// The table of event-schema.md section 4 as pure functions of the retry policy.
extension RetryPolicy {
    /// Immediate new-token re-tries allowed after a 401 within one delivery.
    public static let maximumImmediateRetries = 2

    /// The outcome for a bad message: dead-letter it at once with the decoder's reason.
    public func outcome(for invalidEvent: InvalidEvent) -> Outcome {
        .deadLetter(reason: invalidEvent.reason, httpStatus: nil)
    }

    /// The outcome of DRUID's answer to one attempt.
    /// - Parameters:
    ///   - attempt: this delivery's attempt number, 1-based: the `druid-sync-attempt`
    ///     header (attempts already made, absent = 0) plus one.
    ///   - immediateRetries: how many `retryNow` re-tries this delivery has already had.
    public func outcome(for answer: DruidAnswer, attempt: Int, immediateRetries: Int) -> Outcome {
        switch Self.normalized(answer) {
        case .accepted:
            return .ack
        case .rejected(let status, let errors):
            if status == 404 { return .deadLetter(reason: "user-not-found", httpStatus: 404) }
            let listed = errors.map { error in
                error.message.isEmpty ? error.details : error.message + ": " + error.details
            }
            let summary = errors.isEmpty ? "HTTP \(status)" : Self.singleLine(listed.joined(separator: "; "))
            return .deadLetter(reason: ReasonText.truncated("druid-rejected: " + summary), httpStatus: status)
        case .unauthorized:
            if immediateRetries < Self.maximumImmediateRetries { return .retryNow }
            return unavailable(status: 401, retryAfter: nil, detail: "", attempt: attempt)
        case .credentialsRefused(let status, let detail):
            let index = queueIndex(afterAttempt: attempt)
            var reason = "credentials-refused: " + (status.map { "HTTP \($0)" } ?? "token refused")
            let shortDetail = Self.shortDetail(detail)
            if !shortDetail.isEmpty { reason += " (" + shortDetail + ")" }
            return .retry(queueIndex: index, delay: delays[index], reason: reason, countsAsAttempt: false)
        case .unavailable(let status, let retryAfter, let detail):
            return unavailable(status: status, retryAfter: retryAfter, detail: detail, attempt: attempt)
        }
    }

    private func unavailable(status: Int?, retryAfter: Duration?, detail: String, attempt: Int) -> Outcome {
        let summary = status.map { "HTTP \($0)" } ?? Self.shortDetail(detail)
        let what = summary.isEmpty ? "DRUID unavailable" : summary
        if attempt >= maxAttempts {
            return .deadLetter(reason: "retries-exhausted: " + what, httpStatus: status)
        }
        let index = queueIndex(afterAttempt: attempt, retryAfter: retryAfter)
        return .retry(
            queueIndex: index, delay: delays[index], reason: "druid-unavailable: " + what,
            countsAsAttempt: true)
    }

    /// Files an answer by its status first, so that a status the `Druid` client put in an
    /// unexpected case still gets the treatment section 4 gives it.
    static func normalized(_ answer: DruidAnswer) -> DruidAnswer {
        guard case .rejected(let status, _) = answer else { return answer }
        switch status {
        case 200..<300: return .accepted(status: status)
        case 401: return .unauthorized
        case 403: return .credentialsRefused(status: 403, detail: "")
        case 408, 429, 500...: return .unavailable(status: status, retryAfter: nil, detail: "")
        default: return answer
        }
    }

    /// A transport detail fit for a header: one line, at most 200 bytes.
    static func shortDetail(_ detail: String) -> String {
        ReasonText.truncated(singleLine(detail), maximumBytes: 200)
    }

    static func singleLine(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else { return text }
        return String(
            String.UnicodeScalarView(text.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? " " : $0 }))
    }
}
