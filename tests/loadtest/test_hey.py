"""``loadtest.hey``: hey's load, its summary read back, every unanswered request counted."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from loadtest import hey
from loadtest.process import free_port
from tests.conftest import require_tool

IMAGE = b"\xff\xd8 not really a jpeg \xff\xd9"


class _Alternating(BaseHTTPRequestHandler):
    """Answers every third upload 503, the others 200; records what it was sent."""

    bodies: ClassVar[list[bytes]] = []
    lock: ClassVar = threading.Lock()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.lock:
            self.bodies.append(body)
            status = 503 if len(self.bodies) % 3 == 0 else 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: hey sends hundreds."""


@pytest.fixture
def server() -> Iterator[str]:
    _Alternating.bodies = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Alternating)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_every_answer_is_counted_and_only_200s_are_throughput(server: str, tmp_path: Path) -> None:
    require_tool("hey")
    body = tmp_path / "body"
    body.write_bytes(hey.multipart_body(IMAGE))
    result = hey.run(f"{server}/predict", body, concurrency=2, duration_s=1)
    sent = len(_Alternating.bodies)
    assert sent > 10
    assert result.answered + result.errors == sent
    assert result.errors == sent // 3
    assert result.throughput == pytest.approx(result.answered / result.duration_s)
    assert 0 < result.percentile_ms(50) <= result.percentile_ms(99) < 1000
    assert all(b == hey.multipart_body(IMAGE) for b in _Alternating.bodies)


def test_requests_that_get_no_answer_are_errors(tmp_path: Path) -> None:
    require_tool("hey")
    body = tmp_path / "body"
    body.write_bytes(hey.multipart_body(IMAGE))
    result = hey.run(f"http://127.0.0.1:{free_port()}/predict", body, 1, 0.2)
    assert result.answered == 0
    assert result.errors > 0
    assert result.throughput == 0


def test_the_body_is_one_file_field_a_multipart_parser_reads_back() -> None:
    from email.parser import BytesParser
    from email.policy import HTTP

    body = hey.multipart_body(IMAGE)
    head = f"Content-Type: multipart/form-data; boundary={hey.BOUNDARY}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    (part,) = message.iter_parts()
    assert part.get_param("name", header="content-disposition") == "file"
    assert part.get_content_type() == "image/jpeg"
    assert part.get_payload(decode=True) == IMAGE


def test_a_summary_without_totals_is_an_error() -> None:
    with pytest.raises(hey.HeyError, match="no summary"):
        hey.parse("Error: bad flag", 1)


# hey's summary of 40 answers (hey -n 40 -c 1): no 99th percentile, a "0%" line instead.
FEW_ANSWERS = """
Summary:
  Total:\t0.0389 secs
  Slowest:\t0.0021 secs
  Fastest:\t0.0006 secs

Latency distribution:
  10% in 0.0007 secs
  50% in 0.0009 secs
  95% in 0.0018 secs
  0% in 0.0000 secs

Status code distribution:
  [200]\t38 responses
  [503]\t2 responses
"""


def test_the_99th_percentile_of_fewer_than_100_answers_is_the_slowest() -> None:
    result = hey.parse(FEW_ANSWERS, 1)
    assert (result.answered, result.errors, result.timed) == (38, 2, 40)
    assert result.percentile_ms(95) == pytest.approx(1.8)
    assert result.percentile_ms(99) == pytest.approx(2.1)


def test_a_percentile_hey_leaves_out_of_many_answers_stays_unknown() -> None:
    many = FEW_ANSWERS.replace("[200]\t38", "[200]\t398")
    assert math.isnan(hey.parse(many, 1).percentile_ms(99))
    assert math.isnan(hey.parse("Total:\t1.0 secs\n", 1).percentile_ms(99))
