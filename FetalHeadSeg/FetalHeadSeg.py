"""FetalHeadSeg: whole fetal head segmentation and biometry in ultrasound, inside 3D Slicer.

The module is a thin shell around the ``fetalbiometry`` command line of the MONAI bundle that
ships with the extension. Heavy work runs out of Slicer's process with Slicer's Python
(``PythonSlicer -m fetalbiometry.cli ...``, the same command users run outside Slicer); the
module writes the inputs to files, streams the command's output into its log, and reads the
results back into the scene. Everything that does not need Slicer lives in ``FetalHeadSegLib``.
"""

import importlib
import importlib.util
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

from FetalHeadSegLib import process, results
from FetalHeadSegLib.process import (
    NO_MEASUREMENT_EXIT_CODE,
    TORCH_REQUIREMENT,
    BackgroundProcess,
    Device,
    command_environment,
    find_bundle_root,
    follow,
    measure_command,
    missing_requirements,
    progress_fraction,
    python_executable,
    segment_command,
    study_command,
)

MODULE_DIR = Path(__file__).resolve().parent
HOMEPAGE = "https://github.com/FetalHeadSeg/FetalHeadSeg"
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
command of the bundled MONAI bundle (on the GPU when one is available).
See the <a href="{HOMEPAGE}/blob/main/docs/slicer.md">module documentation</a>.
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

    Installs the packages the generator needs first. Returns (volume node, reference
    segmentation node), or None if the user declined the installation.
    """
    logic = FetalHeadSegLogic()
    with slicer.util.tryWithErrorDisplay("Failed to generate the phantom.", waitCursor=True):
        if logic.installDependencies():
            return logic.loadPhantom()
    return None


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

    def _startJob(self, job: "Job", onDone: Callable[[Any], None]) -> None:
        self._job = job
        self._onJobDone = onDone
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
            with slicer.util.tryWithErrorDisplay(f"{job.title} failed.", waitCursor=True):
                result = self.logic.finishJob(job)
                self.addLog(f"{job.title} finished.")
                self._onJobDone(result)
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
            if not self.logic.installDependencies():
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
            self._startJob(job, self._onSegmented)

    def _onSegmented(self, segmentId: str) -> None:
        """Show the input volume with the new segment in the slice views and the 3D view."""
        slicer.util.setSliceViewerLayers(background=self._parameterNode.inputVolume, fit=True)
        self.ui.measureResultLabel.text = ""
        threeDWidget = slicer.app.layoutManager().threeDWidget(0)
        if threeDWidget is not None:
            threeDWidget.threeDView().resetFocalPoint()

    def onMeasureButton(self) -> None:
        with slicer.util.tryWithErrorDisplay("Measurement failed.", waitCursor=True):
            if not self.logic.installDependencies():
                return
            parameters = self._parameterNode
            rows = self.logic.measureSegmentation(parameters.outputSegmentation, parameters.referenceSegmentation)
            parameters.resultsTable = self.logic.fillTable(
                parameters.resultsTable, rows, f"{parameters.outputSegmentation.GetName()} measurements"
            )
            self.ui.measureResultLabel.text = "\n".join(" ".join(row.cells).strip() for row in rows)
            self._showTable(parameters.resultsTable)

    def onMeasurePlaneButton(self) -> None:
        with slicer.util.tryWithErrorDisplay("Failed to start the 2D measurement.", waitCursor=True):
            if not self.logic.installDependencies():
                return
            parameters = self._parameterNode
            self.ui.biometryResultLabel.text = ""
            job = self.logic.startPlaneMeasurement(parameters.sliceVolume, parameters.pixelSizeMm)
            self._startJob(job, self._onPlaneMeasured)

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
            if not self.logic.installDependencies():
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
            if self.logic.installDependencies():
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


def _writeVolume(volumeNode, path: str) -> str:
    """Write a volume node to a file without touching its own storage node.

    slicer.util.saveNode would re-point the node's storage node at the temporary file (which is
    deleted afterwards), so a later File / Save would show that path; a throw-away storage
    node leaves the node as it was (as SlicerMONAIAuto3DSeg does).
    """
    storageNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    try:
        storageNode.SetFileName(path)
        storageNode.UseCompressionOff()
        if not storageNode.WriteData(volumeNode):
            raise RuntimeError(f"Could not write {volumeNode.GetName()} to {path}.")
    finally:
        slicer.mrmlScene.RemoveNode(storageNode)
    return path


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
        self.bundleRoot = find_bundle_root(MODULE_DIR)
        # The in-process measurements (metrics, ellipse outline) import fetalbiometry from the bundle.
        if str(self.bundleRoot) not in sys.path:
            sys.path.insert(0, str(self.bundleRoot))
        self.logCallback = None

    def getParameterNode(self):
        return FetalHeadSegParameterNode(super().getParameterNode())

    def log(self, text: str) -> None:
        logging.info(text)
        if self.logCallback:
            self.logCallback(text)

    # --- Python packages -------------------------------------------------------------------------

    def installDependencies(self, askConfirmation: bool = True) -> bool:
        """Install PyTorch and the packages the ``fetalbiometry`` commands import, where missing.

        PyTorch comes from the PyTorch extension (it chooses the CUDA build that matches the
        driver); the rest from pip. ``PythonSlicer`` shares these packages.

        Returns:
            True when everything is installed; False if the user declined an installation.
        """
        if importlib.util.find_spec("torch") is None:
            try:
                import PyTorchUtils
            except ModuleNotFoundError:
                raise RuntimeError(
                    "FetalHeadSeg needs the PyTorch extension: install 'PyTorch' from the Extensions Manager, "
                    "restart Slicer and try again."
                ) from None
            self.log("Installing PyTorch with the PyTorch extension (this may take several minutes)...")
            torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(
                askConfirmation=askConfirmation, torchVersionRequirement=TORCH_REQUIREMENT
            )
            if torch is None:
                self.log("PyTorch was not installed.")
                return False
        missing = missing_requirements()
        if not missing:
            return True
        if askConfirmation and not slicer.util.confirmOkCancelDisplay(
            "FetalHeadSeg needs these Python packages:\n\n"
            + "\n".join(missing)
            + "\n\nInstall them now? This needs internet access and may take a few minutes.",
            "Install Python packages",
        ):
            self.log("Python packages were not installed.")
            return False
        self.log(f"Installing {', '.join(missing)} ...")
        slicer.util.pip_install(" ".join(shlex.quote(requirement) for requirement in missing))
        importlib.invalidate_caches()
        stillMissing = missing_requirements()
        if stillMissing:
            raise RuntimeError(f"Could not install {', '.join(stillMissing)}; see the Python console for pip's output.")
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
            inputVolume: 3D ultrasound volume (vtkMRMLScalarVolumeNode).
            outputSegmentation: vtkMRMLSegmentationNode whose segments are replaced by "Fetal head".
            device: where the network runs.
            modelPath: weights to use instead of the shipped model (None: shipped model).
        """
        if not inputVolume or not outputSegmentation:
            raise ValueError("Select an input volume and an output segmentation.")
        tempDir = _newTempDir()
        inputPath = _writeVolume(inputVolume, os.path.join(tempDir, "input.nrrd"))
        labelPath = os.path.join(tempDir, "head-label.nrrd")
        command = segment_command(python_executable(), inputPath, labelPath, device, modelPath)
        return self._startCommand(
            "Segmentation", command, lambda output: self.importHeadLabel(labelPath, inputVolume, outputSegmentation), tempDir
        )

    def importHeadLabel(self, labelPath: str, referenceVolume, segmentationNode) -> str:
        """Load a head label file into a segmentation as one "Fetal head" segment, shown in 3D.

        Args:
            labelPath: label image on the grid of ``referenceVolume`` (voxels > 0: head).
            referenceVolume: the volume the label belongs to (its geometry and transform are used).
            segmentationNode: vtkMRMLSegmentationNode whose segments are replaced.

        Returns:
            The ID of the head segment.
        """
        labelmapNode = slicer.util.loadLabelVolume(labelPath, {"show": False})
        segmentation = segmentationNode.GetSegmentation()
        try:
            segmentation.RemoveAllSegments()
            segmentationNode.CreateDefaultDisplayNodes()
            segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(referenceVolume)
            if not slicer.modules.segmentations.logic().ImportLabelmapToSegmentationNode(labelmapNode, segmentationNode):
                raise RuntimeError(f"Could not import {labelPath} into {segmentationNode.GetName()}.")
        finally:
            slicer.mrmlScene.RemoveNode(labelmapNode)
        if segmentation.GetNumberOfSegments() == 0:
            self.log("The label is empty: no head was found. The segment is left empty.")
            segmentId = segmentation.AddEmptySegment("", results.HEAD_SEGMENT_NAME)
        else:
            segmentId = segmentation.GetNthSegmentID(0)
        segment = segmentation.GetSegment(segmentId)
        segment.SetName(results.HEAD_SEGMENT_NAME)
        segment.SetColor(results.HEAD_SEGMENT_COLOR)
        segment.SetTag(segment.GetTerminologyEntryTagName(), results.HEAD_TERMINOLOGY)
        segmentationNode.SetNodeReferenceID(segmentationNode.GetReferenceImageGeometryReferenceRole(), referenceVolume.GetID())
        segmentationNode.SetAndObserveTransformNodeID(referenceVolume.GetTransformNodeID())
        segmentationNode.CreateClosedSurfaceRepresentation()
        return segmentId

    def _exportSegmentation(self, segmentationNode, path: str) -> str:
        """Write all segments of a segmentation as a label file on its reference geometry (uncropped)."""
        labelmapNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
        try:
            if not slicer.modules.segmentations.logic().ExportAllSegmentsToLabelmapNode(
                segmentationNode, labelmapNode, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY
            ):
                raise RuntimeError(f"Could not export {segmentationNode.GetName()} to a labelmap.")
            return _writeVolume(labelmapNode, path)
        finally:
            slicer.mrmlScene.RemoveNode(labelmapNode)

    def measureSegmentation(self, segmentationNode, referenceSegmentationNode=None) -> list:
        """Head volume (mL) of a segmentation and, with a reference, its agreement with it.

        Computed in Slicer's process by fetalbiometry.metrics; the metrics are taken on the
        reference's grid (see FetalHeadSegLib.results.evaluate_against_reference).

        Returns:
            The rows of the result table (FetalHeadSegLib.results.TableRow).
        """
        if not segmentationNode:
            raise ValueError("Select the segmentation to measure.")
        tempDir = _newTempDir()
        try:
            predictionPath = self._exportSegmentation(segmentationNode, os.path.join(tempDir, "prediction.nrrd"))
            metrics = None
            if referenceSegmentationNode:
                referencePath = self._exportSegmentation(referenceSegmentationNode, os.path.join(tempDir, "reference.nrrd"))
                metrics = results.evaluate_against_reference(predictionPath, referencePath)
            rows = results.segmentation_rows(results.head_volume_ml(predictionPath), metrics)
        finally:
            shutil.rmtree(tempDir, ignore_errors=True)
        for row in rows:
            self.log(" ".join(row.cells).strip())
        return rows

    def fillTable(self, tableNode, rows: list, name: str):
        """Replace the content of a table node (a new one if None) by result rows; returns the node."""
        if not tableNode:
            tableNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", name)
        tableNode.RemoveAllColumns()
        for columnIndex, columnName in enumerate(results.TABLE_COLUMNS):
            column = vtk.vtkStringArray()
            column.SetName(columnName)
            for row in rows:
                column.InsertNextValue(row.cells[columnIndex])
            tableNode.AddColumn(column)
        return tableNode

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
        (NoPlaneMeasurement, None) when the command finds no trustworthy measurement.

        Args:
            sliceVolume: vtkMRMLScalarVolumeNode with one slice (k = 0).
            pixelSizeMm: pixel size in mm; 0 takes the volume's (square) spacing.
        """
        if not sliceVolume:
            raise ValueError("Select the plane image.")
        pixels = slicer.util.arrayFromVolume(sliceVolume)
        if pixels.ndim != 3 or pixels.shape[0] != 1:
            raise ValueError(
                f"2D biometry needs a single-slice scalar volume; {sliceVolume.GetName()} has voxel array shape {pixels.shape}."
            )
        pixelSize = pixelSizeMm if pixelSizeMm > 0 else self._squarePixelSize(sliceVolume)
        tempDir = _newTempDir()
        try:
            imagePath = str(results.write_slice_png(pixels[0], os.path.join(tempDir, "plane.png")))
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
        if isinstance(measurement, results.NoPlaneMeasurement):
            self.log(results.measurement_summary(measurement))
            return measurement, None
        ijkToRas = vtk.vtkMatrix4x4()
        sliceVolume.GetIJKToRASMatrix(ijkToRas)
        pointsRas = results.ijk_to_ras(
            results.measurement_outline_ijk(measurement, pixelSizeMm), slicer.util.arrayFromVTKMatrix(ijkToRas)
        )
        name = f"{sliceVolume.GetName()} {measurement.measure_name}"
        if measurement.plane == "femur":
            markup = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", name)
        else:
            markup = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsClosedCurveNode", name)
            markup.SetCurveTypeToLinear()  # the points already follow the ellipse
        markup.CreateDefaultDisplayNodes()
        markup.GetDisplayNode().SetPointLabelsVisibility(False)
        slicer.util.updateMarkupsControlPointsFromArray(markup, pointsRas)
        markup.SetLocked(True)
        markup.SetAndObserveTransformNodeID(sliceVolume.GetTransformNodeID())
        self.log(results.measurement_summary(measurement))
        return measurement, markup

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

    def loadPhantom(self, seed: int = 0):
        """Generate the synthetic head phantom and load it with its reference segmentation.

        Returns:
            (volume node, reference segmentation node).
        """
        from fetalbiometry.data.synthetic import make_head_volume
        from fetalbiometry.io import write_image

        phantom = make_head_volume(seed=seed)
        tempDir = _newTempDir()
        try:
            imagePath = str(write_image(phantom.image, os.path.join(tempDir, f"{PHANTOM_SAMPLE_NAME}.nrrd")))
            labelPath = str(write_image(phantom.label, os.path.join(tempDir, f"{PHANTOM_SAMPLE_NAME}-label.nrrd")))
            volumeNode = slicer.util.loadVolume(imagePath, {"name": PHANTOM_SAMPLE_NAME})
            referenceNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{PHANTOM_SAMPLE_NAME} reference")
            self.importHeadLabel(labelPath, volumeNode, referenceNode)
        finally:
            shutil.rmtree(tempDir, ignore_errors=True)
        return volumeNode, referenceNode


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
        self.assertTrue(logic.installDependencies(askConfirmation=False))

        import SampleData

        registerSampleData()
        source = next(
            source
            for source in SampleData.SampleDataLogic.sampleDataSourcesByCategory(SAMPLE_DATA_CATEGORY)
            if source.sampleName == PHANTOM_SAMPLE_NAME
        )
        volumeNode, referenceNode = source.customDownloader(source)
        self.assertEqual(slicer.util.arrayFromVolume(volumeNode).ndim, 3)
        self.delayDisplay("Loaded the phantom")

        segmentationNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Phantom fetal head")
        segmentId = logic.runJob(logic.startSegmentation(volumeNode, segmentationNode, Device.CPU))
        segmentation = segmentationNode.GetSegmentation()
        self.assertEqual(segmentation.GetNumberOfSegments(), 1)
        segment = segmentation.GetSegment(segmentId)
        self.assertEqual(segment.GetName(), results.HEAD_SEGMENT_NAME)
        self.assertTrue(segment.HasTag(segment.GetTerminologyEntryTagName()))
        self.delayDisplay("Segmented the phantom")

        rows = {row.quantity: row for row in logic.measureSegmentation(segmentationNode, referenceNode)}
        self.assertGreaterEqual(rows["Head volume"].value, 0.0)
        self.assertGreater(rows["Reference volume"].value, 0.0)
        self.assertTrue(0.0 <= rows["Dice"].value <= 1.0)
        self.assertTrue(0.0 <= rows["Jaccard"].value <= rows["Dice"].value)
        tableNode = logic.fillTable(None, list(rows.values()), "Phantom measurements")
        self.assertEqual(tableNode.GetNumberOfRows(), len(rows))
        self.assertEqual(tableNode.GetNumberOfColumns(), len(results.TABLE_COLUMNS))
        self.delayDisplay("Test passed")
