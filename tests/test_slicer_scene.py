"""The module's scene code (``FetalHeadSegLib.scene``) on Slicer's own MRML libraries.

``slicer-core`` (PyPI) is Slicer's MRML, segmentation, markups, tables and module-logic
libraries with ``slicer.util``, without Qt and without the application. These tests build real
nodes in a ``vtkMRMLScene``, run the module's scene functions on them and read the nodes and
files back: geometry in mm (RAS, or LPS in the files), the segment's terminology and colour,
the table's columns and cells, and the markups' control points. They are skipped only where
the wheel cannot be installed (it is part of the ``test`` extra).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer", reason="slicer-core (Slicer's MRML libraries) is not installed")
vtk = pytest.importorskip("vtk")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "FetalHeadSeg"))

from FetalHeadSegLib import results, scene  # noqa: E402

# A volume whose geometry exercises every part of IJK-to-RAS: anisotropic spacing, an axis flip
# and an axis swap, an origin away from 0, and a translation transform above it.
SPACING = (0.5, 0.8, 1.2)  # mm, along i, j, k
ORIGIN = (10.0, -20.0, 30.0)  # RAS, mm
DIRECTIONS = np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])  # columns: i, j, k in RAS
TRANSLATION = (5.0, 7.0, -3.0)  # mm
SHAPE_KJI = (6, 8, 10)


@pytest.fixture(scope="module", autouse=True)
def segmentation_converters():
    """Register the representation converters, as Slicer's Segmentations module does at startup."""
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    registered = {type(rule).__name__ for rule in factory.GetConverterRules()}
    for rule in (slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule, slicer.vtkClosedSurfaceToBinaryLabelmapConversionRule):
        if rule.__name__ not in registered:
            factory.RegisterConverterRule(rule())


@pytest.fixture
def mrml_scene():
    mrml = slicer.vtkMRMLScene()
    yield mrml
    mrml.Clear(True)


def _ijk_to_ras(spacing=SPACING, origin=ORIGIN, directions=DIRECTIONS) -> np.ndarray:
    matrix = np.eye(4)
    matrix[:3, :3] = directions * np.asarray(spacing)
    matrix[:3, 3] = origin
    return matrix


def _add_volume(mrml, array: np.ndarray, name: str, class_name: str = "vtkMRMLScalarVolumeNode", ijk_to_ras=None):
    node = mrml.AddNewNodeByClass(class_name, name)
    node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(_ijk_to_ras() if ijk_to_ras is None else ijk_to_ras))
    slicer.util.updateVolumeFromArray(node, array)
    return node


def _add_translation(mrml, offset=TRANSLATION):
    transform = mrml.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shift")
    matrix = np.eye(4)
    matrix[:3, 3] = offset
    transform.SetMatrixTransformToParent(slicer.util.vtkMatrixFromArray(matrix))
    return transform


def _head_box() -> np.ndarray:
    label = np.zeros(SHAPE_KJI, np.uint8)
    label[1:4, 2:6, 3:8] = 1
    return label


def _world_of_voxel(ijk, matrix) -> np.ndarray:
    return (matrix @ np.append(np.asarray(ijk, float), 1.0))[:3]


def _lps_to_ras(point) -> np.ndarray:
    return np.asarray(point) * np.array([-1.0, -1.0, 1.0])


# --- volume export: transforms hardened ------------------------------------------------------------


def test_written_volume_carries_the_world_geometry_and_the_node_is_untouched(mrml_scene, tmp_path):
    voxels = np.arange(np.prod(SHAPE_KJI), dtype=np.int16).reshape(SHAPE_KJI)
    volume = _add_volume(mrml_scene, voxels, "us")
    volume.SetAndObserveTransformNodeID(_add_translation(mrml_scene).GetID())
    nodes_before = mrml_scene.GetNumberOfNodes()

    path = scene.write_volume(mrml_scene, volume, str(tmp_path / "us.nrrd"))

    image = sitk.ReadImage(path)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), voxels)
    np.testing.assert_allclose(image.GetSpacing(), SPACING)
    # The file's origin (LPS) is the world position of voxel (0, 0, 0): the origin moved by the transform.
    np.testing.assert_allclose(_lps_to_ras(image.GetOrigin()), np.add(ORIGIN, TRANSLATION))
    lps_directions = np.diag([-1.0, -1.0, 1.0]) @ DIRECTIONS
    np.testing.assert_allclose(np.reshape(image.GetDirection(), (3, 3)), lps_directions, atol=1e-12)
    # The node keeps its own geometry, transform and storage; the scene gets nothing new.
    matrix = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(matrix)
    np.testing.assert_allclose(slicer.util.arrayFromVTKMatrix(matrix), _ijk_to_ras())
    assert volume.GetTransformNodeID() is not None
    assert volume.GetStorageNode() is None
    assert mrml_scene.GetNumberOfNodes() == nodes_before


