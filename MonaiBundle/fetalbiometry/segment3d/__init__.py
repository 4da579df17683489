"""The 3D whole-fetal-head segmenter: what ``fetalbiometry segment`` and the bundle's 3D configs run.

Yang X, Wang X, Wang Y, et al. "Hybrid attention for automatic segmentation of whole fetal head
in prenatal ultrasound volumes", Computer Methods and Programs in Biomedicine, 2020
(``shared/papers/3d-whole-head-hybrid-attention-autocontext.txt``).

- :mod:`.segmenter`: :class:`~.segmenter.Segmenter`, one volume in, a label on its grid out;
- :mod:`.transforms`: the input pipeline shared by the configs and the segmenter;
- :mod:`.losses`: the deeply supervised cross entropy (Eq. 2);
- :mod:`.training`, :mod:`.handlers`: what ``configs/train.json`` and ``evaluate.json`` call;
- :mod:`.phantom_dataset`: phantoms generated on the fly for training;
- :mod:`.ablation`: the paper's Table 1, every variant trained and evaluated by the bundle.
"""
