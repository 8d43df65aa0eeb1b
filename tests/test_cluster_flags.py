"""The flags of issue 37 as the parser reads them: checkpoints, Slurm, Ray without a shared disk, packed
GPUs; wrong combinations are one error line before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli.parser import build_parser
from harness.cli.run import checkpoint_options, slurm_options
from harness.errors import HarnessError
from harness.grid.executors import ExecutorConfig


def _args(*flags: str):
    return build_parser().parse_args(["run", "--suite", "toy", *flags])


def test_checkpoint_flags(tmp_path: Path):
    assert checkpoint_options(_args(), tmp_path) == {"checkpoint_dir": str(tmp_path.resolve() / ".checkpoints"),
                                                     "checkpoint_every": None}
    assert checkpoint_options(_args("--checkpoint-every", "50"), tmp_path)["checkpoint_every"] == 50
    assert checkpoint_options(_args("--no-checkpoints"), tmp_path) == {"checkpoint_dir": None, "checkpoint_every": None}
    with pytest.raises(HarnessError, match="contradict"):
        checkpoint_options(_args("--no-checkpoints", "--checkpoint-every", "5"), tmp_path)
    with pytest.raises(HarnessError, match="--checkpoint-every must be a positive integer"):
        _args("--checkpoint-every", "0")


def test_slurm_flags():
    args = _args("--executor", "slurm", "--slurm-partition", "gpu", "--slurm-gpus-per-task", "2", "--slurm-time",
                 "1-00:00:00", "--slurm-array-parallelism", "8", "--slurm-extra", "#SBATCH --qos=high",
                 "--slurm-extra", "#SBATCH --account=proj", "--slurm-resubmit", "0")
    slurm = slurm_options(args)
    assert (slurm.partition, slurm.gpus_per_task, slurm.time, slurm.array_parallelism, slurm.resubmit) == (
        "gpu", 2, "1-00:00:00", 8, 0)
    assert slurm.extra == ("#SBATCH --qos=high", "#SBATCH --account=proj")
    with pytest.raises(HarnessError, match="--slurm-partition apply to --executor slurm"):
        slurm_options(_args("--slurm-partition", "gpu"))
    with pytest.raises(HarnessError, match="--workers applies to --executor local"):
        ExecutorConfig(kind="slurm", workers=2, slurm=slurm)


def test_ray_and_packing_flags():
    args = _args("--executor", "ray", "--no-shared-disk", "--ray-data-url", "s3://bucket/data", "--runs-per-gpu", "4")
    assert (args.no_shared_disk, args.ray_data_url, args.runs_per_gpu) == (True, "s3://bucket/data", 4)
    config = ExecutorConfig(kind="ray", shared_disk=False, data_url="s3://bucket/data", runs_per_gpu=4)
    assert config.parallel
    with pytest.raises(HarnessError, match="apply to --executor ray"):
        ExecutorConfig(kind="local", shared_disk=False)
    with pytest.raises(HarnessError, match="--ray-data-url applies with --no-shared-disk"):
        ExecutorConfig(kind="ray", data_url="s3://bucket/data")
    assert _args("--warm-start", "sign").warm_start == "sign"
