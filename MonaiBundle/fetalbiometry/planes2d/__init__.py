"""The 2D biometry of standard planes: HC, AC and FL from one frame.

What ``fetalbiometry measure`` and ``hc`` and the bundle's ``configs/biometry`` run:

- :mod:`.predictor`: any trained 2D network on a frame of any size, measured in mm;
- :mod:`.commands`: the ``measure`` and ``hc`` commands (reports, overlays, batches);
- :mod:`.data`, :mod:`.training`, :mod:`.losses`, :mod:`.transforms`: training, one loss per paper;
- :mod:`.evaluation`, :mod:`.report`: HC18's figures per frame and the tables of the docs;
- :mod:`.ensemble`: several trained copies of a network combined into one weights file.
"""
