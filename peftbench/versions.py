"""What cached and shipped answers mean, as versions: bump one when a change alters the answers it keys.

Caches are keyed by these and their inputs (`peftbench.cache.meaning_key`), not by source bytes nor by library
versions, so renaming a helper, fixing a docstring or a library release keeps every cache valid, and a change that
alters numbers says so here. Guards: the canaries (`peftbench.estimate.canary`, run by `tests/test_shape_fit.py`
and `peftbench doctor`) trace a few shipped fits afresh (a forgotten bump, or a library release that changes a
trace, fails there with the rebuild command), and the tests check every shipped fit's method metadata against
the registry.
"""

# Traced memory, FLOPs or bytes of a step: the traced ops, the accounting, the CUDA-kernel emulation, the
# depth extrapolation, model building. Bump, then `python -m peftbench.estimate.ship_fits` (rebuilds the fits)
# and `python -m peftbench.estimate.ship_fits --structures` (the served structures; tests/test_inference.py says so).
ESTIMATOR_VERSION = 10
# The method declarations (`peftbench.method_declarations`: names, families, defaults, architectures) that
# cached feasibility answers depend on. A method's own `MethodDeclaration.version` covers what it trains.
METHODS_VERSION = 1
# What the recommender's fitted model, evidence reading and ranking compute (its JSON caches).
RECOMMENDER_VERSION = 8  # 2: regime-aware evidence points, scale-aware settings, precision in the keys;
# 3: between-source uncertainty, pooling toward kin, one lower-bound order (first place still needs 5);
# 4: a descriptor the query leaves open weighs every point alike; the smallest peak is searched to micro-batch 1;
# 5: tables that probe a mechanism (MoRA's UUID memorization) are not evidence
# 6: a quoted figure is its table's reference (an anchor), not dropped; per-method training lengths keep one table
#    one comparison (T-Few); a paper owns its figures before a repository or a later paper quoting them
# 7: own reference runs on the corpus's scale (score over full FT), not over the chance/majority baseline
# 8: a copied run is a copy in every metric; one equal figure is a coincidence; order by the lower bound alone;
#    own tasks that cannot tell methods apart are not evidence
# What a report page's derived answers (estimates, recommendations shown beside the tables) contain.
REPORT_VERSION = 3  # 2: a pick without a ranking says why (no evidence to lead, or nothing fits);
# 3: a provisional first place (one source's evidence) says so
