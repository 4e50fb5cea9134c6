"""The sections of eval/reliability.py, one module per thing measured.

Each section module has ``measure(args) -> dict`` (the section's JSON), ``render(part) -> lines``
(its Markdown) and ``targets(part) -> lines`` (its verdicts against the reliability targets):
``badinput``, ``kills``, ``pickles``, ``outliers`` and ``watermark``. ``sources`` fetches the real
music they use from Debian packages; ``report`` merges the saved sections into the report.
"""
