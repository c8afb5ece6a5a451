"""Run by tests/training/test_loop.py under torchrun (2 CPU processes, gloo): trains the tiny model of
that test with the shared loop and writes its checkpoint to the folder given as argv[1]."""
import gc
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from test_loop import tiny_transformer, train  # noqa: E402

if __name__ == "__main__":
    torch.set_num_threads(1)
    model = tiny_transformer(dropout=0.0)  # the same initial weights on every rank (seeded)
    history = train(model, checkpoint_dir=sys.argv[1])
    # every rank returns only once rank 0's last checkpoint is written (a script may read it next)
    state = os.path.join(sys.argv[1], "train_state.pt")
    assert os.path.isfile(state) and torch.load(state, weights_only=True)["step"] == len(history["loss"])
    # Under a time budget the ranks share one clock (their mean update time), so they stop together
    budgeted = len(train(tiny_transformer(dropout=0.0), steps=10_000, max_seconds=0.3)["loss"])
    counts = [None, None]
    torch.distributed.all_gather_object(counts, budgeted)
    assert counts[0] == counts[1] and 1 <= budgeted < 10_000, counts
    # Tear gloo down while the interpreter is whole, after the DDP wrappers (kept alive by reference
    # cycles until a collection) are gone: a rank exiting with gloo work still referenced aborts
    # ("terminate called without an active exception").
    gc.collect()
    torch.distributed.destroy_process_group()
    # One CI run aborted with that message all the same (the log does not say where; never reproduced
    # here: 0 of 97 runs, most under a load of 4 to 6). This line tells an abort before the teardown from
    # one after it, and the exit skips the interpreter's finalisation, where torch's and gloo's objects
    # are destroyed in no set order: everything tested is done and on disk by now.
    print(f"rank {os.environ['RANK']}: done, process group destroyed", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(0)
