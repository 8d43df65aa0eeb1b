"""Ray without a shared disk (harness/grid/executor_ray.py, ``--no-shared-disk``): a two-worker-node Ray
cluster on this machine (``ray.cluster_utils.Cluster``: a head node with no CPUs, where the driver is,
and two worker nodes of one CPU each). The tasks are given no results path and run in scratch folders of
their own; they return records and files and the driver writes them, so every file under the results
folder is one the driver wrote. The driver's data folder reaches the workers once through the object
store. One worker node is killed in the middle of a run: only that run is lost there, Ray retries it
on the other node, where it resumes from the checkpoint the driver's node held for it (a keeper actor),
and every record equals the record of an uninterrupted run.
"""

from __future__ import annotations

import importlib
import os
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="the Ray executor needs ray (pip install 'peft-harness[grid]')")
psutil = pytest.importorskip("psutil", reason="finding which node runs a task needs psutil")

from harness.grid import executor_ray  # noqa: E402
from harness.pipeline import checkpoint as ckpt  # noqa: E402
from harness.pipeline.runner import ExecutionOptions  # noqa: E402
from harness.records.store import ResultStore  # noqa: E402
from harness.suite import DataSource  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = "tests.toy_faults"
COMPARED = ("metrics", "loss_curve", "params", "adapter_info", "status")


@pytest.fixture(scope="module")
def fake():
    module = importlib.import_module(PLUGIN)
    yield module
    module.unregister()


def _runs_on(pid: int, node) -> bool:
    """Whether process ``pid`` belongs to this cluster node (a descendant of its raylet)."""
    roots = {info.process.pid for infos in node.all_processes.values() for info in infos if info.process}
    try:
        return any(parent.pid in roots for parent in psutil.Process(pid).parents())
    except psutil.NoSuchProcess:
        return False


def test_two_node_cluster_without_a_shared_disk_and_a_node_killed(fake, tmp_path: Path, monkeypatch):
    from ray.cluster_utils import Cluster

    from harness.grid.run_grid import GridOutcome, run_grid
    from harness.pipeline.plan import GridRequest, plan_grid

    specs = plan_grid(GridRequest(suite="toy-faults", adapters="head", tasks="slow", seeds=(1, 2, 3), preset="cpu"),
                      cuda_available=False)
    data = tmp_path / "data"
    (data / "toy-faults").mkdir(parents=True)
    (data / "toy-faults" / "note.txt").write_text("shipped by the driver\n")
    monkeypatch.setenv("TOY_FAULTS_SLEEP", "0")
    plain = ResultStore(tmp_path / "plain")
    run_grid(specs, plain, ExecutionOptions(device="cpu", progress=False, data=DataSource(data)), echo=lambda _: None)
    expected = {r["run_id"]: r for r in plain.records(warn=False)}

    markers = tmp_path / "markers"
    markers.mkdir()
    for name, value in {"TOY_FAULTS_SLEEP": "0.5", "TOY_FAULTS_MARKERS": str(markers), "OMP_NUM_THREADS": "1",
                        "RAY_USAGE_STATS_ENABLED": "0",
                        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}.items():
        monkeypatch.setenv(name, value)  # the nodes' raylets, and so their workers, inherit these

    results = tmp_path / "results"
    written: list[Path] = []
    store_remote = executor_ray.store_remote_result

    def driver_writes(store, record, files):  # what the driver writes, to compare with what is there
        result = store_remote(store, record, files)
        written.append(Path(result.path))
        written.extend(store.root / relative for relative in files)
        return result

    monkeypatch.setattr(executor_ray, "store_remote_result", driver_writes)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    try:
        doomed = cluster.add_node(num_cpus=1)
        cluster.add_node(num_cpus=1)
        ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
        cluster.wait_for_nodes()
        options = ExecutionOptions(device="cpu", progress=False, threads=1, save_adapters=True,
                                   data=DataSource(data), checkpoint_dir=str(results / ckpt.CHECKPOINT_DIR),
                                   checkpoint_every=2)
        lines: list[str] = []
        outcome = GridOutcome(planned=3)

        def report(result):
            outcome.count(result.status, result.unsaved)
            lines.append(result.summary)

        killed: list[str] = []
        import threading

        def kill_doomed_node_mid_run():
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline and not killed:
                for marker in markers.iterdir():
                    pid = int(marker.name.split("-")[2])
                    if _runs_on(pid, doomed):
                        time.sleep(2.6)  # about 5 of its 8 steps of 0.5 s: mid-run, checkpointed at step 2 and 4
                        killed.append(marker.name.split("-")[1])
                        cluster.remove_node(doomed, allow_graceful=False)
                        return
                time.sleep(0.05)

        watcher = threading.Thread(target=kill_doomed_node_mid_run, daemon=True)
        watcher.start()
        executor_ray.run_ray(specs, results, options, None, (PLUGIN,), outcome, lines.append, report,
                             shared_disk=False)
        watcher.join(5)
    finally:
        ray.shutdown()
        cluster.shutdown()
    print("\n".join(lines))
    assert killed, "no run was seen on the node to kill"
    assert outcome.by_status == {"success": 3} and outcome.lost == 0, lines
    store = ResultStore(results)
    for spec in specs:
        record = store.get(spec.key)
        assert record["data_info"]["data_note"] == "shipped by the driver"
        for section in COMPARED:
            assert record[section] == expected[spec.run_id][section], (spec.seed, section)
        assert store.path_for(spec.key).with_suffix(".adapter.safetensors").is_file()  # shipped back as bytes
    on_disk = sorted(p for p in results.rglob("*") if p.is_file())
    assert on_disk == sorted(set(written)), "every file under the results folder is one the driver wrote"
    # three records; the rest is each run's saved adapter (its tensors, and its loadable .adapter/ folder)
    records = [p for p in on_disk if p.suffix == ".json" and not p.parent.name.endswith(".adapter")]
    assert len(records) == 3 and not (results / ckpt.CHECKPOINT_DIR).exists()
    assert all(p in records or ".adapter" in p.name or p.parent.name.endswith(".adapter") for p in on_disk), on_disk
    starts = sorted(p.name.split("-")[1] for p in markers.iterdir())
    (lost,) = killed
    assert starts.count(lost) == 2, starts  # the run on the killed node ran again (on the other node)
    resumed = {spec.seed: store.get(spec.key)["timing"]["checkpoints"]["resumed_from"] for spec in specs}
    assert resumed[int(lost.removeprefix("seed"))]["step"] >= 2, resumed  # from the keeper's checkpoint
    assert [seed for seed, where in resumed.items() if where] == [int(lost.removeprefix("seed"))], resumed
    assert all(starts.count(f"seed{s}") == 1 for s in (1, 2, 3) if f"seed{s}" != lost), starts


def test_packing_helpers_without_a_worker(tmp_path: Path):
    digest, payload = executor_ray.pack_folder(ROOT / "tests" / "data") if (ROOT / "tests" / "data").is_dir() \
        else executor_ray.pack_folder(ROOT / "docs")
    first = executor_ray.node_data("tar", (digest, payload), tmp_path)
    again = executor_ray.node_data("tar", (digest, b"not read again"), tmp_path)  # unpacked once per node
    assert first == again and (first / ".complete").is_file()
    source = tmp_path / "remote"
    (source / "glue" / "rte").mkdir(parents=True)
    (source / "glue" / "rte" / "train.tsv").write_text("x\n")
    fetched = executor_ray.node_data("url", source.as_uri(), tmp_path / "node")  # file:// through fsspec
    assert (fetched / "glue" / "rte" / "train.tsv").read_text() == "x\n"
