"""The published-evidence corpus, shipped inside peftbench as `peftbench.published_results`."""
