"""Evaluation on real labelled faces: LFW verification, similarity fitting, bias audits.

Data are read from ``VISAGE_EVAL_DATA`` (default ``../shared/eval``), never copied.
"""
