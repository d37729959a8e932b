"""`imnrisk web`: start the browser face on loopback, or elsewhere only behind a token.

One patient per browser session: `serve` runs a small launcher (aiohttp, no VTK) on the port;
each visit of its page starts one session process (`IMNRiskWeb.session`: a trame server with its own
MRML scene, form, result and upload folder) on another port, and the page moves to it with a
per-session secret, so no other tab can join it. A session process ends when its tab has been
closed for --grace-seconds, after --idle-minutes without a user action, or with the launcher
(Ctrl-C, SIGTERM, SIGHUP); each removes its uploads when it ends.

Security rules: the server binds 127.0.0.1 unless --host says otherwise; a non-loopback host needs
a token (IMNRISK_WEB_TOKEN, else a random one printed at start), which the page must present
(`?secret=TOKEN`) to get a session; nothing logged names a file or a patient.
"""

from __future__ import annotations

import asyncio
import ctypes
import html
import ipaddress
import os
import secrets
import signal
import socket
import sys
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from IMNRiskLib import RESEARCH_ONLY
from IMNRiskLib.core.errors import InputError

TOKEN_ENV = "IMNRISK_WEB_TOKEN"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
SESSION_SECRET_ENV = "IMNRISK_WEB_SESSION_SECRET"  # how a session process gets its secret (not on its argv)
SESSION_START_TIMEOUT_S = 300  # a session process importing VTK and MRML on a loaded machine
STOP_WAIT_S = 30


@dataclass
class WebOptions:
    """What every session process of one `imnrisk web` gets."""

    model: Optional[str] = None
    models_dir: Optional[str] = None
    trusted_key: Optional[str] = None
    max_upload_mb: int = 1024
    max_sessions: int = 4
    idle_minutes: float = 30.0
    grace_seconds: float = 30.0

    def session_args(self) -> List[str]:
        """The options as a session process's command line."""
        args = ["--max-upload-mb", str(self.max_upload_mb), "--idle-minutes", str(self.idle_minutes),
                "--grace-seconds", str(self.grace_seconds)]
        for flag, value in (("--model", self.model), ("--models", self.models_dir), ("--trusted-key", self.trusted_key)):
            if value:
                args += [flag, str(Path(value).resolve())]
        return args

    def check(self) -> None:
        """Refuse missing files and senseless limits before anything starts."""
        if self.model and not Path(self.model).is_file():
            raise InputError("model file not found", file=str(self.model), field="--model")
        if self.models_dir and not Path(self.models_dir).is_dir():
            raise InputError("models folder not found", file=str(self.models_dir), field="--models")
        if self.trusted_key and not Path(self.trusted_key).is_file():
            raise InputError("public key not found", file=str(self.trusted_key), field="--trusted-key")
        for name, value in (("--max-upload-mb", self.max_upload_mb), ("--max-sessions", self.max_sessions),
                            ("--idle-minutes", self.idle_minutes), ("--grace-seconds", self.grace_seconds)):
            if not value > 0:
                raise InputError(f"{name} must be positive (got {value})", field=name)


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or 'localhost'."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def choose_token(host: str, random_token: bool = False, environ=os.environ) -> Optional[str]:
    """The websocket token: the environment's if set, else a random one if asked; on loopback
    none is needed (the machine's own users only); a non-loopback host without one is refused."""
    token = environ.get(TOKEN_ENV, "").strip()
    if token:
        if len(token) < 16:
            raise InputError(f"{TOKEN_ENV} is shorter than 16 characters", field=TOKEN_ENV)
        return token
    if random_token:
        return secrets.token_urlsafe(24)
    if not is_loopback(host):
        raise InputError(f"--host {host} is not loopback: set {TOKEN_ENV} or pass --random-token "
                         "so that only holders of the token can connect", field="--host")
    return None


def check_web_installed() -> None:
    """The optional extra is installed (trame-slicer and slicer-core), else a one-line fix."""
    import importlib.util
    for name in ("slicer", "trame_slicer", "aiohttp"):
        if importlib.util.find_spec(name) is None:  # found, not imported: the launcher stays light
            raise InputError(f"the browser face needs the 'web' extra ({name} is missing): "
                             "pip install 'imnrisk[web]'", field="web")


def free_port(host: str) -> int:
    """A port free on `host` now (the session process binds it a moment later)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """In a session process before exec: SIGTERM it when the launcher dies, even by SIGKILL (Linux)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


LAUNCH_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>IMNRisk</title><link rel="icon" href="data:,"></head>
<body style="background:#121212;color:#eee;font-family:sans-serif;padding:2em">
<h3>IMNRisk: IMN metastasis risk</h3>
<p>{notice}</p>
<p id="imn-launch">Starting your session (a private server process for this tab)&hellip;</p>
<script>
fetch("session" + window.location.search, {{method: "POST"}})
  .then(async (answer) => {{
    const body = await answer.json();
    if (!answer.ok) {{
      document.getElementById("imn-launch").textContent = body.error;
      console.error("Connection error: " + body.error);
      return;
    }}
    window.location.replace(body.url);
  }})
  .catch((error) => {{
    document.getElementById("imn-launch").textContent = "The server does not answer: " + error;
    console.error("Connection error: " + error);
  }});
