"""An ack-only consumer in Python (aio-pika): consume, ack, nothing else.

Not the benchmark's "broker's limit" (that is ack_only_consumer.c, in C with rabbitmq-c):
this one is limited by Python itself, well below what the broker can do, so measuring
druid-sync against it would flatter druid-sync. It is kept to show that difference:
`bench/run throughput --consumers ack-only,ack-only-python`.

Configured like the other consumers: DRUID_SYNC_AMQP_URL, DRUID_SYNC_QUEUE,
DRUID_SYNC_CONCURRENCY (the prefetch).
"""

import asyncio
import os
import signal

import aio_pika


async def main() -> None:
    url = os.environ.get("DRUID_SYNC_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
    queue_name = os.environ["DRUID_SYNC_QUEUE"]
    prefetch = int(os.environ.get("DRUID_SYNC_CONCURRENCY", "64"))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, stop.set)
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=prefetch)
        queue = await channel.get_queue(queue_name, ensure=True)

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            await message.ack()

        await queue.consume(on_message)
        print(f"ack-only-python: consuming {queue_name} with prefetch {prefetch}", flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
