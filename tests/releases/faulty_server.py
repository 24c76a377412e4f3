"""A layerops server whose one version misbehaves, for release tests: `python -m
tests.releases.faulty_server PORT BROKEN_VERSION FAULT_JSON` (settings from `LAYEROPS_*`)."""

from __future__ import annotations

import json
import sys

import uvicorn

from layerops.delivery.app import create_app
from layerops.delivery.settings import ServeSettings
from tests.releases.serving import break_version, runtime_for


def main() -> None:
    port, broken, fault = int(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
    runtime = runtime_for(ServeSettings())
    if broken:
        break_version(runtime, broken, **fault)
    uvicorn.run(create_app(runtime), host="127.0.0.1", port=port, log_config=None, access_log=False)


if __name__ == "__main__":
    main()
