"""Varied, valid user-update events for the benchmark (event-schema.md section 1).

Every event is valid for druid-sync and for the DRUID emulator: user `<prefix><k>`
always carries the same email, phone and screen name, so the emulator never sees an id
owned by two users. What varies from one event to the next is the shape: ids as plain
strings or as objects with and without `confirmed`, birthday in both accepted formats,
datas of every scalar type, assertions as an object or a list, an occasional password,
every `source`, a locale or none.

The generator is deterministic (seeded by the sequence number), so two runs publish the
same bytes.
"""

import json
import random

SOURCES = ("unknown", "pc", "mobile", "tablet", "game_console", "itv")
LOCALES = ("es-ES", "en-GB", "fr-FR", "pt-BR", "de-DE", None)
FIRST_NAMES = ("Ana", "Luis", "Marta", "Jorge", "Lucía", "Pablo", "Elena", "Iñaki", "Noa", "Óscar")
SURNAMES = ("García", "López", "Martín", "Sánchez", "Pérez", "Gómez", "Díaz", "Ruiz")
COUNTRIES = ("ES", "PT", "FR", "GB", "DE", "MX", "AR")


def event_body(seq: int, users: int, prefix: str = "bench-") -> bytes:
    """The JSON body of event number `seq`, targeting user `prefix + str(seq % users)`."""
    rng = random.Random(seq)
    k = seq % users
    ids = {}
    email = f"user.{k}@bench.example.com"
    if rng.random() < 0.5:
        ids["email"] = {"value": email, "confirmed": rng.random() < 0.7}
    elif rng.random() < 0.5:
        ids["email"] = {"value": email}
    else:
        ids["email"] = email
    if rng.random() < 0.6:
        phone = f"+346{k:08d}"
        ids["phone_number"] = phone if rng.random() < 0.5 else {"value": phone, "confirmed": False}
    if rng.random() < 0.5:
        ids["screen_name"] = f"bench_user_{k}"

    year, month, day = 1940 + rng.randrange(70), 1 + rng.randrange(12), 1 + rng.randrange(28)
    birthday = f"{year:04d}-{month:02d}-{day:02d}" if rng.random() < 0.5 else f"{day:02d}/{month:02d}/{year:04d}"
    datas = {"name": rng.choice(FIRST_NAMES), "surname": rng.choice(SURNAMES)}
    if rng.random() < 0.8:
        datas["birthday"] = birthday
    if rng.random() < 0.7:
        datas["country"] = rng.choice(COUNTRIES)
    if rng.random() < 0.3:
        datas["loyalty_points"] = rng.randrange(100000)
    if rng.random() < 0.2:
        datas["newsletter"] = rng.random() < 0.5
    if rng.random() < 0.2:
        datas["city"] = {"value": "Madrid"}

    user = {"objectId": f"{prefix}{k}", "ids": ids, "datas": datas}
    roll = rng.random()
    if roll < 0.45:
        user["assertions"] = {"terms": True, "optin": rng.random() < 0.5}
    elif roll < 0.75:
        user["assertions"] = [
            {"type": "terms", "typology": "user", "value": True},
            {"type": "privacy", "typology": "user", "value": "true"},
        ]
    if rng.random() < 0.1:
        user["password"] = f"Secret-{rng.randrange(10**9)}"

    event = {
        "eventId": f"{seq:08d}-{rng.getrandbits(64):016x}",
        "occurredAt": f"2026-03-{1 + seq % 28:02d}T{seq % 24:02d}:{seq % 60:02d}:{(seq // 60) % 60:02d}Z",
        "user": user,
    }
    if rng.random() < 0.85:
        event["source"] = rng.choice(SOURCES)
    locale = rng.choice(LOCALES)
    if locale is not None:
        event["locale"] = locale
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


if __name__ == "__main__":
    import sys

    count = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    for i in range(count):
        print(event_body(i, 1000).decode("utf-8"))
