"""Debian's Chromium driven by Playwright (never a downloaded browser), shared by the browser tests."""

from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager

__all__ = ["CHROMIUM", "chromium_context"]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
         "--disable-component-update", "--disable-sync", "--disable-quic"]


@contextmanager
def chromium_context(sync_api, **options):
    """A headless persistent context in a fresh profile; ``options`` go to Playwright."""
    profile = tempfile.mkdtemp(prefix="vexora-chromium-")
    try:
        with sync_api.sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True,
                                                            args=FLAGS, **options)
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
