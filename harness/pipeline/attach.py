"""Attaching an adapter to a model: build it from its options, find its target sites, check them,
apply it, count what it trains. The one owner of this step: the runner, the plan's shape checks,
``harness params``, ``harness analyze``, the bench scripts and the tests all call it.
"""

from __future__ import annotations

from typing import Any

from harness.adapter import Adapter, ApplyContext, check_rank_fits
from harness.config import build
from harness.parameters import module_param_ids
from harness.pipeline.measure import count_parameters
from harness.registry import ADAPTERS

# The schedule length a model skeleton is attached with when no run is planned (counting parameters
# on the meta device, rebuilding a run's updates for ``analyze``): no step is ever taken, and any
# count of at least 2 satisfies the schedules that need one (AdaLoRA's rank allocation)
SKELETON_TOTAL_STEPS = 1000


def build_adapter_config(name: str, options: dict[str, Any]) -> Any:
    """The adapter's validated config (its ``to_dict`` is what a spec records), without the adapter."""
    return build(ADAPTERS.get(name).config_cls, options, f"adapter '{name}'")


def build_adapter(name: str, options: dict[str, Any]) -> Adapter:
    adapter_cls = ADAPTERS.get(name)
    return adapter_cls(build_adapter_config(name, options))


def attach(adapter: Adapter, model: Any, *, family: str, head_modules: tuple[str, ...], total_steps: int,
           seed: int = 0, task_type: str = "", check_rank: bool = False) -> Any:
    """Find the sites, check them (``check_rank``: also the plan-time rule that a rank fits each
    target's shape), apply the adapter; returns the model the adapter returns."""
    sites = adapter.sites(model, head_modules)
    if check_rank:
        check_rank_fits(adapter, sites)
    adapter.check_sites(sites)
    return adapter.apply(model, ApplyContext(family=family, sites=sites, head_modules=head_modules,
                                             total_steps=total_steps, seed=seed, task_type=task_type))


def count_on_skeleton(adapter: Adapter, model: Any, head: tuple[str, ...], family: str) -> int:
    """The adapter's trainable parameters (head excluded) on a model skeleton (the meta device)."""
    head_ids = module_param_ids(model, head)
    model = attach(adapter, model, family=family, head_modules=head, total_steps=SKELETON_TOTAL_STEPS,
                   check_rank=True)
    return count_parameters(model, head_ids).adapter_trainable
