"""The ``fetalbiometry`` commands that the Slicer module runs, and the process that runs them.

Heavy work (PyTorch inference, the reproducibility study) runs out of Slicer's process, as in
SlicerMONAIAuto3DSeg and SlicerTotalSegmentator: the module writes its inputs to files, starts
the same ``fetalbiometry`` command line that users run outside Slicer (with Slicer's own
Python, ``PythonSlicer``), streams the command's output into its log and reads the results back.

:class:`BackgroundProcess` starts the command in a process group of its own so that *cancel*
ends the whole tree: ``PythonSlicer`` is a launcher that starts the real interpreter as a
child, and PyTorch may start workers, so killing only the direct child would leave them
running.
"""

from __future__ import annotations

import enum
import importlib
import importlib.metadata
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path

__all__ = [
    "ACTION_REQUIREMENTS",
    "BUNDLE_FOLDER",
    "BUNDLE_REQUIREMENTS",
    "MINIMUM_PYTHON_VERSION",
    "MINIMUM_SLICER_VERSION",
    "NO_MEASUREMENT_EXIT_CODE",
    "SLICER_PROVIDED",
    "TORCH_DISTRIBUTION",
    "Action",
    "BackgroundProcess",
    "CommandError",
    "Device",
    "command_environment",
    "error_message",
    "evaluate_command",
    "fetalbiometry_command",
    "find_bundle_root",
    "follow",
    "installed_version",
    "measure_command",
    "pip_requirement",
    "progress_fraction",
    "python_executable",
    "segment_command",
    "study_command",
    "synth_command",
    "unmet_requirements",
    "unsupported_slicer_message",
    "version_satisfies",
]

#: Folder of the MONAI bundle, which holds the ``fetalbiometry`` package.
BUNDLE_FOLDER = "MonaiBundle"
_CLI_MODULE = "fetalbiometry.cli"
#: Exit status of ``fetalbiometry measure`` without a trustworthy measurement, and of ``segment``
#: with an empty or implausible head; the output says why (``fetalbiometry.errors.NO_RESULT_EXIT_CODE``;
#: 2 is argparse's usage error).
NO_MEASUREMENT_EXIT_CODE = 3
#: How ``fetalbiometry.cli.main`` starts the one-line message of a user error on stderr.
_ERROR_PREFIX = "fetalbiometry: error:"

#: The oldest Slicer the module supports. The ``fetalbiometry`` commands need Python 3.10 or newer
#: (``requires-python`` of the bundle); Slicer 5.6 and 5.8 embed Python 3.9, Slicer 5.10 Python 3.12.
#: The module's own files stay Python-3.9-safe so that an older Slicer loads it and says so.
MINIMUM_SLICER_VERSION = (5, 10)
#: The oldest Python that runs the ``fetalbiometry`` commands (``requires-python`` in pyproject.toml).
MINIMUM_PYTHON_VERSION = (3, 10)

#: Distribution name of PyTorch, installed by the PyTorch extension (it picks the CUDA build that
#: matches the driver), never by pip directly.
TORCH_DISTRIBUTION = "torch"
#: Distributions that Slicer itself ships (distribution -> import name): checked, never installed
#: by the module, since pip replacing them would break Slicer.
SLICER_PROVIDED: dict[str, str] = {"numpy": "numpy", "SimpleITK": "SimpleITK"}
#: The bundle's requirements, distribution name -> version specifier: ``dependencies`` of
#: pyproject.toml, PyTorch included (a test checks that they match).
BUNDLE_REQUIREMENTS: dict[str, str] = {
    "torch": ">=2.3",
    "monai": ">=1.4,<1.7",
    "pytorch-ignite": ">=0.4.11",
    "SimpleITK": ">=2.3",
    "itk": ">=5.4",
    "nibabel": ">=5.2",
    "numpy": ">=1.26",
    "scipy": ">=1.11",
    "scikit-image": ">=0.22",
    "opencv-python-headless": ">=4.9",
    "matplotlib": ">=3.8",
    "tqdm": ">=4.66",
    "pyyaml": ">=6.0",
    "fire": ">=0.6",
    "jsonschema": ">=4.20",
}


