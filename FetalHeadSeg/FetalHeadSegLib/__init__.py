"""Logic of the FetalHeadSeg Slicer module that needs neither Slicer nor Qt.

- :mod:`FetalHeadSegLib.process`: the ``fetalbiometry`` command lines the module runs, the
  background process that runs them (output streamed line by line, cancel kills the whole
  process tree) and the Python packages the commands need.
- :mod:`FetalHeadSegLib.results`: reading results back (labels, metrics on the reference
  grid, 2D biometry JSON, study outputs) and the rows of the result tables.

Nothing here imports ``slicer``, ``qt``, ``vtk`` or ``fetalbiometry`` at import time, so the
test suite imports and runs it with plain Python; ``fetalbiometry`` is imported inside the
functions that compute with it.
"""
