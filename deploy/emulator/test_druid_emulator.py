"""Tests of the DRUID emulator.

Run: /usr/bin/python3 -m unittest discover -s deploy/emulator -p 'test_*.py' -v

Most tests start the emulator's HTTP server on a real socket (port 0) inside the test's
event loop and talk to it with aiohttp's client (HttpLayerTest uses raw sockets); the
command-line and HTTPS tests start druid_emulator.py as a subprocess.
"""

import asyncio
import base64
import hashlib
import json
import os
import select
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import unittest.mock
import urllib.error
import urllib.parse
import urllib.request
import warnings

import aiohttp

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:  # run as a file (python3 -m unittest deploy/emulator/test_...py)
    sys.path.insert(0, HERE)

import druid_emulator as emulator  # noqa: E402

SCRIPT = os.path.join(HERE, "druid_emulator.py")
SAMPLE = os.path.join(HERE, "users.sample.json")

CLIENT_ID = "druid-sync-demo"
CLIENT_SECRET = "demo-secret"
ENTRY_POINT = "231705665113870-main"
GRANT = "urn:druid:oauth2:grant-type:code_challenge"

ALICE = "alice-0001"
BOB = "bob-0002"


def new_verifier():
    return base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode("ascii")


def challenge_of(verifier):
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def seed_users():
    return [
        {"objectId": ALICE,
         "ids": {"email": {"objectType": "user_id", "value": "alice@example.com",
                           "confirmed": True},
                 "phone_number": "+34600000001"},
         "datas": {"name": "Alice", "country": "ES"},
         "assertions": {"terms": True}},
        {"objectId": BOB,
         "ids": {"email": "bob@example.com", "screen_name": "bobby"},
         "datas": {"name": {"objectType": "user_data", "value": "Bob"}}},
    ]


def user_object(object_id=ALICE, **overrides):
    obj = {
        "objectType": "user",
        "objectId": object_id,
        "ids": {"email": {"objectType": "user_id", "value": "alice.new@example.com",
                          "confirmed": True},
                "phone_number": {"objectType": "user_id", "value": "+34600000001"}},
        "datas": {"name": {"objectType": "user_data", "value": "Alice"},
                  "birthday": {"objectType": "user_data", "value": "22/10/1974"}},
        "assertions": {"objectType": "assertions",
                       "items": [{"objectType": "assertion", "type": "terms",
                                  "typology": "user", "value": True},
                                 {"objectType": "assertion", "type": "optin",
                                  "typology": "user", "value": "false"}],
                       "totalItems": 2},
    }
    for key, value in overrides.items():
        if value is None:
            obj.pop(key, None)
        else:
            obj[key] = value
    return obj


def activity(obj=None, **overrides):
    act = {"actor": {"id": CLIENT_ID, "objectType": "application"},
           "verb": "update",
           "object": obj if obj is not None else user_object(),
           "source": {"id": "pc", "objectType": "device"}}
    for key, value in overrides.items():
        if value is None:
            act.pop(key, None)
        else:
            act[key] = value
    return act


class EmulatorTestCase(unittest.IsolatedAsyncioTestCase):
    """Runs an Emulator on a free port of 127.0.0.1 and talks to it over HTTP."""

    settings_kwargs = {}
    max_body = emulator.MAX_BODY

    async def asyncSetUp(self):
        self.emu = emulator.Emulator(emulator.Settings(**self.settings_kwargs))
        self.emu.put_users([emulator.user_from_seed(u, i) for i, u in enumerate(seed_users())])
        self.server = await emulator.start_server(self.emu, "127.0.0.1", 0,
                                                  max_body=self.max_body)
        self.base = "http://127.0.0.1:%d" % self.server.port
        self.session = aiohttp.ClientSession()

    async def asyncTearDown(self):
        await self.session.close()
        await self.server.close(grace=0.1)

    # ------------------------------------------------------------------ helpers

    async def call(self, method, path, **kwargs):
        async with self.session.request(method, self.base + path, **kwargs) as resp:
            raw = await resp.read()
            try:
                payload = json.loads(raw)
            except ValueError:
                payload = raw.decode("utf-8", "replace")
            return resp.status, payload, resp.headers

    async def admin(self, method, path, body=None):
        kwargs = {} if body is None else {"json": body}
        status, payload, _ = await self.call(method, "/admin" + path, **kwargs)
        return status, payload

    def token_form(self, verifier=None, **overrides):
        verifier = verifier or new_verifier()
        form = {"grant_type": GRANT, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                "code_challenge": challenge_of(verifier), "code_challenge_method": "S256",
                "scope": "update"}
        for key, value in overrides.items():
            if value is None:
                form.pop(key, None)
            else:
                form[key] = value
        return form

    async def post_token(self, form):
        return await self.call("POST", emulator.TOKEN_PATH, data=form)

    async def get_token(self, verifier=None, **overrides):
        verifier = verifier or new_verifier()
        status, payload, _ = await self.post_token(self.token_form(verifier, **overrides))
        self.assertEqual(status, 200, payload)
        return payload["access_token"], verifier

    async def post_update(self, token, verifier, body=None, headers=None, raw=None):
        hdrs = {"Authorization": "Bearer %s" % token, "Content-Type": "application/json",
                "Accept": "application/json", "From": ENTRY_POINT}
        for key, value in (headers or {}).items():
            if value is None:
                hdrs.pop(key, None)
            else:
                hdrs[key] = value
        data = raw if raw is not None else json.dumps(body if body is not None else activity())
        path = emulator.UPDATE_PATH
        if verifier is not None:
            path += "?" + urllib.parse.urlencode({"code_verifier": verifier})
        return await self.call("POST", path, data=data, headers=hdrs)

    async def update(self, body=None, headers=None, raw=None):
        token, verifier = await self.get_token()
        return await self.post_update(token, verifier, body, headers, raw)

    def assert_error(self, answer, status, field, details=None):
        got_status, payload, headers = answer
        self.assertEqual(got_status, status, payload)
        self.assertEqual(headers["Content-Type"], "application/json")
        self.assertEqual(payload["result"]["status"], status)
        fields = [e["message"] for e in payload["result"]["errors"]]
        self.assertIn(field, fields, payload)
        if details is not None:
            found = [e["details"] for e in payload["result"]["errors"] if e["message"] == field]
            self.assertTrue(any(details in d for d in found), payload)

    def assert_token_error(self, answer, kind, text):
        status, payload, headers = answer
        self.assertEqual(status, 400, payload)
        self.assertEqual(headers["Content-Type"], "application/json")
        self.assertEqual(payload["type"], kind, payload)
        self.assertIn(text, payload["error"])


# ---------------------------------------------------------------------- token endpoint

