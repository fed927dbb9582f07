"""Suite definitions and their data extracts, shipped inside peftbench as `peftbench.suite_files`."""
