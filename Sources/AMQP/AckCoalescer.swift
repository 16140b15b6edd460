/// Turns the settlements of one consumer loop turn into as few `basic.ack` frames as is
/// safe: a run of settled deliveries that starts at the oldest unsettled one is
/// acknowledged with a single `multiple` ack; an ack further along is sent on its own at
/// once (holding it back would hold a prefetch slot behind a slow message).
///
/// A pure value confined to the consumer's thread; tags are one channel's, rising from 1.
public struct AckCoalescer: Sendable, Equatable {
    /// Delivered tags not yet known to be settled, oldest first (`outstanding[head...]`).
    private var outstanding: [UInt64] = []
    private var head = 0
    /// Tags settled out of order (acked alone, or rejected), skipped when the run reaches them.
    private var settledEarly: Set<UInt64> = []

    public init() {}

    /// What to send for one batch of acks.
    public struct Plan: Sendable, Equatable {
        /// One `basic.ack` with `multiple` up to this tag, if any.
        public var multipleUpTo: UInt64?
        /// Single acks to send (ahead of the oldest unsettled delivery).
        public var singles: [UInt64]

        public init(multipleUpTo: UInt64?, singles: [UInt64]) {
            self.multipleUpTo = multipleUpTo
            self.singles = singles
        }
    }

    /// Records a delivery handed to the application.
    public mutating func delivered(_ tag: UInt64) { outstanding.append(tag) }

    /// Records a rejection (sent by the caller on its own).
    public mutating func rejected(_ tag: UInt64) {
        settledEarly.insert(tag)
        advance()
    }

    /// The frames for acknowledging `tags`.
    public mutating func plan(acking tags: [UInt64]) -> Plan {
        var plan = Plan(multipleUpTo: nil, singles: [])
        guard !tags.isEmpty else { return plan }
        let acked = Set(tags)
        var last: UInt64?
        while head < outstanding.count {
            let oldest = outstanding[head]
            if acked.contains(oldest) {
                last = oldest
            } else if settledEarly.remove(oldest) == nil {
                break
            }
            head += 1
        }
        plan.multipleUpTo = last
        for tag in tags.sorted() where last == nil || tag > last! {
            plan.singles.append(tag)
            settledEarly.insert(tag)
        }
        compact()
        return plan
    }

    /// Number of deliveries not yet settled (for tests).
    public var unsettledCount: Int { outstanding.count - head - settledEarly.count }

    private mutating func advance() {
        while head < outstanding.count, settledEarly.remove(outstanding[head]) != nil { head += 1 }
        compact()
    }

    private mutating func compact() {
        if head > 1024 && head * 2 > outstanding.count {
            outstanding.removeFirst(head)
            head = 0
        }
    }
}
