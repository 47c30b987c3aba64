"""Evaluation on real labelled faces, one subpackage per subject, each with its command, computation, report and plots.

- :mod:`~visage.evaluation.accuracy`: how well each face model tells people apart on LFW, and
  across pose on CFP (``visage eval lfw``, ``visage eval cfp``, ``visage eval docs``: docs/accuracy.md);
- :mod:`~visage.evaluation.calibration`: what the engine ships, fitted on LFW: the Similarity
  maps and the fusion weight (``visage eval calibrate``, ``visage eval fusion-weight``);
- :mod:`~visage.evaluation.audit`: error rates per demographic group (``visage audit``: docs/bias-audit.md);
- :mod:`~visage.evaluation.gallery`: false matches of a 1:N search through the real server
  (``visage eval gallery``: docs/gallery.md).

What several of them share is here: the ``visage eval`` group (:mod:`~visage.evaluation.cli`),
where the data live (:mod:`~visage.evaluation.data`), the engine's results per image
(:mod:`~visage.evaluation.cache`), LFW's images, pairs and protocol (:mod:`~visage.evaluation.lfw`),
the other labelled sets (:mod:`~visage.evaluation.labelled`), the scores of every pair of a set
(:mod:`~visage.evaluation.allpairs`), what a Similarity map promises (:mod:`~visage.evaluation.prediction`)
and counts and means with their 95 % intervals (:mod:`~visage.evaluation.intervals`).

Data are read from ``VISAGE_EVAL_DATA`` (default ``../shared/eval``), never copied.
"""
