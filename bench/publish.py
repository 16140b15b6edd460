"""Publishes the benchmark's events to a queue and records when each one left.

Each message carries `message_id = bench-<seq>` (the event body has its own `eventId`),
`content_type: application/json` and `delivery_mode: 2`, like a well-behaved producer
(event-schema.md section 1). The publish time of message `seq` (CLOCK_REALTIME, ns,
taken just after `basic_publish` handed the frame to the socket) is stored at index
`seq` of an int64 array, so that the capture analysis can compute publish→ack latency.

Used by measure.py; can also run alone:
    /usr/bin/python3 bench/publish.py --queue Q --messages 1000 --times /tmp/t.bin
"""

import argparse
import array
import time

import pika

import events


def queue_arguments(queue: str) -> dict:
    """The arguments druid-sync declares its work queue with (event-schema.md section 5),
    for a classic queue; declaring it the same way first lets druid-sync redeclare it."""
    return {"x-queue-type": "classic", "x-dead-letter-exchange": queue + ".dead-letter"}


def declare_queue(channel, queue: str) -> None:
    channel.queue_declare(queue=queue, durable=True, arguments=queue_arguments(queue))


def ready_count(channel, queue: str) -> int:
    """Messages ready in the queue (a passive declare: not the unacknowledged ones)."""
    return channel.queue_declare(queue=queue, passive=True).method.message_count


def publish(url: str, queue: str, messages: int, users: int, times_path: str | None,
            progress_every: int = 0, first_seq: int = 0) -> float:
    """Publishes `messages` events and waits until the queue holds all of them.

    Returns the publishing rate (messages/s)."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    declare_queue(channel, queue)
    before = ready_count(channel, queue)
    times = array.array("q", bytes(8 * messages))
    started = time.monotonic()
    for i in range(messages):
        seq = first_seq + i
        properties = pika.BasicProperties(
            content_type="application/json", delivery_mode=2, message_id=f"bench-{seq}",
            timestamp=int(time.time()))
        channel.basic_publish(exchange="", routing_key=queue, body=events.event_body(seq, users),
                              properties=properties)
        times[i] = time.time_ns()
        if progress_every and (i + 1) % progress_every == 0:
            print(f"  published {i + 1:,}", flush=True)
    elapsed = time.monotonic() - started
    # Publishing without confirms is fast; wait until the broker has enqueued them all.
    deadline = time.monotonic() + 120
    while ready_count(channel, queue) < before + messages:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the queue {queue} did not reach {before + messages} messages")
        connection.sleep(0.1)
    connection.close()
    if times_path:
        with open(times_path, "wb") as f:
            times.tofile(f)
    return messages / elapsed if elapsed > 0 else float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/%2F")
    parser.add_argument("--queue", required=True)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--users", type=int, default=50000)
    parser.add_argument("--times", help="file for the int64 publish times (ns)")
    args = parser.parse_args()
    rate = publish(args.url, args.queue, args.messages, args.users, args.times)
    print(f"published {args.messages:,} messages to {args.queue} at {rate:,.0f} msg/s")


if __name__ == "__main__":
    main()
