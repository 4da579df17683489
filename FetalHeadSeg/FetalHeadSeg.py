"""FetalHeadSeg: whole fetal head segmentation and biometry in ultrasound, inside 3D Slicer.

The module is a thin shell around the ``fetalbiometry`` command line of the MONAI bundle that
ships with the extension. Heavy work runs out of Slicer's process with Slicer's Python
(``PythonSlicer -m fetalbiometry.cli ...``, the same command users run outside Slicer); the
module writes the inputs to files, streams the command's output into its log, and reads the
results back into the scene. ``fetalbiometry`` never runs in Slicer's process. The scene code
is in ``FetalHeadSegLib.scene`` (tested on Slicer's MRML libraries), everything that needs
neither Slicer nor Qt in ``FetalHeadSegLib.process`` and ``FetalHeadSegLib.results``.

This file and ``FetalHeadSegLib`` stay Python-3.9-safe (a test checks), so that Slicer 5.6 and
5.8 load the module and show what it needs (Slicer 5.10 or newer) instead of a traceback.
"""

import importlib
import logging
import math
import os
import shlex
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import qt
import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode, vtkMRMLTableNode
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from FetalHeadSegLib import process, results, scene
from FetalHeadSegLib.process import (
    BUNDLE_REQUIREMENTS,
    NO_MEASUREMENT_EXIT_CODE,
    SLICER_PROVIDED,
    TORCH_DISTRIBUTION,
    Action,
    BackgroundProcess,
    Device,
    command_environment,
    evaluate_command,
    find_bundle_root,
    follow,
    measure_command,
    pip_requirement,
    progress_fraction,
    python_executable,
    segment_command,
    study_command,
    synth_command,
    unmet_requirements,
    unsupported_slicer_message,
)

MODULE_DIR = Path(__file__).resolve().parent
SAMPLE_DATA_CATEGORY = "FetalHeadSeg"
PHANTOM_SAMPLE_NAME = "FetalHeadPhantom"


#
# FetalHeadSeg
#


class FetalHeadSeg(ScriptedLoadableModule):
    """Uses ScriptedLoadableModule base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Fetal Head Segmentation"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["FetalHeadSeg contributors"]
        self.parent.helpText = f"""
Segments the whole fetal head in 3D ultrasound volumes and reports its volume, with Dice, Jaccard,
conformity and boundary distances (Adb, Hdb) against an optional reference segmentation. It also
measures HC, AC or FL with gestational age and centile on 2D standard planes, and runs
reproducibility studies. The network runs outside Slicer with the <code>fetalbiometry</code>
command of the bundled MONAI bundle (on the GPU when one is available). Needs Slicer
{".".join(map(str, process.MINIMUM_SLICER_VERSION))} or newer and the PyTorch extension.
The module documentation is docs/slicer.md in the extension's source.
"""
        self.parent.acknowledgementText = """
