#!/usr/bin/python3
"""DRUID emulator: the test double druid-sync talks to in tests, benchmarks and the demo.

It serves the two DRUID calls druid-sync makes:

  POST /oauth2/token                        challenge-code (PKCE) token
  POST /activityid/v1/user/update           administrative user update (full replacement)

and an admin API under /admin/ to seed users, inject faults, tune latency and token
rules, and read back every request it received. See README.md next to this file.

It needs the Python standard library and httptools (Debian's python3-httptools, the C
HTTP/1.1 parser); uvloop (python3-uvloop) is used when installed. The HTTP server is the
small one in this file: see "HTTP server" below for why it is not a framework.
"""

import argparse
import array
import asyncio
import base64
import bisect
import collections
import datetime
import email.utils
import gc
import hashlib
import heapq
import http
import json
import logging
import math
import random
import re
import secrets
import signal
import socket
import ssl
import struct
import sys
import time
import urllib.parse

import httptools


LOG = logging.getLogger("druid-emulator")

GRANT_TYPE = "urn:druid:oauth2:grant-type:code_challenge"
TOKEN_PATH = "/oauth2/token"
UPDATE_PATH = "/activityid/v1/user/update"
DEFAULT_CLIENT = ("druid-sync-demo", "demo-secret")
DEFAULT_ENTRY_POINT = "231705665113870-main"
SOURCE_IDS = frozenset(("unknown", "pc", "mobile", "tablet", "game_console", "itv"))
UNIQUE_ID_NAMES = ("email", "phone_number", "screen_name", "national_id")
OBJECT_KEYS = frozenset(("objectType", "objectId", "ids", "datas", "assertions", "password"))

EMAIL_RE = re.compile(
    r"^[_A-Za-z0-9-+]+(\.[_A-Za-z0-9-]+)*@[A-Za-z0-9-]+(\.[A-Za-z0-9]+)*(\.[A-Za-z]{2,})$")
PHONE_RE = re.compile(r"^\+[1-9][0-9]{1,14}$")
BIRTHDAY_RE = re.compile(r"([0-9]{2})/([0-9]{2})/([0-9]{4})")
S256_CHALLENGE_RE = re.compile(r"[A-Za-z0-9_-]{43}")
VERIFIER_RE = re.compile(r"[A-Za-z0-9._~-]{43,128}")  # also the form of a "plain" challenge

CHALLENGE_MEMORY_SECONDS = 600.0  # a challenge is refused again for at least this long
CHALLENGE_GENERATION_SECONDS = 60.0
MAINTENANCE_INTERVAL = 5.0
LOG_PIECE = 448  # bytes objects this small come from Python's small-object allocator

MAX_BODY = 4 * 1024 * 1024  # a larger request body is answered 413
KEEP_ALIVE_SECONDS = 75.0  # an idle keep-alive connection is closed after this long


# --------------------------------------------------------------------------- helpers

_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)  # made once, not per call


def dumps(obj):
    return _ENCODER.encode(obj).encode("utf-8")


def s256(verifier):
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def mime_type(request):
    """The media type of the request, lower-case, without parameters ("" when absent)."""
    raw = request.headers.get("Content-Type")
    if not raw:
        return ""
    return raw.partition(";")[0].strip().lower()


def parse_form(text):
    """Parse an application/x-www-form-urlencoded string; a repeated name is an error."""
    form = {}
    for part in text.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        if "%" in name or "+" in name:
            name = urllib.parse.unquote_plus(name)
        if "%" in value or "+" in value:
            value = urllib.parse.unquote_plus(value)
        if name in form:
            raise ValueError("parameter %s given twice" % name)
        form[name] = value
    return form


def query_value(request, wanted):
    """The first value of one query parameter (None when absent), without building a dict."""
    for part in request.query_string.split("&"):
        name, _, value = part.partition("=")
        if "%" in name or "+" in name:
            name = urllib.parse.unquote_plus(name)
        if name == wanted:
            if "%" in value or "+" in value:
                value = urllib.parse.unquote_plus(value)
            return value
    return None