def test_non_linear_transform_is_refused_with_one_line(mrml_scene, tmp_path):
    volume = _add_volume(mrml_scene, np.zeros(SHAPE_KJI, np.int16), "us")
    grid = mrml_scene.AddNewNodeByClass("vtkMRMLGridTransformNode", "warp")
    volume.SetAndObserveTransformNodeID(grid.GetID())
    with pytest.raises(ValueError, match="non-linear transform warp: harden it first"):
        scene.write_volume(mrml_scene, volume, str(tmp_path / "us.nrrd"))


# --- label file -> segment with terminology and colour -------------------------------------------------


def _segment_label(mrml, tmp_path, label: np.ndarray, with_transform: bool = True):
    """Do what the Segment button does around the command: write the input, "segment" it, import."""
    volume = _add_volume(mrml, np.zeros(SHAPE_KJI, np.int16), "us")
    if with_transform:
        volume.SetAndObserveTransformNodeID(_add_translation(mrml).GetID())
    input_path = scene.write_volume(mrml, volume, str(tmp_path / "input.nrrd"))
    # `fetalbiometry segment` writes the label on exactly the input's grid.
    label_image = sitk.GetImageFromArray(label)
    label_image.CopyInformation(sitk.ReadImage(input_path))
    label_path = str(tmp_path / "label.nrrd")
    sitk.WriteImage(label_image, label_path)
    segmentation = mrml.AddNewNodeByClass("vtkMRMLSegmentationNode", "head")
    segment_id, found = scene.import_head_label(mrml, label_path, volume, segmentation)
    return volume, segmentation, segment_id, found


def test_label_becomes_the_head_segment_with_general_anatomy_terminology(mrml_scene, tmp_path):
    volume, segmentation_node, segment_id, found = _segment_label(mrml_scene, tmp_path, _head_box())

    assert found
    segmentation = segmentation_node.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == 1
    segment = segmentation.GetSegment(segment_id)
    assert segment.GetName() == "Fetal head"
    # Colour: "Head" of the General Anatomy list, recommendedDisplayRGBValue (177, 122, 101).
    np.testing.assert_allclose(np.round(np.array(segment.GetColor()) * 255), [177, 122, 101])

    tag = segment.GetTerminology()
    stored = vtk.reference("")
    assert segment.GetTag(segment.GetTerminologyEntryTagName(), stored) and stored == tag  # where Slicer reads it
    entry = slicer.vtkSlicerTerminologyEntry()
    assert slicer.vtkSlicerTerminologiesModuleLogic.DeserializeTerminologyEntry(tag, entry)
    assert entry.GetTerminologyContextName() == "Segmentation category and type - 3D Slicer General Anatomy list"
    category, kind = entry.GetCategoryObject(), entry.GetTypeObject()
    assert (category.GetCodingSchemeDesignator(), category.GetCodeValue(), category.GetCodeMeaning()) == (
        "SCT", "123037004", "Anatomical Structure"
    )
    assert (kind.GetCodingSchemeDesignator(), kind.GetCodeValue(), kind.GetCodeMeaning()) == ("SCT", "69536005", "Head")
    assert entry.GetAnatomicContextName() == "Anatomic codes - DICOM master list"
    assert not entry.GetTypeModifierObject().GetCodeValue() and not entry.GetAnatomicRegionObject().GetCodeValue()

    # Under the volume's transform, on its grid, shown as a surface in 3D.
    assert segmentation_node.GetTransformNodeID() == volume.GetTransformNodeID()
    assert segmentation_node.GetNodeReferenceID(segmentation_node.GetReferenceImageGeometryReferenceRole()) == volume.GetID()
    assert segmentation.ContainsRepresentation(slicer.vtkSegmentationConverter.GetClosedSurfaceRepresentationName())


