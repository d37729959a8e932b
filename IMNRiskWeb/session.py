"""One browser session: a trame server with its own MRML scene, clinical form, result and upload
folder, started by the launcher (`IMNRiskWeb.server`) for one tab, and ended when that tab has been
closed for --grace-seconds, after --idle-minutes without a user action, or by SIGINT, SIGTERM or
SIGHUP; its uploads are removed however it ends. Its secret comes in the environment, not argv.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import List, Optional

from IMNRiskLib.core.errors import InputError

from .server import SESSION_SECRET_ENV, WebOptions

QUIET_LOGGERS = ("aiohttp.access", "wslink", "trame", "trame_server", "trame_client", "trame_slicer", "radiomics")


def quiet_logs() -> None:
    """No request logs (they could carry upload names), no pyradiomics INFO lines: warnings only."""
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        from IMNRiskLib.radiomics.settings import quiet_pyradiomics
        quiet_pyradiomics()
        logging.getLogger("radiomics").setLevel(logging.WARNING)
    except ImportError:
        pass


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def parse(argv: List[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m IMNRiskWeb.session")
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--model")
    p.add_argument("--models")
    p.add_argument("--trusted-key")
    p.add_argument("--max-upload-mb", type=int, default=1024)
    p.add_argument("--idle-minutes", type=float, default=30.0)
    p.add_argument("--grace-seconds", type=float, default=30.0)
    return p.parse_args(argv)


def trame_argv(program: str, grace_seconds: float, secret: str) -> List[str]:
    """The command line trame parses: a server, its timeout and the session's secret. The secret
    is joined to its option with '=': a random token that starts with '-' would otherwise be read
    as an option, and the session would not start (seen once in 600 starts)."""
    return [program, "--server", "--timeout", str(max(1, int(round(grace_seconds))))] + \
        ([f"--authKey={secret}"] if secret else [])


def run(argv: Optional[List[str]] = None) -> int:
    """Serve one session until it ends; its uploads are removed in every case."""
    args = parse(sys.argv[1:] if argv is None else argv)
    options = WebOptions(model=args.model, models_dir=args.models, trusted_key=args.trusted_key,
                         max_upload_mb=args.max_upload_mb, idle_minutes=args.idle_minutes,
                         grace_seconds=args.grace_seconds)
    secret = os.environ.pop(SESSION_SECRET_ENV, "")
    from . import study
    uploads = study.Uploads()
    for signum in (signal.SIGTERM, signal.SIGHUP):  # a plain kill or a closed terminal also remove the uploads
        signal.signal(signum, _interrupt)
    try:
        os.environ.setdefault("TRAME_DISABLE_V3_WARNING", "1")
        from trame.app import get_server
        from .app import IMNRiskWebApp
        server = get_server("imnrisk", client_type="vue3")
        # trame reads its own options from sys.argv: give it only ours (wslink ends the process
        # --timeout seconds after its last client has gone: the tab was closed)
        sys.argv = trame_argv(sys.argv[0], options.grace_seconds, secret)
        IMNRiskWebApp(server, options=options, uploads=uploads)
        quiet_logs()
        server.start(host=args.host, port=args.port, open_browser=False, show_connection_info=False,
                     timeout=max(1, int(round(options.grace_seconds))), disable_logging=True)
    except KeyboardInterrupt:  # SIGINT, SIGTERM, SIGHUP: a normal end
        pass
    except InputError as exc:
        print(f"imnrisk web: session: {exc}", file=sys.stderr, flush=True)
        return 2
    finally:
        uploads.close()
    return 0


if __name__ == "__main__":
    sys.exit(run())
