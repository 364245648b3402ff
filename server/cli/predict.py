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
#: The most classes a server answers per image (server.config.MAX_TOP_K, not imported:
#: this command needs none of the server's modules).
MAX_TOP_K: Final = 20
#: Room for the multipart framing of each file on top of its bytes.
_PART_OVERHEAD_BYTES: Final = 1024


def _top_k(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_TOP_K:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {MAX_TOP_K}")
    return value


def register(subparsers: Any) -> None:
    """Add ``predict`` and its options."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "predict",
        help="classify images on a running batchserve server",
        description="Send the images to a running server (POST /predict/batch, in as many "
        "requests as its limits need) and print each one's top-k classes. Overload (503) "
        "and rate limits (429) are retried after their Retry-After.",
    )
    parser.add_argument(
        "images", nargs="+", type=Path, metavar="IMAGE",
        help="image files (JPEG, PNG, WebP, ...); more than the server takes in one request "
        "are sent in several",
    )  # fmt: skip
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the server")
    parser.add_argument("--model", help="a served model's name (default: the server's default)")
    parser.add_argument(
        "--top-k", type=_top_k, default=5, help=f"classes per image (1-{MAX_TOP_K})"
    )
    parser.add_argument(
        "--api-key", default=os.environ.get("BATCHSERVE_API_KEY"),
        help="an API key (default: $BATCHSERVE_API_KEY)",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(handler=run, parser=parser)


def run(args: argparse.Namespace) -> int:
    """Classify and print; 1 when the server refused or could not be reached."""
    missing = [str(path) for path in args.images if not path.is_file()]
    if missing:
        print(f"batchserve predict: no such file: {', '.join(missing)}", file=sys.stderr)
        return EXIT_FAILED
    try:
        with Client(args.url, api_key=args.api_key) as client:
            results = [
                result
                for chunk in chunks(args.images, client.info()["limits"])
                for result in client.classify_many(chunk, top_k=args.top_k, model=args.model)
            ]
    except (BatchserveError, httpx.HTTPError) as exc:
        print(f"batchserve predict: {args.url}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    named = list(zip((str(path) for path in args.images), results, strict=True))
    print(_as_json(named) if args.json else _as_table(named))
    return EXIT_FAILED if any(isinstance(r, ImageError) for _, r in named) else 0


def chunks(images: list[Path], limits: dict[str, Any]) -> list[list[Path]]:
    """The images in order, in requests within the server's file count and request size."""
    max_files, max_bytes = int(limits["max_files"]), limits["max_request_mb"] * 2**20
    groups: list[list[Path]] = [[]]
    size = 0
    for image in images:
        cost = image.stat().st_size + _PART_OVERHEAD_BYTES
        if groups[-1] and (len(groups[-1]) == max_files or size + cost > max_bytes):
            groups.append([])
            size = 0
        groups[-1].append(image)
        size += cost
    return groups


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