The 3D segmentor follows Yang X, Wang X, Wang Y, et al., "Hybrid attention for automatic
segmentation of whole fetal head in prenatal ultrasound volumes", Computer Methods and Programs
in Biomedicine, 2020. 2D head measurements use the HC18 data set (van den Heuvel TLA, de Bruijn D,
de Korte CL, van Ginneken B, "Automated measurement of fetal head circumference using 2D ultrasound
images", PLoS ONE 13(8): e0200412, 2018; doi:10.5281/zenodo.1322001), licensed under
<a href="https://creativecommons.org/licenses/by/4.0/">CC BY 4.0</a>; anything derived from it
(sample images, trained weights) carries this attribution. The module structure follows the
Slicer scripted-module template and the SlicerMONAIAuto3DSeg and SlicerTotalSegmentator extensions.
"""
        slicer.app.connect("startupCompleted()", registerSampleData)


def registerSampleData():
    """Add the synthetic head phantom to the Sample Data module (generated on the fly, no download)."""
    import SampleData

    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category=SAMPLE_DATA_CATEGORY,
        sampleName=PHANTOM_SAMPLE_NAME,
        uris=[],
        fileNames=[],
        thumbnailFileName=str(MODULE_DIR / "Resources" / "Icons" / "FetalHeadSeg.png"),
        customDownloader=_loadPhantomSample,
    )


def _loadPhantomSample(source=None):
    """Sample Data button (called with its SampleDataSource): generate and load the phantom.

    ``fetalbiometry synth`` runs out of process; only the packages it imports are installed
    first (no PyTorch). Returns (volume node, reference segmentation node), or None if the user
    declined the installation.
    """
    logic = FetalHeadSegLogic()
    with slicer.util.tryWithErrorDisplay("Failed to generate the phantom.", waitCursor=True):
        if logic.installDependencies(Action.SAMPLE_DATA):
            return logic.runJob(logic.startPhantom())
    return None


def slicerProblem() -> Optional[str]:
    """Why this Slicer cannot run the module (one line), or None (see process.MINIMUM_SLICER_VERSION)."""
    return unsupported_slicer_message((slicer.app.majorVersion, slicer.app.minorVersion), tuple(sys.version_info[:2]))


#
# FetalHeadSegParameterNode
#


@parameterNodeWrapper
class FetalHeadSegParameterNode:
    """The parameters of the module, bound to the widgets of the same SlicerParameterName.

    inputVolume - 3D ultrasound volume to segment.
    device - where the network runs.
    outputSegmentation - segmentation that receives the "Fetal head" segment.
    referenceSegmentation - optional expert segmentation to compare with.
    resultsTable - table of the measurements.
    sliceVolume - single-slice volume of a standard plane for 2D biometry.
    pixelSizeMm - pixel size of sliceVolume in mm (0: use its spacing).
    manifestPath - CSV manifest of the reproducibility study.
    studyOutputDir - output folder of the study.
    resumeStudy - keep the volumes an earlier run in studyOutputDir finished.
    modelPath - weights to use instead of the shipped model (empty: shipped model).
    """

    inputVolume: vtkMRMLScalarVolumeNode
    device: Device = Device.AUTO
    outputSegmentation: vtkMRMLSegmentationNode
    referenceSegmentation: vtkMRMLSegmentationNode
    resultsTable: vtkMRMLTableNode
    sliceVolume: vtkMRMLScalarVolumeNode
    pixelSizeMm: Annotated[float, WithinRange(0.0, 10.0)] = 0.0
    manifestPath: Path
    studyOutputDir: Path
    resumeStudy: bool = True
    modelPath: Path


def _isSet(path: Path) -> bool:
    """An empty path widget reads as Path("") == Path(".")."""
    return str(path) not in ("", ".")


#
# FetalHeadSegWidget
#


class FetalHeadSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Uses ScriptedLoadableModuleWidget base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent=None) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)  # needed for parameter node observation
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._job = None  # the running Job, if any
        self._onJobDone = None  # called with the result of the running Job
        self._jobLabel = None  # label that shows the running Job's failure, if any
        self._reportPath = None  # report.html of the last study
        self._pollTimer = None

    def setup(self) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        ScriptedLoadableModuleWidget.setup(self)

        # Load widget from .ui file (created by Qt Designer).
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/FetalHeadSeg.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)

        # Set scene in MRML widgets. The .ui file connects the top-level qMRMLWidget's
        # "mrmlSceneChanged(vtkMRMLScene*)" signal to each MRML widget's "setMRMLScene(vtkMRMLScene*)" slot.
        uiWidget.setMRMLScene(slicer.mrmlScene)

        # Logic implements all computations that should be possible to run without a GUI.
        self.logic = FetalHeadSegLogic()
        self.logic.logCallback = self.addLog

        # The output of a running command is polled, so the application stays responsive.
        self._pollTimer = qt.QTimer()
        self._pollTimer.setInterval(200)
        self._pollTimer.timeout.connect(self._pollJob)
        self.ui.progressBar.hide()

        # On a Slicer older than the module needs, say so in the panel instead of failing later.
        problem = slicerProblem()
        if problem:
            problemLabel = qt.QLabel(problem)
            problemLabel.wordWrap = True
            problemLabel.setStyleSheet("QLabel { color: #b00020; font-weight: bold; }")
            self.layout.insertWidget(0, problemLabel)
            uiWidget.enabled = False
            logging.warning(problem)

        # These connections ensure that we update parameter node when scene is closed
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        # Buttons
        self.ui.segmentButton.connect("clicked(bool)", self.onSegmentButton)
        self.ui.measureButton.connect("clicked(bool)", self.onMeasureButton)
        self.ui.measurePlaneButton.connect("clicked(bool)", self.onMeasurePlaneButton)
        self.ui.runStudyButton.connect("clicked(bool)", self.onRunStudyButton)
        self.ui.openReportButton.connect("clicked(bool)", self.onOpenReportButton)
        self.ui.installDependenciesButton.connect("clicked(bool)", self.onInstallDependenciesButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)

        # Make sure parameter node is initialized (needed for module reload)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Called when the application closes and the module widget is destroyed."""
        if self._job is not None:
            self._pollTimer.stop()
            self._job.process.cancel()
            self._job.cleanup()
            self._job = None
        self.removeObservers()

    def onReload(self) -> None:
        """Reload FetalHeadSegLib too, so that edits to it take effect without a restart."""
        importlib.reload(process)
        importlib.reload(results)
        importlib.reload(scene)
        super().onReload()

    def enter(self) -> None:
        """Called each time the user opens this module."""
        self.initializeParameterNode()

    def exit(self) -> None:
        """Called each time the user opens a different module."""
        # Do not react to parameter node changes (GUI will be updated when the user enters into the module)
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)

    def onSceneStartClose(self, caller, event) -> None:
        """Called just before the scene is closed."""
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        """Called just after the scene is closed."""
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        """Ensure parameter node exists and observed."""
        self.setParameterNode(self.logic.getParameterNode())

        # Select default input volume if nothing is selected yet to save a few clicks for the user
        if not self._parameterNode.inputVolume:
            firstVolumeNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolumeNode:
                self._parameterNode.inputVolume = firstVolumeNode
        if not _isSet(self._parameterNode.studyOutputDir):
            self._parameterNode.studyOutputDir = Path(slicer.app.defaultScenePath) / "FetalHeadSeg study"

    def setParameterNode(self, inputParameterNode: Optional[FetalHeadSegParameterNode]) -> None:
        """Set and observe parameter node.
        Observation is needed because when the parameter node is changed then the GUI must be updated immediately.
        """
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            # Note: in the .ui file, a Qt dynamic property called "SlicerParameterName" is set on each
            # ui element that needs connection.
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)
            # An unset path reads as Path() == Path("."); show it as an empty field, not as ".".
            for pathLineEdit, path in (
                (self.ui.manifestPathLineEdit, self._parameterNode.manifestPath),
                (self.ui.modelPathLineEdit, self._parameterNode.modelPath),
            ):
                if not _isSet(path):
                    pathLineEdit.currentPath = ""
        self._updateButtons()

    def _updateButtons(self, caller=None, event=None) -> None:
        """Enable each action whose inputs are set, and none while a command runs."""
        parameters = self._parameterNode
        idle = self._job is None
        ready = idle and parameters is not None
        self.ui.segmentButton.enabled = bool(ready and parameters.inputVolume)
        self.ui.measureButton.enabled = bool(ready and parameters.outputSegmentation)
        self.ui.measurePlaneButton.enabled = bool(ready and parameters.sliceVolume)
        self.ui.runStudyButton.enabled = bool(
            ready and _isSet(parameters.manifestPath) and _isSet(parameters.studyOutputDir)
        )
        self.ui.openReportButton.enabled = self._reportPath is not None
        self.ui.installDependenciesButton.enabled = idle
        self.ui.cancelButton.enabled = not idle

    def addLog(self, text: str) -> None:
        """Append a line to the log box."""
        self.ui.logTextEdit.appendPlainText(text)

    # --- Running commands in the background ------------------------------------------------------

    def _startJob(self, job: "Job", onDone: Callable[[Any], None], label=None) -> None:
        """Run a job in the background; ``onDone`` gets its result, ``label`` shows its error line."""
        self._job = job
        self._onJobDone = onDone
        self._jobLabel = label
        self.ui.progressBar.setRange(0, 0)  # busy until the command reports a percentage
        self.ui.progressBar.show()
        self._updateButtons()
        self._pollTimer.start()

    def _pollJob(self) -> None:
        """Move new output lines into the log; when the command has ended, read its result back."""
        job = self._job
        finished = job.process.done  # read before draining, so no line arrives unseen after it
        for line in job.process.new_lines():
            fraction = progress_fraction(line)
            if fraction is None or fraction >= 1.0:  # progress bar updates go to the bar, not the log
                self.addLog(line)
            if fraction is not None:
                self.ui.progressBar.setRange(0, 100)
                self.ui.progressBar.value = int(round(100 * fraction))
        if not finished:
            return
        self._pollTimer.stop()
        self._job = None
        try:
            if job.process.cancelled:
                job.cleanup()
                self.addLog(f"{job.title} cancelled.")
                return
            try:
                with slicer.util.tryWithErrorDisplay(f"{job.title} failed.", waitCursor=True):
                    result = self.logic.finishJob(job)
                    self.addLog(f"{job.title} finished.")
                    self._onJobDone(result)
            except Exception as error:  # shown by tryWithErrorDisplay; the command's own line stays in the panel
                self.addLog(f"{job.title} failed: {error}")
                if self._jobLabel is not None:
                    self._jobLabel.text = f"{job.title} failed: {error}"
        finally:
            self.ui.progressBar.hide()
            self._updateButtons()

    def onCancelButton(self) -> None:
        if self._job is not None:
            self.addLog(f"Cancelling {self._job.title.lower()}...")
            self._job.process.cancel()

    # --- Actions ---------------------------------------------------------------------------------

    def onSegmentButton(self) -> None:
        with slicer.util.tryWithErrorDisplay("Failed to start the segmentation.", waitCursor=True):
            if not self.logic.installDependencies(Action.SEGMENT):
                return
            parameters = self._parameterNode
            if not parameters.outputSegmentation:
                parameters.outputSegmentation = slicer.mrmlScene.AddNewNodeByClass(
                    "vtkMRMLSegmentationNode", f"{parameters.inputVolume.GetName()} fetal head"
                )
            job = self.logic.startSegmentation(
                parameters.inputVolume,
                parameters.outputSegmentation,
                parameters.device,
                parameters.modelPath if _isSet(parameters.modelPath) else None,
            )
            self.ui.measureResultLabel.text = ""
            self._startJob(job, self._onSegmented, self.ui.measureResultLabel)

    def _onSegmented(self, segmentId: str) -> None:
        """Show the input volume with the new segment, and the command's notes: the spacing the
        network worked at, warnings about the volume's spacing, a head volume not reported."""
        slicer.util.setSliceViewerLayers(background=self._parameterNode.inputVolume, fit=True)
        self.ui.measureResultLabel.text = "\n".join(self.logic.segmentationNotes)
        threeDWidget = slicer.app.layoutManager().threeDWidget(0)
        if threeDWidget is not None:
            threeDWidget.threeDView().resetFocalPoint()

    def onMeasureButton(self) -> None:
        """Head volume at once; with a reference, the agreement from ``fetalbiometry evaluate``."""
        with slicer.util.tryWithErrorDisplay("Measurement failed.", waitCursor=True):
            parameters = self._parameterNode
            self.ui.measureResultLabel.text = ""
            if not parameters.referenceSegmentation:
                self._onMeasured(self.logic.measureSegmentation(parameters.outputSegmentation))
                return
            if not self.logic.installDependencies(Action.EVALUATE):
                return
            job = self.logic.startAgreement(parameters.outputSegmentation, parameters.referenceSegmentation)
            self._startJob(job, self._onMeasured, self.ui.measureResultLabel)

    def _onMeasured(self, rows: list) -> None:
        parameters = self._parameterNode
        parameters.resultsTable = self.logic.fillTable(
            parameters.resultsTable, rows, f"{parameters.outputSegmentation.GetName()} measurements"
        )
        self.ui.measureResultLabel.text = "\n".join(" ".join(row.cells).strip() for row in rows)
        self._showTable(parameters.resultsTable)

    def onMeasurePlaneButton(self) -> None:
        with slicer.util.tryWithErrorDisplay("Failed to start the 2D measurement.", waitCursor=True):
            if not self.logic.installDependencies(Action.MEASURE_PLANE):
                return
            parameters = self._parameterNode
            self.ui.biometryResultLabel.text = ""
            job = self.logic.startPlaneMeasurement(parameters.sliceVolume, parameters.pixelSizeMm)
            self._startJob(job, self._onPlaneMeasured, self.ui.biometryResultLabel)

    def _onPlaneMeasured(self, result) -> None:
        measurement, _ = result
        parameters = self._parameterNode
        parameters.resultsTable = self.logic.fillTable(
            parameters.resultsTable,
            results.measurement_rows(measurement),
            f"{parameters.sliceVolume.GetName()} {measurement.measure_name} biometry",
        )
        self.ui.biometryResultLabel.text = results.measurement_summary(measurement)
        self._showTable(parameters.resultsTable)

    def onRunStudyButton(self) -> None:
        with slicer.util.tryWithErrorDisplay("Failed to start the study.", waitCursor=True):
            if not self.logic.installDependencies(Action.STUDY):
                return
            parameters = self._parameterNode
            self._reportPath = None
            job = self.logic.startStudy(
                parameters.manifestPath,
                parameters.studyOutputDir,
                parameters.device,
                parameters.resumeStudy,
                parameters.modelPath if _isSet(parameters.modelPath) else None,
            )
            self._startJob(job, self._onStudyDone)

    def _onStudyDone(self, result) -> None:
        outputs, subjectsTable = result
        self._reportPath = outputs.report_html
        self._showTable(subjectsTable)
        for plot in outputs.plots:
            self.addLog(f"Plot: {plot}")
        self.onOpenReportButton()

    def onOpenReportButton(self) -> None:
        if self._reportPath is not None:
            qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(str(self._reportPath)))

    def onInstallDependenciesButton(self) -> None:
        with slicer.util.tryWithErrorDisplay("Failed to install the dependencies.", waitCursor=True):
            # The action that needs the most first: one confirmation covers what the others need.
            actions = sorted(Action, key=lambda action: -len(process.ACTION_REQUIREMENTS[action]))
            if all(self.logic.installDependencies(action) for action in actions):
                slicer.util.infoDisplay("Everything FetalHeadSeg needs is installed.")

    @staticmethod
    def _showTable(tableNode) -> None:
        """Show the table in a table view, switching to a layout that has one."""
        layoutManager = slicer.app.layoutManager()
        layoutManager.setLayout(slicer.modules.tables.logic().GetLayoutWithTable(layoutManager.layout))
        applicationLogic = slicer.app.applicationLogic()
        applicationLogic.GetSelectionNode().SetActiveTableID(tableNode.GetID())
        applicationLogic.PropagateTableSelection()


