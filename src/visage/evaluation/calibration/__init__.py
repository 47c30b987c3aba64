"""What the engine ships, fitted on LFW: ``visage eval calibrate`` and ``visage eval fusion-weight``.

- :mod:`~visage.evaluation.calibration.similarity_map`: what a Similarity means (a false-match
  rate) and why that scale, and each face model's cosine-to-Similarity map fitted and checked
  on every pair of LFW images (``visage/data/similarity/<model>.json``);
- :mod:`~visage.evaluation.calibration.fusion_weight`: the fusion model's sface weight, chosen
  on LFW pairsDevTrain (``visage/data/fusion.json``);
- :mod:`~visage.evaluation.calibration.command`: the two commands.
"""
