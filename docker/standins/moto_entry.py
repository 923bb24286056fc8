"""Run moto's server (``moto.server.main``, the ``moto_server`` entry point) as PID 1.

PID 1 in a container ignores SIGTERM unless it installs a handler, so ``docker stop`` would
wait for the kill timeout; this wrapper exits promptly on SIGTERM. Arguments are moto's:
``-H 0.0.0.0 -p PORT``.
"""

import signal
import sys
from types import FrameType

from moto.server import main


def _exit(signum: int, frame: FrameType | None) -> None:
    sys.exit(0)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _exit)
    main(sys.argv[1:])
