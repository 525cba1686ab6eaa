"""Start Flower for the fleet with the configured address, port and basic auth.

``python -m workers.flower`` (``make flower``). It refuses to start without
``flower.basic_auth``: Flower can revoke and inspect tasks. The credentials reach Flower
through its environment, never its command line (visible to every user in ``ps``). The
broker API and Flower's persistent state file stay off.
"""

from __future__ import annotations

import os
import sys

from workers.config import CONFIG_PATH_VARIABLE, DEFAULT_CONFIG_PATH, get_config


def flower_command() -> list[str]:
    settings = get_config().flower
    return [sys.executable, "-m", "celery", "-A", "workers.celery_app", "flower",
            f"--address={settings.address}", f"--port={settings.port}",
            "--persistent=False"]


def config_source() -> str:
    """The file the configuration is read from, or where it would be."""
    return os.environ.get(CONFIG_PATH_VARIABLE) or str(DEFAULT_CONFIG_PATH)


def main() -> None:
    settings = get_config().flower
    if not settings.basic_auth or ":" not in settings.basic_auth:
        sys.exit("flower.basic_auth (user:password) is not set; refusing to start Flower "
                 "without authentication. Set it in the configuration file "
                 f"({config_source()}: flower: basic_auth: \"ops:<password>\") or in the "
                 "environment: STAT_GUARD_FLOWER_BASIC_AUTH=ops:<password>")
    os.execve(sys.executable, flower_command(),
              {**os.environ, "FLOWER_BASIC_AUTH": settings.basic_auth})


if __name__ == "__main__":
    main()
