"""Worker process set-up (`streams.cli`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from descstream.config import REPO_ROOT


def test_worker_caps_the_blas_pool():
    """`limit_blas_threads` (run by `descstream worker` at start) leaves every BLAS pool of the process at the
    configured size: spinning idle BLAS threads took ~45 us of CPU per behaviour event (measured)."""
    code = (
        "import json\n"
        "from streams.cli import limit_blas_threads\n"
        "limit_blas_threads(1)\n"
        "from threadpoolctl import threadpool_info\n"
        "print(json.dumps([i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas']))\n"
    )
    env_free = {"OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"}
    env = {k: v for k, v in os.environ.items() if k not in env_free}
    out = subprocess.run([sys.executable, "-c", code], cwd=str(REPO_ROOT), env=env, capture_output=True, text=True, check=True)
    pools = json.loads(out.stdout.strip().splitlines()[-1])
    assert pools and all(n == 1 for n in pools)
