"""``livesense serve``: the live-session websocket server and the browser client."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import secrets
import signal
import sys
from collections.abc import Callable
from urllib.parse import urlsplit

import torch

from livesense.cli.options import (
    add_device_options,
    add_neural_options,
    device_dtype,
    warn_untrained,
)
from livesense.errors import ConfigError
from livesense.live.engines import DspEngine, Engines, NeuralEngine, RendererEngine, reasoner_engine
from livesense.live.server.app import LiveServer
from livesense.live.server.config import ServerConfig
from livesense.live.server.protocol import PATH

DESCRIPTION = """\
Serve live sessions on ws://HOST:PORT/v1/session and the browser client on http://HOST:PORT/. \
Without --token a random token is generated and printed. One copy of each model serves every \
session: every neural session renders in a slot of one batched engine (one network call per tick for all of them, on --device), the video reasoner on a thread pool. SIGTERM or Ctrl-C stops accepting and lets every session finish (its audio rendered and sent, then "done", close code 1001) before exiting 0 (SIGTERM) or 130 (Ctrl-C); a second signal stops at once."""

_DEFAULT = ServerConfig()


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = _DEFAULT
    p.add_argument(
        "--host", default=d.host, help=f"bind address (default: {d.host}, loopback only)"
    )
    p.add_argument("--port", type=int, default=d.port, help=f"TCP port (default {d.port}; 0 = any)")
    auth = p.add_mutually_exclusive_group()
    auth.add_argument(
        "--token", help='access token clients send as ?token= or as "token" in "start"'
    )
    auth.add_argument("--no-auth", action="store_true", help="accept clients without a token")
    p.add_argument(
        "--max-sessions",
        type=int,
        default=d.max_sessions,
        metavar="N",
        help=f"default {d.max_sessions}",
    )
    p.add_argument(
        "--renderer",
        choices=("neural", "dsp"),
        default=d.renderer,
        help=f"renderer for sessions that do not choose one (default {d.renderer}): neural "
        "(the bundled model unless --checkpoint) or dsp (direct-path HRTF, the cheapest)",
    )
    p.add_argument(
        "--vlm",
        default="none",
        metavar="MODEL|tiny|none",
        help="video reasoner: none (default), tiny, fake (test stand-in) or a model name",
    )
    p.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="extra allowed browser Origin, e.g. https://example.org (repeatable)",
    )
    p.add_argument(
        "--idle-timeout",
        type=float,
        default=d.idle_timeout_s,
        metavar="S",
        help=f"default {d.idle_timeout_s:g} s",
    )
    p.add_argument(
        "--max-session",
        type=float,
        default=d.max_session_s,
        metavar="S",
        help=f"default {d.max_session_s / 3600:g} h",
    )
    add_neural_options(p.add_argument_group("neural renderer"))
    add_device_options(p.add_argument_group("device"))


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    """A :class:`ServerConfig` from ``serve`` arguments (ConfigError on bad values)."""
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be in 0..65535, got {args.port}")
    if args.max_sessions <= 0:
        raise ConfigError(f"--max-sessions must be positive, got {args.max_sessions}")
    for o in args.allow_origin:
        u = urlsplit(o)
        if u.scheme not in ("http", "https") or not u.netloc or u.path not in ("", "/"):
            raise ConfigError(f"--allow-origin must look like https://host[:port], got {o!r}")
    token = None if args.no_auth else (args.token or secrets.token_urlsafe(16))
    if token is not None and not token:
        raise ConfigError("--token must not be empty")
    return ServerConfig(
        host=args.host,
        port=args.port,
        token=token,
        max_sessions=args.max_sessions,
        renderer=args.renderer,
        allow_origins=tuple(o.rstrip("/") for o in args.allow_origin),
        idle_timeout_s=args.idle_timeout,
        max_session_s=args.max_session,
    )


def build_engines(args: argparse.Namespace, cfg: ServerConfig) -> Engines:
    """One engine per model for the whole process: DSP, neural (loaded now when it is the
    default or a checkpoint is named, so a bad one fails at start; else on first use) and the
    reasoner of ``--vlm``."""
    warn_untrained(args)
    dsp = DspEngine()
    device, dtype = device_dtype(args, None)

    def neural() -> NeuralEngine:
        return NeuralEngine(
            args.checkpoint, args.random_weights, args.nfe, dsp=dsp,
            capacity=cfg.max_sessions, device=device, dtype=dtype or torch.float32,
            process=device.type == "cpu",
        )  # fmt: skip

    eager = cfg.renderer == "neural" or args.checkpoint or args.random_weights
    renderers: dict[str, RendererEngine | Callable[[], RendererEngine]] = {
        "dsp": dsp,
        "neural": neural() if eager else neural,
    }
    return Engines(renderers, reasoner_engine(args.vlm, device=device, dtype=dtype))


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM or Ctrl-C; then drain (see DESCRIPTION)."""
    cfg = config_from_args(args)
    engines = build_engines(args, cfg)
    # On the CPU the neural engine's network runs in its own process (the cores are its);
    # what torch work stays here (the video reasoner) gets one thread, no oversubscription.
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING)
    server = LiveServer(cfg, engines)
    gc.freeze()  # the loaded models live on: full collections skip them (no long pauses live)

    async def serve() -> None:
        try:
            await server.start()
        except OSError as e:
            raise ConfigError(
                f"cannot listen on {cfg.host}:{cfg.port}: {e.strerror or e}"
            ) from None
        host = cfg.host if ":" not in cfg.host else f"[{cfg.host}]"
        q = f"?token={cfg.token}" if cfg.token else ""
        print(f"livesense: serving live sessions on ws://{host}:{server.port}{PATH}{q}")
        print(f"livesense: browser client at http://{host}:{server.port}/{q}", flush=True)
        loop = asyncio.get_running_loop()
        signals: list[int] = []
        first, second = asyncio.Event(), asyncio.Event()

        def on_signal(sig: int) -> None:
            signals.append(sig)
            (first if len(signals) == 1 else second).set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig)
        try:
            await first.wait()
            n = len(server.sessions)
            print(
                f"livesense: stopping; finishing {n} session(s) (signal again to stop at once)",
                file=sys.stderr,
                flush=True,
            )
            drain = asyncio.create_task(server.drain())
            hard = asyncio.create_task(second.wait())
            await asyncio.wait({drain, hard}, return_when=asyncio.FIRST_COMPLETED)
            drain.cancel()
            hard.cancel()
        finally:
            await server.close()
        print("livesense: stopped", file=sys.stderr)
        return 130 if signals[0] == signal.SIGINT else 0

    return asyncio.run(serve())