</script>
</body></html>
"""


class Launcher:
    """The port the user opens: one page, and one session process per visit of it."""

    def __init__(self, host: str, token: Optional[str], options: WebOptions, env: Dict[str, str]):
        self.host, self.token, self.options, self.env = host, token, options, env
        self.sessions: Dict[int, asyncio.subprocess.Process] = {}
        self.connect_host = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host.strip("[]"))

    async def page(self, request):
        from aiohttp import web
        return web.Response(text=LAUNCH_PAGE.format(notice=html.escape(RESEARCH_ONLY)), content_type="text/html",
                            headers={"Cache-Control": "no-store"})

    async def new_session(self, request):
        """Start one session process and answer its URL (with its own secret), or say why not."""
        from aiohttp import web
        if self.token and not secrets.compare_digest(request.query.get("secret", ""), self.token):
            return web.json_response({"error": "The session was refused: open the address printed at start, "
                                               "with its ?secret=TOKEN."}, status=403)
        if len(self.sessions) >= self.options.max_sessions:
            return web.json_response({"error": f"All {self.options.max_sessions} sessions are in use: close another "
                                               "IMNRisk tab or try again later (an idle session ends after "
                                               f"{self.options.idle_minutes:g} minutes)."}, status=503)
        secret = secrets.token_urlsafe(24)
        port = free_port(self.connect_host)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "IMNRiskWeb.session", "--host", self.host, "--port", str(port),
            *self.options.session_args(), env={**self.env, SESSION_SECRET_ENV: secret},
            stdin=asyncio.subprocess.DEVNULL, preexec_fn=_die_with_parent)
        self.sessions[process.pid] = process
        asyncio.get_running_loop().create_task(self._reap(process))
        if not await self._serving(port, process):
            return web.json_response({"error": "The session could not start: see the server's output."}, status=500)
        host = request.url.host or self.connect_host
        host = f"[{host}]" if ":" in host else host
        # sessionURL: the trame client connects its websocket there at once (without it, it first asks a
        # launcher at paraview/, which this session process does not serve: a 405 in the console)
        ws = f"{'wss' if request.url.scheme == 'https' else 'ws'}://{host}:{port}/ws"
        query = urllib.parse.urlencode({"sessionURL": ws, "secret": secret})
        return web.json_response({"url": f"{request.url.scheme}://{host}:{port}/?{query}"})

    async def _serving(self, port: int, process) -> bool:
        """Wait until the session process answers on its port (False: it died or never answered)."""
        import aiohttp
        url = f"http://{'[' + self.connect_host + ']' if ':' in self.connect_host else self.connect_host}:{port}/"
        deadline = asyncio.get_running_loop().time() + SESSION_START_TIMEOUT_S
        async with aiohttp.ClientSession() as client:
            while asyncio.get_running_loop().time() < deadline and process.returncode is None:
                try:
                    async with client.get(url, timeout=aiohttp.ClientTimeout(total=5)) as answer:
                        if answer.status == 200:
                            return True
                except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                    pass
                await asyncio.sleep(0.2)  # poll interval while the session process starts
        return False

    async def _reap(self, process) -> None:
        await process.wait()
        self.sessions.pop(process.pid, None)

    async def stop_sessions(self) -> None:
        """SIGTERM every session process (each removes its uploads), then wait for them."""
        for process in list(self.sessions.values()):
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        for process in list(self.sessions.values()):
            try:
                await asyncio.wait_for(process.wait(), STOP_WAIT_S)
            except asyncio.TimeoutError:
                process.kill()
                await process.wait()

    async def run(self, port: int, announce) -> None:
        """Serve until SIGINT, SIGTERM or SIGHUP; then end every session."""
        from aiohttp import web
        app = web.Application()
        app.router.add_get("/", self.page)
        app.router.add_post("/session", self.new_session)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, port)
        await site.start()
        bound = site._server.sockets[0].getsockname()[1]  # the port chosen when --port 0
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(signum, stop.set)
        url = f"http://{self.host if ':' not in self.host else '[' + self.host + ']'}:{bound}/"
        announce(f"imnrisk web: ready at {url}" + (f"?secret={self.token}" if self.token else "")
                 + f" ({RESEARCH_ONLY})", flush=True)
        try:
            await stop.wait()
        finally:
            await self.stop_sessions()
            await runner.cleanup()


def serve(model: Optional[str], host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, random_token: bool = False,
          announce=print, options: Optional[WebOptions] = None) -> int:
    """Run the launcher until interrupted (Ctrl-C, SIGTERM, SIGHUP); returns the exit code."""
    token = choose_token(host, random_token)
    options = options or WebOptions()
    if model:
        options.model = model
    options.check()
    check_web_installed()
    env = {**os.environ, "TRAME_DISABLE_V3_WARNING": "1"}
    env.pop(TOKEN_ENV, None)  # a session needs only its own secret
    asyncio.run(Launcher(host, token, options, env).run(port, announce))
    return 0
