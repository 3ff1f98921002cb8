"""The real binaries tests run: found on PATH, skipped locally when absent, required in CI."""

from __future__ import annotations

import os
import shutil

import pytest

__all__ = ["amtool", "mmdebstrap", "podman", "promtool", "required"]


def required(name: str, package: str) -> str:
    """Path of ``name``; skips the test locally when absent, fails it under ``CI``."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is required in CI (Debian package {package})")
        pytest.skip(f"{name} not installed (apt-get install {package})")
    return path


def promtool() -> str:
    """Path of promtool (Debian package prometheus)."""
    return required("promtool", "prometheus")


def amtool() -> str:
    """Path of amtool (Debian package prometheus-alertmanager)."""
    return required("amtool", "prometheus-alertmanager")


def podman() -> str:
    """Path of podman (Debian package podman): builds and mounts the container image."""
    return required("podman", "podman")


def mmdebstrap() -> str:
    """Path of mmdebstrap (Debian package mmdebstrap): makes the image test's local base."""
    return required("mmdebstrap", "mmdebstrap")
