"""Trained weights in and out: checksums, safe loading and the device to run on.

Shared by the 3D segmenter and the 2D plane predictor. A shipped file's SHA-256 is recorded in
``configs/metadata.json``; :func:`read_weights` checks it before ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn as nn

from fetalbiometry.errors import InputError

__all__ = [
    "check_model_file",
    "cpu_autocast",
    "cpu_has_bfloat16_units",
    "expected_checksum",
    "fit_weights",
    "load_weights",
    "read_weights",
    "recorded_checksum",
    "resolve_device",
    "runs_in_cpu_bfloat16",
    "sha256_of",
]


def sha256_of(path: Path) -> str:
    """SHA-256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when it is available; ``cuda`` without a GPU is an input error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for, but torch sees no CUDA GPU; use --device cpu or auto")
    if device != "cpu" and not device.startswith("cuda"):
        raise InputError(f"unknown device '{device}': use auto, cpu or cuda")
    return torch.device(device)


def expected_checksum(bundle_root: Path, relative_path: str) -> str | None:
    """The SHA-256 that ``metadata.json`` records for a shipped file, if any."""
    metadata = json.loads((bundle_root / "configs" / "metadata.json").read_text(encoding="utf-8"))
    return metadata.get("model_sha256", {}).get(relative_path) or None


def recorded_checksum(bundle_root: Path, path: str | Path) -> str | None:
    """The SHA-256 ``metadata.json`` records for ``path`` if it is one of the bundle's shipped files.

    A user who passes a shipped file by its path (``fetalbiometry hc --model
    MonaiBundle/models/hc_model_synthetic_only.pt``) gets it checked as the default model is.
    """
    try:
        relative = Path(path).resolve().relative_to(Path(bundle_root).resolve())
    except ValueError:  # not inside the bundle: a user's own weights
        return None
    return expected_checksum(bundle_root, relative.as_posix())


def check_model_file(path: Path) -> None:
    """Refuse, before any network is built, a model file that is missing, empty or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"model file not found: {path}")
    if path.stat().st_size == 0:
        raise InputError(f"model file {path} is empty (0 bytes)")
    if not os.access(path, os.R_OK):
        raise InputError(f"cannot read model file {path}: permission denied")


def read_weights(path: Path, checksum: str | None) -> dict[str, torch.Tensor]:
    """The state dict saved at ``path``, after checking the file and, if known, its checksum (``weights_only``)."""
    check_model_file(path)
    if checksum is not None and sha256_of(path) != checksum:
        raise InputError(f"model file {path} does not match its SHA-256 in metadata.json; it is corrupt or replaced")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a file that is not a checkpoint
        lines = [line for line in str(error).splitlines() if line.strip()]
        reason = lines[0] if lines else type(error).__name__
        if isinstance(error, EOFError):
            reason = "the file ends early (truncated?)"
        raise InputError(f"cannot read model file {path}: {reason}") from error


def fit_weights(network: nn.Module, state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Load ``state``, read from ``path``, into ``network``; a state that does not fit is an ``InputError``."""
    try:
        network.load_state_dict(state)
    except (RuntimeError, TypeError) as error:
        raise InputError(f"model file {path} does not fit the network of its config") from error


def load_weights(network: nn.Module, path: Path, checksum: str | None) -> None:
    """Load a state dict into ``network`` after checking the file and, if known, its checksum."""
    fit_weights(network, read_weights(path, checksum), path)


def cpu_has_bfloat16_units() -> bool:
    """Whether this CPU multiplies bfloat16 matrices in hardware (Intel AMX tiles).

    PyTorch has no public query for it; its private ``torch.cpu._is_amx_tile_supported`` is asked
    if present, and any other CPU counts as without (there bfloat16 would be emulated, slower).
    """
    query = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(query()) if callable(query) else False


def runs_in_cpu_bfloat16(device: torch.device, bfloat16: bool) -> bool:
    """Whether a network asked to use ``bfloat16`` runs in it on ``device``: on the CPU only."""
    return bfloat16 and device.type == "cpu"


def cpu_autocast(device: torch.device, bfloat16: bool) -> torch.autocast:
    """``torch.autocast`` to bfloat16 where :func:`runs_in_cpu_bfloat16`, a context that does nothing elsewhere."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=runs_in_cpu_bfloat16(device, bfloat16))
