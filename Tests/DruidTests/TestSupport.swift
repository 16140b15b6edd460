import Foundation
import Synchronization

/// A helper process the tests talk to over loopback: our own aiohttp test server, or the
/// DRUID emulator. It runs under a tiny Python watchdog that ends it when the test process
/// exits (its stdin, held by us, reaches end of file), so no server outlives the tests.
final class TestServerProcess: Sendable {
    let port: Int
    private let process: Process
    /// Kept open for the watchdog; closing it ends the server.
    private let keepAlive: Pipe

    static let python = "/usr/bin/python3"

    /// Starts `arguments` (after the Python interpreter) and waits for a stdout line
    /// containing `readyMarker`, from which it reads the port (the number after the last `:`
    /// or space).
    init(arguments: [String], readyMarker: String) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: TestServerProcess.python)
        process.arguments = ["-c", TestServerProcess.watchdog, TestServerProcess.python] + arguments
        let input = Pipe()
        let output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        var seen = Data()
        var readyLine: String?
        let reader = output.fileHandleForReading
        while readyLine == nil {
            let chunk = reader.availableData
            if chunk.isEmpty { break }
            seen.append(chunk)
            let text = String(decoding: seen, as: UTF8.self)
            readyLine = text.split(separator: "\n").first { $0.contains(readyMarker) }.map(String.init)
        }
        guard let readyLine,
            let port = Int(readyLine.split(whereSeparator: { $0 == ":" || $0 == " " || $0 == "/" }).last ?? "")
        else {
            process.terminate()
            throw TestServerError.didNotStart(String(decoding: seen, as: UTF8.self))
        }
        self.port = port
        self.process = process
        self.keepAlive = input
    }

    /// Ends the server now.
    func stop() {
        try? keepAlive.fileHandleForWriting.close()
        process.waitUntilExit()
    }

    /// Runs the command in argv[1:] and ends it when our stdin reaches end of file.
    /// The test process may start us from a thread that blocks most signals, and a spawned
    /// process inherits that mask: unblock them first, or SIGTERM would never arrive.
    private static let watchdog = """
        import os, signal, subprocess, sys, threading
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        child = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL)
        def watch():
            while os.read(0, 4096):
                pass
            child.terminate()
            try:
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                child.kill()
        threading.Thread(target=watch, daemon=True).start()
        sys.exit(child.wait())
        """
}

enum TestServerError: Error {
    case didNotStart(String)
    case commandFailed(String)
}

/// Files created once per test run: the aiohttp server script and a private CA with a
/// server certificate for `localhost` (made with the `openssl` command).
enum TestFiles {
    static let directory: URL = {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("druid-tests-\(getpid())")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }()

    static let serverScript: String = {
        let path = directory.appendingPathComponent("test_server.py").path
        try! testServerSource.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }()

    /// (caFile, certFile, keyFile)
    static let certificates: (ca: String, cert: String, key: String) = {
        let dir = directory.path
        let commands = [
            [
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=druid-sync test CA",
                "-keyout", "\(dir)/ca.key", "-out", "\(dir)/ca.pem",
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            ],
            [
                "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
                "-keyout", "\(dir)/server.key", "-out", "\(dir)/server.csr",
            ],
            [
                "x509", "-req", "-in", "\(dir)/server.csr", "-CA", "\(dir)/ca.pem", "-CAkey", "\(dir)/ca.key",
                "-CAcreateserial", "-days", "2", "-out", "\(dir)/server.pem", "-extfile", "\(dir)/san.ext",
            ],
        ]
        try! "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
            .write(toFile: "\(dir)/san.ext", atomically: true, encoding: .utf8)
        for arguments in commands {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
            process.arguments = arguments
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try! process.run()
            process.waitUntilExit()
            precondition(process.terminationStatus == 0, "openssl \(arguments.first!) failed")
        }
        return ("\(dir)/ca.pem", "\(dir)/server.pem", "\(dir)/server.key")
    }()
}

/// Our aiohttp test server, one plain and one TLS instance shared by every test.
enum TestServers {
    static let plain: TestServerProcess = try! TestServerProcess(
        arguments: [TestFiles.serverScript], readyMarker: "listening")
    static let tls: TestServerProcess = {
        let files = TestFiles.certificates
        return try! TestServerProcess(
            arguments: [TestFiles.serverScript, "--cert", files.cert, "--key", files.key], readyMarker: "listening")
    }()

    static var plainURL: String { "http://127.0.0.1:\(plain.port)" }
}

/// A port on 127.0.0.1 where nothing listens (bound, read, then closed).
func closedPort() -> Int {
    let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(descriptor) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, length) }
    }
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
    }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// Parses a JSON object answer with Foundation (test side only).
func jsonObject(_ bytes: [UInt8]) -> [String: Any] {
    (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any] ?? [:]
}

