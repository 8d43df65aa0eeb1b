"""Mutation check of the method files: do the tests notice when a formula is wrong? (issue 16)

A declared list of semantic mutations (scalings reversed or dropped, initialisations to zero, dropout
off, sharing and grouping broken, importance-score terms dropped, pruning order reversed, regulariser
wrong, analysis formulas wrong, wrapper state lost) is applied ONE AT A TIME to a temporary copy of the
tree (the worktree itself is never touched); for each, the tests that cover that file run in the copy
(``pytest -x``: the first failure ends the run). A mutation the tests fail on is *caught*; one they pass
is a *survivor*. Every mutation's search text must occur exactly as often as declared, so a refactor
that moves the code makes this script fail loudly instead of testing nothing.

Not part of CI's pass/fail (it runs pytest once per mutation: minutes). The figure goes in the notes:

    python bench/mutation_check.py                  # all mutations: caught / total and the survivors
    python bench/mutation_check.py --list           # the declared mutations
    python bench/mutation_check.py --only msplora   # the mutations whose name contains "msplora"
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The tests that cover each mutated file (the fidelity tests first: they fail fastest).
LOWRANK = "tests/test_fidelity_lowrank.py"
TESTS: dict[str, tuple[str, ...]] = {
    "adapters/msplora.py": (LOWRANK, "tests/test_adapter_msplora.py"),
    "adapters/sera.py": (LOWRANK, "tests/test_adapter_sera.py"),
    "adapters/lora2.py": (LOWRANK, "tests/test_fidelity_lora2.py", "tests/test_adapter_lora2.py"),
    "adapters/melora.py": (LOWRANK, "tests/test_adapter_melora.py"),
    "adapters/moslora.py": (LOWRANK, "tests/test_adapter_moslora.py"),
    "adapters/dylora.py": (LOWRANK, "tests/test_adapter_dylora.py"),
    "adapters/_toolkit/lowrank.py": (LOWRANK, "tests/test_fidelity_wrap.py"),
    "adapters/_toolkit/surgery.py": (LOWRANK, "tests/test_fidelity_wrap.py"),
    "adapters/_toolkit/bottleneck.py": ("tests/test_fidelity_wrap.py", "tests/test_adapter_bottleneck.py"),
    "adapters/_toolkit/peft_tuner.py": ("tests/test_adapter_dora.py", "tests/test_adapter_pissa.py",
                                        "tests/test_adapter_adalora.py", "tests/test_adapter_vera.py"),
    "harness/pipeline/analysis.py": ("tests/test_fidelity_analysis.py", "tests/test_analysis.py"),
}


@dataclass(frozen=True)
class Mutation:
    name: str
    kind: str  # the class of error: scaling, init, dropout, sharing, grouping, score, pruning, ...
    file: str
    old: str
    new: str
    count: int = 1  # how often ``old`` occurs in the file (all occurrences are replaced)


MUTATIONS: tuple[Mutation, ...] = (
    # ---- MSPLoRA -------------------------------------------------------------------------------------
    Mutation("msplora: level scalings r/alpha instead of alpha/r", "scaling", "adapters/msplora.py",
             "return tuple(a / r for a, r in zip(alphas, ranks))", "return tuple(r / a for a, r in zip(alphas, ranks))"),
    Mutation("msplora: per-level scalings in reversed order", "scaling", "adapters/msplora.py",
             "return tuple(a / r for a, r in zip(alphas, ranks))",
             "return tuple(a / r for a, r in zip(alphas, ranks))[::-1]"),
    Mutation("msplora: scaling dropped in the forward pass", "scaling", "adapters/msplora.py",
             "b = torch.cat([p.B * p.scaling for p in pairs], dim=1)", "b = torch.cat([p.B for p in pairs], dim=1)"),
    Mutation("msplora: scaling dropped in the dense update (merge, analyses)", "scaling", "adapters/msplora.py",
             "return (self.B @ self.A) * self.scaling", "return self.B @ self.A"),
    Mutation("msplora: A initialised to zero", "init", "adapters/msplora.py",
             "kaiming_uniform_(self.A)", "zeros_(self.A)"),
    Mutation("msplora: B initialised randomly", "init", "adapters/msplora.py",
             "zeros_(self.B)", "kaiming_uniform_(self.B)"),
    Mutation("msplora: global level not shared across layers", "sharing", "adapters/msplora.py",
             "return (site.stack, kind, level)\n", "return (site.stack, kind, level, site.layer)\n"),
    Mutation("msplora: module type = matched target (attention.output.dense shares with output.dense)", "sharing",
             "adapters/msplora.py", "kind = module_type(site)", "kind = site.kind"),
    Mutation("msplora: mid groups interleaved (l mod G) instead of depth ranges", "grouping", "adapters/msplora.py",
             "return layer * groups // num_layers", "return layer % groups"),
    Mutation("msplora: a second dropout mask inside the levels", "dropout", "adapters/msplora.py",
             "a = torch.cat([p.A for p in pairs], dim=0)", "a = torch.cat([p.A for p in pairs], dim=0)\n        x = self.dropout(x)"),
    # ---- SeRA ----------------------------------------------------------------------------------------
    Mutation("sera: dense update without its scaling", "scaling", "adapters/sera.py",
             "return (a @ self.C @ b).T * self.scaling", "return (a @ self.C @ b).T"),
    Mutation("sera: forward without its scaling", "scaling", "adapters/sera.py",
             "reshape(*lead, self.out_features) * self.scaling", "reshape(*lead, self.out_features)"),
    Mutation("sera: scaling r/alpha", "scaling", "adapters/sera.py",
             "scaling = c.scaling_alpha / c.rank\n", "scaling = c.rank / c.scaling_alpha\n"),
    Mutation("sera: C initialised to zero", "init", "adapters/sera.py",
             "kaiming_uniform_(self.C, fan_in=rank)", "zeros_(self.C)"),
    Mutation("sera: A's Kaiming bound from the full d_in, not its block's", "init", "adapters/sera.py",
             "kaiming_uniform_(self.A, fan_in=self.in_features // split)", "kaiming_uniform_(self.A, fan_in=self.in_features)"),
    Mutation("sera: C transposed in the forward pass", "formula", "adapters/sera.py",
             "@ self.C  # (tokens, r)", "@ self.C.T  # (tokens, r)"),
    # ---- LoRA² ---------------------------------------------------------------------------------------
    Mutation("lora2: scaling forced to 1", "scaling", "adapters/lora2.py",
             "scaling = c.scaling_alpha / c.rank\n", "scaling = 1.0\n"),
    Mutation("lora2: Λ initialised randomly", "init", "adapters/lora2.py",
             "zeros_(self.lam)", "normal_(self.lam, INIT_STD)"),
    Mutation("lora2: factors at std 1 instead of 0.02", "init", "adapters/lora2.py",
             "normal_(p, INIT_STD)", "normal_(p, 1.0)"),
    Mutation("lora2: importance score s(λ) only", "score", "adapters/lora2.py",
             "return s_lam + s_v + s_u", "return s_lam"),
    Mutation("lora2: importance score without the v term", "score", "adapters/lora2.py",
             "return s_lam + s_v + s_u", "return s_lam + s_u"),
    Mutation("lora2: importance score without the U term", "score", "adapters/lora2.py",
             "return s_lam + s_v + s_u", "return s_lam + s_v"),
    Mutation("lora2: importance without its uncertainty term", "score", "adapters/lora2.py",
             "return self.sensitivity * self.uncertainty", "return self.sensitivity"),
    Mutation("lora2: beta1 and beta2 swapped", "score", "adapters/lora2.py",
             "self._importance(p).update(p, self.c.beta1, self.c.beta2)",
             "self._importance(p).update(p, self.c.beta2, self.c.beta1)"),
    Mutation("lora2: pruning keeps the least important values", "pruning", "adapters/lora2.py",
             "torch.topk(flat, keep).indices", "torch.topk(flat, keep, largest=False).indices"),
    Mutation("lora2: regulariser drops ||VVᵀ - I||²", "regulariser", "adapters/lora2.py",
             "            (gram_V - eye_k).pow(2).sum(),\n", ""),
    Mutation("lora2: regulariser PᵀP without uᵀu", "regulariser", "adapters/lora2.py",
             "p_gram = self.v.T @ gram_u @ self.v", "p_gram = self.v.T @ self.v"),
    Mutation("lora2: regulariser summed instead of averaged", "regulariser", "adapters/lora2.py",
             "return c.orth_reg * torch.stack(terms).mean()", "return c.orth_reg * torch.stack(terms).sum()"),
    # ---- MELoRA, MoSLoRA, DyLoRA ------------------------------------------------------------------
    Mutation("melora: forward without its scaling", "scaling", "adapters/melora.py",
             "return self.scaling * out.reshape(*x.shape[:-1], self.out_features)",
             "return out.reshape(*x.shape[:-1], self.out_features)"),
    Mutation("melora: dense update without its scaling", "scaling", "adapters/melora.py",
             "return self.scaling * torch.block_diag(", "return torch.block_diag("),
    Mutation("melora: A's Kaiming bound from the full d_in", "init", "adapters/melora.py",
             "kaiming_uniform_(self.lora_A, fan_in=self.in_features // n)",
             "kaiming_uniform_(self.lora_A, fan_in=self.in_features)"),
    Mutation("moslora: scaling r/alpha", "scaling", "adapters/moslora.py",
             "self.scaling = options.scaling_alpha / r", "self.scaling = r / options.scaling_alpha"),
    Mutation("moslora: mixer initialised to zero", "init", "adapters/moslora.py",
             "kaiming_uniform_(self.lora_mixer, fan_in=r)", "zeros_(self.lora_mixer)"),
    Mutation("moslora: mixer transposed in the dense update", "formula", "adapters/moslora.py",
             "self.lora_B @ self.lora_mixer @ self.lora_A", "self.lora_B @ self.lora_mixer.T @ self.lora_A"),
    Mutation("dylora: scaling alpha/r_max instead of alpha/b", "scaling", "adapters/dylora.py",
             "return (self.alpha / rank) * nn.functional", "return (self.alpha / self.max_rank) * nn.functional"),
    Mutation("dylora: truncation keeps the last b rows", "formula", "adapters/dylora.py",
             "a, b = self.lora_A[:rank], self.lora_B[:, :rank]", "a, b = self.lora_A[-rank:], self.lora_B[:, -rank:]"),
    # ---- the toolkit (adapters/_toolkit) ------------------------------------------------------------
    Mutation("lowrank: dropout off (the six plain-torch low-rank methods)", "dropout", "adapters/_toolkit/lowrank.py",
             "self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()", "self.dropout = nn.Identity()"),
    Mutation("lowrank: the forward pass skips the dropout", "dropout", "adapters/_toolkit/lowrank.py",
             "        h = self.dropout(x)\n", "        h = x\n"),
    Mutation("lowrank: compute dtype fixed at wrap time", "state", "adapters/_toolkit/lowrank.py",
             "dtype = self.compute_dtype\n", 'dtype = self.factory["dtype"]\n'),
    Mutation("lowrank: unmerge adds the update again", "merge", "adapters/_toolkit/lowrank.py",
             "weight.sub_(self.delta_weight().to(weight.dtype))", "weight.add_(self.delta_weight().to(weight.dtype))"),
    Mutation("surgery: train/eval mode not carried over", "state", "adapters/_toolkit/surgery.py",
             "wrapper.train(linear.training)", "wrapper.train(True)"),
    Mutation("bottleneck: compute dtype fixed at wrap time", "state", "adapters/_toolkit/bottleneck.py",
             "h = y.to(self.compute_dtype)", 'h = y.to(self.factory["dtype"])'),
    Mutation("bottleneck: down-projection initialised to zero", "init", "adapters/_toolkit/bottleneck.py",
             "normal_(self.down_weight, 0.02)", "zeros_(self.down_weight)"),
    Mutation("peft_tuner: a LoRA variant's keywords dropped (DoRA, PiSSA become LoRA)", "config",
             "adapters/_toolkit/peft_tuner.py", "            **self.lora_keywords(model, ctx),\n", ""),
    Mutation("peft_tuner: unmerge leaves the update in the weights", "merge", "adapters/_toolkit/peft_tuner.py",
             "                layer.unmerge()\n", "                pass\n"),
    Mutation("peft_tuner: delta components lose their final rank", "analysis", "adapters/_toolkit/peft_tuner.py",
             "final_rank=ranks.get(name),", "final_rank=None,"),
    # ---- the analyses ------------------------------------------------------------------------------
    Mutation("analysis: towers of a dual encoder grouped together", "grouping", "harness/pipeline/analysis.py",
             "groups[(tower_of(c), c.kind, c.component)]", 'groups[("", c.kind, c.component)]'),
    Mutation("analysis: M_eff-k sums the smallest k", "analysis", "harness/pipeline/analysis.py",
             "sorted(singular_values, reverse=True)[:k]", "sorted(singular_values)[:k]"),
    Mutation("analysis: KL direction reversed", "analysis", "harness/pipeline/analysis.py",
             "kl_divergence(spectra[i], spectra[j]) for j in layers", "kl_divergence(spectra[j], spectra[i]) for j in layers"),
    Mutation("analysis: KL summand |p - q| instead of p·log(p/q)", "analysis", "harness/pipeline/analysis.py",
             "a * math.log(a / b)", "abs(a - b)"),
    Mutation("analysis: φ divided by max(i, j)", "analysis", "harness/pipeline/analysis.py",
             "/ min(i + 1, j + 1)", "/ max(i + 1, j + 1)"),
    Mutation("analysis: φ on the output-space directions", "analysis", "harness/pipeline/analysis.py",
             'return (vh.T if space == "input" else u).cpu()', 'return (u if space == "input" else vh.T).cpu()'),
    Mutation("analysis: module total keeps the last level only", "analysis", "harness/pipeline/analysis.py",
             "delta = delta + p.delta", "delta = p.delta"),
)


def copy_tree(dest: Path) -> None:
    """The worktree's files (tracked and untracked-not-ignored) into ``dest``."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                            capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)


