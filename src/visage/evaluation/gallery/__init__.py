"""False matches of a 1:N search, ``visage eval gallery``: the ACLU's mugshot search replicated through the server.

- :mod:`~visage.evaluation.gallery.command`: the command, and what the calibration predicts;
- :mod:`~visage.evaluation.gallery.search`: the probes and the gallery, indexing and searching
  through a ``visage serve``, and the comparison with the prediction;
- :mod:`~visage.evaluation.gallery.report`: ``docs/gallery.md``.
"""
