"""Pre-project selection on the user's own data: `peftbench pilot` (see `peftbench.pilot.pilot`)."""