def iso_utc(epoch_seconds):
    stamp = datetime.datetime.fromtimestamp(epoch_seconds, datetime.timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (stamp.microsecond // 1000)


# --------------------------------------------------------------------------- HTTP server
#
# The emulator used to sit on aiohttp's web server. In the latency benchmark (256
# connections, 50 ms added to every call, so requests arrive in waves of ~256) aiohttp
# spent about 150 us of CPU per request, four fifths of it in its own machinery (request
# and response objects, URL building, routing, a task per request), and each wave queued
# behind that cost. The emulator needs far less from a server, so it has its own small
# one: asyncio.Protocol fed by httptools (the C http-parser). It does keep-alive, HTTP/1.0,
# pipelining (answered one at a time and in order), Content-Length and chunked bodies,
# Expect: 100-continue, HEAD, a body size limit, and nothing else (no upgrades). A request
# answered at once costs no task and no coroutine; a delayed one is one loop.call_later.

JSON_HEADER = b"Content-Type: application/json\r\n"
NO_BODY_STATUSES = frozenset([204, 304] + list(range(100, 200)))
PIPELINE_LIMIT = 64  # parsed requests waiting on one connection before reading pauses
SWEEP_SECONDS = 15.0  # how often idle keep-alive connections are looked for
METHODS = {name.encode("ascii"): name
           for name in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")}


class Response:
    """An answer: status, body bytes and the extra header lines (bytes, CRLF-terminated).

    The server adds Content-Length, Connection and Date, and writes the head and the body
    with one transport.write, so they leave in one TCP segment when they fit.
    """

    __slots__ = ("status", "body", "headers")

    def __init__(self, status, body=b"", headers=JSON_HEADER):
        self.status = status
        self.body = body
        self.headers = headers


def header_lines(pairs):
    """Serialize (name, value) pairs. Values come partly from the admin API, so CR and LF
    are turned into spaces: they must not be able to end the head early."""
    out = []
    for name, value in pairs:
        value = str(value).replace("\r", " ").replace("\n", " ")
        out.append(("%s: %s\r\n" % (name, value)).encode("latin-1", "replace"))
    return b"".join(out)


def json_response(obj, status=200):
    return Response(status, dumps(obj))


def admin_error(status, message):
    return Response(status, dumps({"error": message}))


_STATUS_LINES = {}


def status_line(version, status):
    line = _STATUS_LINES.get((version, status))
    if line is None:
        try:
            reason = http.HTTPStatus(status).phrase
        except ValueError:
            reason = ""  # a made-up status from a fault rule; the reason phrase may be empty
        line = ("HTTP/%s %d %s\r\n" % (version, status, reason)).encode("ascii")
        _STATUS_LINES[(version, status)] = line
    return line


class Headers(dict):
    """Request headers keyed by lower-case name; look-ups ignore case. When a header is
    repeated the first value wins (what the handlers saw with aiohttp's .get)."""

    __slots__ = ()

    def get(self, name, default=None):
        return dict.get(self, name.lower(), default)

    def __getitem__(self, name):
        return dict.__getitem__(self, name.lower())

    def __contains__(self, name):
        return dict.__contains__(self, name.lower())


class Request:
    """What a handler gets: the parsed request plus a way to answer later or to drop it.

    raw_path is the request target as sent (path and query); encoded_path and
    query_string are its two halves, still percent-encoded; path is the decoded path.
    raw_headers keeps the header (name, value) byte pairs in the order received.
    """

    __slots__ = ("conn", "method", "raw_path", "encoded_path", "query_string", "version",
                 "keep_alive", "raw_headers", "headers", "body", "match_info", "started",
                 "handler", "_query")

    def __init__(self, conn, method, target, version, keep_alive, raw_headers, headers, body):
        self.conn = conn
        self.method = method
        self.raw_path = target
        self.encoded_path, _, self.query_string = target.partition("?")
        self.version = version
        self.keep_alive = keep_alive
        self.raw_headers = raw_headers
        self.headers = headers
        self.body = body
        self.match_info = {}
        self.started = 0.0     # perf_counter() when a handler wants its elapsed time
        self.handler = None    # set in advance only for the server's own error answers
        self._query = None

    @property
    def path(self):
        path = self.encoded_path
        return urllib.parse.unquote(path) if "%" in path else path

    @property
    def query(self):
        """Query parameters, first value of each (a plain dict)."""
        if self._query is None:
            query = {}
            for name, value in urllib.parse.parse_qsl(self.query_string,
                                                      keep_blank_values=True):
                query.setdefault(name, value)
            self._query = query
        return self._query

    @property
    def content_type(self):
        return mime_type(self)

    @property
    def transport(self):
        return self.conn.transport

    @property
    def remote(self):
        transport = self.conn.transport
        return transport.get_extra_info("peername") if transport is not None else None

    def later(self, delay, then):
        """Call then(request) after `delay` seconds; its Response is the answer. Returns
        None, which is what a handler returns when it answers later."""
        conn = self.conn
        conn.timer = conn.server.timers.call_later(delay, conn.resume, self, then)

    def meanwhile(self, work):
        """Call work() in the server's spare time (Timers.meanwhile), normally long before
        the answer of a request that waits is due."""
        self.conn.server.timers.meanwhile(work)

    def drop(self, reset=False):
        """Close the connection without answering; with reset, send a TCP RST."""
        self.conn.drop(reset)


def origin_form(url):
    """The path?query of an absolute-form request target (b"http://host/p?q"), or None."""
    try:
        parsed = httptools.parse_url(url)
    except httptools.HttpParserInvalidURLError:
        return None
    path = (parsed.path or b"/").decode("utf-8", "surrogateescape")
    if parsed.query:
        path += "?" + parsed.query.decode("utf-8", "surrogateescape")
    return path


class TooLarge(Exception):
    """Raised inside a parser callback to stop parsing an oversized request."""


class HttpConnection(asyncio.Protocol):
    """One client connection: requests are parsed as bytes arrive and answered in order.

    httptools calls the on_* methods from inside feed_data. Complete requests wait in
    `waiting`; `current` is the one being answered (its handler may have asked for a
    timer). The next one starts only when the current one has been written, as a
    pipelined request may depend on what an earlier one changed.
    """

    __slots__ = ("server", "loop", "transport", "parser", "waiting", "current", "timer",
                 "done_reading", "close_when_idle", "reading_paused", "writing_paused",
                 "continue_owed", "last_active", "_url", "_raw_headers", "_headers",
                 "_body", "_size", "_problem")

    def __init__(self, server):
        self.server = server
        self.loop = server.loop
        self.transport = None
        self.parser = httptools.HttpRequestParser(self)
        self.waiting = collections.deque()
        self.current = None
        self.timer = None
        self.done_reading = False     # the last request was read, or the stream is bad
        self.close_when_idle = False  # close once everything read so far is answered
        self.reading_paused = False
        self.writing_paused = False
        self.continue_owed = False    # a "100 Continue" to send once the earlier answers are out
        self.last_active = 0.0
        self._url = b""
        self._raw_headers = []
        self._headers = None
        self._body = []
        self._size = 0
        self._problem = None

    # ------------------------------------------------------------- transport events

    def connection_made(self, transport):
        self.transport = transport
        self.last_active = self.loop.time()
        self.server.connections.add(self)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:  # answers are single small writes; never hold them back (Nagle)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except (OSError, AttributeError):
                pass

    def connection_lost(self, exc):
        # What was not answered yet is abandoned, as aiohttp cancelled the handler of a
        # client that went away: a request still in its latency is then never applied.
        self.transport = None
        self.server.connections.discard(self)
        if self.timer is not None:
            Timers.cancel(self.timer)
            self.timer = None
        self.waiting.clear()
        self.current = None
        self.done_reading = True

    def eof_received(self):
        # The client has closed its side. Like aiohttp, take that as the client being gone
        # (a timed-out client closes its socket): the transport closes, and what it sent
        # but was not answered yet is dropped, not applied.
        return False

    def pause_writing(self):
        self.writing_paused = True
        self._update_reading()

    def resume_writing(self):
        self.writing_paused = False
        self._update_reading()

    def data_received(self, data):
        if self.done_reading:
            return
        self.last_active = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # An Upgrade or CONNECT request. It has been queued like any other and will be
            # answered as plain HTTP; nothing after it is read.
            self.done_reading = True
            self.close_when_idle = True
        except httptools.HttpParserCallbackError:
            problem, self._problem = self._problem, None
            if problem is None:  # a bug in a callback, not the client's fault
                LOG.exception("HTTP parser callback failed")
                problem = (500, "internal error while reading the request")
            self._fail(*problem)
        except httptools.HttpParserError as exc:
            self._fail(400, "malformed request: %s" % (exc.args[0] if exc.args else exc))
        if self.current is None:
            self._pump()
        elif len(self.waiting) >= PIPELINE_LIMIT:
            self._update_reading()

    def _fail(self, status, message):
        """Queue an error answer for an unreadable request; the connection closes after it."""
        if self.done_reading:
            return  # it came after the last request: never answered anyway
        request = Request(self, "", "", "1.1", False, (), Headers(), b"")
        request.handler = lambda _request: admin_error(status, message)
        self.waiting.append(request)
        self.done_reading = True

    # ------------------------------------------------------------- parser callbacks

    def on_message_begin(self):
        self._url = b""
        self._raw_headers = []
        self._body = []
        self._size = 0

    def on_url(self, piece):
        self._url += piece  # may come in pieces when the request line is split

    def on_header(self, name, value):
        self._raw_headers.append((name, value))

    def on_headers_complete(self):
        headers = Headers()
        setdefault = dict.setdefault
        for name, value in self._raw_headers:
            setdefault(headers, name.decode("latin-1").lower(),
                       value.decode("utf-8", "surrogateescape"))
        self._headers = headers
        length = dict.get(headers, "content-length")
        if length is not None and int(length) > self.server.max_body:
            self._too_large()
        expect = dict.get(headers, "expect")
        if expect is not None and not self.done_reading \
                and expect.lower() == "100-continue" \
                and self.parser.get_http_version() == "1.1":
            if self.current is None and not self.waiting:
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            else:  # the earlier answers go first
                self.continue_owed = True

    def on_body(self, piece):
        self._size += len(piece)
        if self._size > self.server.max_body:
            self._too_large()
        self._body.append(piece)

    def _too_large(self):
        self._problem = (413, "the request body is larger than %d bytes"
                         % self.server.max_body)
        raise TooLarge()

    def on_message_complete(self):
        if self.done_reading:
            return
        # The whole body is here: a 100 Continue still owed for it is no longer wanted.
        self.continue_owed = False
        parser = self.parser
        keep_alive = parser.should_keep_alive()
        raw_method = parser.get_method()
        method = METHODS.get(raw_method) or raw_method.decode("ascii", "replace")
        body = self._body
        body = body[0] if len(body) == 1 else b"".join(body)
        url = self._url
        if url[:1] == b"/":
            target = url.decode("utf-8", "surrogateescape")
            if "#" in target:
                target = target.partition("#")[0]
        else:
            target = origin_form(url)
            if target is None:
                self._fail(400, "malformed request: unusable request target")
                return
        self.waiting.append(Request(self, method, target, parser.get_http_version(),
                                    keep_alive, self._raw_headers, self._headers, body))
        if not keep_alive:
            self.done_reading = True

    # ------------------------------------------------------------- answering

    def _pump(self):
        """Start waiting requests, one at a time, while they are answered at once."""
        waiting = self.waiting
        while self.current is None and waiting:
            request = waiting.popleft()
            self.current = request
            handler = request.handler or self.server.router.resolve(request)
            self._run(request, handler)
        if self.current is None and self.transport is not None:
            if not waiting:
                # Idle from its last answer on, not from its last read: an answer held back
                # by a long latency must not be followed at once by the idle close.
                self.last_active = self.loop.time()
            if self.continue_owed:
                self.continue_owed = False
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            if self.close_when_idle:
                self.close()
                return
        if self.reading_paused:
            self._update_reading()

    def _run(self, request, handler):
        try:
            response = handler(request)
        except Exception:
            LOG.exception("%s %s failed", request.method, request.raw_path)
            response = admin_error(500, "internal error")
        if response is not None:  # None: answered later (a timer) or dropped
            self._answer(request, response)

    def resume(self, request, then):
        """A timer of Request.later fired."""
        self.timer = None
        if self.current is not request:
            return  # the connection is gone
        self._run(request, then)
        if self.current is None:
            self._pump()

    def _answer(self, request, response):
        status = response.status
        body = response.body
        version = "1.0" if request.version == "1.0" else "1.1"
        head = [status_line(version, status), response.headers]
        if status in NO_BODY_STATUSES:
            body = b""
        else:
            head.append(b"Content-Length: %d\r\n" % len(body))
        keep_alive = request.keep_alive and not self.server.stopping
        if not keep_alive:
            head.append(b"Connection: close\r\n")
        elif version == "1.0":
            head.append(b"Connection: keep-alive\r\n")
        head.append(self.server.date_line())
        head.append(b"\r\n")
        if request.method != "HEAD":
            head.append(body)
        self.transport.write(b"".join(head))
        self.current = None
        if not keep_alive:
            self.close()

    def _update_reading(self):
        transport = self.transport
        if transport is None:
            return
        want = not self.writing_paused and len(self.waiting) < PIPELINE_LIMIT
        if want and self.reading_paused:
            self.reading_paused = False
            transport.resume_reading()
        elif not want and not self.reading_paused:
            self.reading_paused = True
            transport.pause_reading()

    def close(self):
        """Close after what has been written; nothing more is read or answered (a request
        waiting for its timer is abandoned, as when the client leaves)."""
        self.done_reading = True
        self.waiting.clear()
        if self.timer is not None:
            Timers.cancel(self.timer)
            self.timer = None
        self.current = None
        if self.transport is not None:
            self.transport.close()

    def drop(self, reset=False):
        transport = self.transport
        if transport is None:
            return
        self.done_reading = True
        self.waiting.clear()
        if reset:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                try:  # linger 0: close() sends RST instead of FIN
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except (OSError, AttributeError):
                    pass
            transport.abort()
        else:
            transport.close()


class Timers:
    """Delayed calls, run from one loop timer, and work for the spare time in between.

    Almost every delayed request waits the same configured latency, so its deadline is the
    latest so far: pushing it on the heap is cheap, and a single loop timer serves all the
    requests of a wave that fall due within the same millisecond. With loop.call_later a
    request cost about 3 us more (a TimerHandle and a libuv timer each).

    meanwhile() queues work that a waiting request can do before its answer is due (the
    emulator's checks that read only the request). It runs in batches from call_soon, so
    a due timer and newly arrived requests get their turn between two batches: an answer
    does not leave late, and an arrival is not registered late (its latency counts from
    when it is read), because of work that could wait. Done at once on arrival instead,
    ~40 us for each of a wave of 256 requests read in one go, the last arrival's latency
    started some 10 ms after it came.
    """

    __slots__ = ("loop", "heap", "handle", "handle_at", "count", "spare", "spare_scheduled")

    SLACK = 0.001  # loop timers are millisecond-grained; run what is due within 1 ms
    SPARE_BATCH = 16  # spare-time calls between two looks at the timers and the sockets

    def __init__(self, loop):
        self.loop = loop
        self.heap = []           # [when, sequence, callback or None, args]
        self.handle = None       # the loop timer for the earliest entry
        self.handle_at = math.inf
        self.count = 0
        self.spare = collections.deque()
        self.spare_scheduled = False

    def call_later(self, delay, callback, *args):
        when = self.loop.time() + delay
        self.count += 1
        entry = [when, self.count, callback, args]
        heapq.heappush(self.heap, entry)
        if when < self.handle_at:
            if self.handle is not None:
                self.handle.cancel()
            self.handle_at = when
            self.handle = self.loop.call_at(when, self._fire)
        return entry

    @staticmethod
    def cancel(entry):
        entry[2] = None  # left on the heap, skipped when due

    def _fire(self):
        self.handle = None
        self.handle_at = math.inf
        heap = self.heap
        due = self.loop.time() + self.SLACK
        while heap and heap[0][0] <= due:
            _, _, callback, args = heapq.heappop(heap)
            if callback is not None:
                try:
                    callback(*args)
                except Exception:  # pragma: no cover - resume() already catches handler errors
                    LOG.exception("delayed call failed")
        if heap:
            self.handle_at = heap[0][0]
            self.handle = self.loop.call_at(self.handle_at, self._fire)

    def meanwhile(self, work):
        """Call work() when no timer is due (in the order queued)."""
        self.spare.append(work)
        if not self.spare_scheduled:
            self.spare_scheduled = True
            self.loop.call_soon(self._spare_time)

    def _spare_time(self):
        spare = self.spare
        time_now = self.loop.time
        for _ in range(self.SPARE_BATCH):
            if not spare or time_now() >= self.handle_at:
                break
            try:
                spare.popleft()()
            except Exception:  # pragma: no cover - the emulator's work catches its own
                LOG.exception("spare-time call failed")
        if spare:
            self.loop.call_soon(self._spare_time)  # after the due timers and the sockets
        else:
            self.spare_scheduled = False

    def close(self):
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
        self.heap.clear()
        self.spare.clear()


class Router:
    """Maps (method, encoded path) to a handler; paths may end in one {name} segment.

    Matching is on the path as sent (still percent-encoded), as aiohttp did; the {name}
    value is decoded. A GET route also answers HEAD. Anything unmatched goes to fallback.
    """

    def __init__(self, fallback=None):
        self.exact = {}
        self.params = []  # (method, prefix, name, handler)
        self.fallback = fallback

    def add(self, method, path, handler):
        methods = (method, "HEAD") if method == "GET" else (method,)
        if "{" in path:
            prefix, _, rest = path.partition("{")
            if not rest.endswith("}") or "/" in rest or "{" in rest:
                raise ValueError("only a last {name} segment is supported: %s" % path)
            self.params += [(m, prefix, rest[:-1], handler) for m in methods]
        else:
            for m in methods:
                self.exact[(m, path)] = handler
        return handler

    def route(self, method, path):
        return lambda handler: self.add(method, path, handler)

    def get(self, path):
        return self.route("GET", path)

    def post(self, path):
        return self.route("POST", path)

    def delete(self, path):
        return self.route("DELETE", path)

    def resolve(self, request):
        path = request.encoded_path
        handler = self.exact.get((request.method, path))
        if handler is not None:
            return handler
        for method, prefix, name, handler in self.params:
            if method == request.method and path.startswith(prefix):
                value = path[len(prefix):]
                if value and "/" not in value:
                    request.match_info = {name: urllib.parse.unquote(value)}
                    return handler
        return self.fallback


class HttpServer:
    """The listening socket and its connections."""

    def __init__(self, router, max_body=MAX_BODY):
        self.router = router
        self.max_body = max_body
        self.connections = set()
        self.stopping = False
        self.on_close = []  # coroutine functions awaited by close()
        self.loop = None
        self.timers = None
        self._server = None
        self._sweeper = None
        self._date_second = None
        self._date_line = b""

    async def start(self, host, port, ssl_context=None, backlog=1024):
        self.loop = asyncio.get_running_loop()
        self.timers = Timers(self.loop)
        self._server = await self.loop.create_server(
            lambda: HttpConnection(self), host, port, ssl=ssl_context, backlog=backlog,
            reuse_address=True)
        self._sweeper = self.loop.call_later(SWEEP_SECONDS, self._sweep)

    @property
    def port(self):
        return self._server.sockets[0].getsockname()[1]

    def date_line(self):
        now = int(time.time())
        if now != self._date_second:
            self._date_second = now
            self._date_line = ("Date: %s\r\n" % email.utils.formatdate(now, usegmt=True)
                               ).encode("ascii")
        return self._date_line

    def close_idle(self):
        """Close keep-alive connections idle for KEEP_ALIVE_SECONDS (as aiohttp did)."""
        oldest = self.loop.time() - KEEP_ALIVE_SECONDS
        for conn in list(self.connections):
            if conn.current is None and not conn.waiting and conn.last_active < oldest:
                conn.close()

    def _sweep(self):
        self.close_idle()
        self._sweeper = self.loop.call_later(SWEEP_SECONDS, self._sweep)

    async def close(self, grace=1.0):
        """Stop listening, give answers in progress up to `grace` seconds, close the rest."""
        self.stopping = True
        self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conn in list(self.connections):
            if conn.current is None:
                conn.close()
        deadline = self.loop.time() + grace
        while any(conn.current is not None for conn in self.connections) \
                and self.loop.time() < deadline:
            await asyncio.sleep(0.02)
        for conn in list(self.connections):
            conn.close()
        await self._server.wait_closed()
        await asyncio.sleep(0)  # let the transports report connection_lost
        self.timers.close()
        for hook in self.on_close:
            await hook()

class AdminError(Exception):
    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# --------------------------------------------------------------------------- users

class User:
    __slots__ = ("object_id", "ids", "datas", "assertions", "version", "password_set",
                 "updated_at")

    def __init__(self, object_id, ids=None, datas=None, assertions=None, version=0,
                 password_set=False):
        self.object_id = object_id
        self.ids = ids  # None means {} (saves memory for generated users)
        self.datas = datas
        self.assertions = assertions
        self.version = version
        self.password_set = password_set
        self.updated_at = None

    def view(self):
        return {
            "objectId": self.object_id,
            "ids": self.ids or {},
            "datas": self.datas or {},
            "assertions": self.assertions,
            "version": self.version,
            "passwordSet": self.password_set,
            "updatedAt": None if self.updated_at is None else iso_utc(self.updated_at),
        }


def index_key(name, value):
    """Key of an id value in the uniqueness index, or None when the id is not unique."""
    if name not in UNIQUE_ID_NAMES:
        return None
    if name == "email":
        value = value.lower()
    return (name, value)


def normalize_seed_assertions(raw, where):
    """Seed files accept DRUID's shape, {"terms": true} or [{"type":..., "value":...}]."""
    if raw is None:
        return None
    if isinstance(raw, dict) and raw.get("objectType") == "assertions":
        raw_items = raw.get("items")
        if not isinstance(raw_items, list):
            raise AdminError("%s.assertions.items must be a list" % where)
    elif isinstance(raw, dict):
        raw_items = [{"type": k, "value": v} for k, v in raw.items()]
    elif isinstance(raw, list):
        raw_items = raw
    else:
        raise AdminError("%s.assertions must be an object or a list" % where)
    items = []
    for item in raw_items:
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            raise AdminError("%s.assertions: every item needs a string type" % where)
        value = item.get("value")
        if value in ("true", "false"):
            value = value == "true"
        if type(value) is not bool:
            raise AdminError("%s.assertions.%s: value must be a boolean" % (where, item["type"]))
        typology = item.get("typology", "user")
        if not isinstance(typology, str):
            raise AdminError("%s.assertions.%s: typology must be a string" % (where, item["type"]))
        items.append({"objectType": "assertion", "type": item["type"], "typology": typology,
                      "value": value})
    return {"objectType": "assertions", "items": items, "totalItems": len(items)}


SEED_USER_KEYS = frozenset(("objectId", "ids", "datas", "assertions", "password", "passwordSet",
                            "version", "updatedAt"))


def user_from_seed(raw, position):
    """Build a User from the seed/admin format (long DRUID style or short event style)."""
    where = "users[%d]" % position
    if not isinstance(raw, dict):
        raise AdminError("%s must be an object" % where)
    unknown = set(raw) - SEED_USER_KEYS
    if unknown:
        raise AdminError("%s: unknown field(s) %s" % (where, ", ".join(sorted(unknown))))
    object_id = raw.get("objectId")
    if not isinstance(object_id, str) or not object_id:
        raise AdminError("%s.objectId must be a non-empty string" % where)
    where = "user %s" % object_id

    ids = {}
    raw_ids = raw.get("ids") or {}
    if not isinstance(raw_ids, dict):
        raise AdminError("%s: ids must be an object" % where)
    for name, entry in raw_ids.items():
        if isinstance(entry, str):
            ids[name] = {"objectType": "user_id", "value": entry}
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("value"), str):
            raise AdminError("%s: ids.%s must be a string or an object with a string value"
                             % (where, name))
        stored = {"objectType": "user_id", "value": entry["value"]}
        if "confirmed" in entry:
            if type(entry["confirmed"]) is not bool:
                raise AdminError("%s: ids.%s.confirmed must be a boolean" % (where, name))
            stored["confirmed"] = entry["confirmed"]
        ids[name] = stored

    datas = {}
    raw_datas = raw.get("datas") or {}
    if not isinstance(raw_datas, dict):
        raise AdminError("%s: datas must be an object" % where)
    for name, entry in raw_datas.items():
        if isinstance(entry, dict):
            entry = entry.get("value")
        if isinstance(entry, bool):
            entry = "true" if entry else "false"
        elif is_number(entry):
            entry = json.dumps(entry)
        if not isinstance(entry, str):
            raise AdminError("%s: datas.%s must be a string, number, boolean or {value}"
                             % (where, name))
        datas[name] = {"objectType": "user_data", "value": entry}

    assertions = normalize_seed_assertions(raw.get("assertions"), where)
    password = raw.get("password")
    if password is not None and not isinstance(password, str):
        raise AdminError("%s: password must be a string" % where)
    version = raw.get("version", 0)
    if type(version) is not int:
        raise AdminError("%s: version must be an integer" % where)
    return User(object_id, ids or None, datas or None, assertions, version,
                bool(raw.get("passwordSet")) or password is not None)


def seed_list(payload):
    """Accept {"users": [...]} or a plain list."""
    if isinstance(payload, dict) and isinstance(payload.get("users"), list):
        return payload["users"]
    if isinstance(payload, list):
        return payload
    raise AdminError('expected {"users": [...]} or a JSON list of users')


# --------------------------------------------------------------------------- tokens

class Token:
    __slots__ = ("challenge", "method", "client", "expires", "used")

    def __init__(self, challenge, method, client, expires):
        self.challenge = challenge
        self.method = method
        self.client = client
        self.expires = expires  # epoch seconds
        self.used = False


class ChallengeMemory:
    """Challenges already used to obtain a token, remembered for a bounded time.

    Entries are the process's 64-bit hashes of the challenges. The current generation is
    a set; every `generation` seconds it is frozen into a sorted array of 8-byte
    integers (searched by bisection), and frozen generations are dropped once their
    newest entry is older than `retention`. At 2,000 tokens/s that is about 10 MB
    instead of about 75 MB for ten minutes of sets of strings. A false "already seen"
    would need a 64-bit hash collision among the challenges of the last ten minutes.
    """

    def __init__(self, retention=CHALLENGE_MEMORY_SECONDS,
                 generation=CHALLENGE_GENERATION_SECONDS):
        self.retention = retention
        self.generation = generation
        self.clear()

    def clear(self):
        self._current = set()
        self._current_start = time.monotonic()
        self._frozen = collections.deque()  # (time the generation ended, sorted array)

    def seen(self, challenge):
        key = hash(challenge)
        if key in self._current:
            return True
        for _, keys in self._frozen:
            i = bisect.bisect_left(keys, key)
            if i < len(keys) and keys[i] == key:
                return True
        return False

    def add(self, challenge, now=None):
        now = time.monotonic() if now is None else now
        if now - self._current_start >= self.generation:
            self._freeze(now)
        self._current.add(hash(challenge))

    def _freeze(self, now):
        if self._current:
            self._frozen.append((now, array.array("q", sorted(self._current))))
        self._current = set()
        self._current_start = now

    def prune(self, now=None):
        now = time.monotonic() if now is None else now
        if self._current and now - self._current_start >= self.generation:
            self._freeze(now)
        frozen = self._frozen
        while frozen and frozen[0][0] <= now - self.retention:
            frozen.popleft()

    def __len__(self):
        return len(self._current) + sum(len(keys) for _, keys in self._frozen)

    def generations(self):
        return len(self._frozen) + 1


# --------------------------------------------------------------------------- faults

class FaultRule:
    __slots__ = ("endpoint", "status", "count", "until", "retry_after", "body", "drop",
                 "delay", "apply_first", "content_type", "has_body", "spec")

    def __init__(self, spec):
        if not isinstance(spec, dict):
            raise AdminError("a fault rule must be a JSON object")
        allowed = {"endpoint", "status", "count", "forSeconds", "retryAfter", "body", "drop",
                   "delayMs", "applyFirst", "contentType"}
        unknown = set(spec) - allowed
        if unknown:
            raise AdminError("unknown fault field(s): %s" % ", ".join(sorted(unknown)))
        self.endpoint = spec.get("endpoint", "any")
        if self.endpoint not in ("token", "update", "any"):
            raise AdminError('endpoint must be "token", "update" or "any"')
        self.status = spec.get("status")
        if self.status is not None and (type(self.status) is not int
                                        or not 100 <= self.status <= 599):
            raise AdminError("status must be an integer HTTP status")
        drop = spec.get("drop", False)
        if drop not in (True, False, "reset"):
            raise AdminError('drop must be true, false or "reset"')
        self.drop = drop
        delay = spec.get("delayMs", 0)
        if not is_number(delay) or delay < 0:
            raise AdminError("delayMs must be a non-negative number")
        self.delay = delay / 1000.0
        if self.status is None and not self.drop and not self.delay:
            raise AdminError("a fault needs status, drop or delayMs")
        if "count" in spec:
            count = spec["count"]
            if type(count) is not int or count == 0 or count < -1:
                raise AdminError("count must be a positive integer or -1 (until cleared)")
        else:
            count = -1 if "forSeconds" in spec else 1
        self.count = count
        self.until = None
        if "forSeconds" in spec:
            seconds = spec["forSeconds"]
            if not is_number(seconds) or seconds <= 0:
                raise AdminError("forSeconds must be a positive number")
            self.until = time.monotonic() + seconds
        retry_after = spec.get("retryAfter")
        if retry_after is not None:
            if isinstance(retry_after, bool) or not isinstance(retry_after, (str, int, float)):
                raise AdminError("retryAfter must be a string or a number")
            retry_after = str(retry_after)
        self.retry_after = retry_after
        self.body = spec.get("body")
        self.has_body = "body" in spec
        content_type = spec.get("contentType")
        if content_type is not None and not isinstance(content_type, str):
            raise AdminError("contentType must be a string")
        self.content_type = content_type
        apply_first = spec.get("applyFirst", False)
        if type(apply_first) is not bool:
            raise AdminError("applyFirst must be a boolean")
        self.apply_first = apply_first
        self.spec = spec

    def expired(self, now):
        return self.count == 0 or (self.until is not None and now >= self.until)

    def view(self):
        out = dict(self.spec)
        out["remaining"] = self.count
        if self.until is not None:
            out["secondsLeft"] = round(max(0.0, self.until - time.monotonic()), 3)
        return out


# --------------------------------------------------------------------------- settings

class Settings:
    """What the command line decides; the admin config starts from (and resets to) it."""

    def __init__(self, clients=None, entry_points=None, token_ttl=60.0, one_use_tokens=True,
                 log_size=100000, quiet=False):
        self.clients = dict(clients) if clients else {DEFAULT_CLIENT[0]: DEFAULT_CLIENT[1]}
        self.entry_points = set(entry_points) if entry_points else {DEFAULT_ENTRY_POINT}
        self.token_ttl = float(token_ttl)
        self.one_use_tokens = one_use_tokens
        self.log_size = log_size
        self.quiet = quiet


class Config:
    __slots__ = ("latency_ms", "jitter_ms", "token_ttl", "one_use_tokens")

    def __init__(self, settings):
        self.latency_ms = 0.0
        self.jitter_ms = 0.0
        self.token_ttl = settings.token_ttl
        self.one_use_tokens = settings.one_use_tokens

    def view(self):
        ttl = self.token_ttl
        return {"latencyMs": self.latency_ms, "latencyJitterMs": self.jitter_ms,
                "tokenTtlSeconds": int(ttl) if ttl == int(ttl) else ttl,
                "oneUseTokens": self.one_use_tokens}

    def apply(self, changes):
        if not isinstance(changes, dict):
            raise AdminError("config must be a JSON object")
        unknown = set(changes) - {"latencyMs", "latencyJitterMs", "tokenTtlSeconds",
                                  "oneUseTokens"}
        if unknown:
            raise AdminError("unknown config field(s): %s" % ", ".join(sorted(unknown)))
        # Validate everything before changing anything.
        for key in ("latencyMs", "latencyJitterMs"):
            if key in changes and (not is_number(changes[key]) or changes[key] < 0):
                raise AdminError("%s must be a non-negative number" % key)
        if "tokenTtlSeconds" in changes and (not is_number(changes["tokenTtlSeconds"])
                                             or changes["tokenTtlSeconds"] <= 0):
            raise AdminError("tokenTtlSeconds must be a positive number")
        if "oneUseTokens" in changes and type(changes["oneUseTokens"]) is not bool:
            raise AdminError("oneUseTokens must be a boolean")
        if "latencyMs" in changes:
            self.latency_ms = float(changes["latencyMs"])
        if "latencyJitterMs" in changes:
            self.jitter_ms = float(changes["latencyJitterMs"])
        if "tokenTtlSeconds" in changes:
            self.token_ttl = float(changes["tokenTtlSeconds"])
        if "oneUseTokens" in changes:
            self.one_use_tokens = changes["oneUseTokens"]


# --------------------------------------------------------------------------- the emulator

class Emulator:
    def __init__(self, settings=None):
        self.settings = settings or Settings()
        self.config = Config(self.settings)
        self.users = {}          # objectId -> User
        self.id_index = {}       # (id name, normalized value) -> objectId
        self.tokens = {}         # access token -> Token (insertion order ~ expiry order)
        self.challenges = ChallengeMemory()
        self.faults = []         # FaultRule, in the order they were queued
        self.log = collections.deque(maxlen=self.settings.log_size or 1)
        self.log_enabled = self.settings.log_size > 0
        self.seq = 0
        self.stats = {"token": {}, "update": {}, "other": {}}
        self.applied = 0
        self._maintenance = None
        self._last_full_sweep = time.time()

    # ----------------------------------------------------------------- users

    def put_users(self, users):
        """Add or replace users atomically; ids must stay unique across users."""
        batch = {}
        for user in users:
            batch[user.object_id] = user  # a later entry for the same objectId wins
        claimed = {}
        for user in batch.values():
            for name, entry in (user.ids or {}).items():
                key = index_key(name, entry["value"])
                if key is None:
                    continue
                owner = self.id_index.get(key)
                if owner is not None and owner not in batch:
                    raise AdminError("user %s: %s %r already belongs to user %s"
                                     % (user.object_id, name, entry["value"], owner))
                other = claimed.get(key)
                if other is not None and other != user.object_id:
                    raise AdminError("users %s and %s share %s %r"
                                     % (other, user.object_id, name, entry["value"]))
                claimed[key] = user.object_id
        for object_id, user in batch.items():
            old = self.users.get(object_id)
            if old is not None:
                self._unindex(old)
            self.users[object_id] = user
        self.id_index.update(claimed)
        return len(batch)

    def _unindex(self, user):
        for name, entry in (user.ids or {}).items():
            key = index_key(name, entry["value"])
            if key is not None and self.id_index.get(key) == user.object_id:
                del self.id_index[key]

    def generate_users(self, prefix, count, start=0):
        users = self.users
        for i in range(start, start + count):
            object_id = prefix + str(i)
            old = users.get(object_id)
            if old is not None and old.ids:
                self._unindex(old)
            users[object_id] = User(object_id)
        return count

    def clear_users(self):
        count = len(self.users)
        self.users.clear()
        self.id_index.clear()
        return count

    def load_seed_file(self, path):
        with open(path, "rb") as handle:
            payload = json.loads(handle.read().decode("utf-8"))
        raw_users = seed_list(payload)
        return self.put_users([user_from_seed(raw, i) for i, raw in enumerate(raw_users)])

    # ----------------------------------------------------------------- bookkeeping

    def record(self, endpoint, request, body, status, fault=False):
        """Count the answer and append the request to the bounded log."""
        counts = self.stats[endpoint]
        counts[status] = counts.get(status, 0) + 1
        if self.log_enabled:
            self.seq += 1
            # The request is packed into one blob ("METHOD path", media type, header lines,
            # blank line, body) and cut into pieces small enough for Python's small-object
            # allocator. Keeping 100k bodies of ~600 bytes each as whole bytes objects
            # fragmented the C heap: it grew by about 1 MB/s under load even though the
            # log was full and no longer growing.
            parts = [request.method.encode("ascii", "replace"), b" ",
                     request.raw_path.encode("utf-8", "replace"), b"\n",
                     mime_type(request).encode("latin-1", "replace"), b"\n"]
            for name, value in request.raw_headers:
                parts += (name, b": ", value, b"\n")
            parts += (b"\n", body)
            blob = b"".join(parts)
            pieces = tuple([blob[i:i + LOG_PIECE] for i in range(0, len(blob), LOG_PIECE)])
            self.log.append((self.seq, time.time(), endpoint, status, fault, pieces))

    def take_fault(self, endpoint):
        now = time.monotonic()
        faults = self.faults
        i = 0
        while i < len(faults):
            rule = faults[i]
            if rule.expired(now):
                del faults[i]
                continue
            if rule.endpoint == endpoint or rule.endpoint == "any":
                if rule.count > 0:
                    rule.count -= 1
                    if rule.count == 0:
                        del faults[i]
                return rule
            i += 1
        return None

    def latency(self):
        """The added latency for one call, in seconds (0 when none is configured)."""
        config = self.config
        delay = config.latency_ms
        if config.jitter_ms:
            delay += random.uniform(0.0, config.jitter_ms)
        return delay / 1000.0

    def prune(self, full_sweep_every=60.0):
        """Drop expired tokens, old challenges and finished fault rules."""
        now = time.time()
        tokens = self.tokens
        # Tokens sit in issue order, so the expired ones are normally all at the front.
        gone = []
        for key, token in tokens.items():
            if token.expires > now:
                break
            gone.append(key)
        for key in gone:
            del tokens[key]
        # A TTL lowered through /admin/config breaks that order (a long-lived token can
        # shield later, shorter-lived ones), so now and then look at every token.
        if now - self._last_full_sweep >= full_sweep_every:
            self._last_full_sweep = now
            for key in [k for k, t in tokens.items() if t.expires <= now]:
                del tokens[key]
        self.challenges.prune()
        mono = time.monotonic()
        self.faults = [rule for rule in self.faults if not rule.expired(mono)]

    async def _maintenance_loop(self):
        while True:
            await asyncio.sleep(MAINTENANCE_INTERVAL)
            try:
                self.prune()
            except Exception:  # pragma: no cover - never let housekeeping die
                LOG.exception("maintenance failed")

    def start_maintenance(self):
        self._maintenance = asyncio.get_running_loop().create_task(self._maintenance_loop())

    async def stop_maintenance(self):
        if self._maintenance is not None:
            self._maintenance.cancel()
            try:
                await self._maintenance
            except asyncio.CancelledError:
                pass
            self._maintenance = None

    # ----------------------------------------------------------------- the two DRUID calls

    # What a call answers is decided by its check sequence (TokenChecks, UpdateChecks in
    # "check sequences" below). Without a latency the request is answered at once,
    # synchronously, as it always was. With one, it waits on a Request.later timer (an
    # entry in the Timers heap, not a task); the checks that read only the request run in
    # the meantime (Request.meanwhile), and the faults, the checks that read state and the
    # state change when the timer fires.

    def handle_token(self, request):
        return self.handle_call(TokenChecks(self, request))

    def handle_update(self, request):
        request.started = time.perf_counter()
        return self.handle_call(UpdateChecks(self, request))

    def handle_call(self, checks):
        config = self.config
        if config.latency_ms or config.jitter_ms:
            delay = self.latency()
            if delay > 0:
                request = checks.request
                request.later(delay, checks.answer)
                request.meanwhile(checks.prepare)
                return None
        return checks.answer(checks.request)

    # ----------------------------------------------------------------- faults

    def take_fault_or(self, endpoint, request, checks):
        """Apply the first matching fault rule, or answer normally (checks.respond)."""
        if self.faults:
            rule = self.take_fault(endpoint)
            if rule is not None:
                if rule.delay:
                    request.later(rule.delay, lambda request: self.answer_fault(
                        rule, endpoint, request, checks))
                    request.meanwhile(checks.prepare)  # as for the latency
                    return None
                return self.answer_fault(rule, endpoint, request, checks)
        return checks.respond()

    def answer_fault(self, rule, endpoint, request, checks):
        """Answer a request with an injected fault (after its delay, if any)."""
        if rule.status is None and not rule.drop:
            return checks.respond()  # a pure delay
        body = request.body
        if rule.apply_first:
            checks.outcome()  # applied (when every check passes), but not what is answered
        if rule.drop:
            self.record(endpoint, request, body, "dropped", True)
            request.drop(reset=rule.drop == "reset")
            return None  # nothing can be written any more
        status = rule.status
        content_type = rule.content_type or "application/json"
        if rule.has_body:
            payload = rule.body
            if isinstance(payload, str) and rule.content_type is None:
                content_type = "text/plain"
            data = payload.encode("utf-8") if isinstance(payload, str) else dumps(payload)
        elif endpoint == "token":
            data = dumps({"error": "injected fault (HTTP %d)" % status,
                          "type": "InjectedFaultException"})
        else:
            data = dumps(self.envelope(status, {}, [{"message": "fault",
                                                     "details": "injected fault"}],
                                       request.started))
        headers = [("Content-Type", content_type)]
        if rule.retry_after is not None:
            headers.append(("Retry-After", rule.retry_after))
        self.record(endpoint, request, body, status, True)
        return Response(status, data, header_lines(headers))

    @staticmethod
    def envelope(status, content, errors, started):
        elapsed = (time.perf_counter() - started) * 1000.0 if started else 0.0
        return {"content": content,
                "result": {"status": status, "elapsed": round(elapsed, 3), "errors": errors}}

    # ----------------------------------------------------------------- other paths

    def handle_other(self, request):
        if request.path.startswith("/admin/"):
            return admin_error(404, "no such admin endpoint")
        body = request.body
        status = 405 if request.path in (TOKEN_PATH, UPDATE_PATH) else 404
        self.record("other", request, body, status)
        detail = "method not allowed" if status == 405 else "no such endpoint"
        return json_response(self.envelope(status, {}, [{"message": "path", "details": detail}],
                                           0.0), status=status)

    # ----------------------------------------------------------------- request log view

    def log_view(self, endpoint=None, limit=None, since=None):
        entries = self.log if self.log_enabled else ()
        if endpoint is not None:
            entries = [e for e in entries if e[2] == endpoint]
        else:
            entries = list(entries)
        if since is not None:
            entries = [e for e in entries if e[0] >= since]
            if limit is not None:
                entries = entries[:limit]
        elif limit is not None:
            entries = entries[-limit:] if limit else []
        if entries:
            next_seq = entries[-1][0] + 1
        else:
            next_seq = max(self.seq + 1, since or 0)
        return {"requests": [render_entry(e) for e in entries], "next": next_seq}


def render_entry(entry):
    seq, at, endpoint, status, fault, pieces = entry
    first, content_type, rest = b"".join(pieces).split(b"\n", 2)
    method, _, raw_path = first.decode("utf-8", "replace").partition(" ")
    content_type = content_type.decode("latin-1")
    if rest.startswith(b"\n"):
        head, body = b"", rest[1:]
    else:
        head, _, body = rest.partition(b"\n\n")
    headers = {}
    for line in head.split(b"\n") if head else ():
        name, _, value = line.partition(b": ")
        name = name.decode("latin-1")
        value = value.decode("utf-8", "replace")
        headers[name] = headers[name] + ", " + value if name in headers else value
    path, _, query_string = raw_path.partition("?")
    query = {}
    for name, value in urllib.parse.parse_qsl(query_string, keep_blank_values=True):
        if name in query:
            previous = query[name]
            query[name] = previous + [value] if isinstance(previous, list) else [previous, value]
        else:
            query[name] = value
    text = body.decode("utf-8", "replace")
    if content_type == "application/json":
        try:
            parsed = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: nested too deep to parse
            parsed = text
    elif content_type == "application/x-www-form-urlencoded":
        parsed = dict(urllib.parse.parse_qsl(text, keep_blank_values=True))
    else:
        parsed = text
    out = {"seq": seq, "at": iso_utc(at), "endpoint": endpoint, "method": method,
           "path": path, "query": query, "headers": headers, "body": parsed,
           "status": status}
    if fault:
        out["fault"] = True
    return out


# --------------------------------------------------------------------------- check sequences
#
# Each DRUID call is a sequence of checks in the order of the spec (druid-api.md §5), then
# a state change. Why a sequence, and why part of it may run before the latency is over:
#
# With a latency configured (the benchmark: 50 ms, 256 connections), requests arrive in
# waves of about 256 and fall due together, within a millisecond, 50 ms later. When all of
# a request's work waited for its timer, a wave did all of it back to back, ~55 us of CPU
# each, and the last answer of a wave left ~14 ms late. Most of that work reads nothing
# but the request: parsing the form or the JSON, the S256 of the verifier, the regexes,
# the field validation. Its result is the same at any time, so it is done while the
# request waits (in the server's spare time: see Timers.meanwhile). The checks that read
# state (tokens, the challenges seen, users and their ids, the config and the settings)
# still run when the latency has passed, as do the faults and the state change: an
# answer reflects the state of the moment it is given, and a request whose client leaves
# during the latency still changes nothing.
#
# A check is a method that returns None when it passes or the failure answer when it does
# not, and keeps what it found on self for the checks after it (no check reads what a
# later one found). @stateless marks the checks that read only the request. prepare()
# runs those, in order, up to the first that fails: whatever the state, no check after
# that one can be reached. outcome() walks the whole sequence when the answer is due: it
# runs the other checks against the state of that moment and takes the prepared result of
# each stateless one, so the first failure is the one a single run at that moment would
# find, and the answer is the same. When nothing was prepared (no latency, or the answer
# came due first), outcome() runs every check as it comes and stops at the first
# failure: no work is done twice, and none that was not done before. A stateless check
# that raised while prepared (a bug of the emulator's) raises again at its place in the
# sequence, so it is still a 500 only when the checks before it pass.


def stateless(check):
    """Mark a check that reads only the request, so prepare() may run it early."""
    check.stateless = True
    return check


def token_refusal(message, kind="InvalidGrantException"):
    return 400, {"error": message, "type": kind}


def update_failure(status, field, details):
    return status, {}, [{"message": field, "details": details}]


class CheckSequence:
    """The checks of one request. Subclasses list their check methods in CHECKS, in order,
    and define apply() (the state change and the success answer) and respond()."""

    CHECKS = ()
    STEPS = ()  # (check, is it stateless), made from CHECKS
    ENDPOINT = ""
    __slots__ = ("emu", "request", "answering", "failed_at", "failure")

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.STEPS = tuple((check, getattr(check, "stateless", False)) for check in cls.CHECKS)

    def __init__(self, emu, request):
        self.emu = emu
        self.request = request
        self.answering = False  # outcome() has started: too late to prepare
        self.failed_at = None   # not prepared; else the first stateless failure's position
        self.failure = None     # its answer, or the exception it raised

    def prepare(self):
        """Run the stateless checks now, up to the first that fails."""
        if self.answering or self.failed_at is not None:
            return
        steps = self.STEPS
        self.failed_at = len(steps)  # none failed
        for position, (check, is_stateless) in enumerate(steps):
            if is_stateless:
                try:
                    failure = check(self)
                except Exception as exc:
                    failure = exc
                if failure is not None:
                    self.failed_at = position
                    self.failure = failure
                    return

    def outcome(self):
        """Every check in order, then apply(); the first failure is the answer."""
        self.answering = True
        failed_at = self.failed_at
        if failed_at is None:  # nothing prepared: each check in turn
            for check in self.CHECKS:
                failure = check(self)
                if failure is not None:
                    return failure
            return self.apply()
        for position, (check, is_stateless) in enumerate(self.STEPS):
            if not is_stateless:
                failure = check(self)
                if failure is not None:
                    return failure
            elif position == failed_at:  # the prepared failure
                failure = self.failure
                if isinstance(failure, Exception):
                    raise failure
                return failure
        return self.apply()

    def answer(self, request):
        """The answer, once the latency (if any) has passed: a fault, or respond()."""
        return self.emu.take_fault_or(self.ENDPOINT, request, self)


class TokenChecks(CheckSequence):
    """POST /oauth2/token (spec §5.1): the form, then a token bound to the challenge."""

    ENDPOINT = "token"
    __slots__ = ("form", "client_id", "challenge", "method")

    @stateless
    def form_body(self):
        request = self.request
        if mime_type(request) != "application/x-www-form-urlencoded":
            return token_refusal("the body must be application/x-www-form-urlencoded",
                                 "InvalidRequestException")
        try:
            self.form = parse_form(request.body.decode("utf-8"))
        except UnicodeDecodeError:
            return token_refusal("the form body is not valid UTF-8", "InvalidRequestException")
        except ValueError as exc:
            return token_refusal(str(exc), "InvalidRequestException")

    @stateless
    def grant_type(self):
        if self.form.get("grant_type") != GRANT_TYPE:
            return token_refusal("unsupported grant_type", "InvalidRequestException")

    def client(self):
        # The clients are settings: looked up when the answer is due.
        form = self.form
        client_id = form.get("client_id")
        secret = self.emu.settings.clients.get(client_id) if client_id is not None else None
        if secret is None or form.get("client_secret") != secret:
            return token_refusal("invalid client credentials")
        self.client_id = client_id

    @stateless
    def challenge_form(self):
        form = self.form
        challenge = form.get("code_challenge")
        if not challenge:
            return token_refusal("code_challenge is required", "InvalidRequestException")
        method = form.get("code_challenge_method")
        if method != "S256" and method != "plain":
            return token_refusal("code_challenge_method must be S256 or plain",
                                 "InvalidRequestException")
        if method == "S256":
            if not S256_CHALLENGE_RE.fullmatch(challenge):
                return token_refusal("code_challenge is not 43 characters of base64url",
                                     "InvalidRequestException")
        elif not VERIFIER_RE.fullmatch(challenge):
            return token_refusal("code_challenge is not 43-128 unreserved characters",
                                 "InvalidRequestException")
        self.challenge = challenge
        self.method = method

    @stateless
    def scope(self):
        if "update" not in self.form.get("scope", "").split():
            return token_refusal("scope must contain update")

    def challenge_new(self):
        if self.emu.challenges.seen(self.challenge):
            return token_refusal("code_challenge already used")

    CHECKS = (form_body, grant_type, client, challenge_form, scope, challenge_new)

    def apply(self):
        emu = self.emu
        challenge = self.challenge
        emu.challenges.add(challenge)
        ttl = emu.config.token_ttl
        expires = time.time() + ttl
        access_token = secrets.token_urlsafe(32)
        emu.tokens[access_token] = Token(challenge, self.method, self.client_id, expires)
        return 200, {"access_token": access_token, "token_type": "bearer",
                     "expires_in": int(math.ceil(ttl)), "expires_at": int(expires * 1000)}

    def respond(self):
        status, payload = self.outcome()
        request = self.request
        self.emu.record("token", request, request.body, status)
        return Response(status, dumps(payload))


class UpdateChecks(CheckSequence):
    """POST /activityid/v1/user/update (spec §5.2): nine checks, then the replacement.

    Three of the spec's checks are split in two around what only the state knows: the
    Bearer header / the token it names (1), the verifier and its S256 / the token's
    challenge (2), the From header / the entry points (4); and the body shape (6) has the
    token's client id in its middle (actor.id).
    """

    ENDPOINT = "update"
    __slots__ = ("key", "token", "verifier", "verifier_s256", "entry_point", "activity",
                 "actor_id", "obj", "object_id", "user", "ids", "datas", "assertions",
                 "id_keys")

    # 1. token known and not expired
    @stateless
    def bearer(self):
        auth = self.request.headers.get("Authorization")
        if not auth or auth[:7].lower() != "bearer ":
            return update_failure(401, "Authorization", "a Bearer token is required")
        self.key = auth[7:].strip()

    def token_known(self):
        token = self.emu.tokens.get(self.key)
        if token is None:
            return update_failure(401, "access_token", "unknown token")
        if token.expires <= time.time():
            return update_failure(401, "access_token", "token expired")
        self.token = token

    # 2. the verifier matches the challenge the token was issued for
    @stateless
    def verifier_given(self):
        verifier = query_value(self.request, "code_verifier")
        if not verifier or not VERIFIER_RE.fullmatch(verifier):
            return update_failure(401, "code_verifier", "code_verifier missing or malformed")
        self.verifier = verifier
        # Whether the S256 or the plain form is compared depends on the token; the hash is
        # the costly part, so it is computed here in any case.
        self.verifier_s256 = s256(verifier)

    def verifier_matches(self):
        token = self.token
        expected = self.verifier_s256 if token.method == "S256" else self.verifier
        if expected != token.challenge:
            return update_failure(401, "code_verifier",
                                  "code_verifier does not match the challenge")

    # 3. one use per token (the token counts as used from here on, whatever follows)
    def token_unused(self):
        token = self.token
        if token.used and self.emu.config.one_use_tokens:
            return update_failure(401, "access_token", "token already used")
        token.used = True

    # 4. entry point
    @stateless
    def from_given(self):
        entry_point = self.request.headers.get("From")
        if not entry_point:
            return update_failure(400, "From", "the From header (entry point) is required")
        self.entry_point = entry_point

    def from_known(self):
        if self.entry_point not in self.emu.settings.entry_points:
            return update_failure(400, "From", "unknown entry point")

    # 5. content type
    @stateless
    def json_content_type(self):
        if mime_type(self.request) != "application/json":
            return update_failure(400, "Content-Type", "must be application/json")

    # 6. body shape, up to the actor's id, which must be the token's client
    @stateless
    def shape_up_to_actor_id(self):
        try:
            activity = json.loads(self.request.body)
        except (UnicodeDecodeError, ValueError):
            return update_failure(400, "body", "not valid JSON")
        except RecursionError:
            # Still a malformed body for the client (a 400), not the server's failure.
            return update_failure(400, "body", "nested too deeply to parse")
        if not isinstance(activity, dict):
            return update_failure(400, "body", "must be a JSON object")
        actor = activity.get("actor")
        if not isinstance(actor, dict):
            return update_failure(400, "actor", "must be an object")
        if actor.get("objectType") != "application":
            return update_failure(400, "actor.objectType", 'must be "application"')
        self.activity = activity
        self.actor_id = actor.get("id")

    def actor_is_client(self):
        if self.actor_id != self.token.client:
            return update_failure(400, "actor.id",
                                  "must be the client id the token was issued to")

    @stateless
    def shape_after_actor_id(self):
        activity = self.activity
        verb = activity.get("verb")
        if not isinstance(verb, str) or not verb:
            return update_failure(400, "verb", "must be a non-empty string")
        obj = activity.get("object")
        if not isinstance(obj, dict):
            return update_failure(400, "object", "must be an object")
        if obj.get("objectType") != "user":
            return update_failure(400, "object.objectType", 'must be "user"')
        object_id = obj.get("objectId")
        if not isinstance(object_id, str) or not object_id:
            return update_failure(400, "object.objectId", "must be a non-empty string")
        source = activity.get("source")
        if not isinstance(source, dict):
            return update_failure(400, "source", "must be an object")
        if source.get("objectType") != "device":
            return update_failure(400, "source.objectType", 'must be "device"')
        if source.get("id") not in SOURCE_IDS:
            return update_failure(400, "source.id",
                                  "must be one of " + ", ".join(sorted(SOURCE_IDS)))
        self.obj = obj
        self.object_id = object_id

    # 7. the user exists
    def user_exists(self):
        user = self.emu.users.get(self.object_id)
        if user is None:
            return update_failure(404, "objectId", "user not found")
        self.user = user

    # 8. field validation
    @stateless
    def fields_valid(self):
        errors, ids, datas, assertions = validate_user_fields(self.obj)
        if errors:
            return 400, {}, errors
        self.ids = ids
        self.datas = datas
        self.assertions = assertions
        keys = []  # (id name, uniqueness index key) of the ids that must be unique
        for name, entry in ids.items():
            key = index_key(name, entry["value"])
            if key is not None:
                keys.append((name, key))
        self.id_keys = keys

    # 9. ids owned by another user
    def ids_free(self):
        index = self.emu.id_index
        object_id = self.object_id
        errors = []
        for name, key in self.id_keys:
            owner = index.get(key)
            if owner is not None and owner != object_id:
                errors.append({"message": name, "details": "already exists"})
        if errors:
            return 400, {}, errors

    CHECKS = (bearer, token_known, verifier_given, verifier_matches, token_unused,
              from_given, from_known, json_content_type, shape_up_to_actor_id,
              actor_is_client, shape_after_actor_id, user_exists, fields_valid, ids_free)

    # 10. replace
    def apply(self):
        emu = self.emu
        user = self.user
        object_id = self.object_id
        if user.ids:
            emu._unindex(user)
        index = emu.id_index
        for _, key in self.id_keys:
            index[key] = object_id
        user.ids = self.ids or None
        user.datas = self.datas or None
        user.assertions = self.assertions
        if "password" in self.obj:
            user.password_set = True
        user.version += 1
        user.updated_at = time.time()
        emu.applied += 1
        return 200, {"objectType": "user", "objectId": object_id, "confirmed": True}, []

    def respond(self):
        status, content, errors = self.outcome()
        request = self.request
        self.emu.record("update", request, request.body, status)
        return Response(status, dumps(Emulator.envelope(status, content, errors,
                                                        request.started)))


def validate_user_fields(obj):
    """Field checks of the update's object; returns (errors, ids, datas, assertions)."""
    errors = []

    def bad(field, details):
        errors.append({"message": field, "details": details})

    for key in obj:
        if key not in OBJECT_KEYS:
            bad(key, "unknown field")

    ids = {}
    raw_ids = obj.get("ids")
    if not isinstance(raw_ids, dict) or not raw_ids:
        bad("ids", "must be an object with at least one id")
        raw_ids = {}
    for name, entry in raw_ids.items():
        if not isinstance(entry, dict):
            bad(name, "must be an object")
            continue
        extra = set(entry) - {"objectType", "value", "confirmed"}
        if extra:
            bad(name, "unknown field(s): " + ", ".join(sorted(extra)))
            continue
        if entry.get("objectType") != "user_id":
            bad(name, 'objectType must be "user_id"')
            continue
        value = entry.get("value")
        if not isinstance(value, str) or not value:
            bad(name, "value must be a non-empty string")
            continue
        if "confirmed" in entry and type(entry["confirmed"]) is not bool:
            bad(name, "confirmed must be a boolean")
            continue
        if name == "email" and not EMAIL_RE.fullmatch(value):
            bad(name, "The value is not valid")
            continue
        if name == "phone_number" and not PHONE_RE.fullmatch(value):
            bad(name, "The value is not valid")
            continue
        stored = {"objectType": "user_id", "value": value}
        if "confirmed" in entry:
            stored["confirmed"] = entry["confirmed"]
        ids[name] = stored

    datas = {}
    raw_datas = obj.get("datas", {})
    if not isinstance(raw_datas, dict):
        bad("datas", "must be an object")
        raw_datas = {}
    for name, entry in raw_datas.items():
        if not isinstance(entry, dict):
            bad(name, "must be an object")
            continue
        extra = set(entry) - {"objectType", "value"}
        if extra:
            bad(name, "unknown field(s): " + ", ".join(sorted(extra)))
            continue
        if entry.get("objectType") != "user_data":
            bad(name, 'objectType must be "user_data"')
            continue
        value = entry.get("value")
        if not isinstance(value, str):
            bad(name, "value must be a string")
            continue
        if name == "birthday" and not valid_birthday(value):
            bad(name, "must be a real date written dd/MM/yyyy")
            continue
        datas[name] = {"objectType": "user_data", "value": value}

    assertions = None
    raw_assertions = obj.get("assertions")
    if raw_assertions is not None:
        assertions = validate_assertions(raw_assertions, bad)

    if "password" in obj and not isinstance(obj["password"], str):
        bad("password", "must be a string")
    return errors, ids, datas, assertions


def valid_birthday(value):
    match = BIRTHDAY_RE.fullmatch(value)
    if match is None:
        return False
    day, month, year = (int(part) for part in match.groups())
    try:
        datetime.date(year, month, day)
    except ValueError:
        return False
    return True


def validate_assertions(raw, bad):
    if not isinstance(raw, dict) or raw.get("objectType") != "assertions":
        bad("assertions", 'must be an object with objectType "assertions"')
        return None
    extra = set(raw) - {"objectType", "items", "totalItems"}
    if extra:
        bad("assertions", "unknown field(s): " + ", ".join(sorted(extra)))
        return None
    items = raw.get("items")
    if not isinstance(items, list):
        bad("assertions", "items must be a list")
        return None
    total = raw.get("totalItems")
    if type(total) is not int or total != len(items):
        bad("assertions", "totalItems must equal the number of items")
        return None
    stored = []
    ok = True
    for position, item in enumerate(items):
        if not isinstance(item, dict) or item.get("objectType") != "assertion":
            bad("assertions", 'items[%d] must be an object with objectType "assertion"'
                % position)
            ok = False
            continue
        extra = set(item) - {"objectType", "type", "typology", "value"}
        if extra:
            bad("assertions", "items[%d]: unknown field(s) %s"
                % (position, ", ".join(sorted(extra))))
            ok = False
            continue
        kind = item.get("type")
        if not isinstance(kind, str) or not kind:
            bad("assertions", "items[%d].type must be a non-empty string" % position)
            ok = False
            continue
        if not isinstance(item.get("typology"), str) or not item["typology"]:
            bad(kind, "typology must be a non-empty string")
            ok = False
            continue
        value = item.get("value")
        if value == "true" or value == "false":
            value = value == "true"
        if type(value) is not bool:
            bad(kind, 'value must be a boolean (or "true"/"false")')
            ok = False
            continue
        stored.append({"objectType": "assertion", "type": kind, "typology": item["typology"],
                       "value": value})
    if not ok:
        return None
    return {"objectType": "assertions", "items": stored, "totalItems": len(stored)}


# --------------------------------------------------------------------------- admin API

def read_json(request, default=None):
    body = request.body
    if not body.strip():
        if default is not None:
            return default
        raise AdminError("a JSON body is required")
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise AdminError("the body is not valid JSON")


def admin_routes(emu):
    routes = Router()

    def guarded(handler):
        def wrapper(request):
            try:
                return handler(request)
            except AdminError as exc:
                return admin_error(exc.status, str(exc))
        return wrapper

    def ok(payload):
        return Response(200, dumps(payload))

    @routes.get("/admin/health")
    @guarded
    def health(request):
        return ok({"ok": True})

    @routes.post("/admin/users")
    @guarded
    def post_users(request):
        raw_users = seed_list(read_json(request))
        users = [user_from_seed(raw, i) for i, raw in enumerate(raw_users)]
        return ok({"count": emu.put_users(users)})

    @routes.post("/admin/users/generate")
    @guarded
    def generate_users(request):
        spec = read_json(request)
        if not isinstance(spec, dict):
            raise AdminError("expected a JSON object")
        prefix = spec.get("prefix", "")
        count = spec.get("count")
        start = spec.get("start", 0)
        if not isinstance(prefix, str):
            raise AdminError("prefix must be a string")
        if type(count) is not int or not 0 <= count <= 10000000:
            raise AdminError("count must be an integer between 0 and 10000000")
        if type(start) is not int or start < 0:
            raise AdminError("start must be a non-negative integer")
        return ok({"count": emu.generate_users(prefix, count, start)})

    @routes.get("/admin/users")
    @guarded
    def list_users(request):
        limit = query_int(request, "limit")
        users = emu.users.values()
        if limit is not None:
            users = [u for _, u in zip(range(limit), users)]
        return ok({"users": [u.view() for u in users], "total": len(emu.users)})

    @routes.get("/admin/users/{object_id}")
    @guarded
    def get_user(request):
        user = emu.users.get(request.match_info["object_id"])
        if user is None:
            raise AdminError("no such user", 404)
        return ok(user.view())

    @routes.delete("/admin/users/{object_id}")
    @guarded
    def delete_user(request):
        user = emu.users.pop(request.match_info["object_id"], None)
        if user is None:
            raise AdminError("no such user", 404)
        emu._unindex(user)
        return ok({"count": 1})

    @routes.delete("/admin/users")
    @guarded
    def delete_users(request):
        return ok({"count": emu.clear_users()})

    @routes.post("/admin/faults")
    @guarded
    def post_faults(request):
        spec = read_json(request)
        specs = spec if isinstance(spec, list) else [spec]
        rules = [FaultRule(s) for s in specs]
        emu.faults.extend(rules)
        return ok({"queued": len(rules), "faults": [r.view() for r in emu.faults]})

    @routes.get("/admin/faults")
    @guarded
    def get_faults(request):
        now = time.monotonic()
        return ok({"faults": [r.view() for r in emu.faults if not r.expired(now)]})

    @routes.delete("/admin/faults")
    @guarded
    def delete_faults(request):
        count = len(emu.faults)
        emu.faults = []
        return ok({"cleared": count})

    @routes.get("/admin/config")
    @guarded
    def get_config(request):
        return ok(config_view(emu))

    @routes.post("/admin/config")
    @guarded
    def post_config(request):
        emu.config.apply(read_json(request))
        return ok(config_view(emu))

    @routes.get("/admin/requests")
    @guarded
    def get_requests(request):
        endpoint = request.query.get("endpoint")
        if endpoint is not None and endpoint not in ("token", "update", "other"):
            raise AdminError('endpoint must be "token", "update" or "other"')
        return ok(emu.log_view(endpoint, query_int(request, "limit"),
                               query_int(request, "since")))

    @routes.delete("/admin/requests")
    @guarded
    def delete_requests(request):
        count = len(emu.log)
        emu.log.clear()
        return ok({"cleared": count})

    @routes.get("/admin/stats")
    @guarded
    def get_stats(request):
        out = {name: {str(k): v for k, v in counts.items()}
               for name, counts in emu.stats.items()}
        out["applied"] = emu.applied
        out["users"] = len(emu.users)
        out["liveTokens"] = len(emu.tokens)
        return ok(out)

    @routes.post("/admin/reset")
    @guarded
    def reset(request):
        emu.faults = []
        emu.log.clear()
        emu.stats = {"token": {}, "update": {}, "other": {}}
        emu.applied = 0
        emu.config = Config(emu.settings)
        return ok({"ok": True})

    return routes


def query_int(request, name):
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise AdminError("%s must be an integer" % name)
    if value < 0:
        raise AdminError("%s must not be negative" % name)
    return value


def config_view(emu):
    out = emu.config.view()
    out["clients"] = sorted(emu.settings.clients)
    out["entryPoints"] = sorted(emu.settings.entry_points)
    out["requestLogSize"] = emu.settings.log_size
    return out


def make_app(emu):
    """The emulator's routes: the two DRUID calls, the admin API, and 404/405 for the rest."""
    routes = admin_routes(emu)
    routes.post(TOKEN_PATH)(emu.handle_token)
    routes.post(UPDATE_PATH)(emu.handle_update)
    routes.fallback = emu.handle_other
    return routes


async def start_server(emu, host="127.0.0.1", port=0, ssl_context=None, backlog=1024,
                       max_body=MAX_BODY):
    """Serve `emu` on host:port in the running loop; `await server.close()` stops it."""
    server = HttpServer(make_app(emu), max_body)
    await server.start(host, port, ssl_context, backlog)
    emu.start_maintenance()
    server.on_close.append(emu.stop_maintenance)
    return server


# --------------------------------------------------------------------------- command line

def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="DRUID emulator: token + user update endpoints with an admin API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    parser.add_argument("--client", action="append", metavar="ID:SECRET",
                        help="accepted client credentials (repeatable; default "
                             "druid-sync-demo:demo-secret)")
    parser.add_argument("--entry-point", action="append", metavar="ID",
                        help="accepted From header values (repeatable; default "
                             "231705665113870-main)")
    parser.add_argument("--users", metavar="FILE", help="seed users from a JSON file")
    parser.add_argument("--token-ttl", type=float, default=60.0, metavar="SECONDS")
    parser.add_argument("--reusable-tokens", action="store_true",
                        help="allow a token to be used more than once")
    parser.add_argument("--tls-cert", metavar="FILE")
    parser.add_argument("--tls-key", metavar="FILE")
    parser.add_argument("--log-requests", type=int, default=100000, metavar="N",
                        help="keep the last N requests (0 disables the request log)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    clients = {}
    for item in args.client or ():
        client_id, sep, secret = item.partition(":")
        if not sep or not client_id or not secret:
            parser.error("--client must be ID:SECRET, got %r" % item)
        clients[client_id] = secret
    args.clients = clients
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    if args.token_ttl <= 0:
        parser.error("--token-ttl must be positive")
    if args.log_requests < 0:
        parser.error("--log-requests must not be negative")
    return args


async def serve(args):
    settings = Settings(args.clients, args.entry_point, args.token_ttl,
                        not args.reusable_tokens, args.log_requests, args.quiet)
    emu = Emulator(settings)
    if args.users:
        count = emu.load_seed_file(args.users)
        if not args.quiet:
            print("druid-emulator: %d users loaded from %s" % (count, args.users),
                  file=sys.stderr, flush=True)

    ssl_context = None
    if args.tls_cert:
        ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ssl_context.minimum_version = ssl.TLSVersion.TLSv1_2
        ssl_context.load_cert_chain(args.tls_cert, args.tls_key)

    server = await start_server(emu, args.host, args.port, ssl_context)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    port = server.port
    host = "[%s]" % args.host if ":" in args.host else args.host
    scheme = "https" if ssl_context else "http"
    print("druid-emulator listening on %s://%s:%d" % (scheme, host, port), flush=True)
    try:
        await stop.wait()
    finally:
        await server.close()
    if not args.quiet:
        print("druid-emulator: stopped", file=sys.stderr, flush=True)


def main(argv=None):
    # A parent may hand us a blocked signal mask (threaded test runners do); SIGTERM
    # and SIGINT must reach the asyncio handlers below.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    args = parse_args(argv)
    # A wave of ~256 requests in flight allocates a few thousand container objects, which
    # with the default threshold (700) set off a young-generation collection every hundred
    # requests or so and promoted in-flight requests to the older generations, to be scanned
    # again there: about a tenth of the CPU under the latency benchmark. Collecting the young
    # generation every 10,000 allocations instead costs a quarter of that.
    gc.set_threshold(10000, 10, 10)
    logging.basicConfig(level=logging.CRITICAL if args.quiet else logging.WARNING,
                        format="druid-emulator: %(levelname)s %(name)s: %(message)s")
    try:
        try:
            # uvloop (Debian's python3-uvloop) roughly halves the event loop's cost per
            # request; the emulator works the same without it.
            import uvloop
            uvloop.install()
        except ImportError:
            pass
        asyncio.run(serve(args))
    except (OSError, ValueError, AdminError) as exc:
        print("druid-emulator: %s" % exc, file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
