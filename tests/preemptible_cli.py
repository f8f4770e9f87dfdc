"""``mfnet-zoo`` with deterministic preemption hooks from the environment, for tests (no timers):

- ``KILL_RANK_AT_STEP=R:N``: rank R (0 without torchrun) kills itself with SIGKILL right after its N-th optimizer
  step, as a preempted process dies; under torchrun in the first round only (``TORCHELASTIC_RESTART_COUNT`` 0);
- ``COPY_CHECKPOINTS=DIR``: every checkpoint written is also copied to DIR as ``e{epoch}-b{batches}.pt``.

Run as ``python tests/preemptible_cli.py train ...`` or ``python -m torch.distributed.run ... tests/preemptible_cli.py
train ...``.
"""
import os
import shutil
import signal
import sys
from pathlib import Path

from torch.optim.optimizer import register_optimizer_step_post_hook

import mfnet_zoo.train
from mfnet_zoo.cli import main

if os.environ.get("KILL_RANK_AT_STEP") and os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0":
    victim, at_step = (int(v) for v in os.environ["KILL_RANK_AT_STEP"].split(":"))
    if int(os.environ.get("RANK", "0")) == victim:
        steps = []

        def kill_after(optimizer, args, kwargs):
            steps.append(1)
            if len(steps) == at_step:
                os.kill(os.getpid(), signal.SIGKILL)

        register_optimizer_step_post_hook(kill_after)

if os.environ.get("COPY_CHECKPOINTS"):
    copies, write = Path(os.environ["COPY_CHECKPOINTS"]), mfnet_zoo.train.write_checkpoint

    def write_and_copy(path, state):
        written = write(path, state)
        progress = state.get("progress") or {"batches": 0}
        copies.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(written, copies / f"e{state['epoch']}-b{progress['batches']}.pt")
        return written

    mfnet_zoo.train.write_checkpoint = write_and_copy

sys.exit(main(sys.argv[1:]))