func jsonArray(_ bytes: [UInt8]) -> [[String: Any]] {
    (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [[String: Any]] ?? []
}

/// The aiohttp server the HTTPClient tests use (also a minimal DRUID for the client tests,
/// under `/d/{scope}/…` so that parallel tests keep separate canned answers and logs).
let testServerSource = #"""
    import argparse, asyncio, base64, hashlib, json, os, ssl, sys, urllib.parse
    from aiohttp import web

    stats = {}      # tag -> {"requests": n, "peers": set()}
    canned = {}     # (scope, endpoint) -> [answer]
    log = {}        # scope -> [entry]
    challenges = {} # challenge -> token
    tokens = {}     # token -> {"challenge": c, "used": bool}
    CLIENT_ID, CLIENT_SECRET = "client-1", "s3cret-value"

    def peer(request):
        info = request.transport.get_extra_info("peername")
        return "%s:%s" % (info[0], info[1]) if info else "?"

    async def echo(request):
        body = await request.read()
        tag = request.query.get("tag")
        if tag:
            entry = stats.setdefault(tag, {"requests": 0, "peers": set()})
            entry["requests"] += 1
            entry["peers"].add(peer(request))
        answer = {"method": request.method, "path": request.path, "query": request.rel_url.raw_query_string,
                  "headers": {k.lower(): v for k, v in request.headers.items()},
                  "body": body.decode("utf-8", "replace"), "peer": peer(request)}
        return web.json_response(answer, headers={"X-Echo-Count": str(len(body))})

    async def stats_handler(request):
        entry = stats.get(request.query["tag"], {"requests": 0, "peers": set()})
        return web.json_response({"requests": entry["requests"], "peers": len(entry["peers"])})

    async def sleep(request):
        await asyncio.sleep(int(request.query.get("ms", "1000")) / 1000)
        return web.Response(text="slept")

    async def status(request):
        code = int(request.query.get("code", "200"))
        headers = {}
        if "retry_after" in request.query:
            headers["Retry-After"] = request.query["retry_after"]
        return web.json_response({"result": {"status": code}}, status=code, headers=headers)

    async def big(request):
        return web.Response(body=b"x" * int(request.query["n"]))

    async def answer_then_close(request):
        # Answers with keep-alive, then closes the idle connection, as a server does when
        # its keep-alive timeout passes.
        transport = request.transport
        asyncio.get_running_loop().call_later(int(request.query.get("ms", "50")) / 1000, transport.close)
        return web.Response(text="ok")

    async def drop(request):
        request.transport.close()
        await asyncio.sleep(0.5)
        return web.Response(text="never")

    def s256(verifier):
        return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()

    def take_canned(scope, endpoint):
        queue = canned.get((scope, endpoint))
        if queue:
            answer = queue.pop(0)
            body = answer.get("body", {})
            raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            return web.Response(status=answer.get("status", 200), body=raw,
                                headers=answer.get("headers", {}), content_type="application/json")
        return None

    async def token(request):
        scope = request.match_info["scope"]
        body = await request.read()
        form = dict(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))
        log.setdefault(scope, []).append({"endpoint": "token", "form": form, "raw": body.decode(),
            "headers": {k.lower(): v for k, v in request.headers.items()}})
        answer = take_canned(scope, "token")
        if answer is not None:
            return answer
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return web.json_response({"error": "invalid client_secret " + form.get("client_secret", ""),
                                      "type": "InvalidGrantException"}, status=400)
        challenge = form.get("code_challenge", "")
        if challenge in challenges:
            return web.json_response({"error": "challenge reused", "type": "InvalidGrantException"}, status=400)
        issued = "tok-" + os.urandom(12).hex()
        challenges[challenge] = issued
        tokens[issued] = {"challenge": challenge, "used": False}
        return web.json_response({"access_token": issued, "token_type": "bearer", "expires_in": 60})

    async def update(request):
        scope = request.match_info["scope"]
        body = await request.read()
        verifier = request.query.get("code_verifier", "")
        log.setdefault(scope, []).append({"endpoint": "update", "verifier": verifier, "query": request.rel_url.raw_query_string,
            "headers": {k.lower(): v for k, v in request.headers.items()}, "body": body.decode("utf-8", "replace")})
        answer = take_canned(scope, "update")
        if answer is not None:
            return answer
        auth = request.headers.get("Authorization", "")
        issued = auth[len("Bearer "):] if auth.startswith("Bearer ") else ""
        grant = tokens.get(issued)
        if grant is None or grant["used"] or s256(verifier) != grant["challenge"]:
            return web.json_response({"result": {"status": 401, "errors": [{"message": "token", "details": "invalid"}]}}, status=401)
        grant["used"] = True
        return web.json_response({"content": {"objectType": "user"}, "result": {"status": 200, "errors": []}})

    async def admin_canned(request):
        spec = await request.json()
        canned.setdefault((request.match_info["scope"], spec["endpoint"]), []).extend([spec] * spec.get("count", 1))
        return web.json_response({})

    async def admin_log(request):
        return web.json_response(log.get(request.match_info["scope"], []))

    async def main():
        parser = argparse.ArgumentParser()
        parser.add_argument("--cert")
        parser.add_argument("--key")
        args = parser.parse_args()
        app = web.Application(client_max_size=64 << 20)
        app.router.add_route("*", "/echo", echo)
        app.router.add_get("/stats", stats_handler)
        app.router.add_get("/sleep", sleep)
        app.router.add_route("*", "/status", status)
        app.router.add_get("/big", big)
        app.router.add_get("/drop", drop)
        app.router.add_get("/answer-then-close", answer_then_close)
        app.router.add_post("/d/{scope}/oauth2/token", token)
        app.router.add_post("/d/{scope}/activityid/v1/user/update", update)
        app.router.add_post("/d/{scope}/admin/canned", admin_canned)
        app.router.add_get("/d/{scope}/admin/log", admin_log)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        context = None
        if args.cert:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(args.cert, args.key)
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context, backlog=1024)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        print("listening %d" % port, flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())
    """#
