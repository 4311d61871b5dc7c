"""The coverage test's scans, run through the planner as it was at commit 3d6493e (before the
certified design): single-atom queries, its pilot sample in time blocks, its fit-set growth and
its ``decide`` (thresholds fitted and bounded on the same fit set), judged on the whole scan.

Set up (the old planner imported from a worktree, the scans from this tree's tests/simulate.py):

    git worktree add /tmp/oldvql 3d6493e
    mkdir -p /tmp/oldsite/vql && cd /tmp/oldsite/vql
    for d in engine planner udfs; do ln -sf /tmp/oldvql/$d $d; done; for f in /tmp/oldvql/vql/*; do ln -sf $f .; done
    cd - && python benchmarks/coverage_before.py 400

Measured 2026-11-28: 400 queries, 400 cascades, 71 over a target (0.177; the test's limit 0.083).
"""
import math, sys, types
import numpy as np
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "tests"))
from simulate import sim_atom
# import the OLD planner from the worktree
for m in list(sys.modules):
    if m.startswith("vql"): del sys.modules[m]
sys.path.insert(0, "/tmp/oldsite")
import vql  # old package via /tmp/oldsite symlinks
from vql.planner.cascade import Atom, decide, plan_sample
from vql.planner.cost import Costs
from vql.planner.sampling import Split, time_block_split, FIT_SHARE
from vql.planner.stats import trials_needed
from vql.plan import ModelPredicate
print(vql.__file__)
COSTS = Costs(decode=1e-3, diff=0.0, cnn=0.0, reference=0.05)

class Index(dict):
    def __missing__(self, f): return np.array(f)

class FakeStages:
    def __init__(self, s):
        self.s = s
        self.det = types.SimpleNamespace(name="sim-detector", scores=lambda idx: s.diff[np.asarray(idx, np.int64)])
        self.model = types.SimpleNamespace(arch=types.SimpleNamespace(name="sim-cnn", size=64), scores=lambda idx: s.cnn[np.asarray(idx, np.int64)])
    def scored(self, frames, small):
        f = np.asarray(frames, np.int64)
        return ([(None, None, 0.0), (self.det, self.s.diff[f], 1e-5)], [(None, None, 0.0), (self.model, self.s.cnn[f], 2e-4)])

def one(rng, n, presence, sep, fpr, fnr):
    s = sim_atom(rng, n, presence, sep)
    atom = Atom(ModelPredicate("contains", "c0", 0, 0.5, None, "sim", "n"), column="a0")
    split, why = plan_sample(0, n - 1, min(fpr, fnr))
    wanted = trials_needed(min(fpr, fnr) * 0.9)
    for _ in range(6):  # the growth loop of label_sample (without its cost check)
        fit_pos = int(s.truth[split.fit].sum()); least = min(fit_pos, len(split.fit) - fit_pos)
        if least >= wanted: break
        extra = max(math.ceil(1.2 * (wanted * len(split.fit) / max(least, 0.5) - len(split.fit))), math.ceil(0.1 * len(split.fit)))
        more = time_block_split(0, n - 1, math.ceil(extra / FIT_SHARE), seed=len(split.frames))
        todo = np.setdiff1d(more.fit, split.fit)
        if not len(todo): break
        split = Split(split.train, np.union1d(split.fit, todo), split.eval, split.blocks, split.reason)
    truth = {int(f): bool(s.truth[f]) for f in split.frames}
    choice = decide(atom, split, why, truth, {32: Index(), 64: Index()}, COSTS, fpr, fnr, stages=FakeStages(s))
    if choice.strategy != "cascade":
        return "exact", 0.0, 0.0
    c = choice.chosen
    no, yes = c.decide(s.diff if c.detector else None, s.cnn if c.model else None, n)
    ans = yes | (~no & s.truth)
    ans[split.frames] = s.truth[split.frames]
    t = s.truth
    return "cascade", float((t & ~ans).sum() / t.sum()), float((~t & ans).sum() / (~t).sum())

rng = np.random.default_rng(12)
res = []
SEP = (0.5, 1.0, 2.0); PRES = (0.05, 0.15, 0.3); TG = ((0.05, 0.05), (0.1, 0.05), (0.05, 0.1), (0.1, 0.1))
for i in range(int(sys.argv[1])):
    sep, p, (fpr, fnr) = SEP[i % 3], PRES[(i // 3) % 3], TG[(i // 9) % 4]
    st, a, b = one(rng, 30000, p, sep, fpr, fnr)
    res.append((st, a > fnr or b > fpr))
n = len(res); v = sum(x[1] for x in res)
print(f"old planner: {n} single-atom queries, {sum(x[0]=='cascade' for x in res)} cascades, {v} over a target ({v/n:.3f}); limit {0.05 + 3*math.sqrt(0.05*0.95/n):.4f}")
