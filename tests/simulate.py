"""Simulated scans for coverage tests: temporally correlated truth and stage scores, and one
simulated query planned and certified through the real planner code (``planner/query.py``,
``planner/certify.py``, ``planner/sampling.py``), then judged on every frame of the scan.

A scan is a run of frames where an atom's truth comes in *episodes* (20–120 frames on end, like a
walker crossing the picture) separated by gaps; its stages' scores share a random effect per
episode (a whole appearance is hard or easy for the specialized model) and per stretch of gap
(a shadow that looks like a walker), plus slow drift along the scan: frames close in time are
far from independent.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace

import numpy as np

from vql.plan import ModelPredicate
from vql.planner.cascade import Atom, search
from vql.planner.cost import Costs
from vql.planner.query import AtomInput, certification_claims, finish, propose
from vql.planner.certify import Claim
from vql.planner.sampling import Sample, grow, training_size
from vql.planner.stages import NO_ONLY, PROBABILITY, register
from vql.planner.stats import upper_bound

COSTS = Costs(decode=1e-3, reference=0.05)


def in_parallel(fn, args: list[tuple]) -> list:
    """``[fn(*a) for a in args]``, in order, spread over this machine's cores in spawned
    processes: a coverage test's simulated scans are independent and single-threaded (numpy,
    scipy), so their number, which gives the test its power, need not cost its wall time.
    ``fn`` must be a module-level function (it is sent to the processes by name); each scan
    draws from its own seed, so the outcome does not depend on the number of cores.

    >>> in_parallel(divmod, [(7, 2), (9, 4)])
    [(3, 1), (2, 1)]
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    workers = min(len(args), cores)
    if workers <= 1:
        return [fn(*a) for a in args]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(fn, *zip(*args), chunksize=max(1, len(args) // (8 * workers))))


def seeds(seed: int, count: int) -> list[np.random.SeedSequence]:
    """``count`` independent seeds drawn from ``seed``, one per simulated scan (``in_parallel``)."""
    return np.random.SeedSequence(seed).spawn(count)


class SimDetector:
    """A simulated difference detector: its scores are the scan's ``diff`` (never computed here)."""

    name, size = "sim-detector", 32


class SimModel:
    """A simulated specialized model: its scores are the scan's ``cnn``."""

    name, size = "sim-cnn", 32


register(SimDetector, NO_ONLY)
register(SimModel, PROBABILITY)
DETECTOR, MODEL = SimDetector(), SimModel()


@dataclass
class SimAtom:
    truth: np.ndarray
    diff: np.ndarray
    cnn: np.ndarray


def episodes(rng, n: int, presence: float, lo: int = 20, hi: int = 120) -> tuple[np.ndarray, np.ndarray]:
    """Truth in episodes of lo..hi frames covering about ``presence`` of the scan, and the episode
    (or gap stretch) each frame belongs to."""
    truth = np.zeros(n, bool)
    segment = np.zeros(n, np.int64)
    mean_gap = (lo + hi) / 2 * (1 - presence) / presence
    f, seg = int(rng.integers(0, max(1, int(mean_gap)))), 0
    segment[:f] = seg
    while f < n:
        length = int(rng.integers(lo, hi + 1))
        seg += 1
        truth[f:f + length] = True
        segment[f:f + length] = seg
        f += length
        gap = int(rng.geometric(1 / max(mean_gap, 1.0)))
        seg += 1
        segment[f:f + gap] = seg
        f += gap
    return truth, segment


def sim_atom(rng, n: int, presence: float, separation: float) -> SimAtom:
    truth, segment = episodes(rng, n, presence)
    effect = rng.normal(0, 1.2, segment.max() + 1)[segment]  # shared by a whole episode / gap stretch
    drift = 0.6 * np.sin(np.linspace(0, rng.uniform(2, 8) * np.pi, n) + rng.uniform(0, 6.3))
    logit = np.where(truth, separation, -separation) + effect + drift + rng.normal(0, 0.8, n)
    cnn = 1 / (1 + np.exp(-logit))
    diff = np.exp(np.where(truth, 1.2, 0.0) + 0.5 * effect + 0.4 * drift + rng.normal(0, 0.5, n))
    return SimAtom(truth, diff, cnn)


QUERIES = {  # name -> (atoms' presences, combine over the atoms' values)
    "A": ((None,), lambda f, v: v["a0"]),
    "A AND B": ((None, 0.4), lambda f, v: v["a0"] & v["a1"]),
    "A OR B": ((None, 0.05), lambda f, v: v["a0"] | v["a1"]),
    "NOT A": ((None,), lambda f, v: ~v["a0"]),
}


@dataclass
class Outcome:
    strategy: str
    fnr: float  # the plan's true rates over every frame of the scan
    fpr: float
    violated: bool
    certification_frames: int
    predicted_pass: float


def allowed_errors(n: int, target: float, confidence: float = 0.95) -> int:
    """The most errors among ``n`` trials whose upper bound still meets ``target`` (-1: none)."""
    k = -1
    while k + 1 < n and upper_bound(k + 1, n, confidence) <= target:
        k += 1
    return k


def _refit_on(proposal, frames, sims, fpr: float, fnr: float):
    """The broken design: each atom's thresholds placed again on the certification frames, as far
    as a 95% bound on those same frames allows (what planners that certify on their fitting data do)."""
    choices = []
    for c, s in zip(proposal.choices, sims):
        if c.chosen is None:
            choices.append(c)
            continue
        y = s.truth[frames]
        allowed = (max(0, allowed_errors(int(y.sum()), fnr)), max(0, allowed_errors(int((~y).sum()), fpr)))
        choices.append(replace(c, chosen=search(_groups(s, frames), y, COSTS, allowed)[0].candidate))
    return replace(proposal, choices=tuple(choices), sequence=(tuple(choices),))


def _groups(s: SimAtom, frames: np.ndarray) -> list[list[tuple]]:
    """The simulated stages' scores on ``frames``, in the groups ``Stages.scored`` gives."""
    return [[(None, None, 0.0), (DETECTOR, s.diff[frames], 1e-5)], [(None, None, 0.0), (MODEL, s.cnn[frames], 2e-4)]]


def _scores(c, s: SimAtom, frames) -> list[np.ndarray]:
    """A chosen cascade's stages' scores on ``frames``, in order."""
    return [s.diff[frames] if st.op is DETECTOR else s.cnn[frames] for st in c.chosen.stages]


def _blocks(rng, n: int, exclude: np.ndarray, size: int, blocks: int = 30) -> np.ndarray:
    """``size`` frames outside ``exclude`` in ``blocks`` contiguous runs at random places."""
    free = np.setdiff1d(np.arange(n), exclude)
    per = max(1, size // blocks)
    starts = rng.choice(len(free) - per, blocks, replace=False)
    return np.unique(np.concatenate([free[s:s + per] for s in starts]))


def run_query(rng, kind: str, n: int, presence: float, separation: float, fpr: float, fnr: float,
              design: str = "valid") -> Outcome:
    """Plan one simulated query with the real planner and judge its answers on the whole scan.
    ``design`` "blocks" is the earlier planner's design, broken on purpose: the certification
    frames are contiguous time blocks, and the thresholds are placed again on them as far as
    their own bound allows before they certify: the coverage test must catch that."""
    presences, combine = QUERIES[kind]
    sims = [sim_atom(rng, n, presence if p is None else p, separation) for p in presences]
    atoms = [Atom(ModelPredicate("contains", f"c{i}", i, 0.5, None, "sim", "n"), column=f"a{i}") for i in range(len(sims))]
    n_train, _ = training_size(n, min(fpr, fnr))
    order = rng.permutation(n).astype(np.int64)
    while (grown := grow(n_train, n, min(min(int(t.sum()), len(t) - int(t.sum()))
                                         for t in (s.truth[order[:n_train]] for s in sims)), min(fpr, fnr))) != n_train:
        n_train = grown
    sample = Sample(order, n_train)
    sel = sample.select
    inputs = []
    for atom, s in zip(atoms, sims):
        inputs.append(AtomInput(atom, s.truth[sel], float(s.truth[sample.prefix].mean()), _groups(s, sel)))
    values = {a.column: s.truth[sample.prefix] for a, s in zip(atoms, sims)}
    rates = [float(combine(sample.prefix, values).mean())]
    proposal = propose(inputs, combine, fpr, fnr, n - n_train, n - n_train, COSTS, sel, rates, "sim", n_train)
    claims = []
    if proposal.cascade:
        sample = Sample(sample.order, n_train, proposal.sizing.frames)
        frames = sample.certify
        if design == "blocks":  # the earlier planner: contiguous time blocks, thresholds fitted on them
            frames = _blocks(rng, n, sample.prefix, len(frames))
            proposal = _refit_on(proposal, frames, sims, fpr, fnr)
        truth = {a.column: s.truth[frames] for a, s in zip(atoms, sims)}
        by_column = dict(zip([a.column for a in atoms], sims))

        def scores(c, frames=frames):
            return _scores(c, by_column[c.atom.column], frames)

        claims = certification_claims(proposal, frames, truth, scores, combine)
    plan = finish(proposal, claims, fpr, fnr)
    every = np.arange(n)
    truth_all = {a.column: s.truth for a, s in zip(atoms, sims)}
    labelled = np.zeros(n, bool)
    labelled[sample.prefix] = True
    labelled[frames if proposal.cascade else sample.certify] = True
    answers = {}
    for c, s in zip(plan.choices, sims):
        if c.chosen is None:
            answers[c.atom.column] = s.truth
        else:
            a = c.chosen.answer(_scores(c, s, every), s.truth)
            answers[c.atom.column] = np.where(labelled, s.truth, a)  # labelled frames answer from their labels
    pos, fn, neg, fp = Claim("q", combine(every, truth_all), combine(every, answers)).counts()
    rate_fn, rate_fp = fn / max(1, pos), fp / max(1, neg)
    return Outcome(plan.strategy, rate_fn, rate_fp, plan.strategy == "cascade" and (rate_fn > fnr or rate_fp > fpr),
                   plan.certificate.frames if plan.certificate else 0,
                   proposal.sizing.pass_probability if proposal.sizing else 0.0)
