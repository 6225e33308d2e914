import os

# Tests use tiny models: one intra-op thread is faster than two (no sync overhead) and
# keeps the suite fast when another process shares the cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
