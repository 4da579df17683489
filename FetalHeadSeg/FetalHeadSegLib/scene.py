"""The module's scene code: files and results in and out of Slicer's MRML scene, without Qt.

- a head label file -> one "Fetal head" segment with the General Anatomy "Head" terminology and
  its colour (:func:`import_head_label`);
- result rows -> a table node (:func:`fill_table`);
- a 2D measurement -> a closed curve along the ellipse, or a line between the femur ends
  (:func:`add_plane_markup`);
- a volume or a segmentation -> a file in world coordinates, the node's transform hardened into
  the file's geometry and the node left as it was (:func:`write_volume`,
  :func:`export_segmentation`).

Every function takes the scene it works in: inside Slicer that is ``slicer.mrmlScene``, in the
tests a ``vtkMRMLScene`` of Slicer's own MRML libraries (the ``slicer-core`` wheel), which has no
Qt and no application. Only ``slicer`` classes and static logic functions are used, never
``slicer.app``, ``slicer.modules`` or ``slicer.mrmlScene``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import slicer
import vtk

from FetalHeadSegLib import results

__all__ = [
    "add_plane_markup",
    "export_segmentation",
    "fill_table",
    "import_head_label",
    "read_label_volume",
    "slice_pixels",
    "world_ijk_to_ras",
    "write_volume",
]


def world_ijk_to_ras(volume_node) -> np.ndarray:
    """The 4x4 IJK-to-world matrix of a volume: its IJK-to-RAS under its parent transforms.

    Raises:
        ValueError: a parent transform is not linear (it cannot be written into a file's geometry).
    """
    ijk_to_ras = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(ijk_to_ras)
    matrix = slicer.util.arrayFromVTKMatrix(ijk_to_ras)
    transform_node = volume_node.GetParentTransformNode()
    if transform_node is None:
        return matrix
    if not transform_node.IsTransformToWorldLinear():
        raise ValueError(
            f"{volume_node.GetName()} is under the non-linear transform {transform_node.GetName()}: "
            "harden it first (Data module, right-click the transform, Harden transform)."
        )
    to_world = vtk.vtkMatrix4x4()
    transform_node.GetMatrixTransformToWorld(to_world)
    return slicer.util.arrayFromVTKMatrix(to_world) @ matrix


def write_volume(scene, volume_node, path: str) -> str:
    """Write a volume (or labelmap) node to a file in world coordinates; the node is left as it was.

    A parent linear transform is hardened into the written geometry: a copy of the node that
    shares its voxels gets the world IJK-to-RAS matrix. A throw-away storage node does the
    writing, so the node's own storage node keeps pointing where it did (``slicer.util.saveNode``
    would re-point it at this temporary file, as SlicerMONAIAuto3DSeg notes).

    Raises:
        ValueError: the node is under a non-linear transform.
        RuntimeError: the file could not be written.
    """
    world_node = volume_node.CreateNodeInstance()
    world_node.SetName(volume_node.GetName())
    world_node.SetAndObserveImageData(volume_node.GetImageData())
    world_node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(world_ijk_to_ras(volume_node)))
    storage_node = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    try:
        storage_node.SetFileName(str(path))
        storage_node.UseCompressionOff()
        if not storage_node.WriteData(world_node):
            raise RuntimeError(f"Could not write {volume_node.GetName()} to {path}.")
    finally:
        scene.RemoveNode(storage_node)
    return str(path)


def read_label_volume(scene, path: str, name: str):
    """Read a label image file into a new labelmap volume node of ``scene`` (not shown).

    Raises:
        RuntimeError: the file could not be read.
    """
    labelmap_node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", name)
    storage_node = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    try:
        storage_node.SetFileName(str(path))
        if not storage_node.ReadData(labelmap_node):
            scene.RemoveNode(labelmap_node)
            raise RuntimeError(f"Could not read the label file {path}.")
    finally:
        scene.RemoveNode(storage_node)
    return labelmap_node


def import_head_label(scene, label_path: str, reference_volume, segmentation_node) -> tuple[str, bool]:
    """Load a head label file into a segmentation as one "Fetal head" segment.

    The segmentation's segments are replaced. It takes the reference volume's geometry and
    parent transform; the label file is in world coordinates (as :func:`write_volume` writes the
    volume the label was computed on), and Slicer maps it into the segmentation's coordinates.
    The segment gets the terminology *Anatomical Structure / Head* of the 3D Slicer General
    Anatomy list (SNOMED CT 69536005) and that list's colour for it.

    Args:
        scene: the MRML scene.
        label_path: label image (voxels > 0: head).
        reference_volume: the volume the label belongs to.
        segmentation_node: vtkMRMLSegmentationNode that receives the segment.

    Returns:
        (ID of the head segment, whether the label had any head voxel).
    """
    labelmap_node = read_label_volume(scene, label_path, "FetalHeadSeg label")
    segmentation = segmentation_node.GetSegmentation()
    try:
        segmentation.RemoveAllSegments()
        segmentation_node.CreateDefaultDisplayNodes()
        segmentation_node.SetAndObserveTransformNodeID(reference_volume.GetTransformNodeID())
        segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume)
        if not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap_node, segmentation_node):
            raise RuntimeError(f"Could not import {label_path} into {segmentation_node.GetName()}.")
    finally:
        scene.RemoveNode(labelmap_node)
    found = segmentation.GetNumberOfSegments() > 0
    if found:
        segment_id = segmentation.GetNthSegmentID(0)
    else:
        segment_id = segmentation.AddEmptySegment("", results.HEAD_SEGMENT_NAME)
    segment = segmentation.GetSegment(segment_id)
    segment.SetName(results.HEAD_SEGMENT_NAME)
    segment.SetColor(results.HEAD_SEGMENT_COLOR)
    segment.SetTerminology(results.HEAD_TERMINOLOGY)
    segmentation_node.CreateClosedSurfaceRepresentation()
    return segment_id, found


def export_segmentation(scene, segmentation_node, path: str) -> str:
    """Write all segments of a segmentation as one label file, in world coordinates.

    The labelmap covers the segmentation's reference geometry (uncropped); a parent linear
    transform is hardened into the file's geometry (:func:`write_volume`).

    Raises:
        ValueError: the segmentation is under a non-linear transform.
        RuntimeError: the export or the writing failed.
    """
    labelmap_node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "FetalHeadSeg export")
    try:
        if not slicer.vtkSlicerSegmentationsModuleLogic.ExportAllSegmentsToLabelmapNode(
            segmentation_node, labelmap_node, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY
        ):
            raise RuntimeError(f"Could not export {segmentation_node.GetName()} to a labelmap.")
        # The export sits in the segmentation's coordinates; make its world position explicit.
        labelmap_node.SetAndObserveTransformNodeID(segmentation_node.GetTransformNodeID())
        return write_volume(scene, labelmap_node, path)
    finally:
        scene.RemoveNode(labelmap_node)


def fill_table(scene, table_node, rows: Sequence[results.TableRow], name: str):
    """Replace the content of a table node (a new one if ``None``) by result rows; returns the node.

    The columns are :data:`FetalHeadSegLib.results.TABLE_COLUMNS` (Quantity, Value, Unit), as text.
    """
    if table_node is None:
        table_node = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    table_node.RemoveAllColumns()
    for column_index, column_name in enumerate(results.TABLE_COLUMNS):
        column = vtk.vtkStringArray()
        column.SetName(column_name)
        for row in rows:
            column.InsertNextValue(row.cells[column_index])
        table_node.AddColumn(column)
    return table_node


def slice_pixels(volume_node) -> np.ndarray:
    """The pixels of a single-slice scalar volume as a (rows, columns) array (row j, column i).

    Raises:
        ValueError: the volume has no voxels, several slices or several components.
    """
    image = volume_node.GetImageData() if volume_node is not None else None
    if image is None:
        raise ValueError("Select the plane image: it has no voxels.")
    pixels = slicer.util.arrayFromVolume(volume_node)
    if pixels.ndim != 3 or pixels.shape[0] != 1:
        raise ValueError(
            f"2D biometry needs a single-slice scalar volume; {volume_node.GetName()} has voxel array shape {pixels.shape}."
        )
    return pixels[0]


def add_plane_markup(scene, measurement: results.PlaneMeasurement, slice_volume, pixel_size_mm: float):
    """Draw a 2D measurement on its image: a closed curve along the ellipse, or the femur line.

    The points are the measurement's (x, y) in mm divided by the pixel size passed to
    ``fetalbiometry measure`` (voxel indices), mapped with the volume's IJK-to-RAS matrix; the
    markup sits under the volume's transform, so it stays on the image. It is locked, without
    point labels.

    Returns:
        The new vtkMRMLMarkupsClosedCurveNode (head, abdomen) or vtkMRMLMarkupsLineNode (femur).
    """
    ijk_to_ras = vtk.vtkMatrix4x4()
    slice_volume.GetIJKToRASMatrix(ijk_to_ras)
    points_ras = results.ijk_to_ras(
        results.measurement_outline_ijk(measurement, pixel_size_mm), slicer.util.arrayFromVTKMatrix(ijk_to_ras)
    )
    name = f"{slice_volume.GetName()} {measurement.measure_name}"
    if measurement.plane == "femur":
        markup = scene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", name)
    else:
        markup = scene.AddNewNodeByClass("vtkMRMLMarkupsClosedCurveNode", name)
        markup.SetCurveTypeToLinear()  # the points already follow the ellipse
    markup.CreateDefaultDisplayNodes()
    display_node = markup.GetDisplayNode()
    if display_node is not None:
        display_node.SetPointLabelsVisibility(False)
    slicer.util.updateMarkupsControlPointsFromArray(markup, points_ras)
    markup.SetLocked(True)
    markup.SetAndObserveTransformNodeID(slice_volume.GetTransformNodeID())
    return markup
