"""Run several ``pctalk fit`` configurations, one after another, as one rank of an externally launched DDP job.

``python ddp_matrix.py RUNS.json OUT`` where ``RUNS.json`` is ``{name: [pctalk fit args ...]}``. The test launches
this script twice with ``RANK`` / ``LOCAL_RANK`` / ``WORLD_SIZE`` / ``MASTER_ADDR`` / ``MASTER_PORT`` set (as torchrun
or SLURM would), so Lightning's DDP joins the two processes instead of spawning its own; the process group is set up
by the first fit and reused by the others, so the imports and the rendezvous are paid once for the whole matrix.
Each rank writes ``OUT/rank<r>.json``: per run, ``ok`` or the error, and the training steps it ran; the first
failure ends the rank (its peer then fails in its next collective rather than waiting for it).
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path


def main() -> None:
    import faulthandler
    import signal

    import torch.distributed as dist
    from lightning.pytorch import Callback

    from pctalk.cli import lightning_cli

    faulthandler.register(signal.SIGUSR1)  # a hung rank: kill -USR1 <pid> prints where it waits
    faulthandler.dump_traceback_later(float(os.environ.get("DDP_MATRIX_DUMP", 1e6)))
    runs = json.loads(Path(sys.argv[1]).read_text())
    out = Path(sys.argv[2])
    results: dict[str, dict] = {}

    class Steps(Callback):
        def on_train_end(self, trainer, pl_module) -> None:
            results[current]["steps"] = trainer.global_step
            results[current]["world_size"] = trainer.world_size

    for current, args in runs.items():
        results[current] = {}
        try:
            cli = lightning_cli([*args, "--trainer.accelerator=cpu", "--trainer.devices=2",
                                 "--trainer.strategy=ddp"], run=False)  # fmt: skip
            cli.trainer.callbacks.append(Steps())
            cli.trainer.fit(cli.model, datamodule=cli.datamodule)
            results[current]["ok"] = True
        except Exception as err:
            results[current].update(ok=False, error=f"{type(err).__name__}: {err}", trace=traceback.format_exc())
        rank = dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", -1))
        out.mkdir(parents=True, exist_ok=True)
        (out / f"rank{rank}.json").write_text(json.dumps(results, indent=1))
        if not results[current]["ok"]:
            # the other rank may be inside a collective: leaving makes it fail too, instead of waiting forever
            sys.stdout.flush()
            os._exit(1)


if __name__ == "__main__":
    main()
