"""The studio: a local Gradio app over the library (generate, compare, runs) and its API.

Install with ``pip install 'stylecraft[studio]'`` and start with ``stylecraft studio RUN_DIR``.
The modules below the app hold no Gradio code, so they are usable (and tested) without a page:
:mod:`.settings` (limits and what the app serves), :mod:`.takes` (generation),
:mod:`.compare` (FAD, KAD and the audit), :mod:`.runs` (curves, demos, card, verify);
:mod:`.app` lays them out as tabs and API endpoints.
"""
