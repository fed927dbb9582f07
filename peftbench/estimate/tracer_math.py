"""What tracing and shape fits share without importing torch: memory categories and would-be peaks."""

from __future__ import annotations

from typing import Any

CATEGORIES = ("weights", "gradients", "optimizer_states", "activations", "temporaries")
FIXED = ("weights", "gradients", "optimizer_states")  # do not grow with the number of tokens
# Token counts at which each phase's would-be peak is kept (see `would_be_peaks`): 16 … 4M.
CANDIDATE_TOKENS = tuple(2**k for k in range(4, 23))


def would_be_peaks(events: Any, tokens: int) -> dict[str, int]:
    """For each count T in CANDIDATE_TOKENS, the row of `events` (see `Tracker.events`) that would peak if
    the token-dependent bytes (activations, temporaries) were scaled by T / `tokens`.

    The peak event moves with the shape: with few tokens a full fine-tune peaks late in backward (all
    gradients live), with many tokens early (all activations live). Depth extrapolation and shape fits
    follow each would-be peak separately and take the largest (`core._raise_to_candidates`).
    """
    import numpy as np

    fixed_columns = [CATEGORIES.index(c) for c in FIXED]
    fixed = events[:, fixed_columns].sum(axis=1).astype(float)
    variable = events.sum(axis=1) - fixed
    return {str(t): int(np.argmax(fixed + variable * (t / tokens))) for t in CANDIDATE_TOKENS}


def candidates(events: Any, tokens: int) -> dict[str, dict[str, int]]:
    """The breakdown at each would-be peak (see `would_be_peaks`)."""
    return {t: dict(zip(CATEGORIES, (int(v) for v in events[row]), strict=True))
            for t, row in would_be_peaks(events, tokens).items()}


