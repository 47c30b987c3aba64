"""The bias audit, ``visage audit``: the engine's error rates per demographic group, with their uncertainty.

- :mod:`~visage.evaluation.audit.command`: the command, and what is measured and why;
- :mod:`~visage.evaluation.audit.run`: the measures, cell by cell;
- :mod:`~visage.evaluation.audit.report`: ``report.html`` and the markdown page;
- :mod:`~visage.evaluation.audit.plots`: the figures.
"""
