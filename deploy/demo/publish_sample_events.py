#!/usr/bin/python3
"""Publishes sample user-update events for the local demo, one every INTERVAL seconds.

The events target the users in deploy/emulator/users.sample.json. Every tenth event is
deliberately invalid, so the demo also shows a message being dead-lettered with its reason.
"""
import argparse
import itertools
import json
import random
import time
import uuid

import pika

USERS = [
    ("f385e71af90e7e644b4bead7ffe7380974457de9", "jane", "+34600111222"),
    ("9b1e0c7d2a4f4e8b8c3d6a5f1e2b3c4d5e6f7a8b", "john", "+34600333444"),
    ("demo-user-3", "maria", "+34600555666"),
    ("demo-user-4", "li", "+34600777888"),
    ("demo-user-5", "sam", "+34600999000"),
]
NAMES = ["Jane", "John", "María", "Li", "Sam", "Zoë", "Jürgen"]


def valid_event(counter):
    object_id, handle, phone = USERS[counter % len(USERS)]
    event = {
        "eventId": str(uuid.uuid4()),
        "occurredAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "user": {
            "objectId": object_id,
            "ids": {
                "email": {"value": f"{handle}@example.com", "confirmed": True},
                "phone_number": phone,
            },
            "datas": {
                "name": random.choice(NAMES),
                "birthday": f"19{random.randint(50, 99)}-0{random.randint(1, 9)}-1{random.randint(0, 9)}",
                "country": random.choice(["ES", "FR", "DE", "GB"]),
                "points": random.randint(0, 1000),
            },
            "assertions": {"terms": True, "optin": random.random() < 0.5},
        },
        "source": random.choice(["pc", "mobile", "tablet"]),
        "locale": random.choice(["es-ES", "en-GB", "fr-FR"]),
    }
    if counter % 3 == 0:
        event["user"]["password"] = "demo-" + uuid.uuid4().hex
    return event


def invalid_event(counter):
    object_id = USERS[counter % len(USERS)][0]
    return {"eventId": str(uuid.uuid4()), "user": {"objectId": object_id, "ids": {"email": "not-an-email"}}}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/%2F")
    parser.add_argument("--queue", default="druid-sync.user-updates")
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--count", type=int, default=0, help="stop after this many (0: never)")
    args = parser.parse_args()

    connection = pika.BlockingConnection(pika.URLParameters(args.url))
    channel = connection.channel()
    channel.confirm_delivery()
    counter_range = range(args.count) if args.count else itertools.count()
    for counter in counter_range:
        event = invalid_event(counter) if counter % 10 == 9 else valid_event(counter)
        properties = pika.BasicProperties(content_type="application/json", delivery_mode=2)
        # Publishing to the default exchange needs the queue: wait until druid-sync declared it.
        while True:
            try:
                channel.basic_publish("", args.queue, json.dumps(event).encode(), properties, mandatory=True)
                break
            except pika.exceptions.UnroutableError:
                time.sleep(1)
        connection.sleep(args.interval)
    connection.close()


if __name__ == "__main__":
    main()
