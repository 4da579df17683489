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
import importlib.util
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
    "BUNDLE_FOLDER",
    "PIP_REQUIREMENTS",
    "TORCH_REQUIREMENT",
    "BackgroundProcess",
    "CommandError",
    "Device",
    "NO_MEASUREMENT_EXIT_CODE",
    "command_environment",
    "error_message",
    "fetalbiometry_command",
    "find_bundle_root",
    "follow",
    "measure_command",
    "missing_requirements",
    "progress_fraction",
    "python_executable",
    "segment_command",
    "study_command",
    "synth_command",
]

#: Folder of the MONAI bundle, which holds the ``fetalbiometry`` package.
BUNDLE_FOLDER = "MonaiBundle"
_CLI_MODULE = "fetalbiometry.cli"
#: Exit status of ``fetalbiometry measure`` when the plane has no trustworthy measurement; its JSON
#: says why (``fetalbiometry.planes2d.commands.NO_MEASUREMENT_EXIT_CODE``).
NO_MEASUREMENT_EXIT_CODE = 2
#: How ``fetalbiometry.cli.main`` starts the one-line message of a user error on stderr.
_ERROR_PREFIX = "fetalbiometry: error:"

#: Version requirement handed to the PyTorch extension (``installTorch``); as in pyproject.toml.
TORCH_REQUIREMENT = ">=2.3"
#: Import name -> pip requirement of what the commands import beyond Slicer's own Python
#: packages (numpy, SimpleITK) and PyTorch (installed by the PyTorch extension, which picks
#: the CUDA build that matches the driver). Same bounds as pyproject.toml (a test checks).
PIP_REQUIREMENTS: dict[str, str] = {
    "monai": "monai>=1.4,<1.7",
    "ignite": "pytorch-ignite>=0.4.11",
    "itk": "itk>=5.4",
    "nibabel": "nibabel>=5.2",
    "scipy": "scipy>=1.11",
    "skimage": "scikit-image>=0.22",
    "cv2": "opencv-python-headless>=4.9",
    "matplotlib": "matplotlib>=3.8",
    "tqdm": "tqdm>=4.66",
    "yaml": "pyyaml>=6.0",
    "fire": "fire>=0.6",
    "jsonschema": "jsonschema>=4.20",
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


def synth_command(python: str | os.PathLike[str], out_dir: str | os.PathLike[str], seed: int = 0) -> list[str]:
    """``fetalbiometry synth 3d DIR -n 1 --seed SEED``: one synthetic head phantom with its label."""
    return fetalbiometry_command(python, "synth", "3d", out_dir, "-n", 1, "--seed", seed)


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


def missing_requirements(
    is_importable: Callable[[str], bool] = lambda name: importlib.util.find_spec(name) is not None,
) -> list[str]:
    """The pip requirements of :data:`PIP_REQUIREMENTS` whose module cannot be imported.

    ``PythonSlicer`` shares Slicer's ``site-packages``, so checking inside Slicer's process
    tells what the command will find.
    """
    return [requirement for name, requirement in PIP_REQUIREMENTS.items() if not is_importable(name)]


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
