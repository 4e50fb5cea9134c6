"""The style audit: which reference artist a track resembles, how sure that is, and whether it copies.

* :mod:`~stylecraft.evaluate.audit.run`: :func:`run_audit` and its settings;
* :mod:`~stylecraft.evaluate.audit.profile`: the interpretable style profile of a track;
* :mod:`~stylecraft.evaluate.audit.attribution`: the calibrated attribution model;
* :mod:`~stylecraft.evaluate.audit.fingerprint`: landmark fingerprints for near-copies;
* :mod:`~stylecraft.evaluate.audit.report`: the HTML report.
"""

from stylecraft.evaluate.audit.profile import NUMERIC_PROFILE, LoudnessNormalized, style_profile
from stylecraft.evaluate.audit.run import AuditSettings, audit_json, parse_references, run_audit

__all__ = [
    "NUMERIC_PROFILE",
    "AuditSettings",
    "LoudnessNormalized",
    "audit_json",
    "parse_references",
    "run_audit",
    "style_profile",
]
