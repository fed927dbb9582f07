"""The reference results, shipped inside peftbench as `peftbench.reference_results` (read-only)."""