class Action(enum.Enum):
    """What the user asked the module to do; each runs one ``fetalbiometry`` command (or none)."""

    SAMPLE_DATA = "sample data"  # fetalbiometry synth 3d
    SEGMENT = "segment"  # fetalbiometry segment
    HEAD_VOLUME = "head volume"  # no command: voxels counted in Slicer's process
    EVALUATE = "evaluate"  # fetalbiometry evaluate (agreement with a reference)
    MEASURE_PLANE = "measure plane"  # fetalbiometry measure
    STUDY = "study"  # fetalbiometry study


_IMAGE_IO = ("numpy", "SimpleITK", "opencv-python-headless", "nibabel")  # fetalbiometry.io
_NETWORK = (TORCH_DISTRIBUTION, "monai")  # monai imports torch
#: The distributions each action's command imports (a test follows the imports of the command's
#: handler, of the package modules it reaches and of the bundle config it parses). ``itk``,
#: ``fire``, ``jsonschema`` and ``pyyaml`` are in no list: no command the module runs imports them.
ACTION_REQUIREMENTS: dict[Action, tuple[str, ...]] = {
    Action.SAMPLE_DATA: ("numpy", "SimpleITK", "opencv-python-headless", "scipy", "scikit-image"),
    Action.SEGMENT: (*_NETWORK, "pytorch-ignite", *_IMAGE_IO, "scipy", "scikit-image"),
    Action.HEAD_VOLUME: (),
    Action.EVALUATE: (*_NETWORK, *_IMAGE_IO),
    Action.MEASURE_PLANE: (*_NETWORK, *_IMAGE_IO, "scipy", "scikit-image", "tqdm"),
    Action.STUDY: (*_NETWORK, "pytorch-ignite", *_IMAGE_IO, "scipy", "scikit-image", "matplotlib", "tqdm"),
}

# A tqdm progress bar, e.g. " 40%|████      | 2/5 [00:01<00:02,  1.2it/s]".
_TQDM_PERCENT = re.compile(r"(\d{1,3})%\|")
# Grace period between the polite and the forced end of a cancelled process tree.
_TERMINATE_GRACE_SECONDS = 2.0


class Device(enum.Enum):
    """Where ``fetalbiometry`` runs the network (its ``--device`` option)."""

    AUTO = "auto"
    CUDA = "cuda"
    CPU = "cpu"

    def label(self) -> str:
        """Text shown in the module's device combo box (Slicer's parameter node uses it)."""
        return {
            Device.AUTO: "Automatic (GPU if available)",
            Device.CUDA: "GPU (CUDA)",
            Device.CPU: "CPU",
        }[self]


class CommandError(RuntimeError):
    """A ``fetalbiometry`` command failed or was cancelled; the message is one line."""


def find_bundle_root(module_dir: str | os.PathLike[str]) -> Path:
    """Locate the ``MonaiBundle`` folder that holds the ``fetalbiometry`` package.

    The installed extension carries it next to the module file (``qt-scripted-modules``);
    in the source tree it is at the repository root, one level above the module folder.

    Args:
        module_dir: folder of ``FetalHeadSeg.py``.

    Returns:
        The bundle folder (the one to put on ``PYTHONPATH``).

    Raises:
        FileNotFoundError: neither place holds ``fetalbiometry/cli.py``.
    """
    module_dir = Path(module_dir)
    candidates = (module_dir / BUNDLE_FOLDER, module_dir.parent / BUNDLE_FOLDER)
    for candidate in candidates:
        if (candidate / "fetalbiometry" / "cli.py").is_file():
            return candidate
    raise FileNotFoundError(
        f"the MONAI bundle with the fetalbiometry package was not found in {' or '.join(map(str, candidates))}"
    )


def python_executable() -> str:
    """Slicer's ``PythonSlicer`` where it is on ``PATH`` (inside Slicer), else this interpreter."""
    return shutil.which("PythonSlicer") or sys.executable


def fetalbiometry_command(python: str | os.PathLike[str], *args: object) -> list[str]:
    """``python -m fetalbiometry.cli ARGS...``: the ``fetalbiometry`` command run by ``python``."""
    return [str(python), "-m", _CLI_MODULE, *(str(arg) for arg in args)]


def segment_command(
    python: str | os.PathLike[str],
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    device: Device = Device.AUTO,
    model_path: str | os.PathLike[str] | None = None,
) -> list[str]:
    """``fetalbiometry segment INPUT OUTPUT --device DEV [--model PATH]``: a head label on INPUT's grid."""
    args: list[object] = ["segment", input_path, output_path, "--device", device.value]
    if model_path is not None:
        args += ["--model", model_path]
    return fetalbiometry_command(python, *args)


