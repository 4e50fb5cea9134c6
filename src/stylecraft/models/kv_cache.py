"""The name transformers gives the decoder's key/value cache in forward calls and outputs.

transformers 5.25 renamed ``past_key_values`` to ``cache`` (the old name still works there, with a
deprecation warning); stylecraft passes and reads whichever name the installed release defines.
"""

from __future__ import annotations

import dataclasses

from transformers.modeling_outputs import CausalLMOutputWithCrossAttentions

CACHE = "cache" if "cache" in {f.name for f in dataclasses.fields(CausalLMOutputWithCrossAttentions)} else "past_key_values"
