"""`diffamp serve`: parse the flags into the one ServerConfig and run the server (lifecycle.py)."""

from __future__ import annotations

import asyncio
import logging
import sys

from .config import ServerConfig, build_parser
from .lifecycle import serve


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = ServerConfig.from_env(**vars(args))
        asyncio.run(serve(config))
    except (ValueError, OSError) as exc:
        print(f"diffamp serve: {exc}", file=sys.stderr)
        return 2
    return 0