#
# FetalHeadSegLogic
#


@dataclass
class Job:
    """A ``fetalbiometry`` command running in the background, and how its result enters the scene.

    finish - called with the command's output lines once it succeeded; returns the result.
    tempDir - folder of the command's input and output files, removed when the job ends.
    successCodes - the command's exit codes that are not a failure.
    """

    title: str
    process: BackgroundProcess
    finish: Callable[[list], Any]
    tempDir: Optional[str] = None
    successCodes: tuple = (0,)

    def cleanup(self) -> None:
        if self.tempDir:
            shutil.rmtree(self.tempDir, ignore_errors=True)


def _newTempDir() -> str:
    return tempfile.mkdtemp(prefix="FetalHeadSeg-", dir=slicer.app.temporaryPath)


class FetalHeadSegLogic(ScriptedLoadableModuleLogic):
    """This class should implement all the actual
    computation done by your module.  The interface
    should be such that other python code can import
    this class and make use of the functionality without
    requiring an instance of the Widget.
    Uses ScriptedLoadableModuleLogic base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        # fetalbiometry runs only in the commands' processes (PYTHONPATH), never in Slicer's.
        self.bundleRoot = find_bundle_root(MODULE_DIR)
        self.logCallback = None
        #: What the last segmentation printed for the panel (results.segmentation_notes).
        self.segmentationNotes: list = []

    def getParameterNode(self):
        return FetalHeadSegParameterNode(super().getParameterNode())

    def log(self, text: str) -> None:
        logging.info(text)
        if self.logCallback:
            self.logCallback(text)

    # --- Python packages -------------------------------------------------------------------------

    def installDependencies(self, action: Action, askConfirmation: bool = True) -> bool:
        """Install what the command of ``action`` needs and is missing or out of bounds (nothing else).

        Versions are checked with importlib.metadata against the bundle's requirements
        (process.BUNDLE_REQUIREMENTS, torch included). PyTorch comes from the PyTorch extension,
        which chooses the CUDA build that matches the driver; the rest from pip, after PyTorch
        so that pip never replaces it. ``PythonSlicer`` shares these packages.

        Returns:
            True when everything the action needs is installed; False if the user declined.

        Raises:
            RuntimeError: this Slicer is too old, the PyTorch extension is missing, or a package
                could not be installed.
        """
        problem = slicerProblem()
        if problem:
            raise RuntimeError(problem)
        unmet = unmet_requirements(action)
        if not unmet:
            return True
        slicerOwn = [pip_requirement(name) for name in SLICER_PROVIDED if pip_requirement(name) in unmet]
        if slicerOwn:
            raise RuntimeError(
                f"This Slicer's Python packages do not meet {', '.join(slicerOwn)}, and the module does not replace "
                "packages that Slicer ships: use a newer Slicer."
            )
        torchRequirement = pip_requirement(TORCH_DISTRIBUTION)
        pipRequirements = [requirement for requirement in unmet if requirement != torchRequirement]
        if torchRequirement in unmet:
            try:
                import PyTorchUtils
            except ModuleNotFoundError:
                raise RuntimeError(
                    "FetalHeadSeg needs the PyTorch extension: install 'PyTorch' from the Extensions Manager, "
                    "restart Slicer and try again."
                ) from None
        if askConfirmation and not slicer.util.confirmOkCancelDisplay(
            f"To {action.value}, FetalHeadSeg needs these Python packages:\n\n"
            + "\n".join(unmet)
            + ("\n\nPyTorch is installed by the PyTorch extension." if torchRequirement in unmet else "")
            + "\n\nInstall them now? This needs internet access and may take a few minutes.",
            "Install Python packages",
        ):
            self.log("Python packages were not installed.")
            return False
        if torchRequirement in unmet:
            self.log(f"Installing {torchRequirement} with the PyTorch extension (this may take several minutes)...")
            torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(
                askConfirmation=False, torchVersionRequirement=BUNDLE_REQUIREMENTS[TORCH_DISTRIBUTION]
            )
            if torch is None:
                self.log("PyTorch was not installed.")
                return False
        if pipRequirements:
            self.log(f"Installing {', '.join(pipRequirements)} ...")
            slicer.util.pip_install(pipRequirements)
        importlib.invalidate_caches()
        stillUnmet = unmet_requirements(action)
        if stillUnmet:
            raise RuntimeError(
                f"Could not install {', '.join(stillUnmet)}; see the Python console for pip's output "
                "(PyTorch: update it in the PyTorch Utils module)."
            )
        return True

    # --- Commands --------------------------------------------------------------------------------

    def _startCommand(
        self,
        title: str,
        command: list,
        finish: Callable[[list], Any],
        tempDir: Optional[str],
        successCodes: tuple = (0,),
    ) -> "Job":
        self.log(f"{title}: {shlex.join(command)}")
        try:
            backgroundProcess = BackgroundProcess(
                command, env=command_environment(self.bundleRoot, slicer.util.startupEnvironment())
            )
        except OSError:
            if tempDir:
                shutil.rmtree(tempDir, ignore_errors=True)
            raise
        return Job(title, backgroundProcess, finish, tempDir, successCodes)

    def finishJob(self, job: "Job") -> Any:
        """Read the result of an ended job back into the scene (raises if the command failed)."""
        try:
            job.process.check(job.successCodes)
            return job.finish(job.process.output)
        finally:
            job.cleanup()

    def runJob(self, job: "Job") -> Any:
        """Wait for a job, streaming its output into the log, and return its result (for scripts and tests)."""
        try:
            follow(job.process, on_line=self.log, idle=slicer.app.processEvents, success_codes=job.successCodes)
        except Exception:
            job.cleanup()
            raise
        return self.finishJob(job)

    def startSegmentation(self, inputVolume, outputSegmentation, device: Device = Device.AUTO, modelPath=None) -> "Job":
        """Start ``fetalbiometry segment`` on a volume; the job's result is the ID of the head segment.

        Args:
            inputVolume: 3D ultrasound volume (vtkMRMLScalarVolumeNode); written in world
                coordinates (a linear transform is hardened into the file).
            outputSegmentation: vtkMRMLSegmentationNode whose segments are replaced by "Fetal head".
            device: where the network runs.
            modelPath: weights to use instead of the shipped model (None: shipped model).
        """
        if not inputVolume or not outputSegmentation:
            raise ValueError("Select an input volume and an output segmentation.")
        tempDir = _newTempDir()
        try:
            inputPath = scene.write_volume(slicer.mrmlScene, inputVolume, os.path.join(tempDir, "input.nrrd"))
        except Exception:
            shutil.rmtree(tempDir, ignore_errors=True)
            raise
        labelPath = os.path.join(tempDir, "head-label.nrrd")
        command = segment_command(python_executable(), inputPath, labelPath, device, modelPath)

        def finish(output: list) -> str:
            self.segmentationNotes = results.segmentation_notes(output)
            for note in self.segmentationNotes:
                self.log(note)
            return self.importHeadLabel(labelPath, inputVolume, outputSegmentation)

        # exit status 3: the label is written, but its head is empty or implausible (a note says why)
        return self._startCommand("Segmentation", command, finish, tempDir, successCodes=(0, NO_MEASUREMENT_EXIT_CODE))

    def importHeadLabel(self, labelPath: str, referenceVolume, segmentationNode) -> str:
        """Load a head label file into a segmentation as one "Fetal head" segment (FetalHeadSegLib.scene).

        Returns:
            The ID of the head segment.
        """
        segmentId, found = scene.import_head_label(slicer.mrmlScene, labelPath, referenceVolume, segmentationNode)
        if not found:
            self.log("The label is empty: no head was found. The segment is left empty.")
        return segmentId

    def measureSegmentation(self, segmentationNode) -> list:
        """Head volume (mL) of a segmentation: its voxels counted on its reference geometry.

        Returns:
            The rows of the result table (FetalHeadSegLib.results.TableRow).
        """
        if not segmentationNode:
            raise ValueError("Select the segmentation to measure.")
        tempDir = _newTempDir()
        try:
            predictionPath = scene.export_segmentation(slicer.mrmlScene, segmentationNode, os.path.join(tempDir, "prediction.nrrd"))
            rows = results.segmentation_rows(results.head_volume_ml(predictionPath))
        finally:
            shutil.rmtree(tempDir, ignore_errors=True)
        self._logRows(rows)
        return rows

    def startAgreement(self, segmentationNode, referenceSegmentationNode) -> "Job":
        """Start ``fetalbiometry evaluate`` of a segmentation against a reference, on the reference's grid.

        Both are exported in world coordinates; the prediction is resampled onto the reference's
        voxels (FetalHeadSegLib.results.write_evaluation_inputs). The job's result is the rows of
        the result table: the head volume, then Dice, Jaccard, conformity, Adb, Hdb and volumes.
        """
        if not segmentationNode or not referenceSegmentationNode:
            raise ValueError("Select the segmentation to measure and its reference.")
        tempDir = _newTempDir()
        try:
            predictionPath = scene.export_segmentation(slicer.mrmlScene, segmentationNode, os.path.join(tempDir, "prediction.nrrd"))
            referencePath = scene.export_segmentation(
                slicer.mrmlScene, referenceSegmentationNode, os.path.join(tempDir, "reference.nrrd")
            )
            volumeMl = results.head_volume_ml(predictionPath)
            onReference, reference = results.write_evaluation_inputs(predictionPath, referencePath, tempDir)
        except Exception:
            shutil.rmtree(tempDir, ignore_errors=True)
            raise
        command = evaluate_command(python_executable(), onReference, reference)

        def finish(output: list) -> list:
            rows = results.segmentation_rows(volumeMl, results.parse_agreement("\n".join(output)))
            self._logRows(rows)
            return rows

        return self._startCommand("Agreement", command, finish, tempDir)

    def _logRows(self, rows: list) -> None:
        for row in rows:
            self.log(" ".join(row.cells).strip())

    def fillTable(self, tableNode, rows: list, name: str):
        """Replace the content of a table node (a new one if None) by result rows; returns the node."""
        return scene.fill_table(slicer.mrmlScene, tableNode, rows, name)

    @staticmethod
    def _squarePixelSize(volumeNode) -> float:
        spacing = volumeNode.GetSpacing()
        if not math.isclose(spacing[0], spacing[1], rel_tol=1e-4):
            raise ValueError(
                f"The pixels of {volumeNode.GetName()} are not square (spacing {spacing[0]:g} x {spacing[1]:g} mm): "
                "enter the pixel size."
            )
        return spacing[0]

    def startPlaneMeasurement(self, sliceVolume, pixelSizeMm: float = 0.0) -> "Job":
        """Start ``fetalbiometry measure`` on a single-slice volume.

        The job's result is (PlaneMeasurement, markup node): a closed curve along the fitted
        ellipse (head, abdomen) or a line between the femur endpoints, on the image; or
        (NoPlaneMeasurement, None) when the command finds no trustworthy measurement (its exit
        status NO_MEASUREMENT_EXIT_CODE).

        Args:
            sliceVolume: vtkMRMLScalarVolumeNode with one slice (k = 0).
            pixelSizeMm: pixel size in mm; 0 takes the volume's (square) spacing.
        """
        if not sliceVolume:
            raise ValueError("Select the plane image.")
        pixels = scene.slice_pixels(sliceVolume)
        pixelSize = pixelSizeMm if pixelSizeMm > 0 else self._squarePixelSize(sliceVolume)
        tempDir = _newTempDir()
        try:
            imagePath = str(results.write_slice_png(pixels, os.path.join(tempDir, "plane.png")))
        except Exception:
            shutil.rmtree(tempDir, ignore_errors=True)
            raise
        command = measure_command(python_executable(), imagePath, pixelSize)
        return self._startCommand(
            "2D biometry",
            command,
            lambda output: self.importPlaneMeasurement(output, sliceVolume, pixelSize),
            tempDir,
            successCodes=(0, NO_MEASUREMENT_EXIT_CODE),
        )

    def importPlaneMeasurement(self, output: list, sliceVolume, pixelSizeMm: float):
        """Parse the JSON of ``fetalbiometry measure`` and draw the ellipse or femur line on the image.

        Returns:
            (PlaneMeasurement, markup node), or (NoPlaneMeasurement, None): nothing is drawn.
        """
        measurement = results.parse_measurement("\n".join(output))
        self.log(results.measurement_summary(measurement))
        if isinstance(measurement, results.NoPlaneMeasurement):
            return measurement, None
        return measurement, scene.add_plane_markup(slicer.mrmlScene, measurement, sliceVolume, pixelSizeMm)

    def startStudy(
        self, manifestPath, outDir, device: Device = Device.AUTO, resume: bool = False, modelPath=None
    ) -> "Job":
        """Start ``fetalbiometry study``; the job's result is (StudyOutputs, subjects table node).

        Args:
            manifestPath: CSV manifest (columns subject, image and optional reference, expert_volume_ml).
            outDir: output folder (created).
            device: where the network runs.
            resume: keep the volumes an earlier run in outDir finished.
            modelPath: weights to use instead of the shipped model (None: shipped model).
        """
        if not _isSet(Path(manifestPath)) or not _isSet(Path(outDir)):
            raise ValueError("Select the manifest and the output folder.")
        os.makedirs(outDir, exist_ok=True)
        command = study_command(python_executable(), manifestPath, outDir, device, resume, modelPath)
        return self._startCommand("Study", command, lambda output: self.importStudy(outDir), None)

    def importStudy(self, outDir):
        """Load ``subjects.csv`` of a finished study as a table node; returns (StudyOutputs, table node)."""
        outputs = results.study_outputs(outDir)
        return outputs, slicer.util.loadTable(str(outputs.subjects_csv))

    # --- Sample data -----------------------------------------------------------------------------

    def startPhantom(self, seed: int = 0) -> "Job":
        """Start ``fetalbiometry synth 3d`` for one synthetic head phantom (out of process, no PyTorch).

        The job's result is (volume node, reference segmentation node), loaded from the files the
        command lists in its manifest.
        """
        tempDir = _newTempDir()
        command = synth_command(python_executable(), tempDir, seed)

        def finish(output: list):
            imagePath, labelPath = results.phantom_files(tempDir)
            volumeNode = slicer.util.loadVolume(str(imagePath), {"name": PHANTOM_SAMPLE_NAME})
            referenceNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{PHANTOM_SAMPLE_NAME} reference")
            self.importHeadLabel(str(labelPath), volumeNode, referenceNode)
            return volumeNode, referenceNode

        return self._startCommand("Phantom", command, finish, tempDir)


#
# FetalHeadSegTest
#


class FetalHeadSegTest(ScriptedLoadableModuleTest):
    """
    This is the test case for your scripted module.
    Uses ScriptedLoadableModuleTest base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def setUp(self):
        """Do whatever is needed to reset the state - typically a scene clear will be enough."""
        slicer.mrmlScene.Clear()

    def runTest(self):
        """Run as few or as many tests as needed here."""
        self.setUp()
        self.test_SegmentAndMeasurePhantom()

    def test_SegmentAndMeasurePhantom(self):
        """Segment the synthetic phantom (from Sample Data) and measure it against its reference."""
        self.delayDisplay("Starting the test")
        logic = FetalHeadSegLogic()
        for action in (Action.SAMPLE_DATA, Action.SEGMENT, Action.EVALUATE):
            self.assertTrue(logic.installDependencies(action, askConfirmation=False))

        import SampleData

        registerSampleData()
        source = next(
            source
            for source in SampleData.SampleDataLogic.sampleDataSourcesByCategory(SAMPLE_DATA_CATEGORY)
            if source.sampleName == PHANTOM_SAMPLE_NAME
        )
        volumeNode, referenceNode = source.customDownloader(source)
        self.assertEqual(slicer.util.arrayFromVolume(volumeNode).ndim, 3)
        self.assertLessEqual(max(volumeNode.GetSpacing()), 1.0)  # a scanner's spacing, not the network's
        self.delayDisplay("Loaded the phantom")

        segmentationNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Phantom fetal head")
        segmentId = logic.runJob(logic.startSegmentation(volumeNode, segmentationNode, Device.CPU))
        self.assertTrue(any(note.startswith("working spacing:") for note in logic.segmentationNotes))
        segmentation = segmentationNode.GetSegmentation()
        self.assertEqual(segmentation.GetNumberOfSegments(), 1)
        segment = segmentation.GetSegment(segmentId)
        self.assertEqual(segment.GetName(), results.HEAD_SEGMENT_NAME)
        self.delayDisplay("Segmented the phantom")

        self.assertEqual(segment.GetTerminology(), results.HEAD_TERMINOLOGY)
        rows = {row.quantity: row for row in logic.runJob(logic.startAgreement(segmentationNode, referenceNode))}
        self.assertGreaterEqual(rows["Head volume"].value, 0.0)
        self.assertGreater(rows["Reference volume"].value, 0.0)
        self.assertTrue(0.0 <= rows["Dice"].value <= 1.0)
        self.assertTrue(0.0 <= rows["Jaccard"].value <= rows["Dice"].value)
        tableNode = logic.fillTable(None, list(rows.values()), "Phantom measurements")
        self.assertEqual(tableNode.GetNumberOfRows(), len(rows))
        self.assertEqual(tableNode.GetNumberOfColumns(), len(results.TABLE_COLUMNS))
        self.delayDisplay("Test passed")
