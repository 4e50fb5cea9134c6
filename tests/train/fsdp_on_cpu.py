"""``stylecraft`` under FSDP on a CPU gloo group, for tests only.

Accelerate selects FSDP only on accelerator devices: on CPU it forms a plain data-parallel group
(and stylecraft refuses the launch). PyTorch's FSDP2 itself shards over gloo, so this entry point
makes Accelerate keep the FSDP choice on CPU: it turns the MULTI_CPU state into FSDP with the
plugin that ``accelerate launch --config_file recipes/accelerate/fsdp.yaml`` built, and lets the
launch through. Everything else (sharding, sharded checkpoints, resume, export) is the real code.

Usage: ``accelerate launch --config_file recipes/accelerate/fsdp.yaml --num_processes 2
--mixed_precision no tests/train/fsdp_on_cpu.py train RECIPE ...``
"""

import sys

from accelerate import state
from accelerate.utils import DistributedType

_init = state.AcceleratorState.__init__


def _fsdp_on_cpu(self, *args, **kwargs):
    plugin = kwargs.get("fsdp_plugin")
    _init(self, *args, **kwargs)
    if plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
        self.distributed_type = DistributedType.FSDP
        self.fsdp_plugin = plugin
        # Later AcceleratorState() calls copy PartialState's fields over their own.
        state.PartialState._shared_state["distributed_type"] = DistributedType.FSDP


if __name__ == "__main__":
    state.AcceleratorState.__init__ = _fsdp_on_cpu
    import stylecraft.train.loop as loop
    from stylecraft.cli import main

    loop.check_launch = lambda *a, **k: None
    sys.argv = ["stylecraft", *sys.argv[1:]]
    main()
