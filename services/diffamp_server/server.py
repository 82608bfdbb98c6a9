"""`diffamp serve`: parse the flags into the one ServerConfig and run the server (lifecycle.py)."""

from __future__ import annotations

import asyncio
import sys

from .config import ServerConfig, build_parser
from .lifecycle import serve
from .logs import setup_logging


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = ServerConfig.from_env(**vars(args))
        setup_logging(config.log_format)
        asyncio.run(serve(config))
    except (ValueError, OSError) as exc:
        print(f"diffamp serve: {exc}", file=sys.stderr)
        return 2
    return 0
