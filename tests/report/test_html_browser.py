"""The report as a person sees it: rendered by headless Chromium (Debian's ``chromium`` package).

Skipped where Chromium is not installed, except in CI (``CI=true``), where a
missing browser is a failure: ``.ci/run`` installs it. The browser gets no
network (its background services off, every host name unresolvable), as when
the file is opened from a mail attachment.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from batcher.report.html import write_html_report

from .test_html import busy_job

pytestmark = pytest.mark.browser

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--host-resolver-rules=MAP * ~NOTFOUND",
)
SUCCEEDED_GREEN = (0x2C, 0xA0, 0x2C)  # charts.outcomes: the "succeeded" bar
FAILED_RED = (0xD6, 0x27, 0x28)  # the "failed" bar, the 429 markers


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("chromium is not installed: in CI the browser test must run (.ci/run installs it)")
    pytest.skip("chromium is not installed (apt-get install chromium)")


def run_chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    profile = tmp_path / "profile"
    cmd = [chromium(), *FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, timeout=180, check=True)


def decode_png(data: bytes) -> tuple[int, int, list[bytes], int]:
    """(width, height, rows of pixels, bytes per pixel) of an 8-bit RGB or RGBA PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, [], b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + length
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and color in (2, 6) and interlace == 0, (depth, color, interlace)
    bpp = 3 if color == 2 else 4
    raw, stride, rows = zlib.decompress(b"".join(idat)), width * bpp, []
    prev = bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        if kind == 1:
            for x in range(bpp, stride):
                line[x] = (line[x] + line[x - bpp]) & 0xFF
        elif kind == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, prev, strict=True))
        elif kind == 3:
            for x in range(stride):
                left = line[x - bpp] if x >= bpp else 0
                line[x] = (line[x] + (left + prev[x]) // 2) & 0xFF
        elif kind == 4:
            for x in range(stride):
                a = line[x - bpp] if x >= bpp else 0
                b, c = prev[x], prev[x - bpp] if x >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, rows, bpp


@pytest.fixture
async def report(server, tmp_path) -> Path:
    cfg, _ = await busy_job(server, tmp_path)
    out = tmp_path / "report.html"
    write_html_report(cfg.state_file, str(out))
    return out


def test_chromium_parses_the_charts_as_svg_with_their_titles(report, tmp_path):
    dom = run_chromium(tmp_path, "--dump-dom", report.as_uri()).stdout.decode()
    assert dom.count("<svg") == 4
    for title in ("Throughput: rows/s and requests/s", "Retries and 429 answers", "Request latency", "Outcomes"):
        assert title in dom
    assert "time (UTC)" in dom and "failed: not_found" in dom


def test_the_screenshot_shows_the_charts_in_their_colours(report, tmp_path):
    png = tmp_path / "report.png"
    # half the device pixels: a 640 x 1200 picture of a 1280 x 2400 window, quick to decode here
    run_chromium(
        tmp_path, f"--screenshot={png}", "--window-size=1280,2400", "--force-device-scale-factor=0.5", report.as_uri()
    )
    width, height, rows, bpp = decode_png(png.read_bytes())
    assert (width, height) == (640, 1200)
    rgb = [b"".join(row[x : x + 3] for x in range(0, len(row), bpp)) for row in rows]
    pixels = [row[x : x + 3] for row in rgb for x in range(0, len(row), 3)]
    not_white = sum(1 for p in pixels if p != b"\xff\xff\xff")
    assert len(set(pixels)) > 200, "a blank or text-only page"
    assert not_white > len(pixels) // 10
    # the outcome bars were drawn (opaque fills in the chart colours), not just their labels
    assert sum(1 for row in rgb if bytes(SUCCEEDED_GREEN) * 6 in row) >= 4
    assert sum(1 for row in rgb if bytes(FAILED_RED) * 3 in row) >= 2
