"""`python -m mailstream.scheduler --config FILE`: run one scheduler worker."""

from __future__ import annotations

import sys

import faust
from faust.sensors.prometheus import setup_prometheus_sensors

from mailstream.cli import prepare, service_parser
from mailstream.core.clock import system_clock
from mailstream.scheduler.app import build_app


def main(argv: list[str] | None = None) -> int:
    parser = service_parser("scheduler")
    parser.add_argument("--web-port", type=int, help="health and /metrics port (overrides the file)")
    parser.add_argument("--data-dir", help="local table storage (overrides the file)")
    args = parser.parse_args(argv)
    config = prepare("scheduler", args)
    updates = {k: v for k, v in (("web_port", args.web_port), ("data_dir", args.data_dir)) if v is not None}
    if updates:
        config = config.model_copy(update={"scheduler": config.scheduler.model_copy(update=updates)})
    app = build_app(config, system_clock)
    setup_prometheus_sensors(app, name_prefix="mailstream_scheduler")
    worker = faust.Worker(app, loglevel="INFO", quiet=True, override_logging=False)
    worker.execute_from_commandline()
    return 0


if __name__ == "__main__":
    sys.exit(main())
