"""Logic of the FetalHeadSeg Slicer module, apart from its widget.

- :mod:`FetalHeadSegLib.process`: the ``fetalbiometry`` command lines the module runs, the
  background process that runs them (output streamed line by line, cancel kills the whole
  process tree), the Python packages each action needs (versions checked with
  ``importlib.metadata``) and the Slicer version the module needs.
- :mod:`FetalHeadSegLib.results`: preparing the commands' inputs and reading their results back
  (labels, agreement JSON, 2D biometry JSON, phantom and study outputs), the result-table rows.
- :mod:`FetalHeadSegLib.scene`: the scene code (segment with terminology, table, markups,
  volume and segmentation export), Qt-free and tested on Slicer's MRML libraries.

``process`` and ``results`` import neither ``slicer``, ``qt``, ``vtk`` nor ``fetalbiometry``,
so the test suite runs them with plain Python; ``scene`` imports ``slicer`` and ``vtk``.
``fetalbiometry`` is never imported in Slicer's process: it runs in the commands. Every file
here is Python-3.9-safe (a test checks), so that Slicer 5.6 and 5.8 can load the module and say
that it needs Slicer 5.10 or newer.
"""
