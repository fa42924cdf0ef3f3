"""Jobs: what to narrate into which files (planning, resume policy) and running it, on this
machine (``pipeline``) or on a Ray cluster (``cluster``)."""
