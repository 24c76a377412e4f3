"""`layerops serve` holds its port before it says it serves; a busy port is one line and exit 1."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.cli.conftest import layerops


def test_a_busy_port_is_one_clear_line_before_any_serving_on(registry: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = layerops("--home", "home", "serve", "--port", str(port), cwd=registry, timeout=60)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: cannot serve on 127.0.0.1:{port}: Address already in use; "
        "choose another with --port or LAYEROPS_PORT"
    ]
    assert "serving" not in result.stdout + result.stderr