def test_segment_lies_on_the_input_voxels_in_world_coordinates(mrml_scene, tmp_path):
    label = _head_box()
    volume, segmentation_node, segment_id, _ = _segment_label(mrml_scene, tmp_path, label)

    # Read the segment back on the input volume's grid: exactly the label's voxels.
    labelmap = mrml_scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    ids = vtk.vtkStringArray()
    ids.InsertNextValue(segment_id)
    assert slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(segmentation_node, ids, labelmap, volume)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(labelmap) > 0, label > 0)

    # The segment's surface spans the head box in world mm: voxels (i 3..7, j 2..5, k 1..3) ± half a voxel.
    to_world = vtk.vtkGeneralTransform()
    slicer.vtkMRMLTransformNode.GetTransformBetweenNodes(segmentation_node.GetParentTransformNode(), None, to_world)
    bounds = [0.0] * 6
    segmentation_node.GetRASBounds(bounds)
    corners = np.array([_world_of_voxel(ijk, _ijk_to_ras()) for ijk in [(3, 2, 1), (7, 5, 3)]])
    world = corners + TRANSLATION
    half = np.abs(DIRECTIONS * np.asarray(SPACING)).sum(axis=1) / 2
    np.testing.assert_allclose(bounds[0::2], world.min(axis=0) - half, atol=0.05)
    np.testing.assert_allclose(bounds[1::2], world.max(axis=0) + half, atol=0.05)


def test_empty_label_gives_an_empty_head_segment(mrml_scene, tmp_path):
    _, segmentation_node, segment_id, found = _segment_label(mrml_scene, tmp_path, np.zeros(SHAPE_KJI, np.uint8), False)
    assert not found
    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    assert segment.GetName() == "Fetal head"
    assert segment.GetTerminology() == results.HEAD_TERMINOLOGY


def test_segmentation_export_is_in_world_coordinates(mrml_scene, tmp_path):
    label = _head_box()
    _, segmentation_node, _, _ = _segment_label(mrml_scene, tmp_path, label)

    path = scene.export_segmentation(mrml_scene, segmentation_node, str(tmp_path / "exported.nrrd"))

    exported = sitk.ReadImage(path)
    original = sitk.ReadImage(str(tmp_path / "label.nrrd"))  # the label in world coordinates
    np.testing.assert_allclose(exported.GetOrigin(), original.GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(exported.GetSpacing(), original.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(exported.GetDirection(), original.GetDirection(), atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(exported) > 0, label > 0)
    assert results.head_volume_ml(path) == pytest.approx(label.sum() * np.prod(SPACING) / 1000)


# --- result rows -> table ---------------------------------------------------------------------------


def test_result_rows_fill_a_table_of_quantity_value_unit(mrml_scene):
    metrics = results.AgreementMetrics(0.8, 2 / 3, 0.5, 0.4, 1.0, 0.125, 0.13)
    rows = results.segmentation_rows(123.456789, metrics)

    table = scene.fill_table(mrml_scene, None, rows, "measurements")

    assert table.GetName() == "measurements"
    assert [table.GetColumnName(i) for i in range(table.GetNumberOfColumns())] == ["Quantity", "Value", "Unit"]
    assert table.GetNumberOfRows() == 8
    assert [table.GetCellText(0, c) for c in range(3)] == ["Head volume", "123.457", "mL"]
    assert [table.GetCellText(2, c) for c in range(3)] == ["Jaccard", "0.666667", ""]
    assert [table.GetCellText(5, c) for c in range(3)] == ["Hdb", "1", "mm"]

    # Filling again replaces the content of the same node.
    again = scene.fill_table(mrml_scene, table, results.measurement_rows(results.NoPlaneMeasurement("head", "empty mask")), "x")
    assert again is table
    assert (table.GetNumberOfRows(), table.GetNumberOfColumns()) == (2, 3)
    assert [table.GetCellText(1, c) for c in range(3)] == ["No measurement", "empty mask", ""]


# --- 2D measurement -> markups ----------------------------------------------------------------------


def _plane_volume(mrml, pixel_mm: float = 0.2):
    """A 1-slice image whose rows run towards -A and columns towards +R, origin (10, 20, 30) RAS."""
    directions = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]])
    matrix = _ijk_to_ras(spacing=(pixel_mm, pixel_mm, 1.0), origin=(10.0, 20.0, 30.0), directions=directions)
    return _add_volume(mrml, np.zeros((1, 50, 60), np.uint8), "plane", ijk_to_ras=matrix)


def test_femur_line_ends_at_the_measured_points_in_mm(mrml_scene):
    plane = _plane_volume(mrml_scene)
    femur = results.PlaneMeasurement("femur", 32.0, femur_endpoints_mm=((1.0, 2.0), (3.0, 4.0)))

    line = scene.add_plane_markup(mrml_scene, femur, plane, pixel_size_mm=0.2)

    assert line.IsA("vtkMRMLMarkupsLineNode") and line.GetName() == "plane FL"
    # x mm along the columns (+R), y mm along the rows (−A), from the origin (10, 20, 30).
    np.testing.assert_allclose(slicer.util.arrayFromMarkupsControlPoints(line), [[11.0, 18.0, 30.0], [13.0, 16.0, 30.0]])
    assert line.GetLineLengthWorld() == pytest.approx(np.hypot(2.0, 2.0))
    assert line.GetLocked()


