"""``batchserve predict IMAGE...``: classify images on a running server (batchserve_client)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any, Final

import httpx

from batchserve_client import BatchserveError, Classification, Client, ImageError

#: What ``predict`` exits with when a server error or no answer stopped it.
EXIT_FAILED: Final = 1


def register(subparsers: Any) -> None:
    """Add ``predict`` and its options."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "predict",
        help="classify images on a running batchserve server",
        description="Send the images to a running server (one request: POST /predict/batch) "
        "and print each one's top-k classes. Overload (503) and rate limits (429) are "
        "retried after their Retry-After.",
    )
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the server")
    parser.add_argument("--model", help="a served model's name (default: the server's default)")
    parser.add_argument("--top-k", type=int, default=5, help="classes per image (1-20)")
    parser.add_argument(
        "--api-key", default=os.environ.get("BATCHSERVE_API_KEY"),
        help="an API key (default: $BATCHSERVE_API_KEY)",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Classify and print; 1 when the server refused or could not be reached."""
    missing = [str(path) for path in args.images if not path.is_file()]
    if missing:
        print(f"batchserve predict: no such file: {', '.join(missing)}", file=sys.stderr)
        return EXIT_FAILED
    try:
        with Client(args.url, api_key=args.api_key) as client:
            results = client.classify_many(args.images, top_k=args.top_k, model=args.model)
    except (BatchserveError, httpx.HTTPError) as exc:
        print(f"batchserve predict: {args.url}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    named = list(zip((str(path) for path in args.images), results, strict=True))
    print(_as_json(named) if args.json else _as_table(named))
    return EXIT_FAILED if any(isinstance(r, ImageError) for _, r in named) else 0


def _as_json(results: list[tuple[str, Classification | ImageError]]) -> str:
    return json.dumps(
        [{"image": name, **dataclasses.asdict(result)} for name, result in results], indent=2
    )


def _as_table(results: list[tuple[str, Classification | ImageError]]) -> str:
    lines = []
    for name, result in results:
        lines.append(name)
        if isinstance(result, ImageError):
            lines.append(f"  error {result.code}: {result.message}")
            continue
        lines += [f"  {p.probability:7.2%}  {p.label} ({p.index})" for p in result.predictions]
    return "\n".join(lines)