def run_tests(tree: Path, tests: tuple[str, ...], timeout: float) -> tuple[bool, str]:
    """(passed, last lines of the output)."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    # the end-to-end runs through the CLI (real data, tens of seconds) test no formula: left out
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-m", "not slow",
           "-k", "not a_real_run", *tests]
    try:
        proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, "timed out"
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    failed = [line.split(" - ")[0] for line in lines if line.startswith(("FAILED", "ERROR"))]
    return proc.returncode == 0, "; ".join(failed[:1] + lines[-1:])


def check_applies(m: Mutation, text: str) -> None:
    found = text.count(m.old)
    if found != m.count:
        raise SystemExit(f"mutation '{m.name}': its search text occurs {found} time(s) in {m.file}, "
                         f"expected {m.count}: {m.old!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="print the declared mutations and exit")
    parser.add_argument("--only", help="run the mutations whose name contains this text")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per pytest run (default 600)")
    args = parser.parse_args(argv)
    mutations = [m for m in MUTATIONS if not args.only or args.only in m.name]
    for m in mutations:  # every mutation applies before anything runs
        check_applies(m, (ROOT / m.file).read_text())
    if args.list:
        for m in mutations:
            print(f"{m.kind:12} {m.name}")
        print(f"{len(mutations)} mutations")
        return 0
    if not mutations:
        raise SystemExit(f"no mutation name contains {args.only!r}")
    survivors: list[Mutation] = []
    with tempfile.TemporaryDirectory(prefix="mutation-check-") as tmp:
        tree = Path(tmp) / "tree"
        copy_tree(tree)
        shared = ROOT.parent / "shared"
        if shared.exists():  # the real data sits next to the worktree (../shared/data), so next to the copy
            (Path(tmp) / "shared").symlink_to(shared.resolve())
        for file in sorted({m.file for m in mutations}):  # the unmutated tree must pass first
            ok, tail = run_tests(tree, TESTS[file], args.timeout)
            if not ok:
                raise SystemExit(f"the tests of {file} fail without any mutation ({tail}); fix them first")
        for i, m in enumerate(mutations, 1):
            path = tree / m.file
            original = path.read_text()
            path.write_text(original.replace(m.old, m.new))
            start = time.monotonic()
            try:
                passed, tail = run_tests(tree, TESTS[m.file], args.timeout)
            finally:
                path.write_text(original)
            verdict = "SURVIVED" if passed else "caught"
            print(f"[{i:2}/{len(mutations)}] {verdict:8} {m.kind:11} {m.name}  ({time.monotonic() - start:.0f}s; {tail})",
                  flush=True)
            if passed:
                survivors.append(m)
    caught = len(mutations) - len(survivors)
    print(f"\ncaught {caught}/{len(mutations)} mutations")
    kinds = sorted({m.kind for m in mutations})
    for kind in kinds:
        of_kind = [m for m in mutations if m.kind == kind]
        print(f"  {kind:12} {sum(m not in survivors for m in of_kind)}/{len(of_kind)}")
    if survivors:
        print("survivors:")
        for m in survivors:
            print(f"  - {m.name} ({m.file})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