def test_head_ellipse_is_a_closed_curve_on_the_image(mrml_scene):
    plane = _plane_volume(mrml_scene)
    plane.SetAndObserveTransformNodeID(_add_translation(mrml_scene).GetID())
    head = results.PlaneMeasurement("head", 0.0, ellipse_mm=(6.0, 5.0, 4.0, 2.0, 0.0))

    curve = scene.add_plane_markup(mrml_scene, head, plane, pixel_size_mm=0.2)

    assert curve.IsA("vtkMRMLMarkupsClosedCurveNode") and curve.GetName() == "plane HC"
    points = slicer.util.arrayFromMarkupsControlPoints(curve)
    assert points.shape == (72, 3)
    # t = 0 is the end of the a axis: (cx + a, cy) = (10, 5) mm -> RAS (20, 15, 30).
    np.testing.assert_allclose(points[0], [20.0, 15.0, 30.0])
    # Every point is on the ellipse ((R − 16)/4)² + ((15 − A)/2)² = 1, in the image plane.
    np.testing.assert_allclose(((points[:, 0] - 16.0) / 4.0) ** 2 + ((15.0 - points[:, 1]) / 2.0) ** 2, 1.0)
    np.testing.assert_allclose(points[:, 2], 30.0)
    # The curve follows the image's transform; in world coordinates it moved with it.
    assert curve.GetTransformNodeID() == plane.GetTransformNodeID()
    np.testing.assert_allclose(slicer.util.arrayFromMarkupsControlPoints(curve, world=True)[0], np.add([20.0, 15.0, 30.0], TRANSLATION))
    # Perimeter of the 72-gon: within 0.2 % of the ellipse's (Ramanujan), mm.
    a, b = 4.0, 2.0
    h = ((a - b) / (a + b)) ** 2
    perimeter = np.pi * (a + b) * (1 + 3 * h / (10 + np.sqrt(4 - 3 * h)))
    assert curve.GetCurveLengthWorld() == pytest.approx(perimeter, rel=2e-3)


def test_parsed_measurement_json_draws_on_the_image(mrml_scene):
    plane = _plane_volume(mrml_scene, pixel_mm=0.5)
    output = "loading model\n" + json.dumps(
        {"plane": "abdomen", "ac_mm": 150.0, "ellipse": {"cx": 10.0, "cy": 5.0, "a": 3.0, "b": 3.0, "theta": 0.3}}
    )
    measurement = results.parse_measurement(output)

    curve = scene.add_plane_markup(mrml_scene, measurement, plane, pixel_size_mm=0.5)

    points = slicer.util.arrayFromMarkupsControlPoints(curve)
    centre = np.array([10.0 + 10.0, 20.0 - 5.0, 30.0])
    np.testing.assert_allclose(np.linalg.norm(points - centre, axis=1), 3.0)


def test_slice_pixels_refuses_a_3d_volume(mrml_scene):
    plane = _plane_volume(mrml_scene)
    assert scene.slice_pixels(plane).shape == (50, 60)
    volume = _add_volume(mrml_scene, np.zeros(SHAPE_KJI, np.int16), "us")
    with pytest.raises(ValueError, match="single-slice scalar volume"):
        scene.slice_pixels(volume)


# --- Sample Data: the phantom from `fetalbiometry synth`, out of process, into the scene ------------


def test_phantom_sample_loads_with_its_reference_segment(mrml_scene, tmp_path):
    from FetalHeadSegLib import process

    command = process.synth_command(sys.executable, tmp_path / "phantom", seed=0)
    env = process.command_environment(REPO / "MonaiBundle")
    process.follow(process.BackgroundProcess(command, env=env))
    image_path, label_path = results.phantom_files(tmp_path / "phantom")

    volume = mrml_scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "FetalHeadPhantom")
    storage = mrml_scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(image_path))
    assert storage.ReadData(volume)
    reference = mrml_scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "FetalHeadPhantom reference")
    segment_id, found = scene.import_head_label(mrml_scene, str(label_path), volume, reference)

    assert found
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(label_path))) > 0
    labelmap = mrml_scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    ids = vtk.vtkStringArray()
    ids.InsertNextValue(segment_id)
    assert slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(reference, ids, labelmap, volume)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(labelmap) > 0, label)
    # The head volume the panel reports for this segmentation is the phantom's own.
    exported = scene.export_segmentation(mrml_scene, reference, str(tmp_path / "reference.nrrd"))
    assert results.head_volume_ml(exported) == pytest.approx(results.head_volume_ml(label_path))
    assert results.head_volume_ml(exported) > 0
