"""Run by tests/training/test_loop.py under torchrun (2 CPU processes, gloo): trains the tiny model of
that test with the shared loop and writes its checkpoint to the folder given as argv[1]."""
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
    # Tear gloo down while the interpreter is whole: a rank exiting with gloo's worker threads alive
    # aborts ("terminate called without an active exception"), about one run in six here.
    torch.distributed.destroy_process_group()
