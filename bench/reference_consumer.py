"""The reference consumer: what a developer would otherwise write instead of druid-sync.

Python 3 with aio-pika and aiohttp (Debian's python3-aio-pika and python3-aiohttp),
written plainly and competently: one connection, prefetch = concurrency, aio-pika runs
each delivery's callback as its own task (so up to `prefetch` are handled at once), one
shared `aiohttp.ClientSession` whose connector keeps connections alive.

For each message, the same work druid-sync does on the happy path:
  1. parse the JSON event and build the DRUID update activity (event-schema.md §3);
  2. a new PKCE verifier (32 random bytes, base64url = 43 chars) and its S256 challenge;
  3. `POST {auth}/oauth2/token` (form body, challenge-code grant, scope update);
  4. `POST {graph}/activityid/v1/user/update?code_verifier=…` with the Bearer token,
     `Content-Type`, `Accept`, `From` and `Accept-Language` when the event has a locale;
  5. ack on a 2xx answer; otherwise reject with requeue (the benchmark expects none).

It validates less than druid-sync does (it trusts the event's shape), which only makes it
cheaper. Configured with the same DRUID_SYNC_* environment variables as the daemon.
"""

import asyncio
import base64
import hashlib
import json
import os
import secrets
import signal

import aio_pika
import aiohttp

AMQP_URL = os.environ.get("DRUID_SYNC_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
QUEUE = os.environ.get("DRUID_SYNC_QUEUE", "druid-sync.user-updates")
CONCURRENCY = int(os.environ.get("DRUID_SYNC_CONCURRENCY", "64"))
AUTH_URL = os.environ.get("DRUID_SYNC_AUTH_URL", "http://127.0.0.1:8080").rstrip("/")
GRAPH_URL = os.environ.get("DRUID_SYNC_GRAPH_URL", AUTH_URL).rstrip("/")
CLIENT_ID = os.environ.get("DRUID_SYNC_CLIENT_ID", "druid-sync-demo")
CLIENT_SECRET = os.environ.get("DRUID_SYNC_CLIENT_SECRET", "demo-secret")
ENTRY_POINT = os.environ.get("DRUID_SYNC_ENTRY_POINT", "231705665113870-main")


def _text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _birthday(value: str) -> str:
    if len(value) == 10 and value[4] == "-":  # YYYY-MM-DD → dd/MM/yyyy
        return f"{value[8:10]}/{value[5:7]}/{value[0:4]}"
    return value


def _flag(value) -> bool:
    return value if isinstance(value, bool) else value == "true"


def build_activity(event: dict) -> dict:
    """The DRUID update activity for one event."""
    user = event["user"]
    ids = {}
    for name, value in user["ids"].items():
        entry = {"objectType": "user_id"}
        if isinstance(value, dict):
            entry["value"] = value["value"]
            if "confirmed" in value:
                entry["confirmed"] = value["confirmed"]
        else:
            entry["value"] = value
        ids[name] = entry
    datas = {}
    for name, value in user.get("datas", {}).items():
        if isinstance(value, dict):
            value = value["value"]
        text = _birthday(value) if name == "birthday" else _text(value)
        datas[name] = {"objectType": "user_data", "value": text}
    obj = {"objectType": "user", "objectId": user["objectId"]}
    if "password" in user:
        obj["password"] = user["password"]
    obj["ids"] = ids
    obj["datas"] = datas
    assertions = user.get("assertions")
    if assertions:
        if isinstance(assertions, dict):
            items = [{"objectType": "assertion", "type": name, "typology": "user", "value": _flag(value)}
                     for name, value in assertions.items()]
        else:
            items = [{"objectType": "assertion", "type": a["type"], "typology": a.get("typology", "user"),
                      "value": _flag(a["value"])} for a in assertions]
        obj["assertions"] = {"objectType": "assertions", "items": items, "totalItems": len(items)}
    return {
        "actor": {"id": CLIENT_ID, "objectType": "application"},
        "verb": "update",
        "object": obj,
        "source": {"id": event.get("source", "unknown"), "objectType": "device"},
    }


def new_pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(32)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    return verifier, challenge


class DruidError(Exception):
    pass


async def update_in_druid(session: aiohttp.ClientSession, event: dict) -> None:
    body = json.dumps(build_activity(event), ensure_ascii=False)
    verifier, challenge = new_pkce()
    form = {
        "grant_type": "urn:druid:oauth2:grant-type:code_challenge",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "scope": "update",
    }
    async with session.post(f"{AUTH_URL}/oauth2/token", data=form, headers={"Accept": "application/json"}) as answer:
        token = await answer.json(content_type=None)
        if answer.status != 200 or "error" in token:
            raise DruidError(f"token refused: HTTP {answer.status}")
    headers = {
        "Authorization": f"Bearer {token['access_token']}",
        "Content-Type": "application/json",
        "Accept": "application/json",
        "From": ENTRY_POINT,
    }
    if "locale" in event:
        headers["Accept-Language"] = event["locale"]
    async with session.post(f"{GRAPH_URL}/activityid/v1/user/update", params={"code_verifier": verifier},
                            data=body.encode("utf-8"), headers=headers) as answer:
        await answer.read()
        if not 200 <= answer.status < 300:
            raise DruidError(f"update refused: HTTP {answer.status}")


async def main() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, stop.set)

    connector = aiohttp.TCPConnector(limit=CONCURRENCY * 2, keepalive_timeout=60)
    async with aiohttp.ClientSession(connector=connector) as session:
        connection = await aio_pika.connect_robust(AMQP_URL)
        async with connection:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=CONCURRENCY)
            queue = await channel.get_queue(QUEUE, ensure=True)

            async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                try:
                    await update_in_druid(session, json.loads(message.body))
                except Exception as error:  # noqa: BLE001 - a consumer must not die on one message
                    print(f"reference: {error!r}", flush=True)
                    await message.reject(requeue=True)
                else:
                    await message.ack()

            await queue.consume(on_message)
            print(f"reference: consuming {QUEUE} with prefetch {CONCURRENCY}", flush=True)
            await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
