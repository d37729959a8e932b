"""`imnrisk web`: start the browser face on loopback, or elsewhere only behind a token.

Security rules: the server binds 127.0.0.1 unless --host says otherwise; a non-loopback host needs
a token (IMNRISK_WEB_TOKEN, else a random one printed at start), which the page must present on
the websocket (`?secret=TOKEN`, checked by wslink's hello); uploads live in a private temporary
folder removed at exit; nothing logged names a file.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import signal
import sys
from pathlib import Path
from typing import Optional

from IMNRiskLib import RESEARCH_ONLY
from IMNRiskLib.errors import InputError

TOKEN_ENV = "IMNRISK_WEB_TOKEN"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


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
    try:
        import slicer  # noqa: F401
        import trame_slicer  # noqa: F401
    except ImportError as exc:
        raise InputError(f"the browser face needs the 'web' extra ({exc.name} is missing): "
                         "pip install 'imnrisk[web]'", field="web") from None


def quiet_logs() -> None:
    """No request logs (they could carry upload names); warnings only."""
    for name in ("aiohttp.access", "wslink", "trame", "trame_server", "trame_client", "trame_slicer"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def serve(model: Optional[str], host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, random_token: bool = False,
          announce=print) -> int:
    """Run the server until interrupted; returns the exit code."""
    token = choose_token(host, random_token)
    check_web_installed()
    if model and not Path(model).is_file():
        raise InputError("model file not found", file=str(model))
    from . import study
    uploads = study.Uploads()
    signal.signal(signal.SIGTERM, _interrupt)  # a plain kill also removes the uploads
    try:
        os.environ.setdefault("TRAME_DISABLE_V3_WARNING", "1")
        from trame.app import get_server
        from .app import IMNRiskWebApp
        server = get_server("imnrisk", client_type="vue3")
        # trame reads its own options from sys.argv: give it only ours.
        sys.argv = [sys.argv[0], "--server", "--timeout", "0"] + (["--authKey", token] if token else [])
        IMNRiskWebApp(server, model=model, uploads=uploads)
        quiet_logs()

        def ready(**_):
            url = f"http://{host if ':' not in host else '[' + host + ']'}:{server.port}/"
            announce(f"imnrisk web: ready at {url}" + (f"?secret={token}" if token else "")
                     + f" ({RESEARCH_ONLY})", flush=True)
        server.controller.on_server_ready.add(ready)
        server.start(host=host, port=port, open_browser=False, show_connection_info=False, timeout=0,
                     disable_logging=True)
    except KeyboardInterrupt:  # SIGTERM (see _interrupt): a normal stop
        pass
    finally:
        uploads.close()
    return 0