def measure_command(
    python: str | os.PathLike[str], image_path: str | os.PathLike[str], pixel_size_mm: float
) -> list[str]:
    """``fetalbiometry measure IMAGE --pixel-size MM --json``: 2D biometry of one plane as JSON.

    It exits with :data:`NO_MEASUREMENT_EXIT_CODE` when the plane has no trustworthy measurement.
    """
    if not pixel_size_mm > 0:
        raise ValueError(f"pixel size must be positive, got {pixel_size_mm} mm")
    return fetalbiometry_command(python, "measure", image_path, "--pixel-size", repr(float(pixel_size_mm)), "--json")


def evaluate_command(
    python: str | os.PathLike[str], prediction_path: str | os.PathLike[str], reference_path: str | os.PathLike[str]
) -> list[str]:
    """``fetalbiometry evaluate PRED REF --json``: DSC, Jaccard, conformity, Adb, Hdb and volumes.

    Both labels must share one grid (the module resamples the prediction onto the reference's).
    """
    return fetalbiometry_command(python, "evaluate", prediction_path, reference_path, "--json")


def study_command(
    python: str | os.PathLike[str],
    manifest_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    device: Device = Device.AUTO,
    resume: bool = False,
    model_path: str | os.PathLike[str] | None = None,
) -> list[str]:
    """``fetalbiometry study MANIFEST --out DIR --device DEV [--resume] [--model PATH]``.

    With ``resume`` the volumes an earlier run in DIR finished are kept, not segmented again.
    """
    args: list[object] = ["study", manifest_path, "--out", out_dir, "--device", device.value]
    if resume:
        args.append("--resume")
    if model_path is not None:
        args += ["--model", model_path]
    return fetalbiometry_command(python, *args)


#: Voxel size (mm) of the Sample Data phantom: a scanner's, not the network's (the bundle resamples it).
SAMPLE_SPACING_MM = 0.8


def synth_command(python: str | os.PathLike[str], out_dir: str | os.PathLike[str], seed: int = 0) -> list[str]:
    """``fetalbiometry synth 3d DIR -n 1 --seed SEED --spacing 0.8``: one head phantom with its label,
    at a scanner-like spacing."""
    return fetalbiometry_command(python, "synth", "3d", out_dir, "-n", 1, "--seed", seed, "--spacing", SAMPLE_SPACING_MM)


