import AMQP
import Testing

@Suite("Ack coalescing")
struct AckCoalescerTests {
    func delivered(_ tags: ClosedRange<UInt64>) -> AckCoalescer {
        var coalescer = AckCoalescer()
        for tag in tags { coalescer.delivered(tag) }
        return coalescer
    }

    @Test func aRunFromTheOldestBecomesOneMultipleAck() {
        var coalescer = delivered(1...5)
        let plan = coalescer.plan(acking: [3, 1, 2])
        #expect(plan == .init(multipleUpTo: 3, singles: []))
        #expect(coalescer.unsettledCount == 2)
    }

    @Test func acksAheadOfAnUnsettledDeliveryGoOutAlone() {
        var coalescer = delivered(1...5)
        #expect(coalescer.plan(acking: [2, 4]) == .init(multipleUpTo: nil, singles: [2, 4]))
        // Once 1 is settled, the run covers 1 and the already-acked 2, and stops at 3.
        #expect(coalescer.plan(acking: [1]) == .init(multipleUpTo: 1, singles: []))
        #expect(coalescer.plan(acking: [3, 5]) == .init(multipleUpTo: 5, singles: []))
        #expect(coalescer.unsettledCount == 0)
    }

    @Test func rejectionsAreSkippedByTheRunButNeverAcked() {
        var coalescer = delivered(1...4)
        coalescer.rejected(2)
        #expect(coalescer.plan(acking: [1]) == .init(multipleUpTo: 1, singles: []))
        #expect(coalescer.plan(acking: [3]) == .init(multipleUpTo: 3, singles: []))
        coalescer.rejected(4)
        #expect(coalescer.unsettledCount == 0)
    }

    @Test func everyTagEndsSettledWhateverTheOrder() {
        var coalescer = delivered(1...2000)
        var tags = Array(UInt64(1)...2000).shuffled()
        var acked = Set<UInt64>()
        while !tags.isEmpty {
            let batch = Array(tags.prefix(Int.random(in: 1...40)))
            tags.removeFirst(batch.count)
            let plan = coalescer.plan(acking: batch)
            if let upTo = plan.multipleUpTo { for tag in 1...upTo { acked.insert(tag) } }
            for tag in plan.singles {
                #expect(!acked.contains(tag), "a single ack for a tag already covered would close the channel")
                acked.insert(tag)
            }
        }
        #expect(acked.count == 2000)
        #expect(coalescer.unsettledCount == 0)
    }
}
