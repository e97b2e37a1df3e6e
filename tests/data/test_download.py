"""Downloads over real HTTP, against a server on 127.0.0.1 in a thread: a good transfer, 404, a
server that never answers, and a transfer cut short. Each failure is one DownloadError naming the
URL, and nothing is left in the destination."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from subspacelab.data.download import DownloadError, Resource, fetch

PAYLOAD = bytes(range(256)) * 64  # 16 KiB
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    release = threading.Event()  # set at teardown: the hanging handler returns

    def do_GET(self) -> None:
        if self.path == "/ok.bin":
            self._head(len(PAYLOAD))
            self.wfile.write(PAYLOAD)
        elif self.path == "/slow.bin":
            self.release.wait(30)  # never answers within the client's timeout
        elif self.path == "/cut.bin":
            self._head(len(PAYLOAD))  # promises 16 KiB, sends 1 KiB, closes
            self.wfile.write(PAYLOAD[:1024])
            self.wfile.flush()
            self.close_connection = True
        else:
            self.send_error(404, "Not Found")

    def _head(self, length: int) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        _Handler.release.set()
        httpd.shutdown()
        httpd.server_close()
        _Handler.release.clear()


def _nothing_left(dest: Path) -> None:
    assert not dest.exists() or list(dest.iterdir()) == []


def test_http_download_ok(server: str, tmp_path: Path) -> None:
    got = fetch(Resource(f"{server}/ok.bin", "ok.bin", sha256=SHA), tmp_path / "dl")
    assert got.read_bytes() == PAYLOAD


def test_http_404_is_a_clear_error(server: str, tmp_path: Path) -> None:
    url = f"{server}/missing.bin"
    with pytest.raises(DownloadError, match=r"missing\.bin: download failed \(HTTP 404"):
        fetch(Resource(url, "missing.bin", sha256=SHA), tmp_path / "dl")
    _nothing_left(tmp_path / "dl")


def test_http_timeout_is_a_clear_error(server: str, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=r"slow\.bin: download failed \(no answer within 0.5 s"):
        fetch(Resource(f"{server}/slow.bin", "slow.bin", sha256=SHA), tmp_path / "dl", timeout=0.5)
    _nothing_left(tmp_path / "dl")


def test_http_truncated_transfer_is_a_clear_error(server: str, tmp_path: Path) -> None:
    # the checksum alone would catch it too: pin the truncated bytes' hash to prove the length
    # check fires on its own
    cut = hashlib.sha256(PAYLOAD[:1024]).hexdigest()
    with pytest.raises(DownloadError, match=r"cut\.bin: download failed .*truncated"):
        fetch(Resource(f"{server}/cut.bin", "cut.bin", sha256=cut), tmp_path / "dl")
    _nothing_left(tmp_path / "dl")