def command_environment(
    bundle_root: str | os.PathLike[str], base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment for a ``fetalbiometry`` command: ``base`` with the bundle on ``PYTHONPATH``.

    Output is unbuffered and UTF-8 so that the log streams line by line whatever the locale.

    Args:
        bundle_root: the ``MonaiBundle`` folder (see :func:`find_bundle_root`).
        base: environment to start from; this process's environment by default. Inside
            Slicer pass ``slicer.util.startupEnvironment()``: ``PythonSlicer`` sets up its own.
    """
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join([str(bundle_root), *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def installed_version(distribution: str) -> str | None:
    """The installed version of a distribution, or ``None`` if absent.

    Read with ``importlib.metadata``; for a package Slicer ships (:data:`SLICER_PROVIDED`),
    which Slicer may build without package metadata, from its module's ``__version__``.
    """
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        pass
    if distribution not in SLICER_PROVIDED:
        return None
    try:
        module = importlib.import_module(SLICER_PROVIDED[distribution])
    except ImportError:
        return None
    version = getattr(module, "__version__", None)
    return str(version) if version else None


_SPECIFIER_CLAUSE = re.compile(r"^\s*(>=|<=|==|!=|<|>)\s*(\d+(?:\.\d+)*)\s*$")
_RELEASE = re.compile(r"^\s*v?(\d+(?:\.\d+)*)")


def _release(version: str) -> tuple[int, ...]:
    """The numeric release of a version: "2.13.0+cu128" -> (2, 13, 0); "1.5.0rc1" -> (1, 5, 0)."""
    match = _RELEASE.match(version)
    if not match:
        raise ValueError(f"cannot read the version {version!r}")
    return tuple(int(part) for part in match.group(1).split("."))


def _compare(left: tuple[int, ...], right: tuple[int, ...]) -> int:
    """-1, 0 or 1 as ``left`` is older than, equal to or newer than ``right`` (missing parts are 0)."""
    width = max(len(left), len(right))
    left, right = left + (0,) * (width - len(left)), right + (0,) * (width - len(right))
    return (left > right) - (left < right)


def version_satisfies(version: str, specifier: str) -> bool:
    """Whether a version meets a specifier such as ``">=1.4,<1.7"`` (comma-separated clauses).

    Clauses use ``>=``, ``<=``, ``==``, ``!=``, ``<`` or ``>`` with a numeric release. A local
    label (``+cu128``) and a pre-release suffix are ignored: ``2.13.0+cu128`` counts as 2.13.0.
    This covers the specifiers of :data:`BUNDLE_REQUIREMENTS` without needing ``packaging``,
    which not every Slicer ships.

    Raises:
        ValueError: a clause or the version cannot be read.
    """
    release = _release(version)
    checks = {
        ">=": lambda c: c >= 0, "<=": lambda c: c <= 0, "==": lambda c: c == 0,
        "!=": lambda c: c != 0, "<": lambda c: c < 0, ">": lambda c: c > 0,
    }
    for clause in filter(None, (part.strip() for part in specifier.split(","))):
        match = _SPECIFIER_CLAUSE.match(clause)
        if not match:
            raise ValueError(f"unsupported version specifier {clause!r} in {specifier!r}")
        operator, bound = match.groups()
        if not checks[operator](_compare(release, _release(bound))):
            return False
    return True


def pip_requirement(distribution: str) -> str:
    """The requirement of a distribution as pip takes it, e.g. ``"monai>=1.4,<1.7"``."""
    return distribution + BUNDLE_REQUIREMENTS[distribution]


def unmet_requirements(
    action: Action, version_of: Callable[[str], str | None] = installed_version
) -> list[str]:
    """The requirements of an action (:data:`ACTION_REQUIREMENTS`) that are absent or out of bounds.

    Versions are read with ``importlib.metadata``, so a package another extension left behind
    in Slicer's shared Python counts only if its version is within the bundle's bounds.
    ``PythonSlicer`` shares these packages, so what this finds is what the command will find.

    Args:
        action: what the user asked for.
        version_of: installed version of a distribution, or ``None`` (for tests).

    Returns:
        pip requirements (e.g. ``"monai>=1.4,<1.7"``), in the order of the action's list.
    """
    unmet = []
    for distribution in ACTION_REQUIREMENTS[action]:
        version = version_of(distribution)
        if version is None or not version_satisfies(version, BUNDLE_REQUIREMENTS[distribution]):
            unmet.append(pip_requirement(distribution))
    return unmet


def unsupported_slicer_message(
    slicer_version: tuple[int, int], python_version: tuple[int, int]
) -> str | None:
    """Why this Slicer cannot run the module, in one line; ``None`` when it can.

    Args:
        slicer_version: (major, minor) of Slicer.
        python_version: (major, minor) of Slicer's Python.
    """
    if tuple(slicer_version) >= MINIMUM_SLICER_VERSION and tuple(python_version) >= MINIMUM_PYTHON_VERSION:
        return None
    needed = ".".join(map(str, MINIMUM_SLICER_VERSION))
    return (
        f"FetalHeadSeg needs Slicer {needed} or newer (Python {'.'.join(map(str, MINIMUM_PYTHON_VERSION))}+); "
        f"this is Slicer {'.'.join(map(str, slicer_version))} with Python {'.'.join(map(str, python_version))}. "
        f"Install Slicer {needed} or newer to use it."
    )


def progress_fraction(line: str) -> float | None:
    """The fraction done that a line of output reports (a tqdm bar), or ``None``."""
    match = _TQDM_PERCENT.search(line)
    return min(int(match.group(1)), 100) / 100.0 if match else None


def error_message(output: Sequence[str], returncode: int | None = None) -> str:
    """One line that says why a command failed, taken from its output.

    The command's own one-line error (``fetalbiometry: error: ...``) if it printed one, else
    the last line of output (a traceback's exception line), else the exit code.
    """
    lines = [line.strip() for line in output if line.strip()]
    for line in reversed(lines):
        if line.startswith(_ERROR_PREFIX):
            return line[len(_ERROR_PREFIX):].strip()
    if lines:
        return lines[-1]
    return f"the command ended with exit code {returncode}"


def _process_group_options() -> dict[str, object]:
    """Popen options that make the child the root of a group that can be ended as a whole."""
    if os.name == "nt":
        # No console window (as slicer.util.launchConsoleProcess), and a group for taskkill /T.
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW}
    return {"start_new_session": True}  # setsid(): the child leads a new session and process group


class BackgroundProcess:
    """A command running in a process group of its own, its output collected line by line.

    A reader thread moves each line of the merged stdout/stderr into a queue, so the caller
    never blocks: Slicer's widget polls :meth:`new_lines` from a ``QTimer`` and scripts call
    :func:`follow`. ``\\r`` counts as a line end, so progress bars arrive as lines.

    Example::

        process = BackgroundProcess(segment_command(python_executable(), "in.nrrd", "out.nrrd"),
                                    env=command_environment(bundle_root))
        follow(process, on_line=print)  # or process.cancel() from elsewhere

    Args:
        args: the command line.
        env: its environment (see :func:`command_environment`); this process's by default.
        cwd: its working folder.
    """

    def __init__(
        self,
        args: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> None:
        self.args = list(args)
        #: Every line read so far by :meth:`new_lines`, for the error message.
        self.output: list[str] = []
        self.cancelled = False
        self._lines: queue.Queue[str] = queue.Queue()
        self._process = subprocess.Popen(
            self.args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
            env=None if env is None else dict(env),
            cwd=cwd,
            **_process_group_options(),
        )
        self._reader = threading.Thread(target=self._read_output, name="fetalbiometry-output", daemon=True)
        self._reader.start()

    def _read_output(self) -> None:
        stream = self._process.stdout
        for line in stream:
            self._lines.put(line.rstrip("\r\n"))
        stream.close()

    @property
    def pid(self) -> int:
        """Process id of the command (the leader of its process group)."""
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        """Exit code, or ``None`` while the command runs."""
        return self._process.poll()

    @property
    def done(self) -> bool:
        """True once the command has exited and all its output has been read."""
        return self._process.poll() is not None and not self._reader.is_alive()

    def new_lines(self) -> list[str]:
        """The lines of output that arrived since the last call (never blocks)."""
        lines = []
        while True:
            try:
                lines.append(self._lines.get_nowait())
            except queue.Empty:
                break
        self.output.extend(lines)
        return lines

    def cancel(self) -> None:
        """End the command and every process it started (the whole process group)."""
        self.cancelled = True
        _end_process_tree(self._process)
        self._process.wait()

    def check(self, success_codes: Collection[int] = (0,)) -> None:
        """Raise :class:`CommandError` if the command was cancelled or failed.

        Args:
            success_codes: the exit codes that are not a failure (e.g. ``(0,
                NO_MEASUREMENT_EXIT_CODE)`` for ``fetalbiometry measure``).
        """
        if self.cancelled:
            raise CommandError("cancelled")
        returncode = self._process.poll()
        if returncode is None:
            raise CommandError("the command is still running")
        if returncode not in success_codes:
            self.new_lines()
            raise CommandError(error_message(self.output, returncode))


def _end_process_tree(process: subprocess.Popen) -> None:
    """Terminate the process group led by ``process``, then kill what is left of it."""
    if os.name == "nt":
        if process.poll() is not None:
            return  # taskkill finds the children through the parent, which is gone
        # /T ends the children too, /F forces it.
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(process.pid)], capture_output=True, check=False)
        return
    group = process.pid  # start_new_session: the group id is the leader's pid, valid while any member lives
    try:
        os.killpg(group, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=_TERMINATE_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(group, signal.SIGKILL)  # members that ignored SIGTERM, or outlived the leader
    except ProcessLookupError:
        pass


def follow(
    process: BackgroundProcess,
    on_line: Callable[[str], None] | None = None,
    idle: Callable[[], None] | None = None,
    poll_seconds: float = 0.05,
    success_codes: Collection[int] = (0,),
) -> list[str]:
    """Wait for ``process`` while handing each line of its output to ``on_line``.

    Args:
        process: the running command.
        on_line: called with every line of output, in order.
        idle: called between polls; inside Slicer ``slicer.app.processEvents`` keeps the
            application responsive (and lets a Cancel button call ``process.cancel()``).
        poll_seconds: pause between polls.
        success_codes: the exit codes that are not a failure (see :meth:`BackgroundProcess.check`).

    Returns:
        All lines of output.

    Raises:
        CommandError: the command failed (its one-line error) or was cancelled.
    """
    while True:
        finished = process.done  # read before draining, so no line arrives unseen after it
        for line in process.new_lines():
            if on_line is not None:
                on_line(line)
        if finished:
            break
        if idle is not None:
            idle()
        time.sleep(poll_seconds)
    process.check(success_codes)
    return process.output
