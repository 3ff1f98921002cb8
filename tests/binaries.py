"""The real binaries tests run: found on PATH, skipped locally when absent, required in CI."""

from __future__ import annotations

import os
import shutil

import pytest

__all__ = [
    "alertmanager_binary",
    "amtool",
    "chromium",
    "missing",
    "mmdebstrap",
    "podman",
    "prometheus",
    "promtool",
    "required",
    "systemd_analyze",
]


def missing(reason: str) -> None:
    """What a test does without something it needs: skip locally, fail under ``CI``."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (required in CI)")
    pytest.skip(reason)


def required(name: str, package: str, *aliases: str) -> str:
    """Path of ``name`` (or an alias); skips the test locally when absent, fails it in CI."""
    for candidate in (name, *aliases):
        if path := shutil.which(candidate):
            return path
    missing(f"{name} not installed (Debian package {package})")
    raise AssertionError("unreachable")  # missing() always raises


def prometheus() -> str:
    """Path of prometheus (Debian package prometheus)."""
    return required("prometheus", "prometheus")


def alertmanager_binary() -> str:
    """Path of Alertmanager (Debian package prometheus-alertmanager)."""
    return required("prometheus-alertmanager", "prometheus-alertmanager", "alertmanager")


def systemd_analyze() -> str:
    """Path of systemd-analyze (Debian package systemd)."""
    return required("systemd-analyze", "systemd")


def chromium() -> str:
    """Path of a headless Chromium (Debian packages chromium, chromium-driver)."""
    return required("chromium", "chromium", "chromium-browser", "google-chrome")


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
