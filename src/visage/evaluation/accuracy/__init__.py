"""How well each face model tells people apart: ``visage eval lfw``, ``visage eval cfp`` and ``visage eval docs``.

- :mod:`~visage.evaluation.accuracy.command`: the three commands;
- :mod:`~visage.evaluation.accuracy.run`: one face model on LFW, written as ``lfw-<model>.json`` and its plots;
- :mod:`~visage.evaluation.accuracy.cfp`: one face model across pose on CFP, written as ``cfp-<model>.json``;
- :mod:`~visage.evaluation.accuracy.report`: ``docs/accuracy.md`` and its plots, from those results,
  the Similarity maps, the fusion weight and the engine benchmark's embedding times;
- :mod:`~visage.evaluation.accuracy.curves`: error trade-off curves (FMR against FNMR, TAR at a FAR);
- :mod:`~visage.evaluation.accuracy.plots`: the figures (ROC, DET, the Similarity maps, the held-out check).
"""
