"""``WITH (audit := N)``: judging a query's answers by the reference on random frames of its scan.

The certificate (``planner/certify.py``) is what vql promises; an audit is a check a user asks
for on top: it costs N reference calls at most (frames labelled already cost nothing) and
reports each claim's rates with two-sided 95% intervals.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from vql.engine.executor import Context, atom_truth, label_frames, where_truth
from vql.plan import EvaluatePredicates, claim_names
from vql.planner.stats import interval
from vql.sqlgen import ident


def audit(node: EvaluatePredicates, ctx: Context, n: int) -> dict:
    """``WITH (audit := N)``: N frames drawn uniformly at random from the scan (seeded by the query
    id), labelled by the reference where they are not yet, and the query's answers there judged
    against the reference: per claim, the rates with two-sided 95% Clopper–Pearson intervals.
    Under a short-circuit with per-atom claims, an atom is judged where it was evaluated."""
    scan, info = node.scan, node.scan.info
    rng = np.random.default_rng([int(ctx.stats.get("query_id", 0)), scan.first, scan.last])
    frames = np.sort(rng.choice(np.arange(scan.first, scan.last + 1), min(n, scan.frame_count), replace=False))
    truth = {}
    for atom in node.atoms:
        model = ctx.model(atom.predicate.model)
        done = set(ctx.store.labelled_frames(info.fingerprint, model.version, scan.first, scan.last).tolist())
        label_frames(ctx, info, model, np.array([f for f in frames if f not in done], np.int64),
                     f"labelling audit frames of {node.scan.video} for {atom.short_text}")
        truth[atom.column] = atom_truth(ctx, info, model.version, atom, frames)
    alias = ident(scan.alias)
    table = pa.table({"frame": frames, "ts": frames / info.fps, **truth})
    with ctx.store.registered("vql_audit_truth", table) as con:
        if node.where:  # the truth from the reference's atoms; the answer from the query's own table
            claims = claim_names(node.atoms, node.where)
            answer = con.execute(f"SELECT coalesce(({node.where}), FALSE) FROM {ident(node.table)} AS {alias} "
                                 f"SEMI JOIN vql_audit_truth t ON {alias}.frame = t.frame ORDER BY {alias}.frame").fetchall()
            pairs = [(where_truth(ctx, node)(frames, truth), np.array([r[0] for r in answer], bool))]
        else:
            claims = claim_names(node.atoms, None)
            pairs = []
            for atom in node.atoms:
                rows = con.execute(f"SELECT t.{ident(atom.column)}, a.{ident(atom.column)} FROM vql_audit_truth t JOIN "
                                   f"{ident(node.table)} a ON a.frame = t.frame WHERE a.{ident(atom.column)} IS NOT NULL "
                                   f"ORDER BY t.frame").fetchall()
                pairs.append((np.array([r[0] for r in rows], bool), np.array([r[1] for r in rows], bool)))
    out = {}
    for name, (t, a) in zip(claims, pairs):
        pos, neg = int(t.sum()), int((~t).sum())
        fn, fp = int((t & ~a).sum()), int((~t & a).sum())
        out[name] = {"frames": len(t), "positives": pos, "fnr": fn / max(1, pos), "fpr": fp / max(1, neg),
                     "fnr_ci": interval(fn, pos), "fpr_ci": interval(fp, neg)}
    return out