class TokenEndpointTest(EmulatorTestCase):

    def test_rfc7636_vector(self):
        self.assertEqual(emulator.s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
                         "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")

    async def test_success_shape(self):
        before = time.time() * 1000
        status, payload, headers = await self.post_token(self.token_form())
        self.assertEqual(status, 200)
        self.assertEqual(headers["Content-Type"], "application/json")  # no charset
        self.assertEqual(set(payload), {"access_token", "token_type", "expires_in",
                                        "expires_at"})
        self.assertEqual(payload["token_type"], "bearer")
        self.assertEqual(payload["expires_in"], 60)
        self.assertGreaterEqual(len(payload["access_token"]), 32)
        self.assertTrue(before + 59000 <= payload["expires_at"] <= time.time() * 1000 + 61000)

    async def test_tokens_are_distinct(self):
        first, _ = await self.get_token()
        second, _ = await self.get_token()
        self.assertNotEqual(first, second)

    async def test_body_must_be_form(self):
        answer = await self.call("POST", emulator.TOKEN_PATH, json=self.token_form())
        self.assert_token_error(answer, "InvalidRequestException", "x-www-form-urlencoded")

    async def test_form_encoding(self):
        verifier = new_verifier()
        form = urllib.parse.urlencode(self.token_form(verifier)) + "&scope=update"
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        self.assert_token_error(await self.call("POST", emulator.TOKEN_PATH, data=form,
                                                headers=headers),
                                "InvalidRequestException", "given twice")
        # Percent-encoded names and values, "+" for spaces, and a charset parameter.
        form = self.token_form(verifier, scope="openid update")
        encoded = "&".join("%s=%s" % ("".join("%%%02X" % b for b in k.encode()),
                                      urllib.parse.quote_plus(v, safe=""))
                           for k, v in form.items())
        headers = {"Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"}
        status, payload, _ = await self.call("POST", emulator.TOKEN_PATH, data=encoded,
                                             headers=headers)
        self.assertEqual(status, 200, payload)

    async def test_grant_type_checked_first(self):
        form = self.token_form(grant_type="client_credentials", client_secret="wrong",
                               code_challenge="short")
        self.assert_token_error(await self.post_token(form), "InvalidRequestException",
                                "grant_type")
        self.assert_token_error(await self.post_token(self.token_form(grant_type=None)),
                                "InvalidRequestException", "grant_type")

    async def test_client_credentials_checked_second(self):
        for overrides in ({"client_secret": "wrong"}, {"client_id": "someone-else"},
                          {"client_secret": None}, {"client_id": None}):
            form = self.token_form(code_challenge="short", scope="read", **overrides)
            status, payload, headers = await self.post_token(form)
            self.assertEqual(status, 400)
            self.assertEqual(payload, {"error": "invalid client credentials",
                                       "type": "InvalidGrantException"})

    async def test_challenge_present_then_method_then_format(self):
        self.assert_token_error(
            await self.post_token(self.token_form(code_challenge=None, scope="read")),
            "InvalidRequestException", "code_challenge is required")
        self.assert_token_error(
            await self.post_token(self.token_form(code_challenge_method="S512",
                                                  code_challenge="short", scope="read")),
            "InvalidRequestException", "code_challenge_method")
        self.assert_token_error(
            await self.post_token(self.token_form(code_challenge_method=None)),
            "InvalidRequestException", "code_challenge_method")
        for bad in ("A" * 42, "A" * 44, "+" * 43, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-c="):
            self.assert_token_error(
                await self.post_token(self.token_form(code_challenge=bad, scope="read")),
                "InvalidRequestException", "base64url")

    async def test_scope_checked_before_reuse(self):
        verifier = new_verifier()
        await self.get_token(verifier)
        for scope in (None, "read", "updates", "read write"):
            self.assert_token_error(
                await self.post_token(self.token_form(verifier, scope=scope)),
                "InvalidGrantException", "scope")
        token, _ = await self.get_token(scope="openid update profile")
        self.assertTrue(token)

    async def test_challenge_reuse_refused(self):
        verifier = new_verifier()
        await self.get_token(verifier)
        self.assert_token_error(await self.post_token(self.token_form(verifier)),
                                "InvalidGrantException", "already used")

    async def test_refused_request_does_not_burn_the_challenge(self):
        verifier = new_verifier()
        await self.post_token(self.token_form(verifier, client_secret="wrong"))
        await self.get_token(verifier)

    async def test_plain_method(self):
        verifier = new_verifier()
        token, _ = await self.get_token(verifier, code_challenge=verifier,
                                        code_challenge_method="plain")
        status, payload, _ = await self.post_update(token, verifier)
        self.assertEqual(status, 200, payload)
        self.assert_token_error(
            await self.post_token(self.token_form(code_challenge="tooshort",
                                                  code_challenge_method="plain")),
            "InvalidRequestException", "unreserved")

    async def test_other_clients_from_settings(self):
        self.emu.settings.clients["other-app"] = "s3cret"
        token, _ = await self.get_token(client_id="other-app", client_secret="s3cret")
        self.assertTrue(token)

    async def test_ttl_from_config(self):
        status, _ = await self.admin("POST", "/config", {"tokenTtlSeconds": 5})
        self.assertEqual(status, 200)
        _, payload, _ = await self.post_token(self.token_form())
        self.assertEqual(payload["expires_in"], 5)
        self.assertLess(payload["expires_at"], time.time() * 1000 + 6000)


# ---------------------------------------------------------------------- update endpoint

class UpdateOrderTest(EmulatorTestCase):
    """Each test breaks one check and every later one, so only the first may answer."""

    async def test_01_token_missing_or_unknown(self):
        bad_everything = {"From": None, "Content-Type": "text/plain"}
        self.assert_error(await self.post_update("nope", "short", raw="x",
                                                 headers=bad_everything),
                          401, "access_token", "unknown token")
        self.assert_error(await self.post_update("x", None, raw="x",
                                                 headers={"Authorization": None, "From": None}),
                          401, "Authorization")
        self.assert_error(await self.post_update("x", None, raw="x",
                                                 headers={"Authorization": "Basic Zm9vOmJhcg=="}),
                          401, "Authorization")

    async def test_01_token_expired(self):
        await self.admin("POST", "/config", {"tokenTtlSeconds": 0.2})
        token, verifier = await self.get_token()
        await asyncio.sleep(0.3)
        self.assert_error(await self.post_update(token, "wrong", raw="x",
                                                 headers={"From": None}),
                          401, "access_token", "expired")

    async def test_02_verifier_mismatch(self):
        token, verifier = await self.get_token()
        for bad in (None, "", new_verifier(), verifier[:-1], verifier + "A"):
            self.assert_error(await self.post_update(token, bad, raw="x",
                                                     headers={"From": None}),
                              401, "code_verifier")
        # A mismatching verifier does not consume the token.
        status, payload, _ = await self.post_update(token, verifier)
        self.assertEqual(status, 200, payload)

    async def test_02_percent_encoded_verifier(self):
        token, verifier = await self.get_token()
        encoded = "".join("%%%02X" % b for b in verifier.encode())
        status, payload, _ = await self.call(
            "POST", emulator.UPDATE_PATH + "?other=1&code_verifier=" + encoded,
            data=json.dumps(activity()),
            headers={"Authorization": "bearer " + token, "Content-Type": "Application/JSON",
                     "From": ENTRY_POINT})
        self.assertEqual(status, 200, payload)

    async def test_03_token_used_once(self):
        token, verifier = await self.get_token()
        status, _, _ = await self.post_update(token, verifier)
        self.assertEqual(status, 200)
        self.assert_error(await self.post_update(token, verifier, raw="x",
                                                 headers={"From": None}),
                          401, "access_token", "already used")

    async def test_03_token_consumed_even_by_a_rejected_request(self):
        token, verifier = await self.get_token()
        status, _, _ = await self.post_update(token, verifier, headers={"From": None})
        self.assertEqual(status, 400)
        self.assert_error(await self.post_update(token, verifier), 401, "access_token",
                          "already used")

    async def test_03_reusable_tokens_by_config(self):
        await self.admin("POST", "/config", {"oneUseTokens": False})
        token, verifier = await self.get_token()
        for _ in range(3):
            status, payload, _ = await self.post_update(token, verifier)
            self.assertEqual(status, 200, payload)

    async def test_04_from_header(self):
        self.assert_error(await self.update(raw="x", headers={"From": None,
                                                             "Content-Type": "text/plain"}),
                          400, "From", "required")
        self.assert_error(await self.update(raw="x", headers={"From": "999-other",
                                                             "Content-Type": "text/plain"}),
                          400, "From", "unknown entry point")

    async def test_05_content_type(self):
        for ctype in ("text/plain", "application/x-www-form-urlencoded", None):
            headers = {"Content-Type": ctype}
            answer = await self.update(raw=b"not json", headers=headers)
            self.assert_error(answer, 400, "Content-Type")
        status, payload, _ = await self.update(
            headers={"Content-Type": "application/json; charset=utf-8"})
        self.assertEqual(status, 200, payload)

    async def test_06_body_shape(self):
        ghost = user_object("no-such-user", ids={"email": "bad"})
        cases = [
            ("body", None, b"{not json"),
            ("body", None, b"[1, 2]"),
            ("actor", activity(ghost, actor=None), None),
            ("actor", activity(ghost, actor="druid-sync-demo"), None),
            ("actor.objectType", activity(ghost, actor={"id": CLIENT_ID, "objectType": "user"}),
             None),
            ("actor.id", activity(ghost, actor={"id": "someone", "objectType": "application"}),
             None),
            ("verb", activity(ghost, verb=None), None),
            ("verb", activity(ghost, verb=7), None),
            ("object", activity(ghost, object=None), None),
            ("object.objectType", activity(user_object("no-such-user", objectType="group")),
             None),
            ("object.objectId", activity(user_object(objectId=None)), None),
            ("object.objectId", activity(user_object(objectId=42)), None),
            ("source", activity(ghost, source=None), None),
            ("source.objectType", activity(ghost, source={"id": "pc", "objectType": "app"}),
             None),
            ("source.id", activity(ghost, source={"id": "watch", "objectType": "device"}), None),
            ("source.id", activity(ghost, source={"objectType": "device"}), None),
        ]
        for field, body, raw in cases:
            with self.subTest(field=field, body=body, raw=raw):
                self.assert_error(await self.update(body, raw=raw), 400, field)

    async def test_06_every_source_id_is_accepted(self):
        for source in ("unknown", "pc", "mobile", "tablet", "game_console", "itv"):
            status, payload, _ = await self.update(
                activity(source={"id": source, "objectType": "device"}))
            self.assertEqual(status, 200, payload)

    async def test_07_user_not_found_before_field_validation(self):
        body = activity(user_object("no-such-user",
                                    ids={"email": {"objectType": "user_id", "value": "bad"}}))
        self.assert_error(await self.update(body), 404, "objectId")

    async def test_08_field_validation_before_duplicates(self):
        obj = user_object(ids={"email": {"objectType": "user_id", "value": "bob@example.com"},
                               "phone_number": {"objectType": "user_id", "value": "600111"}})
        status, payload, _ = await self.update(activity(obj))
        self.assertEqual(status, 400)
        self.assertEqual(payload["result"]["errors"],
                         [{"message": "phone_number", "details": "The value is not valid"}])

    async def test_09_duplicate_after_validation(self):
        obj = user_object(ids={"email": {"objectType": "user_id", "value": "Bob@Example.com"}})
        status, payload, headers = await self.update(activity(obj))
        self.assertEqual(status, 400)
        self.assertEqual(headers["Content-Type"], "application/json")
        self.assertEqual(payload["result"], {"status": 400,
                                             "elapsed": payload["result"]["elapsed"],
                                             "errors": [{"message": "email",
                                                         "details": "already exists"}]})
        obj = user_object(ids={"screen_name": {"objectType": "user_id", "value": "bobby"}})
        self.assert_error(await self.update(activity(obj)), 400, "screen_name", "already exists")
        # Nothing changed.
        _, alice = await self.admin("GET", "/users/" + ALICE)
        self.assertEqual(alice["version"], 0)
        self.assertEqual(alice["ids"]["email"]["value"], "alice@example.com")


class FieldValidationTest(EmulatorTestCase):

    async def rejected(self, field, **object_overrides):
        answer = await self.update(activity(user_object(**object_overrides)))
        self.assert_error(answer, 400, field)
        _, alice = await self.admin("GET", "/users/" + ALICE)
        self.assertEqual(alice["version"], 0, "a rejected update must not touch the user")
        return answer[1]["result"]["errors"]

    async def test_ids(self):
        await self.rejected("ids", ids=None)
        await self.rejected("ids", ids={})
        await self.rejected("ids", ids=["email"])
        await self.rejected("email", ids={"email": "alice@example.com"})
        await self.rejected("email", ids={"email": {"value": "alice@example.com"}})
        await self.rejected("email", ids={"email": {"objectType": "user_data",
                                                    "value": "alice@example.com"}})
        await self.rejected("email", ids={"email": {"objectType": "user_id", "value": 5}})
        await self.rejected("email", ids={"email": {"objectType": "user_id",
                                                    "value": "alice@example.com",
                                                    "confirmed": "yes"}})
        await self.rejected("email", ids={"email": {"objectType": "user_id",
                                                    "value": "alice@example.com",
                                                    "extra": 1}})

    async def test_email_pattern(self):
        # "first.last+tag@..." is refused: DRUID's pattern allows "+" only before the first dot.
        for bad in ("plain", "a@b", "a@b.c", "a b@c.es", "a@b.es\n", "a..b@c.es", ".a@c.es",
                    "a@-.e5", "first.last+tag@example.com"):
            with self.subTest(email=bad):
                await self.rejected("email", ids={"email": {"objectType": "user_id",
                                                            "value": bad}})
        for good in ("a@b.es", "first+tag.last@sub.example.co.uk", "x_y-z@a-b.info"):
            with self.subTest(email=good):
                status, payload, _ = await self.update(activity(user_object(
                    ids={"email": {"objectType": "user_id", "value": good}})))
                self.assertEqual(status, 200, payload)

    async def test_phone_pattern(self):
        for bad in ("600111222", "+0600111222", "+3", "+346001112223334445", "+34 600",
                    "+３４６００"):
            with self.subTest(phone=bad):
                await self.rejected("phone_number", ids={
                    "phone_number": {"objectType": "user_id", "value": bad}})

    async def test_datas(self):
        await self.rejected("datas", datas=["name"])
        await self.rejected("name", datas={"name": "Alice"})
        await self.rejected("name", datas={"name": {"objectType": "user_id", "value": "A"}})
        await self.rejected("name", datas={"name": {"objectType": "user_data", "value": 3}})
        await self.rejected("name", datas={"name": {"objectType": "user_data", "value": "A",
                                                    "x": 1}})

    async def test_birthday(self):
        for bad in ("1974-10-22", "31/02/2000", "00/01/2000", "1/2/2000", "22/13/1974",
                    "22/10/74"):
            with self.subTest(birthday=bad):
                await self.rejected("birthday", datas={
                    "birthday": {"objectType": "user_data", "value": bad}})
        status, payload, _ = await self.update(activity(user_object(datas={
            "birthday": {"objectType": "user_data", "value": "29/02/2000"}})))
        self.assertEqual(status, 200, payload)

    async def test_assertions(self):
        def assertions(items, total=None):
            return {"objectType": "assertions", "items": items,
                    "totalItems": len(items) if total is None else total}
        terms = {"objectType": "assertion", "type": "terms", "typology": "user", "value": True}
        await self.rejected("assertions", assertions={"terms": True})
        await self.rejected("assertions", assertions=assertions([terms], total=2))
        await self.rejected("assertions", assertions=assertions([terms], total="1"))
        await self.rejected("assertions", assertions={"objectType": "assertions",
                                                      "totalItems": 0})
        await self.rejected("assertions", assertions=assertions([dict(terms,
                                                                      objectType="x")]))
        await self.rejected("assertions", assertions=assertions([dict(terms, type=None)]))
        await self.rejected("terms", assertions=assertions([dict(terms, typology=None)]))
        for bad in ("yes", 1, None, "True"):
            with self.subTest(value=bad):
                await self.rejected("terms", assertions=assertions([dict(terms, value=bad)]))
        status, payload, _ = await self.update(activity(user_object(
            assertions=assertions([dict(terms, value="true")]))))
        self.assertEqual(status, 200, payload)
        _, alice = await self.admin("GET", "/users/" + ALICE)
        self.assertIs(alice["assertions"]["items"][0]["value"], True)

    async def test_password_and_unknown_fields(self):
        await self.rejected("password", password=123)
        obj = user_object()
        obj["password"] = None
        self.assert_error(await self.update(activity(obj)), 400, "password")
        await self.rejected("nickname", nickname="al")

    async def test_every_error_is_listed(self):
        errors = await self.rejected(
            "email",
            ids={"email": {"objectType": "user_id", "value": "bad"},
                 "phone_number": {"objectType": "user_id", "value": "bad"}},
            datas={"birthday": {"objectType": "user_data", "value": "bad"}})
        self.assertEqual(sorted(e["message"] for e in errors),
                         ["birthday", "email", "phone_number"])


class ReplacementTest(EmulatorTestCase):

    async def test_success_envelope(self):
        status, payload, headers = await self.update()
        self.assertEqual(status, 200)
        self.assertEqual(headers["Content-Type"], "application/json")
        self.assertEqual(payload["content"], {"objectType": "user", "objectId": ALICE,
                                              "confirmed": True})
        self.assertEqual(payload["result"]["status"], 200)
        self.assertEqual(payload["result"]["errors"], [])
        self.assertIsInstance(payload["result"]["elapsed"], float)

    async def test_replaces_everything(self):
        obj = user_object(ids={"screen_name": {"objectType": "user_id", "value": "al"}},
                          datas={"surname": {"objectType": "user_data", "value": "Liddell"}},
                          assertions=None)
        status, payload, _ = await self.update(activity(obj))
        self.assertEqual(status, 200, payload)
        _, alice = await self.admin("GET", "/users/" + ALICE)
        self.assertEqual(alice["ids"], {"screen_name": {"objectType": "user_id",
                                                        "value": "al"}})
        self.assertEqual(alice["datas"], {"surname": {"objectType": "user_data",
                                                      "value": "Liddell"}})
        self.assertIsNone(alice["assertions"])
        self.assertEqual(alice["version"], 1)
        self.assertFalse(alice["passwordSet"])
        self.assertIsNotNone(alice["updatedAt"])
        # datas may be left out altogether: it means "no datas".
        status, _, _ = await self.update(activity(user_object(datas=None)))
        self.assertEqual(status, 200)
        _, alice = await self.admin("GET", "/users/" + ALICE)
        self.assertEqual(alice["datas"], {})
        self.assertEqual(alice["version"], 2)

    async def test_confirmed_flag_kept_as_sent(self):
        obj = user_object(ids={"email": {"objectType": "user_id", "value": "a2@example.com",
                                         "confirmed": False},
                               "national_id": {"objectType": "user_id", "value": "X1"}})
        await self.update(activity(obj))
        _, alice = await self.admin("GET", "/users/" + ALICE)
        self.assertEqual(alice["ids"]["email"], {"objectType": "user_id",
                                                 "value": "a2@example.com",
                                                 "confirmed": False})
        self.assertNotIn("confirmed", alice["ids"]["national_id"])

    async def test_index_follows_replacement(self):
        # Alice gives up her email; Bob may then take it, and Alice can't take it back.
        await self.update(activity(user_object(ids={
            "email": {"objectType": "user_id", "value": "alice2@example.com"}})))
        bob = user_object(BOB, ids={"email": {"objectType": "user_id",
                                              "value": "alice@example.com"}})
        status, payload, _ = await self.update(activity(bob))
        self.assertEqual(status, 200, payload)
        back = user_object(ids={"email": {"objectType": "user_id",
                                          "value": "ALICE@example.com"}})
        self.assert_error(await self.update(activity(back)), 400, "email", "already exists")
        # Bob's old screen name was dropped by his replacement, so it is free.
        obj = user_object(ids={"screen_name": {"objectType": "user_id", "value": "bobby"}})
        status, payload, _ = await self.update(activity(obj))
        self.assertEqual(status, 200, payload)

    async def test_a_user_keeps_its_own_ids(self):
        obj = user_object(ids={"email": {"objectType": "user_id", "value": "alice@example.com"},
                               "phone_number": {"objectType": "user_id",
                                                "value": "+34600000001"}})
        for _ in range(2):
            status, payload, _ = await self.update(activity(obj))
            self.assertEqual(status, 200, payload)

    async def test_password(self):
        status, _, _ = await self.update(activity(user_object(password="s3cr3t!")))
        self.assertEqual(status, 200)
        _, alice = await self.admin("GET", "/users/" + ALICE)
        self.assertTrue(alice["passwordSet"])
        self.assertNotIn("s3cr3t!", json.dumps(alice))
        _, log = await self.admin("GET", "/requests?endpoint=update&limit=1")
        self.assertEqual(log["requests"][0]["body"]["object"]["password"], "s3cr3t!")
        # Leaving the password out keeps it.
        await self.update()
        _, alice = await self.admin("GET", "/users/" + ALICE)
        self.assertTrue(alice["passwordSet"])

    async def test_unknown_path_and_method(self):
        status, payload, _ = await self.call("POST", "/activityid/v1/user/create", json={})
        self.assertEqual(status, 404)
        status, payload, _ = await self.call("GET", emulator.TOKEN_PATH)
        self.assertEqual(status, 405)
        _, stats = await self.admin("GET", "/stats")
        self.assertEqual(stats["other"], {"404": 1, "405": 1})
        _, log = await self.admin("GET", "/requests?endpoint=other")
        self.assertEqual([r["path"] for r in log["requests"]],
                         ["/activityid/v1/user/create", emulator.TOKEN_PATH])


# ---------------------------------------------------------------------- the HTTP layer

def raw_token_request(verifier, extra_headers=b"", chunks=None):
    """A token request as bytes; with chunks=N the form goes chunked in N pieces."""
    form = urllib.parse.urlencode({
        "grant_type": GRANT, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
        "code_challenge": challenge_of(verifier), "code_challenge_method": "S256",
        "scope": "update"}).encode()
    head = (b"POST /oauth2/token HTTP/1.1\r\nHost: emulator\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n" + extra_headers)
    if chunks is None:
        return head + b"Content-Length: %d\r\n\r\n" % len(form) + form
    size = -(-len(form) // chunks)
    body = b"".join(b"%x\r\n%s\r\n" % (len(form[i:i + size]), form[i:i + size])
                    for i in range(0, len(form), size))
    return head + b"Transfer-Encoding: chunked\r\n\r\n" + body + b"0\r\n\r\n"


def raw_update_request(token, verifier):
    body = json.dumps(activity()).encode()
    return (b"POST %s?code_verifier=%s HTTP/1.1\r\nHost: emulator\r\n"
            b"Authorization: Bearer %s\r\nFrom: %s\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n"
            % (emulator.UPDATE_PATH.encode(), verifier.encode(), token.encode(),
               ENTRY_POINT.encode(), len(body)) + body)


class HttpLayerTest(EmulatorTestCase):
    """The emulator's own HTTP/1.1 server, spoken to over raw sockets."""

    async def connect(self):
        reader, writer = await asyncio.open_connection("127.0.0.1", self.server.port)

        async def close():
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass
        self.addAsyncCleanup(close)
        return reader, writer

    async def answer(self, reader, head_only=False):
        """(status line, lower-case headers, body) of the next answer."""
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                self.assertNotIn(name.lower(), headers, "a header given twice")
                headers[name.lower()] = value.strip()
        body = b""
        if not head_only:
            body = await asyncio.wait_for(
                reader.readexactly(int(headers["content-length"])), 5)
        return lines[0], headers, body

    async def assert_closed(self, reader):
        self.assertEqual(await asyncio.wait_for(reader.read(), 5), b"")

    async def test_keep_alive_several_requests_on_one_connection(self):
        reader, writer = await self.connect()
        writer.write(b"GET /admin/health HTTP/1.1\r\nHost: emulator\r\n\r\n")
        line, headers, body = await self.answer(reader)
        self.assertEqual(line, "HTTP/1.1 200 OK")
        self.assertEqual(headers["content-type"], "application/json")
        self.assertEqual(headers["content-length"], str(len(body)))
        self.assertNotIn("connection", headers)
        self.assertEqual(json.loads(body), {"ok": True})
        verifier = new_verifier()
        writer.write(raw_token_request(verifier))
        line, headers, body = await self.answer(reader)
        self.assertEqual((line, headers["content-type"]), ("HTTP/1.1 200 OK", "application/json"))
        token = json.loads(body)["access_token"]
        writer.write(raw_update_request(token, verifier))
        line, headers, body = await self.answer(reader)
        self.assertEqual(line, "HTTP/1.1 200 OK", body)
        self.assertEqual(json.loads(body)["result"]["status"], 200)
        self.assertEqual(len(self.server.connections), 1)
        _, stats = await self.admin("GET", "/stats")
        self.assertEqual((stats["token"], stats["update"]), ({"200": 1}, {"200": 1}))

    async def test_idle_connections_are_closed_counting_from_their_last_answer(self):
        # The answer takes longer than the idle limit: the connection is idle only from it.
        patcher = unittest.mock.patch.object(emulator, "KEEP_ALIVE_SECONDS", 0.3)
        patcher.start()
        self.addCleanup(patcher.stop)
        await self.admin("POST", "/config", {"latencyMs": 500})
        reader, writer = await self.connect()
        writer.write(b"GET /admin/health HTTP/1.1\r\n\r\n" + raw_token_request(new_verifier()))
        await self.answer(reader)
        line, _, _ = await self.answer(reader)
        self.assertEqual(line, "HTTP/1.1 200 OK")
        ours = [conn for conn in self.server.connections
                if conn.transport.get_extra_info("peername") == writer.get_extra_info("sockname")]
        self.assertEqual(len(ours), 1)
        self.server.close_idle()
        self.assertFalse(ours[0].transport.is_closing(), "answered just now: not idle yet")
        await asyncio.sleep(0.4)
        self.server.close_idle()
        await self.assert_closed(reader)

    async def test_pipelined_requests_are_answered_in_order_one_after_the_other(self):
        await self.admin("POST", "/config", {"latencyMs": 150})
        reader, writer = await self.connect()
        writer.write(raw_token_request(new_verifier())
                     + b"GET /admin/health HTTP/1.1\r\n\r\n"
                     + b"GET /admin/stats HTTP/1.1\r\n\r\n")
        started = time.monotonic()
        line, _, body = await self.answer(reader)
        self.assertEqual(line, "HTTP/1.1 200 OK")
        self.assertIn("access_token", json.loads(body))
        self.assertGreaterEqual(time.monotonic() - started, 0.1)
        self.assertEqual(json.loads((await self.answer(reader))[2]), {"ok": True})
        # The stats request started only after the token request had been answered.
        stats = json.loads((await self.answer(reader))[2])
        self.assertEqual(stats["token"], {"200": 1})

    async def test_chunked_body(self):
        verifier = new_verifier()
        reader, writer = await self.connect()
        writer.write(raw_token_request(verifier, chunks=3))
        line, headers, body = await self.answer(reader)
        self.assertEqual(line, "HTTP/1.1 200 OK", body)
        _, log = await self.admin("GET", "/requests?endpoint=token")
        self.assertEqual(log["requests"][0]["body"]["code_challenge"], challenge_of(verifier))
        self.assertEqual(log["requests"][0]["headers"]["Transfer-Encoding"], "chunked")

    async def test_request_arriving_one_byte_at_a_time(self):
        reader, writer = await self.connect()
        for byte in raw_token_request(new_verifier(), b"X-Filler: " + b"y" * 50 + b"\r\n"):
            writer.write(bytes([byte]))
            await writer.drain()
        line, _, body = await self.answer(reader)
        self.assertEqual(line, "HTTP/1.1 200 OK", body)

    async def test_malformed_request_gets_400_and_the_connection_closes(self):
        reader, writer = await self.connect()
        writer.write(b"GET /admin/health HTTP/1.1\r\n\r\nNOT HTTP AT ALL\r\n\r\n")
        self.assertEqual((await self.answer(reader))[0], "HTTP/1.1 200 OK")
        line, headers, body = await self.answer(reader)
        self.assertEqual(line, "HTTP/1.1 400 Bad Request")
        self.assertEqual(headers["content-type"], "application/json")
        self.assertEqual(headers["connection"], "close")
        self.assertIn("malformed request", json.loads(body)["error"])
        await self.assert_closed(reader)
        reader, writer = await self.connect()
        writer.write(b"GET /admin/health HTTP/1.1\r\nBad Header Line\r\n\r\n")
        self.assertEqual((await self.answer(reader))[0], "HTTP/1.1 400 Bad Request")
        await self.assert_closed(reader)

    async def test_oversized_body_gets_413(self):
        reader, writer = await self.connect()
        writer.write(b"POST /admin/users HTTP/1.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n[" % (emulator.MAX_BODY + 1))
        line, headers, body = await self.answer(reader)
        self.assertEqual(line, "HTTP/1.1 413 Request Entity Too Large")
        self.assertEqual(headers["content-type"], "application/json")
        self.assertIn("larger than", json.loads(body)["error"])
        await self.assert_closed(reader)

    async def test_connection_close_is_honoured(self):
        reader, writer = await self.connect()
        writer.write(b"GET /admin/health HTTP/1.1\r\nConnection: close\r\n\r\n"
                     b"GET /admin/stats HTTP/1.1\r\n\r\n")
        line, headers, body = await self.answer(reader)
        self.assertEqual((line, headers["connection"]), ("HTTP/1.1 200 OK", "close"))
        self.assertEqual(json.loads(body), {"ok": True})
        await self.assert_closed(reader)  # the request after it is not answered

    async def test_http_1_0(self):
        reader, writer = await self.connect()
        writer.write(b"GET /admin/health HTTP/1.0\r\n\r\n")
        line, headers, body = await self.answer(reader)
        self.assertEqual(line, "HTTP/1.0 200 OK")
        self.assertEqual(json.loads(body), {"ok": True})
        await self.assert_closed(reader)
        # With Connection: keep-alive, an HTTP/1.0 connection stays open.
        reader, writer = await self.connect()
        for _ in range(2):
            writer.write(b"GET /admin/health HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            line, headers, body = await self.answer(reader)
            self.assertEqual((line, headers["connection"]), ("HTTP/1.0 200 OK", "keep-alive"))
        writer.write(raw_token_request(new_verifier()).replace(b"HTTP/1.1", b"HTTP/1.0", 1))
        line, headers, body = await self.answer(reader)
        self.assertEqual((line, headers["connection"]), ("HTTP/1.0 200 OK", "close"))
        await self.assert_closed(reader)

    async def test_expect_100_continue(self):
        reader, writer = await self.connect()
        request = raw_token_request(new_verifier(), b"Expect: 100-continue\r\n")
        head, _, form = request.partition(b"\r\n\r\n")
        writer.write(head + b"\r\n\r\n")
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        self.assertEqual(interim, b"HTTP/1.1 100 Continue\r\n\r\n")
        writer.write(form)
        line, _, body = await self.answer(reader)
        self.assertEqual(line, "HTTP/1.1 200 OK", body)

    async def test_no_interim_answer_for_a_pipelined_body_already_received(self):
        # The Expect request waits behind another, and its body comes with it: by the time
        # it is answered nothing is owed, and a late 100 would read as the next answer.
        reader, writer = await self.connect()
        writer.write(b"GET /admin/health HTTP/1.1\r\n\r\n"
                     + raw_token_request(new_verifier(), b"Expect: 100-continue\r\n"))
        for _ in range(2):
            line, _, body = await self.answer(reader)
            self.assertEqual(line, "HTTP/1.1 200 OK", body)
        writer.write(b"GET /admin/health HTTP/1.1\r\n\r\n")
        line, _, body = await self.answer(reader)
        self.assertEqual((line, json.loads(body)), ("HTTP/1.1 200 OK", {"ok": True}))

    async def test_head(self):
        reader, writer = await self.connect()
        writer.write(b"HEAD /admin/health HTTP/1.1\r\n\r\nGET /admin/health HTTP/1.1\r\n\r\n")
        line, headers, _ = await self.answer(reader, head_only=True)
        self.assertEqual(line, "HTTP/1.1 200 OK")
        self.assertEqual(headers["content-length"], str(len(b'{"ok":true}')))
        # No body was sent: the next bytes are the GET's answer.
        line, _, body = await self.answer(reader)
        self.assertEqual((line, json.loads(body)), ("HTTP/1.1 200 OK", {"ok": True}))

    async def test_absolute_form_target_and_encoded_user_id(self):
        await self.admin("POST", "/users", [{"objectId": "a b/c"}])
        reader, writer = await self.connect()
        writer.write(b"GET http://emulator/admin/users/a%20b%2Fc HTTP/1.1\r\n\r\n")
        line, _, body = await self.answer(reader)
        self.assertEqual((line, json.loads(body)["objectId"]), ("HTTP/1.1 200 OK", "a b/c"))

    async def test_a_client_leaving_during_the_latency_cancels_its_request(self):
        await self.admin("POST", "/config", {"latencyMs": 200})
        before = len(self.server.connections)  # the aiohttp session's keep-alive one
        reader, writer = await self.connect()
        writer.write(raw_token_request(new_verifier()))
        await asyncio.sleep(0.05)
        self.assertEqual(len(self.server.connections), before + 1)
        writer.close()
        await asyncio.sleep(0.3)
        _, stats = await self.admin("GET", "/stats")
        self.assertEqual(stats["token"], {}, "the token was never issued")
        self.assertEqual(len(self.server.connections), before)

    async def test_every_answer_is_one_write(self):
        class Transport:
            def __init__(self):
                self.writes = []
                self.closed = False

            def write(self, data):
                self.writes.append(data)

            def get_extra_info(self, name, default=None):
                return default

            def close(self):
                self.closed = True

        await self.admin("POST", "/faults", {"endpoint": "token", "status": 503,
                                             "retryAfter": 2, "count": 1})
        server = emulator.HttpServer(emulator.make_app(self.emu))
        server.loop = asyncio.get_running_loop()
        server.timers = emulator.Timers(server.loop)
        conn = emulator.HttpConnection(server)
        transport = Transport()
        conn.connection_made(transport)
        conn.data_received(raw_token_request(new_verifier()) + raw_token_request(new_verifier())
                           + b"GET /nowhere HTTP/1.1\r\nConnection: close\r\n\r\n")
        self.assertEqual(len(transport.writes), 3)
        first, second, third = transport.writes
        self.assertTrue(first.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), first)
        self.assertIn(b"\r\nRetry-After: 2\r\n", first)
        self.assertTrue(first.endswith(b"}"))
        head, _, body = second.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200 OK\r\n"), head)
        self.assertIn(b"\r\nContent-Type: application/json\r\n", head)
        self.assertIn(b"\r\nContent-Length: %d\r\n" % len(body), head)
        self.assertIn("access_token", json.loads(body))
        self.assertTrue(third.startswith(b"HTTP/1.1 404 Not Found\r\n"), third)
        self.assertTrue(transport.closed)
        conn.connection_lost(None)


class SmallBodyLimitTest(EmulatorTestCase):
    max_body = 1000

    async def test_chunked_body_over_the_limit_gets_413(self):
        users = json.dumps([{"objectId": "u-%d" % i} for i in range(30)]).encode()
        self.assertLess(len(users), 1000)
        status, payload = await self.admin("POST", "/users", json.loads(users))
        self.assertEqual((status, payload), (200, {"count": 30}))
        reader, writer = await asyncio.open_connection("127.0.0.1", self.server.port)
        try:
            writer.write(b"POST /admin/users HTTP/1.1\r\nContent-Type: application/json\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n"
                         + b"258\r\n" + b" " * 600 + b"\r\n" + b"258\r\n" + b" " * 600
                         + b"\r\n0\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            self.assertTrue(head.startswith(b"HTTP/1.1 413 "), head)
            self.assertIn(b"\r\nContent-Type: application/json\r\n", head)
            self.assertIn(b"\r\nConnection: close\r\n", head)
        finally:
            writer.close()


class TimersTest(unittest.IsolatedAsyncioTestCase):

    async def test_order_cancellation_and_one_loop_timer_per_batch(self):
        loop = asyncio.get_running_loop()
        timers = emulator.Timers(loop)
        fired = []
        started = loop.time()
        timers.call_later(0.06, fired.append, "c")
        timers.call_later(0.02, fired.append, "a")  # earlier than the armed timer: re-armed
        cancelled = timers.call_later(0.04, fired.append, "never")
        for name in ("b1", "b2", "b3"):
            timers.call_later(0.04, fired.append, name)
        emulator.Timers.cancel(cancelled)
        await asyncio.sleep(0.03)
        self.assertEqual(fired, ["a"])
        await asyncio.sleep(0.05)
        self.assertEqual(fired, ["a", "b1", "b2", "b3", "c"])
        self.assertGreaterEqual(loop.time() - started, 0.06)
        self.assertEqual((timers.heap, timers.handle), ([], None))
        timers.call_later(10, fired.append, "closed")
        timers.close()
        self.assertEqual((timers.heap, timers.handle), ([], None))

    async def test_spare_time_work_gives_way_to_due_timers(self):
        timers = emulator.Timers(asyncio.get_running_loop())
        done = []

        def work(name):
            done.append(name)
            if name == "s3":  # a timer falls due in the middle of a batch
                timers.call_later(0, done.append, "timer 2")
        timers.call_later(0, done.append, "timer 1")
        for i in range(40):
            timers.meanwhile(lambda name="s%d" % i: work(name))
        await asyncio.sleep(0.05)
        self.assertEqual(done, ["timer 1", "s0", "s1", "s2", "s3", "timer 2"]
                         + ["s%d" % i for i in range(4, 40)])
        self.assertFalse(timers.spare_scheduled)
        timers.meanwhile(lambda: done.append("closed"))
        timers.close()
        await asyncio.sleep(0.01)
        self.assertNotIn("closed", done)


# ---------------------------------------------------------------------- faults

class FaultTest(EmulatorTestCase):

    async def fault(self, **spec):
        status, payload = await self.admin("POST", "/faults", spec)
        self.assertEqual(status, 200, payload)
        return payload

    async def test_update_503_with_retry_after_then_normal(self):
        await self.fault(endpoint="update", status=503, count=2, retryAfter="5")
        for _ in range(2):
            status, payload, headers = await self.update()
            self.assertEqual(status, 503)
            self.assertEqual(headers["Retry-After"], "5")
            self.assertEqual(payload["result"]["status"], 503)
        status, _, headers = await self.update()
        self.assertEqual(status, 200)
        self.assertNotIn("Retry-After", headers)
        _, stats = await self.admin("GET", "/stats")
        self.assertEqual(stats["update"], {"503": 2, "200": 1})
        self.assertEqual(stats["applied"], 1)
        _, log = await self.admin("GET", "/requests?endpoint=update")
        self.assertEqual([(r["status"], r.get("fault", False)) for r in log["requests"]],
                         [(503, True), (503, True), (200, False)])

    async def test_fault_is_not_applied(self):
        await self.fault(endpoint="update", status=500)
        status, _, _ = await self.update()
        self.assertEqual(status, 500)
        _, alice = await self.admin("GET", "/users/" + ALICE)
        self.assertEqual(alice["version"], 0)

    async def test_token_200_invalid_grant(self):
        body = {"error": "The code challenge is not valid", "type": "InvalidGrantException"}
        await self.fault(endpoint="token", status=200, body=body)
        verifier = new_verifier()
        status, payload, headers = await self.post_token(self.token_form(verifier))
        self.assertEqual(status, 200)
        self.assertEqual(headers["Content-Type"], "application/json")
        self.assertEqual(payload, body)
        # The faulted request did not burn the challenge.
        await self.get_token(verifier)

    async def test_default_token_fault_body(self):
        await self.fault(endpoint="token", status=502)
        status, payload, _ = await self.post_token(self.token_form())
        self.assertEqual(status, 502)
        self.assertIn("error", payload)

    async def test_text_body(self):
        await self.fault(endpoint="update", status=502, body="<html>Bad gateway</html>")
        status, payload, headers = await self.update()
        self.assertEqual(status, 502)
        self.assertEqual(payload, "<html>Bad gateway</html>")
        self.assertEqual(headers["Content-Type"], "text/plain")

    async def test_any_endpoint(self):
        token, verifier = await self.get_token()
        await self.fault(endpoint="any", status=504, count=2)
        status, _, _ = await self.post_token(self.token_form())
        self.assertEqual(status, 504)
        status, _, _ = await self.post_update(token, verifier)
        self.assertEqual(status, 504)
        status, _, _ = await self.post_update(token, verifier)
        self.assertEqual(status, 200)

    async def test_rules_queue_in_order(self):
        await self.fault(endpoint="update", status=500)
        await self.fault(endpoint="update", status=502)
        await self.fault(endpoint="token", status=429, retryAfter=1)
        status, _, headers = await self.post_token(self.token_form())
        self.assertEqual((status, headers["Retry-After"]), (429, "1"))
        results = [(await self.update())[0] for _ in range(3)]
        self.assertEqual(results, [500, 502, 200])

    async def test_until_cleared(self):
        await self.fault(endpoint="update", status=503, count=-1)
        for _ in range(4):
            self.assertEqual((await self.update())[0], 503)
        status, payload = await self.admin("GET", "/faults")
        self.assertEqual(len(payload["faults"]), 1)
        status, payload = await self.admin("DELETE", "/faults")
        self.assertEqual(payload, {"cleared": 1})
        self.assertEqual((await self.update())[0], 200)

    async def test_for_seconds(self):
        await self.fault(endpoint="update", status=503, forSeconds=0.4)
        self.assertEqual((await self.update())[0], 503)
        self.assertEqual((await self.update())[0], 503)
        await asyncio.sleep(0.45)
        self.assertEqual((await self.update())[0], 200)
        _, payload = await self.admin("GET", "/faults")
        self.assertEqual(payload["faults"], [])

    async def test_drop(self):
        await self.fault(endpoint="update", drop=True)
        token, verifier = await self.get_token()
        with self.assertRaises(aiohttp.ClientError):
            await self.post_update(token, verifier)
        _, alice = await self.admin("GET", "/users/" + ALICE)
        self.assertEqual(alice["version"], 0)
        _, stats = await self.admin("GET", "/stats")
        self.assertEqual(stats["update"], {"dropped": 1})
        _, log = await self.admin("GET", "/requests?endpoint=update")
        self.assertEqual(log["requests"][0]["status"], "dropped")
        # The token was not consumed by the dropped request.
        status, _, _ = await self.post_update(token, verifier)
        self.assertEqual(status, 200)

    async def test_drop_with_reset(self):
        await self.fault(endpoint="token", drop="reset")
        with self.assertRaises(aiohttp.ClientError):
            await self.post_token(self.token_form())
        await self.get_token()

    async def test_apply_first_then_drop(self):
        await self.fault(endpoint="update", drop=True, applyFirst=True)
        with self.assertRaises(aiohttp.ClientError):
            await self.update()
        _, alice = await self.admin("GET", "/users/" + ALICE)
        self.assertEqual(alice["version"], 1)
        self.assertEqual(alice["ids"]["email"]["value"], "alice.new@example.com")

    async def test_delay_only_then_normal_answer(self):
        await self.fault(endpoint="update", delayMs=300)
        token, verifier = await self.get_token()
        started = time.monotonic()
        status, _, _ = await self.post_update(token, verifier)
        self.assertGreaterEqual(time.monotonic() - started, 0.28)
        self.assertEqual(status, 200)

    async def test_delay_with_status(self):
        await self.fault(endpoint="token", delayMs=200, status=503)
        started = time.monotonic()
        status, _, _ = await self.post_token(self.token_form())
        self.assertGreaterEqual(time.monotonic() - started, 0.18)
        self.assertEqual(status, 503)

    async def test_client_timeout_during_delay(self):
        await self.fault(endpoint="update", delayMs=400, status=200)
        token, verifier = await self.get_token()
        with self.assertRaises(asyncio.TimeoutError):
            await self.call("POST", emulator.UPDATE_PATH + "?code_verifier=" + verifier,
                            data="{}", timeout=aiohttp.ClientTimeout(total=0.1),
                            headers={"Authorization": "Bearer " + token})
        await asyncio.sleep(0.5)
        self.assertEqual((await self.update())[0], 200)

    async def test_several_rules_in_one_call(self):
        status, payload = await self.admin("POST", "/faults", [
            {"endpoint": "update", "status": 500}, {"endpoint": "update", "status": 501}])
        self.assertEqual(payload["queued"], 2)
        self.assertEqual([(await self.update())[0] for _ in range(3)], [500, 501, 200])

    async def test_invalid_rules(self):
        for spec in ({"endpoint": "graph", "status": 500}, {"status": "500"},
                     {"endpoint": "update"}, {"status": 500, "count": 0},
                     {"status": 500, "forSeconds": -1}, {"status": 500, "drop": "yes"},
                     {"status": 500, "bogus": 1}, [1]):
            status, payload = await self.admin("POST", "/faults", spec)
            self.assertEqual(status, 400, spec)
            self.assertIn("error", payload)
        _, payload = await self.admin("GET", "/faults")
        self.assertEqual(payload["faults"], [])


# ---------------------------------------------------------------------- the latency

class LatencyEquivalenceTest(EmulatorTestCase):
    """With a latency, the checks that read only the request run on its arrival and the
    others when the answer is due. Every answer must be what it is without a latency."""

    LATENCY_MS = 15

    async def scenarios(self):
        """Good and bad requests, one for each check that can fail, in the order of the
        spec; returns {name: [normalized answers]}."""
        ghost = user_object("no-such-user", ids={"email": "bad"})
        deep = b"[" * 100000

        async def expired():
            await self.admin("POST", "/config", {"tokenTtlSeconds": 0.1})
            token, verifier = await self.get_token()
            await self.admin("POST", "/config", {"tokenTtlSeconds": 60})
            await asyncio.sleep(0.15)
            return [await self.post_update(token, verifier, raw="x", headers={"From": None})]

        async def mismatch():
            token, verifier = await self.get_token()
            return [await self.post_update(token, new_verifier(), raw="x"),
                    await self.post_update(token, verifier[:-1], raw="x"),
                    await self.post_update(token, verifier)]

        async def plain():
            verifier = new_verifier()
            token, _ = await self.get_token(verifier, code_challenge=verifier,
                                            code_challenge_method="plain")
            return [await self.post_update(token, challenge_of(verifier)),
                    await self.post_update(token, verifier)]

        async def used_twice():
            token, verifier = await self.get_token()
            return [await self.post_update(token, verifier, headers={"From": None}),
                    await self.post_update(token, verifier),
                    await self.post_update(token, verifier, raw="x", headers={"From": None})]

        async def reusable():
            await self.admin("POST", "/config", {"oneUseTokens": False})
            token, verifier = await self.get_token()
            answers = [await self.post_update(token, verifier) for _ in range(2)]
            await self.admin("POST", "/config", {"oneUseTokens": True})
            return answers + [await self.post_update(token, verifier)]

        async def challenge_reused():
            form = self.token_form()
            return [await self.post_token(form), await self.post_token(form)]

        async def deep_json(token_known):
            token, verifier = await self.get_token()
            if not token_known:  # never parsed
                return [await self.post_update("nope", verifier, raw=deep)]
            return [await self.post_update(token, verifier, raw=deep)]

        def one(call):
            async def run():
                return [await call()]
            return run

        scenarios = {
            # the token endpoint
            "token ok": one(lambda: self.post_token(self.token_form())),
            "token not a form": one(lambda: self.call("POST", emulator.TOKEN_PATH,
                                                      json=self.token_form())),
            "token bad utf-8": one(lambda: self.call(
                "POST", emulator.TOKEN_PATH, data=b"grant_type=\xff",
                headers={"Content-Type": "application/x-www-form-urlencoded"})),
            "token repeated": one(lambda: self.call(
                "POST", emulator.TOKEN_PATH, data="scope=update&scope=update",
                headers={"Content-Type": "application/x-www-form-urlencoded"})),
            "grant type": one(lambda: self.post_token(self.token_form(
                grant_type="password", client_secret="wrong", code_challenge=None))),
            "client": one(lambda: self.post_token(self.token_form(
                client_secret="wrong", code_challenge=None))),
            "client unknown": one(lambda: self.post_token(self.token_form(
                client_id="nobody", scope="read"))),
            "challenge missing": one(lambda: self.post_token(self.token_form(
                code_challenge=None, code_challenge_method="nope"))),
            "method": one(lambda: self.post_token(self.token_form(
                code_challenge_method="S512", scope=None))),
            "challenge S256 form": one(lambda: self.post_token(self.token_form(
                code_challenge="short", scope=None))),
            "challenge plain form": one(lambda: self.post_token(self.token_form(
                code_challenge="sh*rt", code_challenge_method="plain", scope=None))),
            "scope": one(lambda: self.post_token(self.token_form(scope="read write"))),
            "challenge reused": challenge_reused,
            # the update endpoint, its checks in order
            "update ok": one(lambda: self.update()),
            "no Authorization": one(lambda: self.post_update(
                "x", None, raw="x", headers={"Authorization": None, "From": None})),
            "Basic": one(lambda: self.post_update(
                "x", None, raw="x", headers={"Authorization": "Basic Zm9vOmJhcg=="})),
            "unknown token": one(lambda: self.post_update(
                "nope", "short", raw="x", headers={"From": None, "Content-Type": "text/plain"})),
            "expired": expired,
            "verifier missing": one(lambda: self.update(raw="x", headers={"From": None})),
            "verifier mismatch": mismatch,
            "plain": plain,
            "used twice": used_twice,
            "reusable by config": reusable,
            "From missing": one(lambda: self.update(raw="x", headers={
                "From": None, "Content-Type": "text/plain"})),
            "From unknown": one(lambda: self.update(raw="x", headers={
                "From": "999-other", "Content-Type": "text/plain"})),
            "content type": one(lambda: self.update(raw="x", headers={"Content-Type": None})),
            "not JSON": one(lambda: self.update(raw=b"{not json")),
            "not UTF-8": one(lambda: self.update(raw=b'{"a": "\xff"}')),
            "not an object": one(lambda: self.update(raw=b"[1, 2]")),
            "actor": one(lambda: self.update(activity(ghost, actor="druid-sync-demo"))),
            "actor.objectType": one(lambda: self.update(activity(
                ghost, actor={"id": "someone", "objectType": "user"}))),
            "actor.id": one(lambda: self.update(activity(
                ghost, actor={"id": "someone", "objectType": "application"}, verb=None))),
            "verb": one(lambda: self.update(activity(ghost, verb=7, object=None))),
            "object": one(lambda: self.update(activity(ghost, object=None))),
            "object.objectType": one(lambda: self.update(activity(
                user_object("no-such-user", objectType="group")))),
            "object.objectId": one(lambda: self.update(activity(user_object(objectId=42)))),
            "source": one(lambda: self.update(activity(ghost, source=None))),
            "source.objectType": one(lambda: self.update(activity(
                ghost, source={"id": "pc", "objectType": "app"}))),
            "source.id": one(lambda: self.update(activity(
                ghost, source={"id": "watch", "objectType": "device"}))),
            "user not found": one(lambda: self.update(activity(ghost))),
            "fields": one(lambda: self.update(activity(user_object(
                ids={"email": {"objectType": "user_id", "value": "bob@example.com"},
                     "phone_number": {"objectType": "user_id", "value": "600111"}},
                datas={"birthday": {"objectType": "user_data", "value": "31/02/2000"}},
                color="red")))),
            "duplicate": one(lambda: self.update(activity(user_object(
                ids={"email": {"objectType": "user_id", "value": "Bob@Example.com"},
                     "screen_name": {"objectType": "user_id", "value": "bobby"}})))),
            "deep JSON, good token": lambda: deep_json(True),
            "deep JSON, unknown token": lambda: deep_json(False),
        }
        results = {}
        for name, scenario in scenarios.items():
            answers = await scenario()
            results[name] = [self.normalized(answer) for answer in answers]
        return results

    @staticmethod
    def normalized(answer):
        status, payload, headers = answer
        if isinstance(payload, dict):
            payload = json.loads(json.dumps(payload))
            if "access_token" in payload:
                payload["access_token"] = "<token>"
                payload["expires_at"] = "<ms>"
            if isinstance(payload.get("result"), dict):
                payload["result"]["elapsed"] = "<ms>"
        return status, headers.get("Content-Type"), payload

    async def state(self):
        """What the scenarios left behind: users, stats, and the request log."""
        _, users = await self.admin("GET", "/users")
        for user in users["users"]:
            user.pop("updatedAt")
        _, stats = await self.admin("GET", "/stats")
        stats.pop("liveTokens")
        # Through the admin API, which also renders the deeply nested JSON body (as text).
        status, rendered = await self.admin("GET", "/requests")
        self.assertEqual(status, 200)
        log = [(entry["endpoint"], entry["status"], entry.get("fault", False))
               for entry in rendered["requests"]]
        return users, stats, log

    async def fresh(self, latency_ms):
        self.assertEqual((await self.admin("POST", "/reset"))[0], 200)
        await self.admin("DELETE", "/users")
        self.assertEqual((await self.admin("POST", "/users", seed_users()))[0], 200)
        await self.admin("POST", "/config", {"latencyMs": latency_ms})

    async def test_the_same_answers_with_and_without_latency(self):
        await self.fresh(0)
        started = time.monotonic()
        without = await self.scenarios()
        state_without = await self.state()
        fast = time.monotonic() - started
        await self.fresh(self.LATENCY_MS)
        started = time.monotonic()
        with_latency = await self.scenarios()
        state_with = await self.state()
        slow = time.monotonic() - started
        calls = sum(len(answers) for answers in without.values())
        self.assertGreater(slow - fast, 0.8 * calls * self.LATENCY_MS / 1000.0,
                           "the latency was applied")
        self.assertEqual(without.keys(), with_latency.keys())
        for name in without:
            with self.subTest(name):
                self.assertEqual(with_latency[name], without[name])
        self.assertEqual(state_with, state_without)
        # The scenarios do reach every check: one distinct answer per failing check.
        fields = {error["message"] for answers in without.values()
                  for _, _, payload in answers if isinstance(payload, dict)
                  for error in payload.get("result", {}).get("errors", ())}
        self.assertTrue({"Authorization", "access_token", "code_verifier", "From",
                         "Content-Type", "body", "actor", "actor.objectType", "actor.id",
                         "verb", "object", "object.objectType", "object.objectId", "source",
                         "source.objectType", "source.id", "objectId", "phone_number",
                         "birthday", "color", "email", "screen_name"} <= fields, fields)
        self.assertEqual(without["deep JSON, good token"][0][0], 400)
        self.assertEqual(without["deep JSON, unknown token"][0][0], 401)


class StateChangedDuringLatencyTest(EmulatorTestCase):
    """A delayed request's stateless checks ran on arrival; what reads state runs when the
    answer is due and must see every change made in between."""

    LATENCY = 0.3

    async def asyncSetUp(self):
        await super().asyncSetUp()
        await self.admin("POST", "/config", {"latencyMs": self.LATENCY * 1000})

    async def during_latency(self, call, change):
        """Start `call`, run `change` while it waits out its latency, return its answer."""
        task = asyncio.create_task(call)
        await asyncio.sleep(self.LATENCY / 3)
        self.assertFalse(task.done())
        await change()
        self.assertFalse(task.done(), "the change came after the answer")
        return await task

    async def test_the_stateless_work_is_done_while_the_request_waits(self):
        calls = []
        validate = emulator.validate_user_fields

        def spy(obj):
            calls.append(time.monotonic())
            return validate(obj)
        emulator.validate_user_fields = spy
        self.addCleanup(setattr, emulator, "validate_user_fields", validate)
        token, verifier = await self.get_token()
        started = time.monotonic()
        status, payload, _ = await self.post_update(token, verifier)
        self.assertEqual(status, 200, payload)
        self.assertGreaterEqual(time.monotonic() - started, self.LATENCY - 0.01)
        self.assertEqual(len(calls), 1)
        self.assertLess(calls[0] - started, self.LATENCY / 2, "validated early")

    async def test_token_used_by_another_request(self):
        token, verifier = await self.get_token()
        first = asyncio.create_task(self.post_update(token, verifier))
        await asyncio.sleep(0.05)
        second = await self.post_update(token, verifier)
        self.assertEqual((await first)[0], 200)
        self.assert_error(second, 401, "access_token", "already used")

    async def test_one_use_tokens_turned_on(self):
        await self.admin("POST", "/config", {"oneUseTokens": False})
        token, verifier = await self.get_token()
        self.assertEqual((await self.post_update(token, verifier))[0], 200)
        answer = await self.during_latency(
            self.post_update(token, verifier),
            lambda: self.admin("POST", "/config", {"oneUseTokens": True}))
        self.assert_error(answer, 401, "access_token", "already used")

    async def test_token_expires(self):
        await self.admin("POST", "/config", {"tokenTtlSeconds": 0.4})
        token, verifier = await self.get_token()
        await asyncio.sleep(0.2)  # arrives 0.2 s before the token expires, answered 0.1 s after
        self.assert_error(await self.post_update(token, verifier), 401, "access_token",
                          "expired")

    async def test_user_deleted(self):
        token, verifier = await self.get_token()
        answer = await self.during_latency(self.post_update(token, verifier),
                                           lambda: self.admin("DELETE", "/users/" + ALICE))
        self.assert_error(answer, 404, "objectId")

    async def test_id_taken_by_another_user(self):
        token, verifier = await self.get_token()
        bob = {"objectId": BOB, "ids": {"email": "alice.new@example.com"}}
        answer = await self.during_latency(self.post_update(token, verifier),
                                           lambda: self.admin("POST", "/users", [bob]))
        self.assert_error(answer, 400, "email", "already exists")
        _, alice = await self.admin("GET", "/users/" + ALICE)
        self.assertEqual(alice["version"], 0)

    async def test_fault_added(self):
        token, verifier = await self.get_token()
        answer = await self.during_latency(
            self.post_update(token, verifier),
            lambda: self.admin("POST", "/faults", {"endpoint": "update", "status": 503}))
        self.assertEqual(answer[0], 503)
        _, alice = await self.admin("GET", "/users/" + ALICE)
        self.assertEqual(alice["version"], 0)

    async def test_entry_point_withdrawn(self):
        token, verifier = await self.get_token()

        async def withdraw():
            self.emu.settings.entry_points.discard(ENTRY_POINT)
        answer = await self.during_latency(self.post_update(token, verifier), withdraw)
        self.assert_error(answer, 400, "From", "unknown entry point")

    async def test_client_withdrawn(self):
        async def withdraw():
            del self.emu.settings.clients[CLIENT_ID]
        answer = await self.during_latency(self.post_token(self.token_form()), withdraw)
        self.assert_token_error(answer, "InvalidGrantException", "invalid client credentials")

    async def test_challenge_used_by_another_request(self):
        form = self.token_form()
        first = asyncio.create_task(self.post_token(form))
        await asyncio.sleep(0.05)
        second = await self.post_token(form)
        self.assertEqual((await first)[0], 200)
        self.assert_token_error(second, "InvalidGrantException", "already used")

    async def test_token_ttl_changed(self):
        status, payload, _ = await self.during_latency(
            self.post_token(self.token_form()),
            lambda: self.admin("POST", "/config", {"tokenTtlSeconds": 5}))
        self.assertEqual((status, payload["expires_in"]), (200, 5))


class CheckSequenceTest(unittest.TestCase):
    """prepare() and outcome() of the check sequences, without a server."""

    def setUp(self):
        self.emu = emulator.Emulator()
        self.emu.put_users([emulator.user_from_seed(u, i) for i, u in enumerate(seed_users())])

    @staticmethod
    def request(target, headers, body):
        lower = emulator.Headers((name.lower(), value) for name, value in headers.items())
        return emulator.Request(None, "POST", target, "1.1", True, (), lower, body)

    def token(self):
        verifier = new_verifier()
        form = urllib.parse.urlencode({
            "grant_type": GRANT, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
            "code_challenge": challenge_of(verifier), "code_challenge_method": "S256",
            "scope": "update"}).encode()
        checks = emulator.TokenChecks(self.emu, self.request(
            emulator.TOKEN_PATH, {"Content-Type": "application/x-www-form-urlencoded"}, form))
        checks.prepare()
        status, payload = checks.outcome()
        self.assertEqual(status, 200, payload)
        return payload["access_token"], verifier

    def update(self, token, verifier, body=None):
        body = json.dumps(activity()).encode() if body is None else body
        return emulator.UpdateChecks(self.emu, self.request(
            emulator.UPDATE_PATH + "?code_verifier=" + verifier,
            {"Authorization": "Bearer " + token, "From": ENTRY_POINT,
             "Content-Type": "application/json"}, body))

    def test_prepared_work_and_state_read_at_answer_time(self):
        token, verifier = self.token()
        checks = self.update(token, verifier)
        checks.prepare()
        self.assertEqual(checks.failed_at, len(checks.STEPS), "every stateless check passed")
        self.assertEqual(checks.verifier_s256, challenge_of(verifier))
        self.assertEqual(checks.ids["email"]["value"], "alice.new@example.com")
        self.assertFalse(self.emu.tokens[token].used, "nothing read or changed state")
        del self.emu.users[ALICE]
        status, _, errors = checks.outcome()
        self.assertEqual((status, errors[0]["message"]), (404, "objectId"))
        self.assertTrue(self.emu.tokens[token].used)

    def test_answered_before_prepared(self):
        token, verifier = self.token()
        checks = self.update(token, verifier)
        self.assertEqual(checks.outcome()[0], 200)
        checks.prepare()  # queued, but the answer came due first: nothing left to do
        self.assertIsNone(checks.failed_at)

    def test_a_prepared_exception_is_raised_at_its_place(self):
        @emulator.stateless
        def explode(checks):
            raise ZeroDivisionError("a bug in a check")

        original = emulator.UpdateChecks.json_content_type

        class Exploding(emulator.UpdateChecks):
            CHECKS = tuple(explode if check is original else check
                           for check in emulator.UpdateChecks.CHECKS)

        def exploding(token, verifier):
            plain = self.update(token, verifier)
            return Exploding(plain.emu, plain.request)

        token, verifier = self.token()
        unknown = exploding("nope", verifier)
        unknown.prepare()
        self.assertIsInstance(unknown.failure, ZeroDivisionError)
        self.assertEqual(unknown.outcome()[0], 401, "the token check comes first")
        known = exploding(token, verifier)
        known.prepare()
        with self.assertRaises(ZeroDivisionError):
            known.outcome()
        self.assertTrue(self.emu.tokens[token].used, "the checks before it ran")

    def test_a_body_nested_too_deeply_is_a_bad_body(self):
        deep = b"[" * 100000
        for prepared in (False, True):
            with self.subTest(prepared=prepared):
                token, verifier = self.token()
                checks = self.update(token, verifier, deep)
                if prepared:
                    checks.prepare()
                status, _, errors = checks.outcome()
                self.assertEqual((status, errors),
                                 (400, [{"message": "body", "details": "nested too deeply to parse"}]))


# ---------------------------------------------------------------------- admin API

class AdminTest(EmulatorTestCase):

    async def test_health(self):
        self.assertEqual(await self.admin("GET", "/health"), (200, {"ok": True}))

    async def test_users_crud(self):
        status, payload = await self.admin("GET", "/users/" + BOB)
        self.assertEqual(status, 200)
        self.assertEqual(payload["ids"]["email"], {"objectType": "user_id",
                                                   "value": "bob@example.com"})
        self.assertEqual(payload["datas"]["name"], {"objectType": "user_data", "value": "Bob"})
        self.assertIsNone(payload["assertions"])
        _, alice = await self.admin("GET", "/users/" + ALICE)
        self.assertEqual(alice["assertions"]["items"][0]["type"], "terms")
        self.assertEqual((await self.admin("GET", "/users/nobody"))[0], 404)

        status, payload = await self.admin("POST", "/users", {"users": [
            {"objectId": "carol", "ids": {"email": {"value": "carol@example.com",
                                                    "confirmed": False}}}]})
        self.assertEqual((status, payload), (200, {"count": 1}))
        status, payload = await self.admin("POST", "/users", [{"objectId": "dave"}])
        self.assertEqual((status, payload), (200, {"count": 1}))
        _, listing = await self.admin("GET", "/users")
        self.assertEqual(sorted(u["objectId"] for u in listing["users"]),
                         [ALICE, BOB, "carol", "dave"])
        _, listing = await self.admin("GET", "/users?limit=1")
        self.assertEqual(len(listing["users"]), 1)

        self.assertEqual(await self.admin("DELETE", "/users/dave"), (200, {"count": 1}))
        self.assertEqual(await self.admin("DELETE", "/users"), (200, {"count": 3}))
        self.assertEqual((await self.admin("GET", "/users"))[1]["users"], [])
        # The index went with them: the email is free again.
        status, _ = await self.admin("POST", "/users", [{"objectId": "x",
                                                         "ids": {"email": "bob@example.com"}}])
        self.assertEqual(status, 200)

    async def test_post_users_replaces_and_keeps_ids_unique(self):
        status, payload = await self.admin("POST", "/users", [
            {"objectId": "eve", "ids": {"email": "bob@example.com"}}])
        self.assertEqual(status, 400)
        self.assertIn("already belongs", payload["error"])
        status, _ = await self.admin("POST", "/users", [
            {"objectId": "e1", "ids": {"email": "same@example.com"}},
            {"objectId": "e2", "ids": {"email": "SAME@example.com"}}])
        self.assertEqual(status, 400)
        self.assertEqual((await self.admin("GET", "/users/e1"))[0], 404, "batches are atomic")
        # Replacing Bob frees his old email for someone else.
        status, _ = await self.admin("POST", "/users", [
            {"objectId": BOB, "ids": {"email": "bob2@example.com"}},
            {"objectId": "eve", "ids": {"email": "bob@example.com"}}])
        self.assertEqual(status, 200)

    async def test_bad_seed_payloads(self):
        for body in ({"people": []}, [{"ids": {}}], [{"objectId": ""}], [{"objectId": "a",
                                                                         "idz": {}}],
                     [{"objectId": "a", "ids": {"email": 5}}],
                     [{"objectId": "a", "assertions": {"terms": "maybe"}}]):
            status, payload = await self.admin("POST", "/users", body)
            self.assertEqual(status, 400, body)
        status, _, _ = await self.call("POST", "/admin/users", data=b"{nope",
                                       headers={"Content-Type": "application/json"})
        self.assertEqual(status, 400)

    async def test_generate(self):
        status, payload = await self.admin("POST", "/users/generate",
                                           {"prefix": "bench-", "count": 1000})
        self.assertEqual((status, payload), (200, {"count": 1000}))
        _, user = await self.admin("GET", "/users/bench-999")
        self.assertEqual(user["ids"], {})
        self.assertEqual((await self.admin("GET", "/users/bench-1000"))[0], 404)
        obj = user_object("bench-7", ids={"email": {"objectType": "user_id",
                                                    "value": "b7@example.com"}})
        status, payload, _ = await self.update(activity(obj))
        self.assertEqual(status, 200, payload)
        self.assertEqual((await self.admin("POST", "/users/generate", {"count": -1}))[0], 400)

    async def test_config(self):
        status, config = await self.admin("GET", "/config")
        self.assertEqual(status, 200)
        self.assertEqual({k: config[k] for k in ("latencyMs", "latencyJitterMs",
                                                 "tokenTtlSeconds", "oneUseTokens")},
                         {"latencyMs": 0, "latencyJitterMs": 0, "tokenTtlSeconds": 60,
                          "oneUseTokens": True})
        self.assertEqual(config["clients"], [CLIENT_ID])
        self.assertEqual(config["entryPoints"], [ENTRY_POINT])
        status, config = await self.admin("POST", "/config", {"latencyMs": 120,
                                                              "latencyJitterMs": 10})
        self.assertEqual((config["latencyMs"], config["latencyJitterMs"]), (120, 10))
        for endpoint in ("token", "update"):
            started = time.monotonic()
            if endpoint == "token":
                await self.post_token(self.token_form())
            else:
                await self.post_update("x", None)
            self.assertGreaterEqual(time.monotonic() - started, 0.115, endpoint)
        for bad in ({"latencyMs": -1}, {"oneUseTokens": "no"}, {"tokenTtlSeconds": 0},
                    {"speed": 1}, [1]):
            self.assertEqual((await self.admin("POST", "/config", bad))[0], 400, bad)
        _, config = await self.admin("GET", "/config")
        self.assertEqual(config["latencyMs"], 120, "a refused change changes nothing")

    async def test_stats_and_reset(self):
        await self.update()
        await self.post_token(self.token_form(client_secret="wrong"))
        await self.post_update("unknown", None)
        _, stats = await self.admin("GET", "/stats")
        self.assertEqual(stats["token"], {"200": 1, "400": 1})
        self.assertEqual(stats["update"], {"200": 1, "401": 1})
        self.assertEqual(stats["applied"], 1)

        await self.admin("POST", "/faults", {"status": 500, "count": -1})
        await self.admin("POST", "/config", {"latencyMs": 5, "oneUseTokens": False})
        self.assertEqual(await self.admin("POST", "/reset"), (200, {"ok": True}))
        _, stats = await self.admin("GET", "/stats")
        self.assertEqual((stats["token"], stats["update"], stats["applied"]), ({}, {}, 0))
        self.assertEqual((await self.admin("GET", "/faults"))[1]["faults"], [])
        _, config = await self.admin("GET", "/config")
        self.assertEqual((config["latencyMs"], config["oneUseTokens"]), (0, True))
        self.assertEqual((await self.admin("GET", "/requests"))[1]["requests"], [])
        _, alice = await self.admin("GET", "/users/" + ALICE)
        self.assertEqual(alice["version"], 1, "users survive a reset")

    async def test_unknown_admin_path(self):
        status, _, _ = await self.call("GET", "/admin/nothing")
        self.assertEqual(status, 404)
        _, stats = await self.admin("GET", "/stats")
        self.assertEqual(stats["other"], {}, "admin calls are not counted")


class RequestLogTest(EmulatorTestCase):

    async def test_entries(self):
        verifier = new_verifier()
        token, _ = await self.get_token(verifier)
        await self.post_update(token, verifier, headers={"Accept-Language": "es-ES"})
        _, log = await self.admin("GET", "/requests")
        self.assertEqual(len(log["requests"]), 2)
        tok, upd = log["requests"]
        self.assertEqual(tok["endpoint"], "token")
        self.assertEqual(tok["method"], "POST")
        self.assertEqual(tok["path"], emulator.TOKEN_PATH)
        self.assertEqual(tok["status"], 200)
        self.assertEqual(tok["body"]["client_secret"], CLIENT_SECRET)
        self.assertEqual(tok["body"]["code_challenge"], challenge_of(verifier))
        self.assertEqual(tok["headers"]["Content-Type"], "application/x-www-form-urlencoded")
        self.assertEqual(upd["endpoint"], "update")
        self.assertEqual(upd["query"], {"code_verifier": verifier})
        self.assertEqual(upd["headers"]["Authorization"], "Bearer " + token)
        self.assertEqual(upd["headers"]["From"], ENTRY_POINT)
        self.assertEqual(upd["headers"]["Accept-Language"], "es-ES")
        self.assertEqual(upd["body"], activity())
        self.assertEqual(upd["seq"], tok["seq"] + 1)
        self.assertRegex(upd["at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertEqual(log["next"], upd["seq"] + 1)

    async def test_raw_bodies(self):
        await self.update(raw=b"plain words", headers={"Content-Type": "text/plain"})
        await self.update(raw=b"{broken", headers={})
        long_text = "line one\n\nline two ñ\r\n" * 200  # spans many stored pieces
        await self.update(raw=long_text.encode(), headers={"Content-Type": "text/plain"})
        big = activity(user_object(datas={"bio": {"objectType": "user_data",
                                                  "value": "x" * 5000}}))
        await self.update(big)
        _, log = await self.admin("GET", "/requests?endpoint=update")
        self.assertEqual([r["body"] for r in log["requests"]],
                         ["plain words", "{broken", long_text, big])
        self.assertEqual(log["requests"][2]["headers"]["Content-Type"], "text/plain")

    async def test_filter_limit_since(self):
        for _ in range(3):
            await self.update()
        _, log = await self.admin("GET", "/requests?endpoint=update")
        seqs = [r["seq"] for r in log["requests"]]
        self.assertEqual(len(seqs), 3)
        _, last = await self.admin("GET", "/requests?endpoint=update&limit=2")
        self.assertEqual([r["seq"] for r in last["requests"]], seqs[1:])
        _, page = await self.admin("GET", "/requests?since=%d&limit=2" % seqs[0])
        self.assertEqual([r["seq"] for r in page["requests"]], [seqs[0], seqs[0] + 1])
        _, rest = await self.admin("GET", "/requests?since=%d" % page["next"])
        self.assertEqual(rest["requests"][-1]["seq"], seqs[-1])
        _, nothing = await self.admin("GET", "/requests?since=%d" % rest["next"])
        self.assertEqual((nothing["requests"], nothing["next"]), ([], rest["next"]))
        _, empty = await self.admin("GET", "/requests?limit=0")
        self.assertEqual((empty["requests"], empty["next"]), ([], seqs[-1] + 1))
        self.assertEqual((await self.admin("GET", "/requests?limit=x"))[0], 400)
        self.assertEqual((await self.admin("GET", "/requests?endpoint=admin"))[0], 400)

    async def test_clear(self):
        await self.update()
        self.assertEqual(await self.admin("DELETE", "/requests"), (200, {"cleared": 2}))
        self.assertEqual((await self.admin("GET", "/requests"))[1]["requests"], [])
        await self.update()
        _, log = await self.admin("GET", "/requests")
        self.assertEqual(log["requests"][0]["seq"], 3, "sequence numbers keep growing")


class RingBufferTest(EmulatorTestCase):
    settings_kwargs = {"log_size": 5}

    async def test_keeps_the_last_entries(self):
        for _ in range(4):
            await self.update()
        _, log = await self.admin("GET", "/requests")
        self.assertEqual([r["seq"] for r in log["requests"]], [4, 5, 6, 7, 8])
        _, stats = await self.admin("GET", "/stats")
        self.assertEqual(stats["update"], {"200": 4}, "stats are not limited by the log")


class NoLogTest(EmulatorTestCase):
    settings_kwargs = {"log_size": 0, "one_use_tokens": False, "token_ttl": 2,
                       "clients": {"app": "pw"}, "entry_points": ["ep-1"]}

    async def test_settings(self):
        status, payload, _ = await self.post_token(self.token_form())
        self.assertEqual(status, 400, "the default client is replaced")
        verifier = new_verifier()
        status, payload, _ = await self.post_token(self.token_form(
            verifier, client_id="app", client_secret="pw"))
        self.assertEqual((status, payload["expires_in"]), (200, 2))
        token = payload["access_token"]
        body = activity(actor={"id": "app", "objectType": "application"})
        for _ in range(2):  # reusable tokens
            status, payload, _ = await self.post_update(token, verifier, body,
                                                        headers={"From": "ep-1"})
            self.assertEqual(status, 200, payload)
        self.assert_error(await self.post_update(token, verifier, body), 400, "From")
        self.assertEqual((await self.admin("GET", "/requests"))[1]["requests"], [])


class HousekeepingTest(unittest.TestCase):

    def test_expired_tokens_are_pruned(self):
        emu = emulator.Emulator()
        now = time.time()
        for i in range(10):
            emu.tokens["t%d" % i] = emulator.Token("c", "S256", "x", now - 1 if i < 6 else now + 60)
        emu.prune()
        self.assertEqual(sorted(emu.tokens), ["t6", "t7", "t8", "t9"])

    def test_long_lived_front_token_does_not_block_pruning_forever(self):
        emu = emulator.Emulator()
        now = time.time()
        emu.tokens["long"] = emulator.Token("c", "S256", "x", now + 3600)
        for i in range(2000):
            emu.tokens["t%d" % i] = emulator.Token("c", "S256", "x", now - 1)
        emu.prune()
        self.assertEqual(len(emu.tokens), 2001, "the cheap pass stops at the first live token")
        emu.prune(full_sweep_every=0)
        self.assertEqual(list(emu.tokens), ["long"])

    def test_challenge_memory_is_bounded(self):
        # One challenge a minute, and a generation a little shorter than that, so each
        # challenge starts a generation: with both at 60 s, whether (base + 540) − (base + 480)
        # reaches 60 depends on the rounding of base's last bits, and the test failed now and then.
        memory = emulator.ChallengeMemory(retention=600, generation=59)
        base = time.monotonic()
        for minute in range(20):
            memory.add("c%d" % minute, now=base + minute * 60)
        self.assertTrue(all(memory.seen("c%d" % m) for m in range(20)))
        self.assertEqual(len(memory), 20)
        memory.prune(now=base + 19 * 60 + 30)
        # Generations that ended more than 600 s ago are gone; the rest are kept.
        self.assertFalse(memory.seen("c0"))
        self.assertFalse(memory.seen("c8"))
        self.assertTrue(memory.seen("c9"))
        self.assertTrue(memory.seen("c19"))
        self.assertLessEqual(memory.generations(), 12)
        self.assertFalse(memory.seen("never"))

    def test_challenge_generations_freeze_into_arrays(self):
        memory = emulator.ChallengeMemory(retention=600, generation=60)
        base = time.monotonic()
        names = ["k%d" % i for i in range(500)]
        for name in names:
            memory.add(name, now=base)
        memory.add("later", now=base + 61)
        self.assertEqual(memory.generations(), 2)
        self.assertTrue(all(memory.seen(name) for name in names))
        self.assertTrue(memory.seen("later"))
        self.assertFalse(memory.seen("k500"))
        self.assertEqual(len(memory), 501)
        memory.prune(now=base + 200)  # freezes the idle current generation too
        self.assertEqual(memory.generations(), 3)
        memory.prune(now=base + 1000)
        self.assertEqual(len(memory), 0)

    def test_seed_file_formats(self):
        emu = emulator.Emulator()
        self.assertEqual(emu.load_seed_file(SAMPLE), 5)
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
            json.dump([{"objectId": "p1", "ids": {"email": "p1@example.com"}}], handle)
        try:
            emu2 = emulator.Emulator()
            self.assertEqual(emu2.load_seed_file(handle.name), 1)
            self.assertEqual(emu2.users["p1"].view()["ids"]["email"]["objectType"], "user_id")
        finally:
            os.unlink(handle.name)


# ---------------------------------------------------------------------- the real program

class Process:
    """druid_emulator.py run as a subprocess on a free port."""

    def __init__(self, *args):
        self.proc = subprocess.Popen([sys.executable, SCRIPT, "--port", "0", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        ready, _, _ = select.select([self.proc.stdout], [], [], 15)
        if not ready:
            self.stop()
            raise AssertionError("the emulator did not start")
        self.line = self.proc.stdout.readline().decode().strip()
        if not self.line.startswith("druid-emulator listening on "):
            err = self.proc.stderr.read().decode() if self.proc.poll() is not None else ""
            self.stop()
            raise AssertionError("unexpected first line %r %s" % (self.line, err))
        self.url = self.line.rsplit(" ", 1)[1]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()
        return code


def http(method, url, data=None, headers=None, context=None):
    request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as resp:
            return resp.status, json.loads(resp.read()), resp.headers
    except urllib.error.HTTPError as err:
        with err:
            return err.code, json.loads(err.read()), err.headers


def round_trip(base, context=None, client=(CLIENT_ID, CLIENT_SECRET), entry_point=ENTRY_POINT,
               object_id="f385e71af90e7e644b4bead7ffe7380974457de9"):
    verifier = new_verifier()
    form = urllib.parse.urlencode({
        "grant_type": GRANT, "client_id": client[0], "client_secret": client[1],
        "code_challenge": challenge_of(verifier), "code_challenge_method": "S256",
        "scope": "update"}).encode()
    status, token, headers = http("POST", base + emulator.TOKEN_PATH, form,
                                  {"Content-Type": "application/x-www-form-urlencoded"},
                                  context)
    assert status == 200, token
    body = activity(user_object(object_id), actor={"id": client[0],
                                                   "objectType": "application"})
    return http("POST", base + emulator.UPDATE_PATH + "?code_verifier=" + verifier,
                json.dumps(body).encode(),
                {"Authorization": "Bearer " + token["access_token"],
                 "Content-Type": "application/json", "From": entry_point}, context)


class CommandLineTest(unittest.TestCase):

    def test_start_seed_round_trip_and_sigterm(self):
        proc = Process("--users", SAMPLE, "--quiet")
        try:
            self.assertTrue(proc.url.startswith("http://127.0.0.1:"))
            status, payload, headers = round_trip(proc.url)
            self.assertEqual(status, 200, payload)
            status, user, _ = http("GET", proc.url + "/admin/users/"
                                   "f385e71af90e7e644b4bead7ffe7380974457de9")
            self.assertEqual(user["version"], 1)
        finally:
            code = proc.stop()
        self.assertEqual(code, 0)
        self.assertEqual(proc.proc.returncode, 0)

    def test_custom_client_entry_point_and_ttl(self):
        proc = Process("--client", "app-1:pw-1", "--client", "app-2:pw:2", "--entry-point",
                       "ep-9", "--token-ttl", "30", "--reusable-tokens", "--log-requests",
                       "10")
        try:
            http("POST", proc.url + "/admin/users", json.dumps([{"objectId": "u1"}]).encode(),
                 {"Content-Type": "application/json"})
            status, payload, _ = round_trip(proc.url, client=("app-2", "pw:2"),
                                            entry_point="ep-9", object_id="u1")
            self.assertEqual(status, 200, payload)
            _, config, _ = http("GET", proc.url + "/admin/config")
            self.assertEqual(config["clients"], ["app-1", "app-2"])
            self.assertEqual(config["entryPoints"], ["ep-9"])
            self.assertEqual(config["tokenTtlSeconds"], 30)
            self.assertFalse(config["oneUseTokens"])
            self.assertEqual(config["requestLogSize"], 10)
        finally:
            self.assertEqual(proc.stop(), 0)

    def test_bad_arguments(self):
        for args in (["--client", "nocolon"], ["--tls-cert", "x.pem"]):
            result = subprocess.run([sys.executable, SCRIPT, *args], capture_output=True,
                                    timeout=20)
            self.assertEqual(result.returncode, 2, args)


class HttpsTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.cert = os.path.join(cls.tmp.name, "cert.pem")
        cls.key = os.path.join(cls.tmp.name, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                        "-keyout", cls.key, "-out", cls.cert, "-days", "1",
                        "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       check=True, capture_output=True, timeout=60)
        cls.proc = Process("--users", SAMPLE, "--tls-cert", cls.cert, "--tls-key", cls.key)

    @classmethod
    def tearDownClass(cls):
        cls.code = cls.proc.stop()
        cls.tmp.cleanup()

    def test_round_trip_over_https(self):
        self.assertTrue(self.proc.url.startswith("https://127.0.0.1:"))
        context = ssl.create_default_context(cafile=self.cert)
        status, payload, headers = round_trip(self.proc.url, context)
        self.assertEqual(status, 200, payload)
        self.assertEqual(headers["Content-Type"], "application/json")

    def test_untrusted_certificate_refused_by_a_strict_client(self):
        with self.assertRaises(urllib.error.URLError):
            http("GET", self.proc.url + "/admin/health",
                 context=ssl.create_default_context())

    def test_plain_http_is_not_served(self):
        plain = self.proc.url.replace("https://", "http://")
        with self.assertRaises(Exception):
            http("GET", plain + "/admin/health")

    def test_tls_1_1_refused(self):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(self.cert)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            context.maximum_version = ssl.TLSVersion.TLSv1_1
        with self.assertRaises((urllib.error.URLError, ssl.SSLError, OSError)):
            http("GET", self.proc.url + "/admin/health", context=context)
        # TLS 1.2 exactly is fine.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(self.cert)
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        self.assertEqual(http("GET", self.proc.url + "/admin/health", context=context)[0], 200)


if __name__ == "__main__":
    unittest.main()
